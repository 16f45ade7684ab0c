"""A bundle's ``model.onnx``: what its graph takes and says (names, preprocessing, the config in its metadata),
and scoring crops with it in onnxruntime. ``liveness.export.onnx`` writes the file; this module only reads it,
so loading a bundle never needs the exporter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from liveness.bundle.files import GENERATOR_WEIGHTS, ONNX_FILE, BundleConfig, file_sha256
from liveness.model.inputs import PIXEL_SCALE

INPUT_NAME = "images"
OUTPUT_NAME = "score"
DECISION = "spoof if score > threshold, else live"
EXPORT_COMMAND = "liveness export onnx --model {folder}"  # how to (re)make model.onnx


def preprocessing(image_size: int) -> dict[str, Any]:
    """How a face crop becomes the graph's input (stored as the ``preprocessing`` metadata)."""
    return {"input": INPUT_NAME, "source": "RGB uint8 face crop (S, S, 3), see the crop and detection metadata",
            "transform": f"x / {PIXEL_SCALE} - 1", "dtype": "float32", "range": [-1.0, 1.0], "layout": "NCHW",
            "shape": ["N", 3, image_size, image_size]}


def crops_to_input(crops: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) RGB crops -> float32 (N, 3, S, S): ``x / 127.5 - 1``, as ``Predictor`` does in torch."""
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[3] != 3:
        raise ValueError(f"expected uint8 (N, S, S, 3) crops, got {crops.dtype} {crops.shape}")
    images = np.ascontiguousarray(crops.transpose(0, 3, 1, 2)).astype(np.float32)
    return images / np.float32(PIXEL_SCALE) - np.float32(1.0)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def bundle_metadata(config: BundleConfig) -> dict[str, str]:
    """What a bundle's ``config.json`` says, as ONNX ``metadata_props`` (string values)."""
    raw = config.to_json()
    return {"threshold": repr(float(config.threshold)), "score": config.score, "data": config.data,
            "model": _json(raw["model"]), "crop": _json(raw["crop"]), "detection": _json(raw["detection"]),
            "preprocessing": _json(preprocessing(config.model.image_size)), "decision": DECISION,
            "selection": config.selection, "statistics": _json(raw.get("statistics"))}


def config_from_metadata(metadata: dict[str, str], source: str = ONNX_FILE) -> BundleConfig:
    """The ``BundleConfig`` embedded in an exported model's metadata."""
    try:
        raw = {"model": json.loads(metadata["model"]), "crop": json.loads(metadata["crop"]),
               "detection": json.loads(metadata["detection"]), "threshold": float(metadata["threshold"]),
               "score": metadata["score"], "data": metadata["data"], "selection": metadata.get("selection", ""),
               "statistics": json.loads(metadata.get("statistics", "null"))}
    except (KeyError, ValueError) as error:
        raise ValueError(f"{source} lacks the liveness metadata ({error}); "
                         "export it with `liveness export onnx`") from None
    return BundleConfig.from_json(raw, source)


def read_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` (the weights are not loaded)."""
    model = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def make_session(model: onnx.ModelProto | str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxScorer:
    """An exported scoring graph in an onnxruntime session (CPUExecutionProvider)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = make_session(self.path, threads)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        names = ([i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()])
        if names != ([INPUT_NAME], [OUTPUT_NAME]):
            raise ValueError(f"{path} is not a liveness scoring graph (inputs, outputs {names}); "
                             "export it with `liveness export onnx`")

    @classmethod
    def for_bundle(cls, folder: Path, config: BundleConfig, threads: int | None = None) -> "OnnxScorer":
        """``folder/model.onnx``, checked against the bundle's ``config.json`` (and ``generator.pt`` when present)."""
        folder = Path(folder)
        path = folder / ONNX_FILE
        fix = (f"run `{EXPORT_COMMAND.format(folder=folder)}`" if (folder / GENERATOR_WEIGHTS).is_file() else
               f"run `{EXPORT_COMMAND.format(folder='<bundle with generator.pt>')} --out {folder}`")
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; the onnx backend needs an exported model: {fix}")
        scorer = cls(path, threads)
        stale = []
        embedded = config_from_metadata(scorer.metadata, str(path)).to_json()
        stale += [key for key, value in config.to_json().items() if embedded[key] != value]
        weights = folder / GENERATOR_WEIGHTS
        if weights.is_file() and scorer.metadata.get("generator_sha256") != file_sha256(weights):
            stale.append(GENERATOR_WEIGHTS)
        if stale:
            raise ValueError(f"{path} is stale: it was exported with another {' and '.join(stale)} than the bundle "
                             f"holds; {fix}")
        return scorer

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """float32 (N, 3, S, S) in [-1, 1] -> float32 scores (N,)."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]

    def score_crops(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) RGB crops -> float32 scores (N,)."""
        return self(crops_to_input(crops))
