"""One face path (issue 10, DESIGN §2.2): curation, calibration and serving crop a raw image the same way.

The same raw spoof-set images go through the prepare_spoof stage and the calibrate stage, and through
``Predictor`` (what ``liveness predict`` and ``liveness serve`` use): the crops must be byte-identical and the
scores equal. A database's own boxes may only choose the detected face, never move the crop.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from liveness.config import parse_params
from liveness.data.curate import CurationSettings, process_chunk
from liveness.data.faces import FaceDetector, choose_hinted_face
from liveness.data.records import SourceRecord
from liveness.data.shards import ShardDataset, read_manifest
from liveness.data.stage import LIVE_KIND, SPOOF_KIND, run_curation
from liveness.data.synthetic.writer import generate_demo_dataset
from liveness.evaluate.calibrate import calibrate
from liveness.model.factory import build_generator
from liveness.bundle import Predictor
from liveness.bundle import write_bundle
from liveness.registry.register import bundle_config

SIZE = 64
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A tiny synthetic demo set through curate, prepare_spoof and calibrate with a random tiny generator."""
    root = tmp_path_factory.mktemp("face_path")
    demo = generate_demo_dataset(root / "raw", identities_live=30, images_per_identity=2, identities_spoof=4,
                                 live_per_spoof_subject=2, attacks_per_species=1, size=160)
    runner = {"kind": "sequential", "workers": 1, "chunk_size": 8}
    params = parse_params({
        "model": {"profile": "tiny", "image_size": SIZE},
        "curate": {"sources": [{"name": "celeba", "root": demo["celeba"]["root"]}], "out_dir": str(root / "curated"),
                   "crop": {"size": SIZE}, "runner": runner, "detection": {"device": "cpu"}},
        "spoof": {"sources": [{"name": "celeba_spoof", "root": demo["celeba_spoof"]["root"]}],
                  "out_dir": str(root / "spoof"), "crop": {"size": SIZE}, "runner": runner,
                  "detection": {"device": "cpu"}},
        "calibrate": {"model_dir": str(root / "model"), "live_data": str(root / "curated"),
                      "spoof_data": str(root / "spoof"), "report_dir": str(root / "reports"), "score": "pixel",
                      "bootstrap_resamples": 10, "device": "cpu", "baseline": False},
    })
    run_curation(params.curate, LIVE_KIND, 0, root / "reports/curation", progress=False)
    run_curation(params.spoof, SPOOF_KIND, 0, root / "reports/spoof", progress=False)
    (root / "model").mkdir()
    torch.manual_seed(0)
    torch.save(build_generator(params.model.width_profile()).state_dict(), root / "model" / "generator.pt")
    calibrate(params)
    bundle = write_bundle(root / "bundle", root / "model" / "generator.pt",
                          bundle_config(params, root / "reports" / "metrics.json"))
    return root, params, Predictor(bundle)


def _spoof_crops(root: Path) -> tuple[pd.DataFrame, ShardDataset]:
    manifest = read_manifest(root / "spoof" / "manifest.parquet")
    return manifest, ShardDataset(manifest, root / "spoof" / "shards")


class TestOneFacePath:
    def test_served_crops_are_byte_identical_to_curated_ones(self, stages):
        root, _, predictor = stages
        manifest, dataset = _spoof_crops(root)
        assert len(dataset) >= 16
        raw = [np.ascontiguousarray(cv2.imread(path)[..., ::-1]) for path in dataset.record_ids]
        served = predictor.crop_faces(raw)
        for index, (face, problem, crop) in enumerate(served):
            assert face is not None, (dataset.record_ids[index], problem)
            np.testing.assert_array_equal(crop, dataset[index].numpy(), err_msg=dataset.record_ids[index])

    def test_predict_scores_equal_the_calibrate_stage_scores(self, stages):
        root, _, predictor = stages
        scores = pd.read_csv(root / "reports" / "scores.csv")
        spoof_rows = scores[scores["dataset"] == "spoof_data"]
        assert len(spoof_rows) >= 16
        predictions = predictor.predict([Path(path).read_bytes() for path in spoof_rows["path"]])
        served = np.array([prediction.score for prediction in predictions])
        np.testing.assert_allclose(served, spoof_rows["pixel"].to_numpy(), rtol=1e-5, atol=1e-6)

    def test_every_crop_came_from_the_detector_and_the_database_box_agrees(self, stages):
        root, _, _ = stages
        manifest, _ = _spoof_crops(root)
        accepted = manifest[manifest["reject_reason"] == ""]
        assert accepted["database_iou"].notna().all() and (accepted["database_iou"] > 0.2).all()
        live = read_manifest(root / "curated" / "manifest.parquet")
        assert set(live["split"]) == {"train", "statistics", "val"}

    def test_the_spoof_sets_live_captures_are_jpeg_like_the_live_database(self, stages):
        root, _, _ = stages
        skew = json.loads((root / "reports" / "metrics.json").read_text())["skew"]["groups"]
        formats = {name: set(group["formats"]) for name, group in skew.items()}
        assert formats["live train"] == formats["spoof-set live calib"] == {"jpg"}


class TestDatabaseHint:
    """A database's face only picks among detected faces; it never moves the crop."""

    def test_hint_picks_the_face_it_points_at(self):
        from liveness.data.faces import Face

        left = Face((0.0, 0.0, 10.0, 10.0), 0.99, None)
        right = Face((50.0, 0.0, 60.0, 10.0), 0.99, None)
        assert choose_hinted_face([left, right], (48.0, -2.0, 62.0, 12.0)) == (right, None)
        assert choose_hinted_face([left, right], (100.0, 100.0, 110.0, 110.0)) == (None, "database_face_not_detected")
        assert choose_hinted_face([], (0.0, 0.0, 1.0, 1.0)) == (None, "no_face")

    def test_a_shifted_database_box_gives_the_same_crop(self, tmp_path):
        from skimage import data

        image = data.astronaut()
        path = tmp_path / "astronaut.png"
        cv2.imwrite(str(path), image[..., ::-1])
        face = FaceDetector("cpu").detect(image)[0]
        x1, y1, x2, y2 = face.box
        records = [SourceRecord("test", str(path), "a", "spoof", "print_a4", box=box)
                   for box in ((x1, y1, x2, y2), (x1 + 15, y1 - 10, x2 + 25, y2 + 5))]
        outcomes = process_chunk(records, CurationSettings(kind="spoof", crop_size=SIZE))
        assert all(outcome.accepted for outcome in outcomes)
        np.testing.assert_array_equal(outcomes[0].crop, outcomes[1].crop)
        assert outcomes[0].row["database_iou"] > outcomes[1].row["database_iou"]
