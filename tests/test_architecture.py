"""The engine's layers (issue 26; docs/architecture.md): no import circles in motionlib/, cli/ and
store/, and no upward edge from the engine to the CLI.

The graph is read from the ``ast`` of every module: every ``import`` and ``from ... import``,
function-level ones included, ``if TYPE_CHECKING:`` ones left out (they never run). ``cli/`` and
``store/`` are the packages ``motionlib.cli`` and ``motionlib.store`` (pyproject's package-dir).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"motionlib": ROOT / "motionlib", "motionlib.cli": ROOT / "cli", "motionlib.store": ROOT / "store"}


def modules() -> dict[str, Path]:
    """Every module of the three packages by dotted name (a package by its own name)."""
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if pkg == "motionlib" and parts[:1] in (["cli"], ["store"]):
                continue
            out[name] = path
    return out


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules `name` imports (the longest known prefix of each imported name)."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def add(dotted: str) -> None:
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            cand = ".".join(parts[:i])
            if cand in known:
                if cand != name:
                    out.add(cand)
                return

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # `from pkg import submodule` is an edge to the submodule
                if f"{mod}.{a.name}" in known:
                    add(f"{mod}.{a.name}")
                else:
                    add(mod)
    return out


@functools.lru_cache(maxsize=1)
def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports():
    """A graph that saw nothing would have no circles: it sees the edges we know are there."""
    g = graph()
    assert "motionlib.amf" in g["motionlib.guidance"]
    assert "motionlib.store.library" in g["motionlib.store"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    found = cycles(graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_engine_never_imports_the_cli():
    up = sorted((a, b) for a, bs in graph().items() for b in bs
                if not a.startswith("motionlib.cli") and b.startswith("motionlib.cli"))
    assert not up, up


LONG = 400  # lines


def test_long_modules_say_why_they_are_one_file():
    """No module over ~400 lines without a stated reason (its docstring says "one file on purpose" or
    "over 400 lines")."""
    silent = []
    for name, path in modules().items():
        text = path.read_text()
        if text.count("\n") > LONG:
            doc = (ast.get_docstring(ast.parse(text)) or "").lower()
            if "one file" not in doc and "over 400" not in doc:
                silent.append(f"{name} ({text.count(chr(10))} lines)")
    assert not silent, silent


if __name__ == "__main__":
    for c in cycles(graph()):
        print(" <-> ".join(c))
