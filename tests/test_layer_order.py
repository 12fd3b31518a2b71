"""Every import of every module follows the layer order that README's "Architecture" shows: a
module imports only from its own layer and the layers above it. A lazy import inside a
function counts too (it runs in the same process); a ``TYPE_CHECKING`` import counts as well,
because a type a layer names is a layer it knows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ipt_ray

PACKAGE = Path(ipt_ray.__file__).parent
#: Top to bottom: each layer may import the ones above it. Shared names first.
LAYERS = [
    ("constants", "errors", "lazy", "fs"),
    ("generators",),
    ("core",),
    ("data",),
    ("training",),
    ("artifacts",),
    ("tracking",),
    ("tuning",),
    ("cluster",),
    ("cli",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
#: Not layers: the package facade (re-exports every layer lazily) and the test helpers.
OUTSIDE = {"__init__", "testing", "__main__"}


def layer_of(module: str) -> str | None:
    """``ipt_ray.tuning.space.load`` -> ``tuning``; ``ipt_ray`` itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ipt_ray" else None


def imports(path: Path, package: str = "ipt_ray") -> list[tuple[int, str]]:
    """(line, imported module of ``package``) of every import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == package:  # from ipt_ray import constants, __version__, ...
                found += [(node.lineno, f"{package}.{a.name}") for a in node.names]
            elif node.module.startswith(f"{package}."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name)
                for a in node.names
                if a.name == package or a.name.startswith(f"{package}.")
            ]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_layer_has_a_rank() -> None:
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES}
    assert tops - OUTSIDE == set(RANK), "a new top-level module or folder needs a place"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_from_its_layer_and_those_above(path: Path) -> None:
    source = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if source in OUTSIDE:
        return
    upward = [
        f"line {line}: {module}"
        for line, module in imports(path)
        if (target := layer_of(module)) not in (None, "__version__")
        and target in RANK
        and RANK[target] > RANK[source]
    ]
    assert not upward, f"{source} imports from a layer below it: {upward}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_tracking_layer_imports_mlflow(path: Path) -> None:
    """README: "MLflow only here". The test helpers (an mlflow server) are not a layer."""
    source = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if source in ("tracking", "testing"):
        return
    found = imports(path, "mlflow")
    assert not found, f"{source} imports MLflow: {found}"
