"""Prefect task runners from params, and a chunk mapper that runs curation chunks as Prefect tasks."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from prefect import task
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from liveness.config import RunnerParams
from liveness.data.curate import CropOutcome, process_chunk


def task_runner_for(runner: RunnerParams) -> TaskRunner:
    """sequential / threads / processes locally, or Dask (a local cluster, or ``dask_address``)."""
    if runner.kind == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    if runner.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=runner.workers)
    if runner.kind == "processes":
        return ProcessPoolTaskRunner(max_workers=runner.workers)
    from prefect_dask import DaskTaskRunner

    if runner.dask_address:
        return DaskTaskRunner(address=runner.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": runner.workers, "threads_per_worker": 1, "processes": True})


@task(name="curate-chunk", retries=2, retry_delay_seconds=2)
def curate_chunk(records, settings) -> list[CropOutcome]:
    """Per-image work for one chunk; retried on transient I/O failures (bad images are rows, not errors)."""
    return process_chunk(records, settings)


def prefect_mapper(window: int):
    """Submit chunks as Prefect tasks on the flow's runner, at most ``window`` ahead; yield results in order."""

    def run(function, chunks, settings) -> Iterator[list[CropOutcome]]:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(curate_chunk.submit(chunk, settings))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    return run
