"""What a non-editable install ships: every package of the source tree."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_for_the_wheel():
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"([\w.]+)"', re.search(r"^packages = \[(.*?)\]", text, re.M).group(1)))
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "redset").rglob("__init__.py")
    }
    assert found == listed, "pyproject's [tool.setuptools] packages must list exactly %s" % sorted(found)
