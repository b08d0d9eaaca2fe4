"""The house's layers import downward only: golden -> quant -> hw -> sim -> rtl_gen.

A module of one layer may import its own layer and the layers below it, never one above (for
example nothing in ``hw/`` imports ``sim/`` or ``rtl_gen/``). Imports are read from the source with
``ast``, including imports inside functions, so a lazy import cannot hide an upward edge.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["golden", "quant", "hw", "sim", "rtl_gen"]


def imported_layers(path: Path) -> set[tuple[int, str]]:
    """Return ``(line, top-level package)`` of every project import in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in LAYERS}
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_no_upward_imports(layer):
    allowed = set(LAYERS[:LAYERS.index(layer) + 1])
    upward = [f"{path.relative_to(ROOT)}:{line} imports {package}"
              for path in sorted((ROOT / layer).rglob("*.py"))
              for line, package in sorted(imported_layers(path)) if package not in allowed]
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sim import toolchain\n")
    assert imported_layers(bad) == {(2, "sim")}
