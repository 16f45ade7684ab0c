"""Export the scoring graph to ONNX (``liveness.bundle.onnx_graph`` reads the file and scores with it).

The exported graph is what scoring runs: E1, both decoders, the recombination head, E2, then the bundle's
configured score (for ``latent_bg``, the patent's Δ = mean |z_bg - z_bg'|). ``ScoringGraph`` calls the generator
and then ``liveness.model.score.score_components`` and picks the configured score, so the export follows
whatever ``score_components`` computes. Parts a score does not use are dropped by the exporter: for ``latent_bg``
the clear-face head and E2's face head are not in the graph.

- Input ``images``: float32 (N, 3, S, S), RGB, ``x / 127.5 - 1`` of uint8 crops (range [-1, 1]); N is dynamic.
- Output ``score``: float32 (N,); a face is a spoof iff score > threshold.
- ``metadata_props``: threshold, score, model / crop / detection params (JSON), preprocessing (JSON), data
  (synthetic or real), the decision rule, the sha256 of ``generator.pt``, the exporter used.

Exporter choice. The dynamo exporter (``torch.onnx.export(..., dynamo=True)``, the default since torch 2.9)
is tried first. It emits opset 18 and up; for a lower opset its version conversion fails on this graph
(ReduceMean's axes) and it silently keeps 18, so opset 17 goes straight to the legacy TorchScript exporter
(``dynamo=False``). Every candidate is checked (``onnx.checker``, then onnxruntime against eager torch on
random inputs at two batch sizes); the first within ``PARITY_TOLERANCE`` is kept. A score that no exporter
can reproduce (one that leaves tensor ops, e.g. ``.item()`` or numpy) fails with an error naming the score.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

from liveness.bundle.files import (GENERATOR_WEIGHTS, ONNX_FILE, file_sha256, load_generator, read_bundle_config,
                                   write_config)
from liveness.bundle.onnx_graph import DECISION, INPUT_NAME, OUTPUT_NAME, bundle_metadata, make_session
from liveness.io import atomic_write_bytes
from liveness.model import score as score_module
from liveness.model.generator import Generator

DEFAULT_OPSET = 18
MIN_OPSET = 17
DYNAMO_MIN_OPSET = 18
PARITY_TOLERANCE = 1e-4  # max |score_onnx - score_torch|
PARITY_BATCHES = (1, 3)  # the export's example batch is 2: these check the batch axis is really dynamic
EXPORT_BATCH = 2


class OnnxExportError(RuntimeError):
    """The scoring graph could not be exported with parity; the message names the score and each exporter's failure."""


class ScoringGraph(nn.Module):
    """images (N, 3, S, S) in [-1, 1] -> the configured score (N,): the generator, then ``score_components``."""

    def __init__(self, generator: Generator, score: str,
                 statistics: score_module.ScoreStatistics | None = None) -> None:
        super().__init__()
        self.generator = generator
        self.score = score
        self.statistics = statistics  # live-train statistics: constants in the graph

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output = self.generator(images, with_clear_face=False)
        return score_module.score_components(images, output, self.statistics)[self.score].to(torch.float32)


@dataclass(frozen=True)
class ExportResult:
    model: onnx.ModelProto
    exporter: str  # "dynamo" or "torchscript"
    max_abs_diff: float  # max |onnx - torch| of the export-time parity check
    path: Path | None = None


def _export_dynamo(graph: ScoringGraph, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(graph, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                opset_version=opset, dynamo=True, dynamic_shapes={INPUT_NAME: {0: batch}},
                                verbose=False)
    model = program.model_proto
    got = _opset(model)
    if got != opset:
        raise RuntimeError(f"emitted opset {got} instead of the requested {opset}")
    return model


def _export_torchscript(graph: ScoringGraph, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter is deprecated (it says so on every call); what it may get wrong, the parity check catches.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=opset, dynamo=False, do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


EXPORTERS: dict[str, Callable[[ScoringGraph, torch.Tensor, int], onnx.ModelProto]] = {
    "dynamo": _export_dynamo,
    "torchscript": _export_torchscript,
}


def _opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), -1)


def _max_abs_diff(graph: ScoringGraph, model: onnx.ModelProto, image_size: int) -> float:
    """max |onnx - torch| over random inputs in [-1, 1] at ``PARITY_BATCHES``; inf on a shape or NaN mismatch."""
    session = make_session(model)
    rng = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in PARITY_BATCHES:
        images = torch.rand(batch, 3, image_size, image_size, generator=rng) * 2 - 1
        with torch.no_grad():
            expected = graph(images).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
        if got.shape != expected.shape:
            return float("inf")
        difference = np.abs(got.astype(np.float64) - expected.astype(np.float64))
        if not np.all(np.isfinite(difference)):
            return float("inf")
        worst = max(worst, float(difference.max()))
    return worst


