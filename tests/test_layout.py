"""The package's layout keeps its promises: imports go one way (no circle, no module importing
a higher layer), CONTRIBUTING's "Code layout" lists every module, and every import path the
docs show resolves."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fgnet_video"
DOCS = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]

# Lowest first. A module may import its own package and any lower layer, nothing else.
LAYERS = [
    {"errors", "version", "lazy", "atomic", "threads", "workers", "paths", "fp32"},
    {"settings", "cache", "aus"},
    {"options"},
    {"media", "kernels"},
    {"model"},
    {"weights", "face"},
    {"inference"},
    {"analysis"},
    {"study", "train", "reports"},
    {"cli"},
    {"__main__", "__init__"},
]


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its code (top level, inside
    functions, under TYPE_CHECKING)."""
    known = modules()

    def owner(name: str) -> str:
        while name not in known:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {owner(a.name) for a in node.names if a.name.startswith("fgnet_video")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "fgnet_video") and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in known else owner(node.module))
        graph[name] = targets - {name}
    return graph


def layer_of(module: str) -> tuple[int, str]:
    """(rank, unit): the unit is the subpackage or top-level module `module` belongs to."""
    parts = module.split(".")
    unit = parts[1] if len(parts) > 1 else "__init__"
    for rank, units in enumerate(LAYERS):
        if unit in units:
            return rank, unit
    raise AssertionError(f"{module}: its unit {unit!r} is in no layer of LAYERS")


def test_no_module_imports_a_higher_layer_or_a_sibling_unit():
    wrong = []
    for module, targets in import_graph().items():
        rank, unit = layer_of(module)
        for target in targets:
            target_rank, target_unit = layer_of(target)
            if target_unit != unit and target_rank >= rank:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_circle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state and (circle := visit(target, path + [module])):
                return circle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            circle = visit(module, [])
            assert circle is None, " -> ".join(circle[circle.index(circle[-1]):])


def test_the_layer_check_sees_a_violation():
    assert layer_of("fgnet_video.media.video")[0] < layer_of("fgnet_video.analysis.stream")[0]
    with pytest.raises(AssertionError, match="no layer"):
        layer_of("fgnet_video.unknown_unit")


def _code_layout_section() -> str:
    text = (REPO / "CONTRIBUTING.md").read_text()
    start = text.index("## Code layout")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_contributing_lists_every_module_once():
    listed = re.findall(r"^\s*- `(fgnet_video/[\w/]+\.py)`", _code_layout_section(), re.M)
    actual = sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py"))
    assert sorted(set(listed)) == sorted(listed), "listed twice: " + ", ".join(
        sorted({m for m in listed if listed.count(m) > 1}))
    assert sorted(listed) == actual, (
        f"missing: {sorted(set(actual) - set(listed))}; gone: {sorted(set(listed) - set(actual))}")


DOTTED = re.compile(r"`(fgnet_video(?:\.\w+)+)")
FROM_IMPORT = re.compile(r"^\s*from (fgnet_video(?:\.\w+)*) import ([\w, ]+)", re.M)


def documented_paths() -> list[str]:
    """Every `fgnet_video.x.y` in backticks and every `from fgnet_video... import a, b` in the
    user docs, as dotted paths."""
    paths = set()
    for doc in DOCS:
        text = doc.read_text()
        paths |= set(DOTTED.findall(text))
        for module, names in FROM_IMPORT.findall(text):
            paths |= {f"{module}.{n.strip()}" for n in names.split(",") if n.strip()}
    return sorted(paths)


@pytest.mark.parametrize("path", documented_paths())
def test_every_documented_path_imports(path):
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            assert hasattr(found, attribute), f"{path}: {'.'.join(parts[:cut])} has no " \
                                              f"{attribute!r}"
            found = getattr(found, attribute)
        return
    raise AssertionError(f"{path}: no such module")


def test_facts_written_once_agree_where_they_meet():
    from fgnet_video.aus import AU_SETS, DEFAULT_DATASET, LABEL_DATASETS
    from fgnet_video.inference.precision import DTYPES
    from fgnet_video.options import DEFAULT_WEIGHTS, PRECISION_NAMES
    from fgnet_video.weights.store import KNOWN_WEIGHTS

    assert set(KNOWN_WEIGHTS) == set(AU_SETS)  # one released model per AU set
    assert DEFAULT_WEIGHTS in KNOWN_WEIGHTS and DEFAULT_DATASET in AU_SETS
    assert set(AU_SETS) < set(LABEL_DATASETS)
    assert set(DTYPES) == set(PRECISION_NAMES) - {"auto"}


def test_the_public_api_is_at_the_package_root_and_loads_lazily():
    import subprocess
    import sys

    code = ("import sys, fgnet_video\n"
            "assert 'torch' not in sys.modules, 'importing fgnet_video loaded torch'\n"
            "for name in fgnet_video.__all__:\n"
            "    assert getattr(fgnet_video, name) is not None, name\n"
            "print(len(fgnet_video.__all__))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 10
    import fgnet_video

    with pytest.raises(AttributeError, match="no attribute 'not_an_export'"):
        fgnet_video.not_an_export  # noqa: B018
