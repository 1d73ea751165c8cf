"""The layer map of ``utils`` (see ``utils/__init__.py``) and the absence of import cycles.

Every import of a ``utils`` module, at module level or inside a function, is read from the
source with ``ast`` and checked against the rule:

    tooling -> anything; tasks -> instruments, scratch, core; instruments -> scratch, core;
    scratch -> core; core -> core.  A task module imports no other task module, and a notebook
    imports no task module but its own.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UTILS = ROOT / "utils"
LAYERS = ("core", "scratch", "instruments", "tasks", "tooling")
ALLOWED = {
    "core": {"core"},
    "scratch": {"core", "scratch"},
    "instruments": {"core", "scratch", "instruments"},
    "tasks": {"core", "scratch", "instruments", "tasks"},
    "tooling": set(LAYERS),
}
# notebook -> the one task module it may import (None: it needs none)
TASK_OF_NOTEBOOK = {
    "00_pytorch_primer": None,
    "01_optimization": "utils.tasks.optimization",
    "02_regularization": "utils.tasks.regularization",
    "03_transfer_learning": "utils.tasks.transfer",
    "04_attention_scaling": "utils.tasks.attention",
    "05_normalization": "utils.tasks.normalization",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Fully qualified ``utils...`` modules imported anywhere in ``tree``."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "utils"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "utils":
                continue
            for alias in node.names:  # `from utils.core import data` imports utils.core.data
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    return found


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(UTILS.rglob("*.py")):
        name = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = _imports(tree, name, path.name == "__init__.py") - {name}
    return graph


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_sits_in_a_layer():
    stray = [m for m in _graph() if m != "utils" and _layer(m) is None]
    assert not stray, f"modules outside the five layers {LAYERS}: {stray}"


def test_imports_follow_the_layer_rule():
    bad = []
    for module, deps in _graph().items():
        layer = _layer(module)
        for dep in deps:
            dep_layer = _layer(dep)
            if layer is None or dep_layer is None:
                continue
            if dep_layer not in ALLOWED[layer]:
                bad.append(f"{module} ({layer}) imports {dep} ({dep_layer})")
            elif layer == "tasks" == dep_layer and dep != "utils.tasks":
                bad.append(f"{module} imports another notebook's task module {dep}")
    assert not bad, "layer rule broken:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize("stem", sorted(TASK_OF_NOTEBOOK))
def test_a_notebook_imports_only_its_own_task_module(stem):
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    src = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    lines = [ln for ln in src.splitlines() if ln.lstrip().startswith(("import ", "from "))]
    tree = ast.parse("\n".join(ln.strip() for ln in lines))
    tasks = {m for m in _imports(tree, "notebook", False) if _layer(m) == "tasks"}
    own = TASK_OF_NOTEBOOK[stem]
    assert tasks <= ({own} if own else set()), f"{stem} imports task modules {sorted(tasks)}"


def test_the_map_in_utils_init_names_every_module():
    doc = (UTILS / "__init__.py").read_text(encoding="utf-8")
    missing = [
        m
        for m in _graph()
        if _layer(m) in ("core", "scratch", "instruments")
        and m.count(".") == 2
        and f"``{m.rsplit('.', 1)[1]}``" not in doc
    ]
    assert not missing, f"utils/__init__.py does not list {missing}"
