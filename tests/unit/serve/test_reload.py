"""Model reloads: on request (SIGHUP's path), on a polled change, on an alias move in a real SQLite registry."""

from __future__ import annotations

import shutil
import time

import pytest
from mlflow import MlflowClient

from liveness.registry.resolve import LocalSource, ModelRef, bundle_folder, parse_model_uri
from liveness.serve.app import create_app
from liveness.serve.settings import ServeSettings
from tests.fixtures.params import tiny_params
from tests.fixtures.registry import write_metrics
from tests.fixtures.bundles import make_model_dir
from tests.fixtures.serving import started, wait_for
from tests.fixtures.serving import FakePredictor, FakeSource


def score(client, image: bytes) -> tuple[float, str]:
    answer = client.post("/v1/liveness", content=image)
    assert answer.status_code == 200, answer.text
    return answer.json()["score"], answer.json()["model"]["version"]


class FlakySource(FakeSource):
    """Serves revision 1, then fails every later check (a registry that went away)."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def revision(self) -> str:
        self.checks += 1
        if self.checks > 1:
            raise ConnectionError("registry unreachable")
        return self.rev


class TestReloadMechanics:
    def test_requested_reload_loads_again_even_when_nothing_changed(self):
        loads = []
        app = create_app(ServeSettings(model="fake"), source=FakeSource(),
                         factory=lambda folder: loads.append(folder) or FakePredictor())
        with started(app) as client:
            first = client.get("/readyz").json()
            app.state.holder.request_reload()  # what SIGHUP calls
            wait_for(lambda: client.get("/readyz").json()["reloads"] == 2, timeout=10)
            assert len(loads) == 2 and client.get("/readyz").json()["loaded_at"] > first["loaded_at"]

    def test_polling_follows_a_revision_change_and_not_a_steady_one(self):
        source = FakeSource()
        app = create_app(ServeSettings(model="fake", poll_s=0.05), source=source,
                         factory=lambda folder: FakePredictor())
        with started(app) as client:
            holder = app.state.holder
            time.sleep(0.3)  # several polls of an unchanged revision
            assert holder.reloads == 1
            source.rev = "2"
            wait_for(lambda: client.get("/readyz").json()["model"]["version"] == "2", timeout=10)
            assert 'liveness_model_info{name="fake",version="2"} 1.0' in client.get("/metrics").text
            assert 'version="1"' not in client.get("/metrics").text

    def test_failing_checks_keep_the_current_model_serving(self):
        app = create_app(ServeSettings(model="fake", poll_s=0.05), source=FlakySource(),
                         factory=lambda folder: FakePredictor())
        with started(app) as client:
            wait_for(lambda: app.state.holder.last_error, timeout=10)
            ready = client.get("/readyz").json()
            assert ready["model"]["version"] == "1" and "registry unreachable" in ready["last_error"]
            assert client.post("/v1/liveness", content=b"\xff\xd8\xff").status_code in {415, 422}
            assert 'liveness_model_reloads_total{outcome="failure"}' in client.get("/metrics").text


@pytest.mark.slow
def test_new_weights_in_a_local_folder_are_picked_up_by_polling(tmp_path, face_jpeg, one_torch_thread):
    folder = make_model_dir(tmp_path / "bundle", seed=0)
    app = create_app(ServeSettings(model=str(folder), poll_s=0.2))
    with started(app) as client:
        before, version = score(client, face_jpeg)
        make_model_dir(folder, seed=1)  # rewrite generator.pt in place
        wait_for(lambda: app.state.holder.reloads >= 2, timeout=60)
        after, version_after = score(client, face_jpeg)
        assert version == version_after == "local" and after != pytest.approx(before)


@pytest.mark.slow
def test_moving_the_champion_alias_reloads_the_new_version(tmp_path, face_jpeg, one_torch_thread, monkeypatch):
    """Two registered versions with different random weights; moving @champion swaps the served model."""
    from liveness.registry.register import register

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    write_metrics(tmp_path / "reports/metrics.json")
    params = tiny_params(curate={"crop": {"size": 32}, "detection": {"device": "cpu"}},
                         register={"tracking_uri": uri, "model_dir": str(tmp_path / "runs/train"),
                                   "metrics": str(tmp_path / "reports/metrics.json")})
    make_model_dir(tmp_path / "runs/train", seed=0)
    first = register(params)
    make_model_dir(tmp_path / "runs/train", seed=1)
    second = register(params)
    registry = MlflowClient(uri)
    registry.set_registered_model_alias("liveness", "champion", first.version)

    app = create_app(ServeSettings(model="models:/liveness@champion", tracking_uri=uri, poll_s=0.2))
    with started(app) as client:
        before, version = score(client, face_jpeg)
        assert version == first.version == "1"
        registry.set_registered_model_alias("liveness", "champion", second.version)
        wait_for(lambda: client.get("/readyz").json()["model"]["version"] == "2", timeout=60)
        after, version = score(client, face_jpeg)
        assert version == "2" and after != pytest.approx(before)
        downloads = list(app.state.holder._workdir.iterdir())
        assert len(downloads) == 1, "the replaced version's download is deleted"
        assert client.get("/readyz").json()["model"]["uri"] == "models:/liveness@champion"


class TestResolve:
    def test_model_uris_parse_and_local_paths_do_not(self):
        assert parse_model_uri("models:/liveness@champion") == ModelRef("liveness", "champion", None)
        assert parse_model_uri("models:/liveness/3") == ModelRef("liveness", None, "3")
        assert parse_model_uri("runs/train") is None
        with pytest.raises(ValueError, match="models:/<name>@<alias>"):
            parse_model_uri("models:/liveness")

    def test_a_pyfunc_folder_leads_to_its_bundle_artifact(self, tmp_path):
        bundle = make_model_dir(tmp_path / "model/artifacts/bundle")
        (tmp_path / "model/MLmodel").write_text(
            "flavors:\n  python_function:\n    artifacts:\n      bundle:\n        path: artifacts/bundle\n")
        assert bundle_folder(tmp_path / "model") == bundle
        assert bundle_folder(bundle) == bundle
        shutil.rmtree(bundle)
        with pytest.raises(FileNotFoundError, match="no 'bundle' artifact"):
            bundle_folder(tmp_path / "model")

    def test_local_revision_changes_when_the_weights_do(self, tmp_path):
        folder = make_model_dir(tmp_path / "bundle", seed=0)
        source = LocalSource(folder)
        before = source.revision()
        assert source.revision() == before and source.version(before) == "local"
        (folder / "generator.pt").write_bytes((folder / "generator.pt").read_bytes() + b"\0")
        assert source.revision() != before
