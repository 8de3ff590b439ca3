"""A TCP proxy on loopback that can cut a connection at a chosen moment.

``CuttingProxy(port).cut_after(b"ZPOPMIN")`` forwards the next client write
containing ``ZPOPMIN`` to the server, gives the server a moment to execute
it, then closes both sides before any reply reaches the client: the client
sees a lost connection after its command was applied.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import List, Optional


class LoopbackProxy:
    """A TCP proxy on 127.0.0.1 in front of one server; subclasses decide,
    in :meth:`_serve`, how the bytes of each connection are pumped.

    Subclasses set their own attributes before calling ``__init__``, which
    starts accepting.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self.cuts = 0
        self._socks: List[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.port

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks = [x for x in self._socks if x.fileno() != -1] + [client, upstream]
            self._serve(client, upstream)

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        with self._lock:
            for sock in self._socks:
                _kill(sock)


class CuttingProxy(LoopbackProxy):
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._pattern: Optional[bytes] = None
        self._cuts_left = 0
        super().__init__(target_port, target_host)

    def cut_after(self, pattern: bytes, times: int = 1) -> None:
        with self._lock:
            self._pattern = pattern
            self._cuts_left = times

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        state = {"cut": False}
        threading.Thread(target=self._pump, args=(client, upstream, True, state), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, False, state), daemon=True).start()

    def _should_cut(self, data: bytes) -> bool:
        with self._lock:
            if self._cuts_left > 0 and self._pattern is not None and self._pattern in data:
                self._cuts_left -= 1
                self.cuts += 1
                return True
        return False

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool, state: dict) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or state["cut"]:
                    break  # after a cut, replies are dropped, never delivered
                if from_client and self._should_cut(data):
                    state["cut"] = True
                    dst.sendall(data)
                    time.sleep(0.1)  # the server executes the command
                    _kill(src)
                    _kill(dst)
                    return
                dst.sendall(data)
        except OSError:
            pass
        _kill(src)
        _kill(dst)


def _kill(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class DelayingProxy(LoopbackProxy):
    """Forwards both ways, holding each reply back ``delay`` seconds while armed.

    For cancellation tests: a command reaches the server at once (and is
    applied), its reply arrives late, and the caller is cancelled meanwhile.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.delay = 0.0
        super().__init__(target_port, target_host)

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, reply: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if reply and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        _kill(src)
        _kill(dst)
