"""The one place that picks the compiled or the pure-Python wire codec.

``REDSET_NO_EXTENSIONS=1`` forces pure Python. Otherwise the Cython module
``redset._wire_c`` is used when it was built. Nothing else in redset imports
``_wire_c`` or ``_wire_py`` directly: it imports ``impl`` from here (and the
test suite, to run everything against both, sets a set's ``_wire`` to
``pure`` or ``compiled``).
"""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Optional

from redset import _wire_py
from redset._codec import Codec

#: The pure-Python codec (always importable).
pure: Codec = _wire_py

NO_EXTENSIONS = os.environ.get("REDSET_NO_EXTENSIONS", "") not in ("", "0")

#: Why the compiled extension could not be imported (``None`` when it could).
EXTENSION_ERROR: Optional[str] = None

compiled: Optional[Codec]
if TYPE_CHECKING:  # check the compiled module's stub against the protocol too
    from redset import _wire_c

    compiled = _wire_c
else:
    try:
        compiled = importlib.import_module("redset._wire_c")
    except ImportError as exc:
        compiled = None
        if isinstance(exc, ModuleNotFoundError) and exc.name == "redset._wire_c":
            EXTENSION_ERROR = "not built"  # no compiler or Cython at install time
        else:  # built, but it does not load (another Python, a missing symbol, ...)
            EXTENSION_ERROR = "%s: %s" % (type(exc).__name__, exc)

#: The codec module redset uses by default.
impl: Codec = pure if (NO_EXTENSIONS or compiled is None) else compiled

#: True when the compiled extension is in use.
USE_EXTENSIONS: bool = impl is not pure



def implementation() -> str:
    """One line: which codec is in use, and why when it is the pure one."""
    if USE_EXTENSIONS:
        return "compiled extension (%s)" % getattr(compiled, "__file__", "redset._wire_c")
    if NO_EXTENSIONS:
        return "pure Python (REDSET_NO_EXTENSIONS is set)"
    if EXTENSION_ERROR == "not built":
        return (
            "pure Python: the compiled extension redset._wire_c is not built (no C compiler "
            "at install time?); reinstall with 'pip install -v' to see why"
        )
    return "pure Python: the compiled extension redset._wire_c does not load (%s)" % EXTENSION_ERROR


__all__ = ["impl", "pure", "compiled", "USE_EXTENSIONS", "NO_EXTENSIONS", "EXTENSION_ERROR", "implementation"]
