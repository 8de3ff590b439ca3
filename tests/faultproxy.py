"""A loopback TCP proxy that cuts a connection between a request and its reply.

Unlike :class:`tests.proxy.CuttingProxy` (which forwards the request, sleeps
and then cuts), :class:`ReplyCuttingProxy` waits for the server's whole reply
to the matched request, keeps it (parsed) in :attr:`dropped`, and closes both
sides before a byte of it reaches the client. So each cut is exact: the
server has executed the command, the client has seen nothing, and the test
knows precisely what the server answered.

Which matches are cut is deterministic: :meth:`arm` takes a pattern, the
number of cuts, and either ``every`` (cut every Nth match) or a ``seed``
(cut each match with probability ``p`` from a seeded RNG).
"""
from __future__ import annotations

import random
import socket
import threading
from typing import Any, Callable, List, Optional

import hiredis

from .proxy import LoopbackProxy, _kill


class ReplyCuttingProxy(LoopbackProxy):
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._pattern: Optional[bytes] = None
        self._cuts_left = 0
        self._every = 1
        self._rng: Optional[random.Random] = None
        self._p = 0.5
        self._on_cut: Optional[Callable[[Any], None]] = None
        self.matches = 0
        #: The parsed replies the server sent to cut requests, in cut order.
        self.dropped: List[Any] = []
        self._replies = 1
        super().__init__(target_port, target_host)

    def arm(self, pattern: bytes, times: int, every: int = 1, seed: Optional[int] = None,
            p: float = 0.5, on_cut: Optional[Callable[[Any], None]] = None, replies: int = 1) -> None:
        """Cut ``times`` requests containing ``pattern``: every ``every``-th
        match, or (with ``seed``) each match with probability ``p``.

        ``on_cut(reply)`` runs after the server replied and before the
        client's connection is closed (to change the server in between).
        ``replies``: how many replies the cut write asks for (a pipeline);
        all are read and dropped, and :attr:`dropped` gets the list of them
        (the reply itself when 1).
        """
        with self._lock:
            self._replies = replies
            self._on_cut = on_cut
            self._pattern = pattern
            self._cuts_left = times
            self._every = max(1, every)
            self._rng = random.Random(seed) if seed is not None else None
            self._p = p
            self.matches = 0

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        state = {"cut": False, "dead": False}
        threading.Thread(target=self._client_pump, args=(client, upstream, state), daemon=True).start()
        threading.Thread(target=self._server_pump, args=(upstream, client, state), daemon=True).start()

    def _should_cut(self, data: bytes) -> bool:
        with self._lock:
            if self._cuts_left <= 0 or self._pattern is None or self._pattern not in data:
                return False
            self.matches += 1
            if self._rng is not None:
                hit = self._rng.random() < self._p
            else:
                hit = self.matches % self._every == 0
            if hit:
                self._cuts_left -= 1
            return hit

    def _client_pump(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or state["dead"]:
                    break
                if not state["cut"] and self._should_cut(data):
                    # Mark before forwarding: the reply may come back at once.
                    state["cut"] = True
                    dst.sendall(data)
                    return  # the server pump cuts when the reply is complete
                dst.sendall(data)
        except OSError:
            pass
        state["dead"] = True
        _kill(src)
        _kill(dst)

    def _server_pump(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        reader: Optional[Any] = None
        got: List[Any] = []
        try:
            while True:
                data = src.recv(65536)
                if not data or state["dead"]:
                    break
                if state["cut"]:
                    if reader is None:
                        reader = hiredis.Reader()
                    reader.feed(data)
                    while len(got) < self._replies:
                        one = reader.gets()
                        if one is False:
                            break
                        got.append(one)
                    if len(got) < self._replies:
                        continue  # the replies are not complete yet
                    reply = got[0] if self._replies == 1 else got
                    if self._on_cut is not None:
                        self._on_cut(reply)
                    with self._lock:
                        self.cuts += 1
                        self.dropped.append(reply)
                    break  # drop it: nothing of it reaches the client
                dst.sendall(data)
        except OSError:
            pass
        state["dead"] = True
        _kill(src)
        _kill(dst)
