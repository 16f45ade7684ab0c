"""Model bundles: the format (``files``), the ONNX graph inside one (``onnx_graph``) and the one ``Predictor``
that every caller loads a bundle with (``predictor``).

A bundle is a folder:

- ``generator.pt``: the generator's weights (a state dict; loaded with ``weights_only=True``);
- ``config.json``: ``BundleConfig``, everything else that decides a prediction: the width profile, the crop and
  detection settings, the calibrated threshold, the shipped score (and its live statistics), and whether the
  model was trained on synthetic or real data;
- ``model.onnx`` (optional): the scoring graph, for ``backend="onnx"``; then ``generator.pt`` is not needed.

Training and calibration write bundles (``write_bundle``); ``liveness predict``, ``liveness serve``, the MLflow
pyfunc model and ``liveness export onnx`` read them. Names are imported on first use, so that reading the
format does not load the detector or onnx.
"""

from importlib import import_module

_EXPORTS = {
    **dict.fromkeys(("GENERATOR_WEIGHTS", "CONFIG_FILE", "ONNX_FILE", "TRAINED_ON", "TrainedOn", "BundleConfig",
                     "write_config", "read_bundle_config", "write_bundle", "load_generator", "file_sha256"),
                    "liveness.bundle.files"),
    **dict.fromkeys(("INPUT_NAME", "OUTPUT_NAME", "OnnxScorer", "bundle_metadata", "config_from_metadata",
                     "crops_to_input", "make_session", "preprocessing", "read_metadata"),
                    "liveness.bundle.onnx_graph"),
    **dict.fromkeys(("BACKENDS", "Backend", "Label", "PREDICTION_REASONS", "Prediction", "Predictor",
                     "array_to_rgb8", "synthetic_warning"), "liveness.bundle.predictor"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'liveness.bundle' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
