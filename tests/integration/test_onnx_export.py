"""ONNX export of the scoring graph: parity with torch, dynamic batch, metadata, the onnx Predictor, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from liveness.bundle import (
    ONNX_FILE,
    OnnxScorer,
    config_from_metadata,
    crops_to_input,
    file_sha256,
    make_session,
    read_metadata,
)
from liveness.export.onnx import PARITY_TOLERANCE, OnnxExportError, export_bundle, export_scoring_graph
from liveness.model import score as score_module
from liveness.model.generator import Generator
from liveness.model.profiles import DEPLOY, PROFILES
from liveness.bundle import BundleConfig, Predictor, write_config
from tests.fixtures.paths import PROJECT_ROOT
from tests.fixtures.bundles import astronaut, make_model_dir, png_bytes

TOLERANCE = 1e-4  # the issue's |score_onnx - score_torch| bound

pytestmark = pytest.mark.slow  # about ten exports, 5-8 s each on 2 cores


def torch_scores(generator: Generator, images: np.ndarray, score: str = "latent_bg") -> np.ndarray:
    with torch.no_grad():
        batch = torch.from_numpy(images)
        output = generator.eval()(batch, with_clear_face=False)
        return score_module.score_components(batch, output)[score].numpy()


def run_onnx(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    return make_session(model).run(["score"], {"images": images})[0]


def photo_crops(size: int) -> np.ndarray:
    """Real photos as uint8 (N, S, S, 3) crops: astronaut's face and whole frame, a cat, a coffee cup."""
    from skimage import data

    photos = [astronaut()[30:230, 120:320], astronaut(), data.chelsea()[:, 50:350], data.coffee()[:, 100:500]]
    return np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR)) for p in photos])


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory, one_torch_thread):
    folder = make_model_dir(tmp_path_factory.mktemp("bundle"))
    return folder, export_bundle(folder)


@pytest.fixture(scope="module")
def exported(tiny_bundle):
    """(profile name, generator, image size, export result) for tiny @ 32 (from its bundle) and deploy @ 64."""
    folder, result = tiny_bundle
    from liveness.bundle import load_generator

    tiny = load_generator(folder, BundleConfig.from_json(json.loads((folder / "config.json").read_text())).model)
    torch.manual_seed(1)
    deploy = Generator(DEPLOY).eval()
    return {"tiny": (tiny, 32, result), "deploy": (deploy, DEPLOY.image_size,
                                                   export_scoring_graph(deploy, "latent_bg", DEPLOY.image_size))}


@pytest.mark.parametrize("profile", ["tiny", "deploy"])
def test_random_inputs_match_torch(exported, profile):
    generator, size, result = exported[profile]
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        images = rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
        expected, got = torch_scores(generator, images), run_onnx(result.model, images)
        assert got.shape == expected.shape == (batch,) and got.dtype == np.float32
        assert np.all(expected > 0) and (batch == 1 or np.ptp(expected) > 0)  # real, varying scores
        assert np.max(np.abs(got - expected)) <= TOLERANCE
    assert result.max_abs_diff <= PARITY_TOLERANCE == TOLERANCE


@pytest.mark.parametrize("profile", ["tiny", "deploy"])
def test_real_photos_match_torch(exported, profile):
    generator, size, result = exported[profile]
    crops = photo_crops(size)
    images = crops_to_input(crops)
    # the numpy preprocessing is exactly Predictor's torch one
    reference = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).numpy()
    assert np.array_equal(images, reference) and images.min() >= -1 and images.max() <= 1
    expected, got = torch_scores(generator, images), run_onnx(result.model, images)
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    assert len(set(np.round(expected, 7))) == len(crops)


def test_batch_axis_is_dynamic(exported):
    generator, size, result = exported["deploy"]
    (graph_input,) = result.model.graph.input
    batch_dim = graph_input.type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim[1:]] == [3, size, size]
    images = np.random.default_rng(1).uniform(-1, 1, (5, 3, size, size)).astype(np.float32)
    batch = run_onnx(result.model, images)  # exported at batch 2
    alone = np.concatenate([run_onnx(result.model, images[i:i + 1]) for i in range(5)])
    assert batch.shape == (5,) and np.allclose(batch, alone, rtol=1e-5, atol=1e-7)


