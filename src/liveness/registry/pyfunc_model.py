"""The MLflow pyfunc model, logged as code ("models from code"): nothing of ours is pickled.

MLflow runs this file on load; ``set_model`` names the model object. The ``bundle`` artifact is the folder
holding ``generator.pt`` and ``config.json``. Input: a DataFrame with an ``image`` column of encoded image
bytes (RGB uint8 HxWx3 arrays also work when the signature is not enforced). Output: one row per image, with
``trained_on`` ("synthetic" or "real", the bundle's ``data``) on every row: a synthetic model's scores say
nothing about real faces.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from liveness.bundle import Predictor

BUNDLE = "bundle"
INPUT_COLUMN = "image"
OUTPUT_COLUMNS = ("face_found", "box", "score", "threshold", "label", "reason", "trained_on", "converted", "detail")


class LivenessModel(mlflow.pyfunc.PythonModel):
    """Wraps ``Predictor`` for MLflow's load_model/serve."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self._predictor = Predictor(context.artifacts[BUNDLE])

    @property
    def trained_on(self) -> str:
        """What the loaded model was trained on: "synthetic" or "real"."""
        return self._predictor.trained_on

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        if INPUT_COLUMN not in model_input:
            raise ValueError(f"model input needs a column {INPUT_COLUMN!r} of encoded image bytes; "
                             f"got columns {list(model_input.columns)}")
        rows = [p.as_dict() for p in self._predictor.predict(list(model_input[INPUT_COLUMN]))]
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


mlflow.models.set_model(LivenessModel())
