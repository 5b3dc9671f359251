"""The house layout (docs/architecture.md): each folder of sizing/ is one stage of the flow and imports only the
stages before it, and no module imports itself back through others. Imports inside functions count.

The import graph is read from the source with ``ast`` (not by importing), so a lazy import in a function that a
test never calls is checked too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "sizing"
# stage -> its rank; a module may import a module of the same or a lower rank only
STAGES = {"common": 0, "model": 1, "hardware": 2, "predict": 3, "execute": 4, "quote": 5, "web": 6, "cli": 7, "__init__": 7}
DATA = {"zoo", "hwdb"}          # data packages: YAML only


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    p = ROOT.parent / Path(*name.split("."))
    return p.is_dir() or p.with_suffix(".py").exists()


def import_graph() -> dict[str, set[str]]:
    """module -> the sizing modules it imports (a name imported from a package that is itself a submodule counts
    as an import of that submodule)."""
    graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        mod = _module(path)
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("sizing"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if _is_module(sub) else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("sizing"))
        graph[mod] = deps - {mod}
    return graph


def stage(mod: str) -> str:
    parts = mod.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None: depth-first search with colours."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None
    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_every_module_belongs_to_a_stage():
    unknown = {stage(m) for m in import_graph()} - set(STAGES) - DATA
    assert not unknown, f"folders outside the stages of docs/architecture.md: {sorted(unknown)}"


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_stage_imports_a_later_one():
    bad = [f"{m} ({stage(m)}) imports {d} ({stage(d)})" for m, deps in import_graph().items() for d in deps
           if STAGES[stage(d)] > STAGES[stage(m)]]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_circles_and_late_imports():
    """The checks above can fail: a made-up circle is found, and a made-up back edge is a late import."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    assert "sizing.model.estimate" in graph["sizing"]
    assert any(d.startswith("sizing.common") for d in graph["sizing.model.graph"])
    assert STAGES[stage("sizing.quote.recommend")] > STAGES[stage("sizing.predict.calibration")]


@pytest.mark.parametrize("mod", ["sizing.model", "sizing.hardware", "sizing.predict", "sizing.quote"])
def test_writers_only_format(mod):
    """Writer modules (report.py, writers.py) import no estimator, device loader or recommendation: they format
    what they are given."""
    graph = import_graph()
    heavy = ("estimate", "recommend", "calibration", "training", "inference", "search", "plan", "build", "lookup")
    for writer in [m for m in graph if m.startswith(mod) and m.rsplit(".", 1)[-1] in ("report", "writers")]:
        bad = [d for d in graph[writer] if d.rsplit(".", 1)[-1] in heavy]
        assert not bad, f"{writer} imports {bad}"