def test_metadata_round_trips(tiny_bundle):
    folder, result = tiny_bundle
    path = folder / ONNX_FILE
    assert result.path == path and result.exporter == "dynamo"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert {(o.domain, o.version) for o in model.opset_import if o.domain == ""} == {("", 18)}
    config = BundleConfig.from_json(json.loads((folder / "config.json").read_text()))
    metadata = read_metadata(path)
    assert metadata == dict(make_session(path).get_modelmeta().custom_metadata_map)  # what onnxruntime users see
    assert config_from_metadata(metadata).to_json() == config.to_json()
    assert (float(metadata["threshold"]), metadata["score"], metadata["data"]) == (0.5, "latent_bg", "synthetic")
    assert json.loads(metadata["model"]) == {"profile": "tiny", "image_size": 32, "decoder_channels": None}
    assert json.loads(metadata["crop"])["size"] == 32 and json.loads(metadata["detection"])["device"] == "cpu"
    preprocessing = json.loads(metadata["preprocessing"])
    assert (preprocessing["transform"], preprocessing["layout"], preprocessing["shape"]) == \
        ("x / 127.5 - 1", "NCHW", ["N", 3, 32, 32])
    assert metadata["generator_sha256"] == file_sha256(folder / "generator.pt")
    assert metadata["exporter"] == "dynamo" and metadata["decision"].startswith("spoof if score > threshold")


def test_graph_follows_the_configured_score(exported):
    """Each score exports its own graph: pixel needs no E2, latent_face uses E2's face head, latent_bg its bg head."""
    generator, size, bg = exported["tiny"]
    images = np.random.default_rng(2).uniform(-1, 1, (3, 3, size, size)).astype(np.float32)
    weights = {}
    for name in ("latent_bg", "latent_face", "pixel"):
        model = bg.model if name == "latent_bg" else export_scoring_graph(generator, name, size).model
        got = run_onnx(model, images)
        assert np.max(np.abs(got - torch_scores(generator, images, name))) <= TOLERANCE
        weights[name] = {i.name for i in model.graph.initializer}
    e2_bg, e2_face = "re_encoder.separation.background_head.weight", "re_encoder.separation.face_head.weight"
    assert any(e2_bg in w for w in weights["latent_bg"]) and not any(e2_face in w for w in weights["latent_bg"])
    assert any(e2_face in w for w in weights["latent_face"]) and not any(e2_bg in w for w in weights["latent_face"])
    assert not any("re_encoder" in w for w in weights["pixel"])
    assert not any("clear_face_head" in w for graph in weights.values() for w in graph)


def test_export_follows_score_components_not_a_copy(exported, monkeypatch):
    """The exported graph is whatever score_components computes: change it and the ONNX output changes."""
    generator, size, original = exported["tiny"]
    real = score_module.score_components

    def changed(image, output, statistics=None):
        components = real(image, output, statistics)
        return {**components, "latent_bg": components["latent_bg"] * 2 + components["pixel"]}

    images = np.random.default_rng(3).uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    expected = 2 * torch_scores(generator, images, "latent_bg") + torch_scores(generator, images, "pixel")
    monkeypatch.setattr(score_module, "score_components", changed)
    result = export_scoring_graph(generator, "latent_bg", size)
    got, before = run_onnx(result.model, images), run_onnx(original.model, images)
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    assert np.min(np.abs(got - before)) > 1e-3


def test_untraceable_score_fails_naming_it(exported, monkeypatch):
    generator, size, _ = exported["tiny"]
    real = score_module.score_components

    def with_numpy_score(image, output, statistics=None):  # leaves torch: no exporter can reproduce it
        components = real(image, output, statistics)
        values = components["latent_bg"].detach().numpy()
        return {**components, "host_side": torch.from_numpy(np.sqrt(values) + float(values.mean()))}

    monkeypatch.setattr(score_module, "score_components", with_numpy_score)
    with pytest.raises(OnnxExportError, match=r"score 'host_side' could not be exported.*dynamo exporter.*torchscript"):
        export_scoring_graph(generator, "host_side", size)
    with pytest.raises(OnnxExportError, match=r"score 'nope' is not computed by score_components"):
        export_scoring_graph(generator, "nope", size)


