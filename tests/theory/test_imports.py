"""The imports inside probsft.theory point one way: no module imports, at the top or inside a
function, a module that imports it back (directly or through others).
Run: python -m pytest tests/theory/test_imports.py
"""

import ast
from pathlib import Path

THEORY = Path(__file__).resolve().parents[2] / "theory"


def _theory_imports(path: Path) -> set[str]:
    """Names X of every ``probsft.theory.X`` a module imports, wherever the import statement is."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("probsft.theory."):
                out.add(node.module.split(".")[2])
            elif node.module == "probsft.theory":
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names
                       if a.name.startswith("probsft.theory."))
    return out - {path.stem}


def _graph() -> dict[str, set[str]]:
    return {f.stem: _theory_imports(f) for f in THEORY.glob("*.py") if f.stem != "__init__"}


def _cycle(graph):
    """One import cycle as a list of module names, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_theory_imports_have_no_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_objective_and_losses_point_one_way():
    graph = _graph()
    assert "losses" in graph["objective"] and "objective" not in graph["losses"]
    assert "spec" not in graph["objective"]          # the grammar sits above the value type
