"""Every public name has a docstring: the modules, their public classes and
functions, and the public methods and properties of those classes (the API
reference is built from them)."""
from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC_MODULES = ["redset", "redset.sets", "redset.asyncio", "redset.leases", "redset.locks", "redset.serializers",
                  "redset.exceptions", "redset.stats", "redset.prometheus", "redset.testing", "redset.interfaces"]


def undocumented(module_name: str) -> list:
    module = importlib.import_module(module_name)
    missing = [] if inspect.getdoc(module) else [module_name]
    for name in getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")]):
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append("%s.%s" % (module_name, name))
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                func = value.fget if isinstance(value, property) else value
                if (callable(func) or isinstance(value, property)) and not getattr(func, "__doc__", None):
                    missing.append("%s.%s.%s" % (module_name, name, attr))
    return missing


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_have_docstrings(module_name):
    assert undocumented(module_name) == []
