"""The sync cluster driver: a set's commands go to its slot's primary.

Every key of a set shares one hash slot (:func:`redset._core.config.lease_keys`),
so a plan needs one node. :class:`ClusterDriver` takes connections from the
pool of the node that serves the slot (the cluster client's own
``ClusterNode.redis_connection``: its TLS, AUTH and timeouts apply) and runs
plans on them exactly like :class:`~redset._io.sync.SyncDriver`, on the same
compiled fast path. The cluster client's own command path (and its retries,
which may re-send a pop) is never used.

What only a cluster node answers is handled here, never re-sent blindly:

* ``-MOVED slot host:port`` (the slot has a new primary: a failover or a
  reshard), ``-ASK slot host:port`` (the slot is being moved and the key has
  left), ``-TRYAGAIN`` (a multi-key command while the slot's keys are split)
  and ``-CLUSTERDOWN``: the node refused the command before running it.
  The driver reads every reply still due on the connection; if each was a
  refusal, none of the commands in flight ran, and it throws
  :class:`~redset._core.steps.Redirected` into the plan, which re-sends
  them, pops included, to the node named (``ASKING`` first after ``-ASK``).
  If any of them did run (a node that changed its mind mid-pipeline), the
  plan gets a connection error instead: what it knows is "unknown", and a
  pop in flight becomes :class:`~redset.exceptions.PopOutcomeUnknown`.
* A lost connection is the plan's business as on one server; the driver
  re-reads the slot map before the next connection.
"""
from __future__ import annotations

import importlib
from typing import Any, Optional, Tuple

from redset._codec import Codec
from redset._core import kinds
from redset._core.steps import RAW, RECV_PAIRS, NotSent, Recv, Redirected, Send
from redset._io.clientlib import ClientLib, lib_of
from redset._io.planrun import PlanRun
from redset._io.replies import PopState
from redset._io.sync import SyncDriver, _read_raw

__all__ = ["ClusterDriver", "ClusterRouting", "cluster_lib", "cluster_class", "node_client", "ASKING", "TRYAGAIN_DELAY", "refusal", "apply_moved"]

#: ``ASKING``, sent before each command re-sent after ``-ASK``.
ASKING = b"*1\r\n$6\r\nASKING\r\n"
#: Seconds to wait before re-sending after ``-TRYAGAIN`` or ``-CLUSTERDOWN``.
TRYAGAIN_DELAY = 0.05

_CLUSTER_CLASSES = {"redis": ("redis.cluster", "RedisCluster"), "valkey": ("valkey.cluster", "ValkeyCluster")}


def cluster_class(lib: ClientLib) -> Any:
    """The library's sync cluster client class."""
    module, name = _CLUSTER_CLASSES[lib.root]
    return getattr(importlib.import_module(module), name)


def cluster_lib(client: Any) -> Optional[ClientLib]:
    """The library of ``client`` if it is that library's sync cluster client, else None."""
    lib = lib_of(client)
    if lib is None or not isinstance(client, cluster_class(lib)):
        return None
    return lib


_REFUSALS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


def refusal(reply: Any) -> Any:
    """``(kind, slot, host, port)`` if ``reply`` is a cluster node's refusal
    (``-MOVED``/``-ASK`` name the node; ``-TRYAGAIN``/``-CLUSTERDOWN`` do
    not: host None), else None. Either an exception class the client library
    parsed it into (redis-py's MovedError, ...) or, from parsers that keep
    it a plain ResponseError (valkey-py's), its message."""
    if not isinstance(reply, kinds.RESPONSE):
        return None
    if isinstance(reply, kinds.REFUSED):
        if isinstance(reply, kinds.ASK):
            kind = "MOVED" if isinstance(reply, kinds.MOVED) else "ASK"
            return kind, int(reply.slot_id), reply.host, int(reply.port)  # type: ignore[attr-defined]
        down = any(cls.__name__ == "ClusterDownError" for cls in type(reply).__mro__)
        return ("CLUSTERDOWN" if down else "TRYAGAIN"), 0, None, 0
    words = str(reply).split()
    if not words or words[0] not in _REFUSALS:
        return None
    if words[0] in ("MOVED", "ASK"):
        if len(words) < 3:
            return None
        host, _, port = words[2].rpartition(":")
        return words[0], int(words[1]), host, int(port)
    return words[0], 0, None, 0


def refresh_slots(cluster: Any) -> None:
    """Re-read the cluster's slot map, leaving pools in use alone."""
    manager = cluster.nodes_manager
    try:
        manager.initialize(disconnect_startup_nodes_pools=False)
    except TypeError:  # clients without that argument
        manager.initialize()


