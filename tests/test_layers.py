"""The package's layers point one way, and every medmat import stands at the top of its module.

io -> data -> (classical, labels) -> (models, losses, metrics, uncertainty) -> engine ->
(interaction, reporting) -> app -> cli (docs/architecture.md). Read from the source with ``ast``, so
a new upward or function-local import fails here with its file and line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "medmat"

#: Layer of each sub-package (and top-level module); a module may import its own layer and below.
LAYERS = {
    "errors": 0, "registry": 0, "io": 1, "data": 2, "classical": 3, "labels": 3,
    "models": 4, "losses": 4, "metrics": 4, "uncertainty": 4, "engine": 5,
    "interaction": 6, "reporting": 6, "app": 7, "cli": 8, "__main__": 9,
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts[0] if parts[0] != "__init__" else None


def _medmat_imports(tree: ast.Module):
    """(node, imported module name, at the top of the module?) for every import of medmat."""
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "medmat":
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.split(".")[0] == "medmat"]
        for name in names:
            yield node, name, id(node) in top


def _layer_of(module_name: str) -> int:
    parts = module_name.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


def test_every_subpackage_has_a_layer():
    found = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.iterdir()
             if (path.is_dir() and (path / "__init__.py").is_file()) or path.suffix == ".py"}
    assert found - {"__init__"} <= set(LAYERS), found - set(LAYERS)


def test_imports_point_down_and_stand_at_the_top():
    upward, local = [], []
    for path, package in _modules():
        if package is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, name, at_top in _medmat_imports(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {name}"
            if _layer_of(name) > LAYERS[package]:
                upward.append(where)
            if not at_top:
                local.append(where)
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)
    assert not local, "medmat imports inside functions:\n" + "\n".join(local)


@pytest.mark.parametrize("module", [
    "medmat.engine.dataset", "medmat.engine.trainer", "medmat.models", "medmat.losses", "medmat.cli.model_commands",
])
def test_training_does_not_load_the_classical_solvers(module):
    # pymatting and numba cost seconds and memory in every training process; only classical/ needs them.
    code = f"import sys, {module}; print('pymatting' in sys.modules, 'numba' in sys.modules)"
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.split() == ["False", "False"]
