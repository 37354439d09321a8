"""The package's floors (ARCHITECTURE.md): every import runs down or across a floor, never up,
and the imports close no circle. Read from the source with `ast`, late imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hipcore"

# Module (or package prefix) -> floor. The longest matching prefix decides. Keep in step with
# ARCHITECTURE.md.
FLOORS = {
    # 0 ground: settings, errors, files, places, statistics (geometry: F7's score of a table)
    "hipcore.config": 0, "hipcore.errors": 0, "hipcore.files": 0, "hipcore.argtypes": 0,
    "hipcore.locations": 0, "hipcore.stats": 0, "hipcore.progress": 0, "hipcore.version": 0,
    "hipcore.geometry": 0,
    # 1 the model and the data, side by side; the device and its precision ('auto' times a
    #   model's training step, so it stands beside the model)
    "hipcore.model": 1, "hipcore.data": 1, "hipcore.device": 1,
    # 2 training; loading shipped weights; where results come from; tidy results I/O; figures
    "hipcore.train": 2, "hipcore.pretrained": 2, "hipcore.provenance": 2, "hipcore.results": 2,
    "hipcore.plots": 2, "hipcore": 2,   # the package's front door: config, model, pretrained
    # 3 what experiments share: verdict rules, notebook parameters, benchmarks, shared arms
    "hipcore.report": 3, "hipcore.vocabulary": 3, "hipcore.notebook": 3, "hipcore.bench": 3,
    "hipcore.experiments.common": 3, "hipcore.experiments.orderings": 3,
    "hipcore.experiments.shortcuts": 3, "hipcore.experiments.baselines": 3,
    "hipcore.experiments.image_arms": 3, "hipcore.experiments.regime": 3,
    "hipcore.experiments.estimate": 3,
    # 4 one module per notebook (never importing each other)
    "hipcore.experiments": 4,
    # 5 results writing (SUMMARY.md, README blocks, exported weights), sweeps, Binder, launchers
    "hipcore.summary": 5, "hipcore.sweep": 5, "hipcore.binder": 5, "hipcore.launchers": 5,
    "hipcore.gpu_reproduce": 5,
    "hipcore.experiments.export": 5,
    # 6 the command line
    "hipcore.cli": 6, "hipcore.__main__": 6, "hipcore.bench.cli": 6,
}
NEVER = [("hipcore.model", "hipcore.data"), ("hipcore.data", "hipcore.model")]
NOTEBOOK_FLOOR = 4


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & known
            out |= submodules
            if len(submodules) < len(node.names) and target in known:
                out.add(target)                 # names taken from the module itself
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
    out.discard(name)
    return out


def floor(name: str) -> int:
    matches = [prefix for prefix in FLOORS if name == prefix or name.startswith(prefix + ".")]
    if not matches:
        raise KeyError(f"{name} is on no floor: add it to FLOORS and ARCHITECTURE.md")
    return FLOORS[max(matches, key=len)]


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_module_has_a_floor():
    for name in modules():
        floor(name)


def test_no_import_runs_up_a_floor():
    up = [f"{a} (floor {floor(a)}) -> {b} (floor {floor(b)})"
          for a, targets in graph().items() for b in sorted(targets) if floor(b) > floor(a)]
    assert not up, "imports that run up a floor:\n" + "\n".join(up)


def test_model_and_data_never_import_each_other():
    wrong = [f"{a} -> {b}" for a, targets in graph().items() for b in targets
             for low, high in NEVER if a.startswith(low) and b.startswith(high)]
    assert not wrong, "\n".join(wrong)


def test_notebook_modules_never_import_each_other():
    wrong = [f"{a} -> {b}" for a, targets in graph().items() if floor(a) == NOTEBOOK_FLOOR
             and a.startswith("hipcore.experiments") for b in targets
             if floor(b) == NOTEBOOK_FLOOR and b.startswith("hipcore.experiments")]
    assert not wrong, "\n".join(wrong)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_circle():
    found = circles(graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("edges, expected", [({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
                                             ({"a": {"b"}, "b": {"c"}, "c": set()}, [])])
def test_circle_finder(edges, expected):
    assert circles(edges) == expected


def test_floor_rule_catches_an_upward_import(tmp_path):
    fake = tmp_path / "hipcore" / "model"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("from ..cli import main\n")
    known = {"hipcore.model.x", "hipcore.cli"}
    found = imports("hipcore.model.x", fake / "x.py", known)
    assert found == {"hipcore.cli"} and floor("hipcore.cli") > floor("hipcore.model.x")
