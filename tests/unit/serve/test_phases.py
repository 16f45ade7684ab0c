"""Where a request's time goes: the phase histogram, the worker pool that times jobs, and its torch threads."""

from __future__ import annotations

import types

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from liveness.serve.metrics import PHASES, ServeMetrics
from liveness.serve.model import InferenceExecutor, torch_threads_per_worker


def phase_counts(text: str) -> dict[str, float]:
    return {sample.labels["phase"]: sample.value for family in text_string_to_metric_families(text)
            if family.name == "liveness_phase_duration_seconds" for sample in family.samples
            if sample.name.endswith("_count")}


def holder_serving(torch_threads: int | None):
    """A stand-in ModelHolder whose current model asks for ``torch_threads`` (None: a predictor without config)."""
    config = None if torch_threads is None else types.SimpleNamespace(
        detection=types.SimpleNamespace(torch_threads=torch_threads))
    return types.SimpleNamespace(current=types.SimpleNamespace(predictor=types.SimpleNamespace(config=config)))


class TestTorchThreadsPerWorker:
    @pytest.mark.parametrize(("setting", "workers", "cores", "expected"), [
        (3, 2, 16, 3), (0, 2, 16, 8), (0, 2, 2, 1), (0, 3, 2, 1), (0, 1, 4, 4)])
    def test_a_positive_setting_wins_else_the_cores_are_shared_out(self, setting, workers, cores, expected):
        assert torch_threads_per_worker(setting, workers, cores) == expected


class TestServeMetrics:
    def test_every_phase_is_exported_from_the_start(self):
        assert phase_counts(ServeMetrics().exposition().decode()) == {phase: 0.0 for phase in PHASES}

    def test_observe_phase_counts_and_sums(self):
        metrics = ServeMetrics()
        metrics.observe_phase("detect", 0.25)
        metrics.observe_phase("detect", 0.5)
        assert phase_counts(metrics.exposition().decode())["detect"] == 2.0


class TestInferenceExecutor:
    def test_jobs_are_timed_as_queue_and_work(self):
        metrics = ServeMetrics()
        with InferenceExecutor(2, holder_serving(1), metrics) as pool:
            assert pool.submit(lambda x: x + 1, 41).result() == 42
        counts = phase_counts(metrics.exposition().decode())
        assert counts["queue"] == counts["work"] == 1.0

    def test_each_worker_runs_torch_with_the_served_models_thread_count(self):
        with InferenceExecutor(2, holder_serving(1), ServeMetrics()) as pool:
            assert pool.submit(torch.get_num_threads).result() == 1

    def test_without_a_config_the_cores_are_shared_out(self):
        with InferenceExecutor(1, holder_serving(None), ServeMetrics()) as pool:
            assert pool.submit(torch.get_num_threads).result() == torch_threads_per_worker(0, 1)

    def test_a_failing_job_still_counts_its_work(self):
        metrics = ServeMetrics()
        with InferenceExecutor(1, holder_serving(1), metrics) as pool:
            with pytest.raises(ZeroDivisionError):
                pool.submit(lambda: 1 / 0).result()
        assert phase_counts(metrics.exposition().decode())["work"] == 1.0


@pytest.mark.slow
def test_a_served_request_records_every_phase(client, face_jpeg):
    before = phase_counts(client.get("/metrics").text)
    assert client.post("/v1/liveness", content=face_jpeg, headers={"content-type": "image/jpeg"}).status_code == 200
    after = phase_counts(client.get("/metrics").text)
    assert all(after[phase] == before[phase] + 1 for phase in PHASES), (before, after)
