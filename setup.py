"""Build redset, with its optional Cython accelerator.

The extension ``redset._wire_c`` is built from ``src_ext/_wire_c.pyx``. When it
cannot be built (no Cython, no compiler), the install still succeeds and redset
runs on its pure-Python twin, unless ``REDSET_REQUIRE_EXTENSIONS=1`` is set (CI
and wheel builds set it), in which case a failed build is fatal.
``REDSET_NO_EXTENSIONS=1`` at build time skips the extension altogether.
"""
from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE = os.environ.get("REDSET_REQUIRE_EXTENSIONS", "") not in ("", "0")
SKIP = os.environ.get("REDSET_NO_EXTENSIONS", "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """Build extensions, degrading to pure Python unless the build is required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure degrades
            self._give_up(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        if REQUIRE:
            raise
        sys.stderr.write(
            "WARNING: the redset C extension could not be built (%s); "
            "redset will use its pure-Python implementation.\n" % (exc,)
        )


def extensions() -> list:
    if SKIP:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        sys.stderr.write("WARNING: Cython is not installed; building redset without its C extension.\n")
        return []
    ext = Extension(
        "redset._wire_c",
        ["src_ext/_wire_c.pyx"],
        extra_compile_args=["-O2"],
    )
    return cythonize(
        [ext],
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
