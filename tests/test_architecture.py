"""The package's floors (ARCHITECTURE.md): every import runs down or across a floor, never up,
and the imports close no circle. Read from the source with `ast`, late imports included."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hipcore"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"

# Every module by name (relative to hipcore; '__init__' is a package's own file), floor by
# floor: a module missing here, or named here but gone, fails. ARCHITECTURE.md's table lists
# the same modules on the same floors.
LEVELS = {
    # 0 ground: settings, errors, files, places, statistics (geometry: F7's score of a table)
    0: ("argtypes", "config", "digests", "errors", "files", "geometry", "locations", "processes", "progress", "stats",
        "version"),
    # 1 the model and the data, side by side; the device and its precision ('auto' from the
    #   hardware: CPU flags, or what CUDA says it computes)
    1: ("model.__init__", "model.dense", "model.grouping", "model.hip", "model.layers", "model.positions",
        "data.__init__", "data.base", "data.bench", "data.cli", "data.collages", "data.fashion_mnist",
        "data.fingerprint", "data.imagefolder", "data.images", "data.loader", "data.orderings", "data.parts3d",
        "data.pointclouds", "data.registry", "device"),
    # 2 training; loading shipped weights; where results come from; tidy results I/O; figures;
    #   the package's front door (config, model, pretrained); the variants' sizes and a demo batch
    2: ("__init__", "train.__init__", "train.checkpoint", "train.cli", "train.config", "train.dense",
        "train.distributed", "train.engine", "train.mae", "train.metrics", "train.optim", "train.plateau",
        "train.plots", "train.prepare", "train.rundir", "train.transfer", "train.validation", "plots", "pretrained",
        "provenance", "results", "variants"),
    # 3 what experiments share: verdict rules, notebook parameters, benchmarks, shared arms
    3: ("report", "vocabulary", "notebook", "bench.__init__", "bench.epochs", "bench.gpu_check", "bench.loops",
        "bench.models", "bench.results", "bench.speed_text", "bench.suite", "bench.timing", "bench.worker",
        "experiments.__init__", "experiments.baselines", "experiments.common", "experiments.estimate",
        "experiments.image_arms", "experiments.orderings", "experiments.position_tables", "experiments.regime",
        "experiments.shortcuts"),
    # 4 one module per notebook (never importing each other), and the plateau-budget check
    4: ("experiments.efficiency", "experiments.flattening", "experiments.imagenet_comparison",
        "experiments.mae_positions", "experiments.plateau_budget", "experiments.point_clouds",
        "experiments.segmentation",
        "experiments.precision_parity", "experiments.scaling", "experiments.tour"),
    # 5 results writing (SUMMARY.md, README blocks, exported weights), sweeps, Binder, launchers
    5: ("summary", "sweep", "binder", "launchers", "gpu_reproduce", "converge", "experiments.export"),
    # 6 the command line
    6: ("cli", "__main__", "bench.cli"),
}


def dotted(name: str) -> str:
    """'model.__init__' -> 'hipcore.model', '__init__' -> 'hipcore', 'cli' -> 'hipcore.cli'."""
    return ".".join(["hipcore", *name.split(".")]).removesuffix(".__init__")


FLOORS = {dotted(name): level for level, names in LEVELS.items() for name in names}
NEVER = [("hipcore.model", "hipcore.data"), ("hipcore.data", "hipcore.model")]
NOTEBOOK_FLOOR = 4


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
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
    if name not in FLOORS:
        raise KeyError(f"{name} is on no floor: add it to FLOORS and ARCHITECTURE.md")
    return FLOORS[name]


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def unfloored(found) -> list[str]:
    return sorted(set(found) - set(FLOORS))


def test_every_module_has_a_floor():
    missing = unfloored(modules())
    assert not missing, f"modules on no floor (add them to FLOORS and ARCHITECTURE.md): {missing}"


def test_every_floored_module_exists():
    gone = sorted(set(FLOORS) - set(modules()))
    assert not gone, f"FLOORS names modules that do not exist: {gone}"


def test_a_module_added_without_a_floor_fails(tmp_path):
    for path in modules().values():                  # the package's layout, empty files
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.touch()
    assert unfloored(modules(tmp_path / "hipcore")) == []
    (tmp_path / "hipcore" / "experiments" / "newfinding.py").write_text("from . import common\n")
    assert unfloored(modules(tmp_path / "hipcore")) == ["hipcore.experiments.newfinding"]


def documented() -> dict[str, int]:
    """{module: floor} as ARCHITECTURE.md's table lists them: a row per floor, its number first,
    each module in backticks (`model/{grouping, hip}` for several in one folder)."""
    listed = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.match(r"\d+ ", cells[0]):
            continue
        for token in re.findall(r"`([^`]+)`", cells[1]):
            head, _, tail = token.partition("{")
            names = [head + part.strip() for part in tail.rstrip("}").split(",")] if tail else [head]
            listed.update({dotted(n.replace("/", ".")): int(cells[0].split()[0]) for n in names})
    return listed


def test_architecture_md_lists_exactly_the_modules_on_their_floors():
    listed = documented()
    assert sorted(set(modules()) - set(listed)) == [], "modules ARCHITECTURE.md does not list"
    assert sorted(set(listed) - set(modules())) == [], "ARCHITECTURE.md lists modules that do not exist"
    wrong = {m: (listed[m], FLOORS.get(m)) for m in listed if listed[m] != FLOORS.get(m)}
    assert wrong == {}, "ARCHITECTURE.md's floor differs from FLOORS' (md, FLOORS)"


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
    assert found == {"hipcore.cli"} and floor("hipcore.cli") > floor("hipcore.model.hip")
