"""The curate stage as a Prefect flow: threads and a Dask LocalCluster give the same bytes as a local run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import pytest
import yaml
from skimage import data

from liveness.config import load_params
from liveness.data.stage import LIVE_KIND, run_curation
from pipeline.curate import curation_flow
from pipeline.runners import task_runner_for


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    face = data.astronaut()
    for index, (subject, image) in enumerate([("ann", face), ("ben", face[:, ::-1]), ("cat", face[::1, ::-1]),
                                              ("dan", cv2.GaussianBlur(face, (0, 0), 5))]):
        path = root / subject / f"{index}.jpg"
        path.parent.mkdir()
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (root / "ann" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return root


def _params_file(folder: Path, photos: Path, runner: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"curate": {
        "sources": [{"name": "folder", "root": str(photos)}], "out_dir": str(folder / "curated"),
        "crop": {"size": 64}, "splits": {"train": 0.5, "val": 0.5},
        "runner": {"kind": runner, "workers": 2, "chunk_size": 2},
    }}))
    return path


@pytest.fixture(scope="module")
def prefect_server():
    """One temporary Prefect server for these flow runs, in the test's own PREFECT_HOME."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["threads", "dask"])
def test_flow_matches_local_run(tmp_path, photos, runner, prefect_server):
    local_params = load_params(_params_file(tmp_path / "local", photos, "sequential"))
    run_curation(local_params.curate, LIVE_KIND, 0, tmp_path / "local" / "report", progress=False)

    flow_params_path = _params_file(tmp_path / "flow", photos, runner)
    flow_runner = task_runner_for(load_params(flow_params_path).curate.runner)
    if runner == "dask":
        assert type(flow_runner).__name__ == "DaskTaskRunner"
    summary = curation_flow.with_options(task_runner=flow_runner)(
        LIVE_KIND, str(flow_params_path), str(tmp_path / "flow" / "report"))
    assert summary["rows"] == 5 and summary["accepted"] == 2  # cat duplicates ben; dan is blurry

    local, flow = tmp_path / "local" / "curated", tmp_path / "flow" / "curated"
    assert _digest(local / "shards") == _digest(flow / "shards")
    assert (local / "manifest.parquet").read_bytes() == (flow / "manifest.parquet").read_bytes()
