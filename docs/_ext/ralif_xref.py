"""Cross-references to ralif's objects under any name they are importable by.

ralif's docstrings name an object where it is defined (``ralif.strategies.base.Strategy``,
``:func:`strategy_class``` inside ``ralif.strategies``) while the API reference documents
it where users import it (``ralif.Strategy``). Sphinx resolves only the documented name;
this extension resolves the others, on ``missing-reference``:

1. the target is imported (qualified with the current module and class first, as Sphinx
   reads it), and, if it is the very object documented under another name with the same
   last component (``ralif.scores.influence_spread`` is ``ralif.influence_spread``; an
   inherited ``BADGE.select`` is ``ralif.Strategy.select``), the reference goes there;
2. failing that, a target that ends exactly one documented name (``strategy_class``,
   ``LinearHead.from_sklearn``) is taken to be that name, the search Sphinx does for
   ``:func:`.name```.

Anything else stays unresolved, and the nitpicky build fails on it.

It also shows a class's private bases (``_ModelStrategy``, a session store's mixins from
``ralif.session._labels``) as their nearest public ancestors, which are documented.
"""

from __future__ import annotations

import importlib

_SCALARS = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset)


def _import(name: str) -> tuple[bool, object]:
    """``(True, obj)`` for an importable dotted name (module, then attributes), else
    ``(False, None)``."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False, None
        return True, obj
    return False, None


def _same(a: object, b: object) -> bool:
    """Whether two names give the very same object."""
    if isinstance(a, _SCALARS):  # small ints and strings are shared by unrelated names
        return False
    if a is b:
        return True
    # functions seen through a class (methods) or a staticmethod/property wrapper
    return getattr(a, "__func__", a) is getattr(b, "__func__", b)


def _documented(env) -> list[str]:
    """The names ralif's objects are documented under (aliases left out)."""
    return [
        name
        for name, entry in env.get_domain("py").objects.items()
        if name.startswith("ralif") and not entry.aliased
    ]


def _candidates(node) -> list[str]:
    """The names a reference may mean, the most specific first, as Sphinx reads them."""
    target = node["reftarget"]
    module, cls = node.get("py:module"), node.get("py:class")
    names = []
    if module and cls:
        names.append(f"{module}.{cls}.{target}")
    if module:
        names.append(f"{module}.{target}")
    names.append(target)
    return names


def resolve_alias(app, env, node, contnode):
    """``missing-reference``: the reference under the name its object is documented by."""
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    documented = _documented(env)
    target = node["reftarget"]
    last = target.rsplit(".", 1)[-1]
    same_last = [name for name in documented if name.rsplit(".", 1)[-1] == last]
    for name in _candidates(node):
        found, obj = _import(name)
        if not found:
            continue
        for other in same_last:
            ok, documented_obj = _import(other)
            if ok and _same(obj, documented_obj):
                return _resolve(app, env, node, contnode, domain, other)
    ending = [name for name in same_last if name == target or name.endswith("." + target)]
    if len(ending) == 1:
        return _resolve(app, env, node, contnode, domain, ending[0])
    return None


def _resolve(app, env, node, contnode, domain, name):
    """The reference to ``name``, by the role written or else by any role (a ``:func:``
    naming what is documented as a method)."""
    for role in dict.fromkeys((node["reftype"], "obj")):
        ref = domain.resolve_xref(env, node["refdoc"], app.builder, role, name, node, contnode)
        if ref is not None:
            return ref
    return None


def _public_bases(cls: type) -> list[type]:
    if not cls.__name__.startswith("_") and not any(
        part.startswith("_") for part in cls.__module__.split(".")
    ):
        return [cls]
    out: list[type] = []
    for base in cls.__bases__:
        for b in _public_bases(base):
            if b not in out:
                out.append(b)
    return out


def public_bases(app, name, obj, options, bases: list) -> None:
    """Replace private bases by their public ancestors, in place, without repeats."""
    new: list[type] = []
    for base in bases:
        for b in _public_bases(base):
            if b not in new and not any(issubclass(n, b) for n in new if n is not b):
                new.append(b)
    if not new:
        new = [object]
    bases[:] = new


def setup(app):
    app.connect("missing-reference", resolve_alias)
    app.connect("autodoc-process-bases", public_bases)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