def test_opset_17_uses_the_torchscript_exporter(exported):
    generator, size, _ = exported["tiny"]
    result = export_scoring_graph(generator, "latent_bg", size, opset=17)
    assert result.exporter == "torchscript"
    assert [o.version for o in result.model.opset_import if o.domain == ""] == [17]
    images = np.random.default_rng(4).uniform(-1, 1, (5, 3, size, size)).astype(np.float32)
    assert np.max(np.abs(run_onnx(result.model, images) - torch_scores(generator, images))) <= TOLERANCE
    with pytest.raises(ValueError, match="opset 16 is too old"):
        export_scoring_graph(generator, "latent_bg", size, opset=16)


def test_onnx_predictor_gives_torch_labels_and_scores(tmp_path, one_torch_thread):
    """Detection and crop as before, scores by onnxruntime; a threshold between two faces' scores splits them
    the same way in both backends. Changing the threshold makes the old export stale.

    The bundle ships the ``pixel`` score: with random weights ``latent_bg`` is nearly constant across photos
    (a spread of about 3e-6 on these), too flat to place a threshold between them."""
    folder = make_model_dir(tmp_path / "bundle")
    config = BundleConfig.from_json(json.loads((folder / "config.json").read_text()))
    write_config(folder, BundleConfig(config.model, config.crop, config.detection, 0.5, "pixel", config.data))
    face = astronaut()
    darker, brighter = (face * 0.4).astype(np.uint8), np.clip(face + 80.0, 0, 255).astype(np.uint8)
    inputs = [png_bytes(face), png_bytes(darker), png_bytes(brighter), png_bytes(np.full((96, 96, 3), 128, np.uint8)),
              b"not an image"]
    export_bundle(folder)
    scores = [p.score for p in Predictor(folder).predict(inputs[:3])]
    low, middle, _ = sorted(scores)
    assert middle - low > 100 * TOLERANCE
    threshold = (low + middle) / 2  # one face live, two spoof
    write_config(folder, BundleConfig(config.model, config.crop, config.detection, threshold, "pixel", config.data))
    with pytest.raises(ValueError, match="stale: it was exported with another threshold.*liveness export onnx"):
        Predictor(folder, backend="onnx")
    export_bundle(folder)
    by_torch = Predictor(folder).predict(inputs)
    by_onnx = Predictor(folder, backend="onnx").predict(inputs)
    assert [p.label for p in by_torch] == [p.label for p in by_onnx] == ["spoof" if s > threshold else "live"
                                                                        for s in scores] + ["no_face", "rejected"]
    assert {"live", "spoof"} <= {p.label for p in by_onnx}
    for t, o in zip(by_torch[:3], by_onnx[:3]):
        assert abs(t.score - o.score) <= TOLERANCE and t.box == o.box and o.threshold == threshold


