"""The kinds of exception the core tells apart, for every client library in use.

A plan catches a lost connection or an error reply whatever client library
raised it: redis-py, or valkey-py (a fork with the same classes under
another module). The tuples here start with redis-py's classes;
:func:`add_library` extends them when a driver is made for a client of
another library, before any plan runs on it. Read them as attributes of
this module (``kinds.NETWORK``), never import the names: they are rebound.
"""
from __future__ import annotations

from types import ModuleType
from typing import Set, Tuple, Type

import redis.exceptions

__all__ = [
    "RESPONSE", "NOSCRIPT", "LOADING", "CONNECTION", "TIMEOUT", "NETWORK", "MOVED", "ASK", "REFUSED",
    "add_library",
]

Kinds = Tuple[Type[BaseException], ...]

#: An error reply (``-ERR``, ``-WRONGTYPE``, ...), as a value or raised.
RESPONSE: Kinds = (redis.exceptions.ResponseError,)
#: ``-NOSCRIPT``: the script cache does not hold the SHA.
NOSCRIPT: Kinds = (redis.exceptions.NoScriptError,)
#: ``-LOADING``: the server is loading its dataset.
LOADING: Kinds = (redis.exceptions.BusyLoadingError,)
#: The connection could not be made or was lost.
CONNECTION: Kinds = (redis.exceptions.ConnectionError,)
#: A read or write timed out.
TIMEOUT: Kinds = (redis.exceptions.TimeoutError,)
#: Errors that leave a command's outcome unknown once it was sent.
NETWORK: Kinds = CONNECTION + TIMEOUT + (OSError,)

#: ``-MOVED slot host:port``: the slot is served by another node, for good.
MOVED: Kinds = (redis.exceptions.MovedError,)
#: ``-ASK`` or ``-MOVED`` (redis-py's MovedError is an AskError): go to that node.
ASK: Kinds = (redis.exceptions.AskError,)
#: Replies of a cluster node that refused a command before running it:
#: redirects, ``-TRYAGAIN`` (keys of a slot being moved) and ``-CLUSTERDOWN``.
REFUSED: Kinds = (redis.exceptions.AskError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)

_added: Set[str] = {redis.exceptions.__name__}


def add_library(exceptions: ModuleType) -> None:
    """Tell apart the errors of another client library too; ``exceptions`` is
    its module of redis-py-named classes (``valkey.exceptions``)."""
    global RESPONSE, NOSCRIPT, LOADING, CONNECTION, TIMEOUT, NETWORK, MOVED, ASK, REFUSED
    if exceptions.__name__ in _added:
        return
    RESPONSE += (exceptions.ResponseError,)
    NOSCRIPT += (exceptions.NoScriptError,)
    LOADING += (exceptions.BusyLoadingError,)
    CONNECTION += (exceptions.ConnectionError,)
    TIMEOUT += (exceptions.TimeoutError,)
    NETWORK = CONNECTION + TIMEOUT + (OSError,)
    MOVED += (exceptions.MovedError,)
    ASK += (exceptions.AskError,)
    REFUSED += (exceptions.AskError, exceptions.TryAgainError, exceptions.ClusterDownError)
    _added.add(exceptions.__name__)
