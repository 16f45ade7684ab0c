"""Models registered before the layering refactor (issue 12) keep loading: their logged ``pyfunc_model.py``
imports ``Predictor`` from ``liveness.registry.predictor``."""

from __future__ import annotations

import ast
from pathlib import Path

import liveness.bundle
import liveness.bundle.predictor
from liveness.registry import predictor as moved


def test_the_former_module_names_the_same_objects():
    assert moved.Predictor is liveness.bundle.Predictor
    assert moved.Prediction is liveness.bundle.predictor.Prediction
    assert moved.synthetic_warning is liveness.bundle.predictor.synthetic_warning


def test_a_former_pyfunc_models_import_resolves(tmp_path: Path):
    """The import line such a model's code carries (found in a model logged before the refactor)."""
    source = "from liveness.registry.predictor import Predictor\n"
    namespace: dict = {}
    exec(compile(ast.parse(source), str(tmp_path / "pyfunc_model.py"), "exec"), namespace)  # noqa: S102
    assert namespace["Predictor"] is liveness.bundle.Predictor
