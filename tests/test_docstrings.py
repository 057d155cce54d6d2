"""The public API's docstrings, checked by numpydoc: every name a user reaches from
``ralif``, ``ralif.strategies`` and the public modules below has a summary, its
parameters described, what it returns, and an example (run as a doctest by CI's
``--doctest-modules`` step)."""

from __future__ import annotations

import importlib
import inspect

import pytest
from numpydoc.validate import validate  # a dev dependency: CI fails without it

import ralif
import ralif.strategies

REQUIRED = {
    "GL08",  # a docstring
    "SS01", "SS02", "SS03", "SS04", "SS05", "SS06",  # a one-line summary
    "PR01", "PR02", "PR07",  # every parameter, described, and no other
    "RT01", "RT03",  # what it returns, described
    "EX01",  # an example
}  # fmt: skip
"""The numpydoc checks the public API must pass (others, such as See Also, are advice)."""


MODULES = {
    "ralif.metrics": ("check_metrics", "scores", "Metric"),
    "ralif.stopping": None,  # every public function and class it defines
    "ralif.pools.sources": ("open_pool", "stream_reason", "PoolSource", "NpyShards",
                            "ParquetPool", "ArrayPool", "DaskArrayPool"),
    "ralif.pools.streaming": ("streamed_select", "streamable", "check_streamable"),
    "ralif.pools.query": ("PoolQuery",),
    "ralif.session.store": ("create_session", "open_session", "SessionStore"),
    "ralif.bench.report": ("make_report",),
}  # fmt: skip
"""Public modules beyond the package's own ``__all__`` lists, with their public names."""


def _public() -> list[str]:
    names = set()
    for module in (ralif, ralif.strategies):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                names.add(f"{obj.__module__}.{obj.__qualname__}")
    for module_name, listed in MODULES.items():
        module = importlib.import_module(module_name)
        defined = [
            n for n, o in vars(module).items()
            if not n.startswith("_") and (inspect.isclass(o) or inspect.isfunction(o))
            and o.__module__ == module_name
        ]  # fmt: skip
        names |= {f"{module_name}.{n}" for n in (listed or defined)}
    return sorted(names)


METHODS_OF = (
    "ralif.head.LinearHead",
    "ralif.strategies.base.Strategy",
    "ralif.strategies.ralif.RALIF",
    "ralif.session.store.SessionStore",
    "ralif.pools.sources.PoolSource",
    "ralif.pools.sources.NpyShards",
    "ralif.pools.sources.ParquetPool",
    "ralif.pools.sources.ArrayPool",
    "ralif.pools.sources.DaskArrayPool",
    "ralif.pools.query.PoolQuery",
)
"""Classes whose methods users call: each public method they define is checked too."""


def _methods() -> list[str]:
    names = []
    for qualified in METHODS_OF:
        module_name, _, class_name = qualified.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        for klass in cls.__mro__:  # its own methods and those of its mixins, not sklearn's
            if not klass.__module__.startswith("ralif"):
                continue
            for name, obj in vars(klass).items():
                if name.startswith("_"):
                    continue
                if isinstance(obj, (property, classmethod, staticmethod)) or inspect.isfunction(
                    obj
                ):
                    names.append(f"{qualified}.{name}")
    return sorted(set(names))


@pytest.mark.parametrize("name", _public() + _methods())
def test_the_public_docstring_passes_numpydoc(name):
    found = [f"{code}: {message}" for code, message in validate(name)["errors"] if code in REQUIRED]
    assert found == []