def _check_eager(graph: ScoringGraph, example: torch.Tensor) -> None:
    """The score exists and is one value per sample, before any exporter runs."""
    try:
        with torch.no_grad():
            output = graph.generator(example, with_clear_face=False)
            components = score_module.score_components(example, output, graph.statistics)
    except Exception as error:  # noqa: BLE001 - reported with the score's name
        raise OnnxExportError(f"score {graph.score!r}: scoring in torch failed before export: "
                              f"{_short(error)}") from error
    if graph.score not in components:
        raise OnnxExportError(f"score {graph.score!r} is not computed by score_components "
                              f"(it gives {sorted(components)}); set calibrate.score to one of them")
    shape = tuple(components[graph.score].shape)
    if shape != (example.shape[0],):
        raise OnnxExportError(f"score {graph.score!r} has shape {shape}; a score must be one value per sample, "
                              f"({example.shape[0]},) for this batch")


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def exporters_for(opset: int) -> tuple[str, ...]:
    """The exporters to try, in order (see the module docstring)."""
    return ("dynamo", "torchscript") if opset >= DYNAMO_MIN_OPSET else ("torchscript",)


def export_scoring_graph(generator: Generator, score: str, image_size: int, opset: int = DEFAULT_OPSET,
                         metadata: dict[str, str] | None = None,
                         exporters: tuple[str, ...] | None = None,
                         statistics: score_module.ScoreStatistics | None = None) -> ExportResult:
    """The ONNX scoring graph of ``generator`` for ``score`` at ``image_size`` px, checked against eager torch.

    A float32 CPU copy of the generator is exported in eval mode; ``generator`` itself is left as it was.
    ``metadata`` goes into ``metadata_props`` with ``exporter`` and ``torch_version`` added. Raises ``OnnxExportError`` (naming the score)
    when no exporter reproduces the torch score within ``PARITY_TOLERANCE``.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; use {MIN_OPSET} or later")
    if image_size % 4:
        raise ValueError(f"image_size must be divisible by 4, got {image_size}")
    graph = ScoringGraph(copy.deepcopy(generator).float().cpu(), score, statistics).eval()
    example = torch.rand(EXPORT_BATCH, 3, image_size, image_size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    _check_eager(graph, example)
    failures: list[str] = []
    for name in exporters or exporters_for(opset):
        try:
            model = EXPORTERS[name](graph, example, opset)
            onnx.checker.check_model(model, full_check=True)
            difference = _max_abs_diff(graph, model, image_size)
        except Exception as error:  # noqa: BLE001 - each exporter fails in its own way; all are reported below
            failures.append(f"{name} exporter: {_short(error)}")
            continue
        if difference <= PARITY_TOLERANCE:
            props = {**(metadata or {}), "exporter": name, "torch_version": torch.__version__}
            onnx.helper.set_model_props(model, props)
            model.doc_string = (f"liveness scoring graph: {INPUT_NAME} float32 (N, 3, {image_size}, {image_size}) "
                                f"in [-1, 1] -> {OUTPUT_NAME} {score!r} (N,); {DECISION}")
            onnx.checker.check_model(model)
            return ExportResult(model, name, difference)
        failures.append(f"{name} exporter: max |onnx - torch| = {difference:.3g} > {PARITY_TOLERANCE:g}")
    raise OnnxExportError(
        f"score {score!r} could not be exported to ONNX with parity ({'; '.join(failures)}). The score must be "
        "built from traceable tensor ops (no .item(), .numpy() or Python branches on tensor values)")


def export_bundle(folder: Path, out: Path | None = None, opset: int = DEFAULT_OPSET) -> ExportResult:
    """Write ``out/model.onnx`` (default ``out`` = the bundle ``folder``) from ``generator.pt`` and ``config.json``.

    The file is written atomically. When ``out`` is another folder, ``config.json`` is copied beside it, so ``out``
    is a bundle that ``Predictor(out, backend="onnx")`` loads without ``generator.pt``.
    """
    folder = Path(folder)
    config = read_bundle_config(folder)
    generator = load_generator(folder, config.model)
    metadata = bundle_metadata(config) | {"generator_sha256": file_sha256(folder / GENERATOR_WEIGHTS)}
    result = export_scoring_graph(generator, config.score, config.model.image_size, opset, metadata,
                                  statistics=config.statistics)
    out = Path(out) if out is not None else folder
    path = out / ONNX_FILE
    atomic_write_bytes(path, result.model.SerializeToString())
    if out.resolve() != folder.resolve():
        write_config(out, config)
    return replace(result, path=path)
