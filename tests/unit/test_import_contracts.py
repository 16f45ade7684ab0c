"""The import contracts of pyproject.toml (docs/architecture.md): they hold for this repository, and they fail
when an import goes the wrong way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=environment, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The package, the flows and the contracts, copied where an import can be added without touching the tree."""
    root = tmp_path_factory.mktemp("contracts")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(PROJECT_ROOT / "src" / "liveness", root / "src" / "liveness", ignore=ignore)
    shutil.copytree(PROJECT_ROOT / "pipeline", root / "pipeline", ignore=ignore)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_this_repository_keeps_every_contract():
    completed = _lint(PROJECT_ROOT)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert "broken" in completed.stdout and " 0 broken" in completed.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("model/encoder.py", "import liveness.config", "model is pure torch"),
    ("model/generator.py", "import mlflow", "model is pure torch"),
    ("config.py", "import liveness.data.faces", "Imports run one way"),
    ("serve/app.py", "import liveness.train.trainer", "without the training code"),
    ("data/curate.py", "import pipeline.tracking", "never imports the flows"),
])
def test_an_import_the_wrong_way_breaks_a_contract(copy, module, line, contract):
    path = copy / "src" / "liveness" / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # added by the test\n")
    try:
        completed = _lint(copy)
    finally:
        path.write_text(original)
    assert completed.returncode != 0
    broken = completed.stdout[completed.stdout.index("Broken contracts"):]
    assert contract in broken, completed.stdout[-3000:]