def apply_moved(manager: Any, moved: BaseException) -> Any:
    """Tell a cluster client's slot map what a -MOVED said, as the client
    does itself (no full re-read): redis-py's ``move_slot`` (a coroutine in
    its asyncio client: the caller awaits what this returns), valkey-py's
    pending ``_moved_exception``. False if the client has neither."""
    move = getattr(manager, "move_slot", None)
    if move is not None:
        return move(moved)
    update = getattr(manager, "update_moved_exception", None)
    if update is not None:
        return update(moved)
    if hasattr(manager, "_moved_exception"):
        manager._moved_exception = moved
        return None
    return False


def node_client(node: Any) -> Any:
    """The plain client of a cluster node (redis-py and valkey-py name it apart)."""
    conn = getattr(node, "redis_connection", None)
    return conn if conn is not None else getattr(node, "valkey_connection", None)


class ClusterRouting:
    """What the sync and asyncio cluster drivers share, apart from I/O: the
    slot, which node serves it as far as the driver knows, and what a
    refusal means for the plan. Reading the slot map again (I/O) is the
    driver's: it does it when :meth:`wants_refresh` says so."""

    client: Any
    lib: ClientLib

    def _init_routing(self, client: Any, key: bytes) -> None:
        self.slot = int(client.keyslot(key))
        #: A -MOVED not yet told to the client's slot map (the driver does it: I/O for asyncio).
        self._moved: Optional[BaseException] = None
        #: The slot map may be out of date (a lost connection, -CLUSTERDOWN): re-read it.
        self._stale = False
        #: Refusals followed, by kind (``mixed``: some commands in flight ran).
        self.redirects = {"moved": 0, "ask": 0, "tryagain": 0, "mixed": 0}

    def _note_moved(self, slot: int, host: str, port: int) -> None:
        """Remember that ``slot`` is served at ``host:port`` now."""
        self._moved = self.lib.exceptions.MovedError("%d %s:%d" % (slot, host, port))

    def check_same_slot(self, key: Any, what: str, tagged: str) -> None:
        """Refuse another key of the set that a cluster would keep apart.

        :raises ValueError: ``key`` hashes to another slot than the set.
        """
        slot = int(self.client.keyslot(key))
        if slot != self.slot:
            raise ValueError(
                "%s %r is in hash slot %d, the set in slot %d: on a cluster every key a set "
                "writes must share its slot (a node runs a command on its own slots only); give "
                "it the set's hash tag, e.g. %r" % (what, key, slot, self.slot, tagged))

    def wants_refresh(self) -> bool:
        """Whether the slot map must be read again before the next connection."""
        if self._stale:
            self._stale = False
            return True
        return False

    def known_owner(self) -> Any:
        """The node serving the slot in the client's map."""
        return self.client.nodes_manager.get_node_from_slot(self.slot)

    @staticmethod
    def asking(st: PlanRun, req: Send) -> bytes:
        """The bytes that re-send ``req`` to the node -ASK named: each command
        after an ``ASKING`` (whose replies the driver reads and drops)."""
        st.ask = None
        st.unread += 2 * len(req.cmds)
        st.skip += len(req.cmds)
        return b"".join([ASKING + cmd.packed for cmd in req.cmds])

    def note_refusal(self, st: PlanRun, answer: BaseException, all_refused: bool) -> BaseException:
        """What to throw into the plan after a node refused the command in
        flight (``answer``) and every reply due after it was read
        (``all_refused``: each was a refusal too); the next Send goes where
        the refusal says (-ASK: ``st.ask``)."""
        if not all_refused:
            self.redirects["mixed"] += 1
            self._stale = True
            return self.lib.ConnectionError(
                "a cluster node refused some of the commands in flight (%s) and ran others: "
                "their outcome is unknown" % (answer,))
        kind, slot, host, port = refusal(answer)
        delay = 0.0
        if kind == "MOVED":
            self.redirects["moved"] += 1
            self._note_moved(slot, host, port)
        elif kind == "ASK":
            self.redirects["ask"] += 1
            st.ask = (host, port)
        else:  # TRYAGAIN (the slot's keys are split mid-move: same node, later), CLUSTERDOWN
            self.redirects["tryagain"] += 1
            self._stale = kind == "CLUSTERDOWN"
            delay = TRYAGAIN_DELAY
        return Redirected(answer, delay)


