"""The package's structure read from its imports: no circles, nothing importing upwards.

Every ``import`` and ``from ... import`` counts, at module level or inside a function,
``TYPE_CHECKING`` blocks included: a lazy import still ties two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / "ralif").rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module a dotted name lives in (``ralif.io.load_labels`` -> ``ralif.io``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {_resolve(n) for n in names if n.split(".")[0] == "ralif"}
    return found - {module, ""}


GRAPH = {m: _imports(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    assert _cycles(GRAPH) == []


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


# (modules, what they may not import): lower layers know nothing of the ones above.
RULES = [
    (("ralif._files", "ralif._validation", "ralif._params", "ralif._softmax", "ralif._solve"),
     ("ralif.io", "ralif.pools.sources", "ralif.pools.streaming", "ralif.pools.cluster", "ralif.loop",
      "ralif.bench", "ralif.cli", "ralif.session", "ralif.strategies", "ralif.data")),
    (("ralif.io", "ralif.pools.sources"),
     ("ralif.pools.streaming", "ralif.pools.cluster", "ralif.loop", "ralif.bench", "ralif.cli",
      "ralif.session", "ralif.strategies", "ralif.api")),
    (("ralif.data",), ("ralif.loop", "ralif.pools.streaming", "ralif.bench", "ralif.cli",
                        "ralif.session", "ralif.strategies")),
    (("ralif.strategies", "ralif.influence", "ralif.head", "ralif.selectors", "ralif.scores"),
     ("ralif.pools.streaming", "ralif.pools.cluster", "ralif.loop", "ralif.bench", "ralif.cli",
      "ralif.session")),
    (("ralif.pools.cluster",), ("ralif.pools.streaming", "ralif.loop", "ralif.bench", "ralif.cli")),
    (("ralif.loop", "ralif.bench", "ralif.session", "ralif.api"), ("ralif.cli",)),
]  # fmt: skip


@pytest.mark.parametrize("low, above", RULES, ids=[r[0][0] for r in RULES])
def test_no_import_runs_back_up(low, above):
    upward = sorted(
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if any(_under(m, x) for x in low)
        for t in targets
        if any(_under(t, y) for y in above)
    )
    assert upward == []


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_a_screenful():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {n} lines")
    assert long == []
