"""Sphinx configuration of the redset documentation.

Build (from the repository root, with ``pip install -e ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
from __future__ import annotations

import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# autodoc imports redset: prefer this checkout over any other installed copy.
sys.path.insert(0, ROOT)


def _version() -> str:
    """``__version__`` of redset/_version.py, read as text (no import)."""
    with open(os.path.join(ROOT, "redset", "_version.py"), encoding="utf-8") as f:
        match = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", f.read(), re.M)
    if match is None:
        raise RuntimeError("no __version__ in redset/_version.py")
    return match.group(1)


project = "redset"
author = "redset developers"
copyright = "redset developers, MIT License"
release = _version()
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
]

source_suffix = {
    ".rst": "restructuredtext",
    ".md": "markdown",
}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# -- autodoc -------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
nitpicky = False


def _qualify_owner(app, what, name, obj, options, signature, return_annotation):
    """Point ``owner: SortedSet`` of the sync Consumer at :class:`redset.SortedSet`.

    redset/leases.py annotates it with the string ``"SortedSet"`` (imported
    only under TYPE_CHECKING), which autodoc cannot evaluate and the Python
    domain then finds three times (redset.SortedSet, its canonical name
    redset.sets.SortedSet, and redset.asyncio.SortedSet): an ambiguous
    cross-reference warning. The asyncio Consumer's annotation resolves by
    itself.
    """
    if name == "redset.leases.Consumer" and signature:
        signature = signature.replace("owner: SortedSet", "owner: ~redset.SortedSet")
    return signature, return_annotation


def setup(app):
    app.connect("autodoc-process-signature", _qualify_owner)

# -- MyST ------------------------------------------------------------------------
myst_heading_anchors = 3

# -- HTML ------------------------------------------------------------------------
html_theme = "furo"
html_title = "redset %s" % release
