"""The imports run one way, in pipeline order, with no arrow back up.

ground floor (xaistudy) -> generator -> modeling -> explain -> study_server --\\
                                                  \\-> analysis ------------> simulation
with the simulated participants above both, and the command line (xaistudy.cli) on top,
imported by nothing below it.
Lazy imports inside functions count: they are arrows all the same.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> the project packages it may import (besides itself)
ALLOWED = {
    "xaistudy": set(),
    "generator": {"xaistudy"},
    "modeling": {"xaistudy", "generator"},
    "explain": {"xaistudy", "generator", "modeling"},
    "study_server": {"xaistudy", "explain"},
    "analysis": {"xaistudy", "explain"},
    "simulation": {"xaistudy", "explain", "study_server", "analysis"},
}
PROJECT = set(ALLOWED)


def imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in ``path``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    if package == "xaistudy":  # the command line sits on top, not on the ground floor
        files = [f for f in files if "cli" not in f.relative_to(ROOT / package).parts]
    return files


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_in_pipeline_order(package):
    wrong = []
    for path in package_files(package):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if name.startswith("xaistudy.cli") or (
                top in PROJECT and top != package and top not in ALLOWED[package]
            ):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "imports against the pipeline order:\n" + "\n".join(sorted(set(wrong)))


def test_the_checker_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from xaistudy.cli import cli\n    import analysis.load\n")
    assert {"xaistudy.cli", "xaistudy.cli.cli", "analysis.load"} <= imported_modules(module)


def test_analysis_loads_without_flask_or_torch():
    """The statistics run where neither the web server nor torch is installed."""
    code = (
        "import sys, analysis.load, analysis.report, analysis.scoring, analysis.power,"
        " analysis.simulate;"
        "print(sorted(m for m in ('flask', 'torch', 'study_server') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