class ClusterDriver(ClusterRouting, SyncDriver):
    """Drive the primary that serves ``key``'s slot through a redis-py (or
    valkey-py) cluster client's node pools."""

    def __init__(self, client: Any, wire: Codec, socket_pops: Optional[bool], lib: ClientLib,
                 key: bytes) -> None:
        SyncDriver.__init__(self, client, wire, socket_pops, lib)
        self._init_routing(client, key)

    # -- nodes and connections ----------------------------------------------
    def owner(self) -> Any:
        """The node serving the slot, as far as this driver knows."""
        if self._moved is not None:
            moved, self._moved = self._moved, None
            if apply_moved(self.client.nodes_manager, moved) is False:
                self._stale = True
        if self.wants_refresh():
            refresh_slots(self.client)
        return self.known_owner()

    def _node(self, addr: Tuple[str, int]) -> Any:
        node = self.client.get_node(host=addr[0], port=addr[1])
        if node is None:
            refresh_slots(self.client)
            node = self.client.get_node(host=addr[0], port=addr[1])
        return node if node is not None else self.owner()

    def _node_pool(self, node: Any) -> Any:
        conn = node_client(node)
        if conn is None:  # a node the client has not connected yet
            refresh_slots(self.client)
            conn = node_client(node)
            if conn is None:
                conn = getattr(self.client, "get_redis_connection", None) or self.client.get_valkey_connection
                conn = conn(node)
        return conn.connection_pool

    def _acquire(self, st: Optional[PlanRun] = None) -> Any:
        node = self.owner() if st is None or st.node is None else st.node
        pool = self._node_pool(node)
        try:
            return pool.get_connection()
        except TypeError:  # redis-py < 5.3 requires a command name
            return pool.get_connection("_")

    def _release(self, conn: Any, st: Optional[PlanRun] = None) -> None:
        node = self.owner() if st is None or st.node is None else st.node
        self._node_pool(node).release(conn)
        if st is not None:
            st.node = None

    def socket_timeout(self) -> Optional[float]:
        if self._timeout is False:
            value = self.client.nodes_manager.connection_kwargs.get("socket_timeout")
            conn = self._acquire()
            try:
                value = getattr(conn, "socket_timeout", None) or value
            finally:
                self._release(conn)
            self._timeout = float(value) if value else None
        return None if isinstance(self._timeout, bool) else self._timeout

    def _switch(self, st: PlanRun) -> None:
        """Give back the plan's connection (nothing is due on it)."""
        conn, st.conn, st.stream = st.conn, None, None
        if conn is not None:
            if st.pops is not None and st.pops.dirty():
                conn.disconnect()
            self._release(conn, st)
        self._recycle(st)

    # -- requests --------------------------------------------------------------
    def _perform(self, st: PlanRun, req: Any) -> None:
        kind = type(req)
        if kind is Send:
            self._send(st, req)
        elif kind is Recv:
            if st.skip:
                if st.pops is None and req.mode != RAW:
                    # ASKING's reply is read with the connection's parser: so is the pop
                    st.pops = PopState(self.wire, False, self._buffer(), self.lib)
                if not self._skip_asking(st):
                    return
            super()._perform(st, req)
            answer = st.answer
            if st.error is None and isinstance(answer, kinds.RESPONSE) and refusal(answer):
                self._refused(st, req, answer)
        else:
            super()._perform(st, req)
        if st.error is not None and isinstance(st.error, (NotSent,) + kinds.NETWORK):
            self._stale = True

    def _send(self, st: PlanRun, req: Send) -> None:
        ask = st.ask
        try:
            target = self._node(ask) if ask is not None else self.owner()
        except kinds.NETWORK as exc:  # no node answers for the slot map
            st.error = NotSent(exc)
            return
        if st.conn is not None and (ask is not None or (st.node.name != target.name and not st.unread)):
            self._switch(st)
        if st.conn is None:
            st.node = target
            try:
                st.conn = self._acquire(st)
            except kinds.NETWORK as exc:
                st.node = None
                st.error = NotSent(exc)
                return
        if ask is None:
            super()._perform(st, req)
            return
        try:
            st.conn.send_packed_command([self.asking(st, req)], check_health=False)
        except kinds.NETWORK as exc:
            self._close(st)
            st.error = exc

    def _skip_asking(self, st: PlanRun) -> bool:
        """Read and drop the reply to one ASKING; False if the connection broke."""
        try:
            _read_raw(st.conn)
        except kinds.NETWORK as exc:
            self._close(st)
            st.error = exc
            return False
        st.skip -= 1
        st.unread -= 1
        return True

    def _refused(self, st: PlanRun, req: Recv, answer: BaseException) -> None:
        """The node refused the command of ``req``: read what else is due, then
        tell the plan to re-send (all refused) or that outcomes are unknown."""
        all_refused = True
        try:
            while st.unread:
                if st.skip:
                    _read_raw(st.conn)
                    st.skip -= 1
                elif req.mode == RAW:
                    all_refused = bool(refusal(_read_raw(st.conn))) and all_refused
                else:
                    assert st.pops is not None  # the reply just read was a pop's
                    other, _ = self._read_pop(st.conn, st.stream, st.pops, RECV_PAIRS)
                    all_refused = bool(refusal(other)) and all_refused
                st.unread -= 1
        except kinds.NETWORK as exc:
            self._close(st)
            st.answer, st.error = None, exc
            return
        self._switch(st)
        st.answer = None
        st.error = self.note_refusal(st, answer, all_refused)
