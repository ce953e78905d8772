"""Lazy re-exports for a package's `__init__`: names resolved from their modules on first use,
so importing a package (e.g. `fgnet_video` before torch) stays cheap."""

from __future__ import annotations

import importlib


def lazy_exports(namespace: dict, names: dict[str, str]) -> None:
    """Make the package whose globals are `namespace` export each name of `names` from its
    module (a dotted path relative to the package), imported on first access (PEP 562):
    sets the package's `__getattr__`, `__dir__` and `__all__` (kept after names already in
    `__all__`)."""
    package = namespace["__name__"]

    def getattr_(name: str):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    namespace["__getattr__"] = getattr_
    namespace["__dir__"] = lambda: sorted({*namespace, *names})
    namespace["__all__"] = [*namespace.get("__all__", ()), *names]