def test_onnx_predictor_needs_a_fresh_export(tmp_path):
    folder = make_model_dir(tmp_path / "bundle")
    with pytest.raises(FileNotFoundError, match=r"model\.onnx not found.*liveness export onnx --model"):
        Predictor(folder, backend="onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        Predictor(folder, backend="tensorrt")


def test_retrained_weights_make_the_export_stale(tiny_bundle, tmp_path):
    folder, result = tiny_bundle
    copy = tmp_path / "bundle"
    copy.mkdir()
    for name in ("config.json", ONNX_FILE):
        (copy / name).write_bytes((folder / name).read_bytes())
    make_model_dir(tmp_path / "retrained", seed=7)
    (copy / "generator.pt").write_bytes((tmp_path / "retrained" / "generator.pt").read_bytes())
    with pytest.raises(ValueError, match=r"stale: it was exported with another generator\.pt"):
        OnnxScorer.for_bundle(copy, BundleConfig.from_json(json.loads((copy / "config.json").read_text())))
    (copy / "generator.pt").unlink()  # an ONNX-only bundle: config.json + model.onnx
    assert Predictor(copy, backend="onnx").predict([astronaut()])[0].face_found


def test_cli_exports_and_predicts_with_onnxruntime(tiny_bundle, tmp_path):
    from liveness.cli import app

    folder, _ = tiny_bundle
    out = tmp_path / "onnx_bundle"
    runner = CliRunner()
    exported = runner.invoke(app, ["export", "onnx", "--model", str(folder), "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", ONNX_FILE]  # no weights needed to score
    image = tmp_path / "astronaut.png"
    image.write_bytes(png_bytes(astronaut()))
    predicted = runner.invoke(app, ["predict", str(image), "--model", str(out), "--backend", "onnx"])
    assert predicted.exit_code == 0, predicted.output
    row = json.loads(next(line for line in predicted.stdout.splitlines() if line.startswith("{")))
    (reference,) = Predictor(folder).predict([astronaut()])
    assert row["face_found"] and abs(row["score"] - reference.score) <= TOLERANCE and row["label"] == reference.label
    missing = runner.invoke(app, ["predict", str(image), "--model", str(folder.parent), "--backend", "onnx"])
    assert missing.exit_code != 0


def test_bench_prints_flops_and_both_latencies():
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                        "DVC_NO_ANALYTICS": "1"}
    completed = subprocess.run(
        [sys.executable, "bench/infer_latency.py", "--profiles", "tiny", "--rounds", "2", "--warmup", "0"],
        capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT, env=env)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)  # stdout holds the JSON object and nothing else
    tiny = result["profiles"]["tiny"]
    assert tiny["image_size"] == PROFILES["tiny"].image_size and 0 < tiny["gflop_per_face"] < 0.1
    assert tiny["torch_ms_per_face"] > 0 and tiny["onnxruntime_ms_per_face"] > 0
    assert tiny["onnx_max_abs_diff"] <= TOLERANCE and result["threads"] == 1 and "random" in result["weights"]


@pytest.mark.parametrize("score", score_module.SCORE_NAMES)
def test_every_shipped_score_exports_with_parity_including_its_statistics(score, one_torch_thread):
    """Every score can ship, so every score exports; those that need live statistics carry them as constants
    (feature_gaussian its mean, scale and precision matrix)."""
    torch.manual_seed(0)
    generator = Generator(PROFILES["tiny"]).eval()
    count = score_module.FEATURE_COUNT
    precision = torch.eye(count) + 0.1 * torch.ones(count, count)
    statistics = score_module.ScoreStatistics(
        tuple(float(v) for v in torch.rand(PROFILES["tiny"].latent_channels) + 0.1),
        {"latent_bg_std": 0.5, "pixel": 0.4, "pixel_hf": 0.1}, {"latent_bg_std": 0.2, "pixel": 0.1, "pixel_hf": 0.05},
        ("latent_bg_std", "pixel", "pixel_hf"), 8, tuple(torch.randn(count).tolist()),
        tuple((torch.rand(count) + 0.5).tolist()), tuple(tuple(row) for row in precision.tolist()))
    result = export_scoring_graph(generator, score, 32, statistics=statistics)
    images = crops_to_input(photo_crops(32))
    with torch.no_grad():
        batch = torch.from_numpy(images)
        expected = score_module.score_components(batch, generator(batch, with_clear_face=False), statistics)[score]
    np.testing.assert_allclose(run_onnx(result.model, images), expected.numpy(), atol=TOLERANCE)
    if score in ("deviation", "fused"):
        other = score_module.ScoreStatistics(statistics.background_std, {k: 0.0 for k in statistics.fusion},
                                             {k: 1.0 for k in statistics.fusion}, statistics.fusion)
        changed = export_scoring_graph(generator, score, 32, statistics=other)
        assert not np.allclose(run_onnx(changed.model, images), run_onnx(result.model, images))
