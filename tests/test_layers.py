"""The packages depend on each other one way: ablations -> dashboards -> ablate_common."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BELOW = {"dashboards": {"ablations"}, "ablate_common": {"ablations", "dashboards"}}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):  # lazy imports inside functions count too
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(BELOW))
def test_a_lower_package_never_imports_a_higher_one(package):
    wrong = {f"{path.relative_to(ROOT)}: {sorted(imported_packages(path) & BELOW[package])}"
             for path in sorted((ROOT / package).rglob("*.py")) if imported_packages(path) & BELOW[package]}
    assert not wrong
