"""The asyncio cluster driver: the twin of :class:`redset._io.cluster.ClusterDriver`.

A set's plans run on the primary serving its slot, over connections of the
``redis.asyncio.cluster.RedisCluster`` (or ``valkey.asyncio.cluster.ValkeyCluster``)
client's own nodes, on :class:`~redset._io.aio.AsyncDriver`'s fast path.
Refusals (-MOVED, -ASK, -TRYAGAIN, -CLUSTERDOWN) are handled as in the
sync driver, with the same :class:`~redset._io.cluster.ClusterRouting`;
only the waiting differs.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Optional, Tuple

from redset._codec import Codec
from redset._core import kinds
from redset._core.steps import RAW, RECV_PAIRS, NotSent, Recv, Send
from redset._io.aio import AsyncDriver, _close_nowait, _read_pop, _read_raw, _send
from redset._io.clientlib import ClientLib, lib_of
from redset._io.cluster import ClusterRouting, apply_moved, refusal
from redset._io.planrun import PlanRun
from redset._io.replies import PopState

__all__ = ["AsyncClusterDriver", "async_cluster_lib"]

_CLUSTER_CLASSES = {
    "redis": ("redis.asyncio.cluster", "RedisCluster"),
    "valkey": ("valkey.asyncio.cluster", "ValkeyCluster"),
}


def async_cluster_lib(client: Any) -> Optional[ClientLib]:
    """The library of ``client`` if it is that library's asyncio cluster client, else None."""
    lib = lib_of(client)
    if lib is None:
        return None
    module, name = _CLUSTER_CLASSES[lib.root]
    return lib if isinstance(client, getattr(importlib.import_module(module), name)) else None


class AsyncClusterDriver(ClusterRouting, AsyncDriver):
    """Drive the primary that serves ``key``'s slot through an asyncio cluster client's nodes."""

    def __init__(self, client: Any, wire: Codec, socket_pops: Optional[bool], lib: ClientLib,
                 key: bytes) -> None:
        AsyncDriver.__init__(self, client, wire, socket_pops, lib)
        self._init_routing(client, key)

    # -- nodes and connections ----------------------------------------------
    async def _refresh(self) -> None:
        await self.client.nodes_manager.initialize()

    async def owner(self) -> Any:
        """The node serving the slot, as far as this driver knows."""
        if getattr(self.client, "_initialize", False):
            await self.client.initialize()  # first use of the client: read the map
        if self._moved is not None:
            moved, self._moved = self._moved, None
            told = apply_moved(self.client.nodes_manager, moved)
            if told is False:
                self._stale = True
            elif inspect.isawaitable(told):
                await told
        if self.wants_refresh():
            await self._refresh()
        return self.known_owner()

    async def _node(self, addr: Tuple[str, int]) -> Any:
        node = self.client.get_node(host=addr[0], port=addr[1])
        if node is None:
            await self._refresh()
            node = self.client.get_node(host=addr[0], port=addr[1])
        return node if node is not None else await self.owner()

    async def _acquire(self, st: Optional[PlanRun] = None) -> Any:
        node = await self.owner() if st is None or st.node is None else st.node
        return node.acquire_connection()

    async def _release(self, conn: Any, st: Optional[PlanRun] = None) -> None:
        node = await self.owner() if st is None or st.node is None else st.node
        release = getattr(node, "release", None)
        if release is not None:
            release(conn)
        else:  # valkey-py's nodes keep free connections in a deque, with no method
            node._free.append(conn)
        if st is not None:
            st.node = None

    async def socket_timeout(self) -> Optional[float]:
        if self._timeout is False:
            value = self.client.nodes_manager.connection_kwargs.get("socket_timeout")
            self._timeout = float(value) if value else None
        return None if isinstance(self._timeout, bool) else self._timeout

    async def _switch(self, st: PlanRun) -> None:
        """Give back the plan's connection (nothing is due on it)."""
        conn, st.conn, st.stream = st.conn, None, None
        if conn is not None:
            if st.pops is not None and st.pops.dirty():
                _close_nowait(conn)
            await self._release(conn, st)
        st.pops = None

    # -- requests --------------------------------------------------------------
    async def _perform(self, st: PlanRun, req: Any) -> None:
        kind = type(req)
        if kind is Send:
            await self._send(st, req)
        elif kind is Recv:
            if st.skip:
                if st.pops is None and req.mode != RAW:
                    # ASKING's reply is read with the connection's parser: so is the pop
                    st.pops = PopState(self.wire, False, memoryview(b""), self.lib)
                if not await self._skip_asking(st):
                    return
            await super()._perform(st, req)
            answer = st.answer
            if st.error is None and isinstance(answer, kinds.RESPONSE) and refusal(answer):
                await self._refused(st, req, answer)
        else:
            await super()._perform(st, req)
        if st.error is not None and isinstance(st.error, (NotSent,) + kinds.NETWORK):
            self._stale = True

    async def _send(self, st: PlanRun, req: Send) -> None:
        ask = st.ask
        try:
            target = await self._node(ask) if ask is not None else await self.owner()
        except kinds.NETWORK as exc:  # no node answers for the slot map
            st.error = NotSent(exc)
            return
        if st.conn is not None and (ask is not None or (st.node.name != target.name and not st.unread)):
            await self._switch(st)
        if st.conn is None:
            st.node = target
            try:
                st.conn = await self._acquire(st)
            except kinds.NETWORK as exc:
                st.node = None
                st.error = NotSent(exc)
                return
        if ask is None:
            await super()._perform(st, req)
            return
        try:
            await _send(st.conn, self.asking(st, req), self.lib)
        except kinds.NETWORK as exc:
            await self._drop(st)
            st.error = exc

    async def _skip_asking(self, st: PlanRun) -> bool:
        """Read and drop the reply to one ASKING; False if the connection broke."""
        try:
            await _read_raw(st.conn)
        except kinds.NETWORK as exc:
            await self._drop(st)
            st.error = exc
            return False
        st.skip -= 1
        st.unread -= 1
        return True

    async def _refused(self, st: PlanRun, req: Recv, answer: BaseException) -> None:
        """The node refused the command of ``req``: read what else is due, then
        tell the plan to re-send (all refused) or that outcomes are unknown."""
        all_refused = True
        try:
            while st.unread:
                if st.skip:
                    await _read_raw(st.conn)
                    st.skip -= 1
                elif req.mode == RAW:
                    all_refused = bool(refusal(await _read_raw(st.conn))) and all_refused
                else:
                    all_refused = bool(refusal(await _read_pop(st, RECV_PAIRS))) and all_refused
                st.unread -= 1
        except kinds.NETWORK as exc:
            await self._drop(st)
            st.answer, st.error = None, exc
            return
        await self._switch(st)
        st.answer = None
        st.error = self.note_refusal(st, answer, all_refused)
