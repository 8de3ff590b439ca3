"""The client libraries redset drives: redis-py and valkey-py.

valkey-py is a fork of redis-py with the same classes under the ``valkey``
module (``valkey.Valkey``, ``valkey.asyncio.Valkey``,
``valkey.exceptions.ResponseError``, ...). A :class:`ClientLib` names one
library's classes, so the drivers can tell its clients and connections
apart and raise its own exception classes: a user catches the errors of
the library they use (see docs/delivery.md, "Which exceptions").
"""
from __future__ import annotations

import functools
import importlib
import inspect
from types import ModuleType
from typing import Any, Dict, Optional, Type

from redset._core import kinds
from redset.exceptions import OutcomeUnknown

__all__ = ["ClientLib", "library", "lib_of", "REDIS_PY", "LIBRARIES"]

#: Root module -> (sync client, async client) class names.
_CLIENT_NAMES = {"redis": ("Redis", "Redis"), "valkey": ("Valkey", "Valkey")}
#: The client libraries redset drives, by root module.
LIBRARIES = tuple(_CLIENT_NAMES)


class ClientLib:
    """One client library: its module, client, pool and exception classes."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.module: ModuleType = importlib.import_module(root)
        self.exceptions: ModuleType = importlib.import_module(root + ".exceptions")
        sync_name, self._async_name = _CLIENT_NAMES[root]
        self.Redis: Type[Any] = getattr(self.module, sync_name)
        self.ConnectionPool: Type[Any] = self.module.ConnectionPool
        try:  # redis-py 5+, valkey-py
            base_parser = importlib.import_module(root + "._parsers").BaseParser
        except ImportError:  # pragma: no cover - redis-py 4.x
            base_parser = importlib.import_module(root + ".connection").BaseParser
        # redis-py 5+ made parse_error a classmethod; before, it was a plain
        # method that reads only the class's EXCEPTION_CLASSES.
        if isinstance(inspect.getattr_static(base_parser, "parse_error"), classmethod):
            self._parse_error = base_parser.parse_error
        else:  # pragma: no cover - redis-py 4.x
            self._parse_error = functools.partial(base_parser.parse_error, base_parser)
        self.ConnectionError: Type[Exception] = self.exceptions.ConnectionError
        self.TimeoutError: Type[Exception] = self.exceptions.TimeoutError
        self.ResponseError: Type[Exception] = self.exceptions.ResponseError
        self._adapted: Dict[type, type] = {}
        kinds.add_library(self.exceptions)

    def asyncio_classes(self) -> "tuple[Type[Any], Type[Any]]":
        """(client, connection pool) classes of the library's asyncio twin."""
        aio = importlib.import_module(self.root + ".asyncio")
        return getattr(aio, self._async_name), aio.ConnectionPool

    def owns(self, cls: Type[Any]) -> bool:
        """True if ``cls`` is defined in this library (a connection class, say)."""
        return cls.__module__.split(".", 1)[0] == self.root

    def server_error(self, message: str) -> Exception:
        """The exception this library raises for an error reply (NoScriptError, ...)."""
        return self._parse_error(message)  # type: ignore[no-any-return]

    def adapt(self, exc: BaseException) -> None:
        """Make an :class:`~redset.exceptions.OutcomeUnknown` leaving a plan
        run on this library's client an instance of its ``ConnectionError``
        too (it is one of redis-py's already), so that a handler written for
        the library catches it. Other exceptions are left as they are."""
        if isinstance(exc, OutcomeUnknown) and not isinstance(exc, self.ConnectionError):
            cls = type(exc)
            sub = self._adapted.get(cls)
            if sub is None:
                sub = self._adapted[cls] = type(cls.__name__, (cls, self.ConnectionError), {
                    "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
            exc.__class__ = sub

    def __repr__(self) -> str:
        return "<ClientLib %s>" % (self.root,)


_LIBS: Dict[str, ClientLib] = {}


def library(root: str) -> ClientLib:
    """The :class:`ClientLib` of ``root`` ("redis" or "valkey"); ImportError if not installed."""
    lib = _LIBS.get(root)
    if lib is None:
        lib = _LIBS[root] = ClientLib(root)
    return lib


#: redis-py, always installed.
REDIS_PY = library("redis")


def lib_of(client: Any) -> Optional[ClientLib]:
    """The library ``client``'s class comes from (its own class or a base), or None."""
    for cls in type(client).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root in _CLIENT_NAMES:
            return library(root)
    return None
