"""The MLflow pyfunc model's output: one row per image, each saying what the model was trained on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.bundles import astronaut, make_model_dir, png_bytes


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_saved_pyfunc_model_output_carries_trained_on(tmp_path, data, one_torch_thread):
    import mlflow

    from liveness.registry import pyfunc_model

    bundle = make_model_dir(tmp_path / "bundle", data=data)
    mlflow.pyfunc.save_model(str(tmp_path / "model"), python_model=pyfunc_model.__file__,
                             artifacts={pyfunc_model.BUNDLE: str(bundle)})
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    images = [png_bytes(astronaut()), png_bytes(np.full((96, 96, 3), 128, np.uint8)), b"not an image"]
    out = loaded.predict(pd.DataFrame({"image": images}))
    assert list(out.columns) == list(pyfunc_model.OUTPUT_COLUMNS) and "trained_on" in out.columns
    assert list(out["label"])[1:] == ["no_face", "rejected"] and bool(out.loc[0, "face_found"])
    assert list(out["trained_on"]) == [data] * 3
    assert loaded.unwrap_python_model().trained_on == data
