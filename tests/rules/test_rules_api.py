from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rules

PACKAGE = Path(rules.__file__).parent
OURS = {"wire", "device_drivers", "edge_agent", "rules", "hub", "dashboards", "cli"}


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff (RUF022) keeps: CONSTANTS, then Classes, then functions.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_complete() -> None:
    assert rules.__all__ == sorted(rules.__all__, key=_isort_key)
    public = {name for name in vars(rules) if not name.startswith("_")}
    modules = {
        "durations",
        "engine",
        "kinds",
        "errors",
        "loader",
        "models",
        "ruleset",
        "schedule",
        "template",
    }
    assert public - modules - {"annotations"} == set(rules.__all__)


def test_rules_imports_only_wire_of_ours() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in OURS - {"wire", "rules"}, f"{path.name} imports {name}"


def test_importing_rules_loads_no_other_package_of_ours() -> None:
    code = (
        "import sys, rules; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(OURS)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    ).stdout.strip()
    assert out == "['rules', 'wire']"
