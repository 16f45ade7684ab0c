"""The synthetic demo chain as a user runs it: demo-data -> curate live -> prepare spoof -> train."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from liveness.cli import app
from liveness.config import load_params
from liveness.data.shards import read_manifest
from liveness.data.stage import LIVE_KIND, SPOOF_KIND, run_curation

runner = CliRunner()


@pytest.mark.slow
def test_demo_chain(tmp_path):
    raw = {
        "demo": {"out_dir": str(tmp_path / "raw"), "identities_live": 6, "images_per_identity": 3,
                 "identities_spoof": 2, "live_per_spoof_subject": 2, "attacks_per_species": 2, "size": 160},
        "curate": {"sources": [{"name": "celeba", "root": str(tmp_path / "raw" / "celeba")}],
                   "out_dir": str(tmp_path / "curated"), "crop": {"size": 64},
                   "splits": {"train": 0.5, "val": 0.5}, "runner": {"kind": "sequential"}},
        "spoof": {"sources": [{"name": "celeba_spoof", "root": str(tmp_path / "raw" / "celeba_spoof")}],
                  "out_dir": str(tmp_path / "spoof"), "crop": {"size": 64}, "runner": {"kind": "sequential"}},
        "model": {"profile": "tiny", "image_size": 64},
        "identity": {"backbone": "onet"},
        "train": {"data": str(tmp_path / "curated"), "epochs": 2, "batch_size": 2, "num_workers": 0,
                  "checkpoint_every_steps": 1000},
    }
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))

    generated = runner.invoke(app, ["demo-data", "--params", str(params_file), "--no-progress"])
    assert generated.exit_code == 0, generated.output
    assert "SYNTHETIC" in generated.output
    again = runner.invoke(app, ["demo-data", "--params", str(params_file), "--no-progress"])
    assert "'skipped': True" in again.output

    params = load_params(params_file)
    run_curation(params.curate, LIVE_KIND, 0, tmp_path / "reports" / "curation", progress=False)
    run_curation(params.spoof, SPOOF_KIND, 0, tmp_path / "reports" / "spoof", progress=False)
    live = read_manifest(tmp_path / "curated" / "manifest.parquet")
    spoof = read_manifest(tmp_path / "spoof" / "manifest.parquet")
    assert live["synthetic"].all() and spoof["synthetic"].all()
    assert (live["reject_reason"] == "").sum() >= 10
    assert set(spoof.loc[spoof["label"] == "spoof", "species"]) == {"print_a4", "replay_pc", "mask_region", "mask_face"}
    assert not set(live["subject"]) & set(spoof["subject"]), "spoof subjects are held out from live training"
    assert "SYNTHETIC data" in (tmp_path / "reports" / "curation" / "summary.md").read_text()

    trained = runner.invoke(app, ["train", "--params", str(params_file), "--out", str(tmp_path / "run"),
                                  "--no-progress"])
    assert trained.exit_code == 0, trained.output
    assert "curated crops" in trained.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    accepted_train = ((live["reject_reason"] == "") & (live["split"] == "train")).sum()
    assert summary["steps"] == 2 * (accepted_train // 2)
