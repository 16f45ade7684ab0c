"""The curate and prepare-spoof stages as plain functions: params section in, shards + manifest + report out.

Orchestrators (the Prefect flows in ``pipeline/``) pass their own chunk mapper; without one the work runs in a
local process pool.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from liveness.config import CurateParams, Params, SpoofParams
from liveness.data.curate import (
    ChunkMapper,
    CurationResult,
    CurationSettings,
    chunked,
    curate,
    is_synthetic_root,
    map_in_order,
    process_pool_mapper,
)
from liveness.data.records import SourceRecord
from liveness.data.report import write_curation_report
from liveness.data.sources import iter_records
from liveness.runtime import resolve_device

LIVE_KIND, SPOOF_KIND = "live", "spoof"


def settings_for(section: CurateParams | SpoofParams, kind: str) -> CurationSettings:
    device = resolve_device(section.detection.device, "detection.device")
    thresholds = None
    if kind == LIVE_KIND:
        thresholds = section.quality
    return CurationSettings(
        kind=kind,
        crop_size=section.crop.size,
        context=section.crop.context,
        multi_face=section.detection.multi_face,
        dominance=section.detection.dominance,
        database_hint=section.detection.database_hint,
        video_frames=section.video_frames,
        max_pixels=section.max_pixels,
        detector_device=device,
        min_face_size=section.detection.min_face_size,
        detect_max_side=section.detection.max_side,
        search=section.detection.detector_search(),
        thresholds=thresholds,
    )


def collect_records(section: CurateParams | SpoofParams) -> list[SourceRecord]:
    """Every record of every configured source, flagged synthetic when its root carries the marker."""
    if not section.sources:
        raise ValueError("no sources configured: add at least one entry under sources: in params.yaml")
    records: list[SourceRecord] = []
    for source in section.sources:
        synthetic = is_synthetic_root(source.root)
        for record in iter_records(source.name, Path(source.root), **source.options):
            if synthetic:
                record = dataclasses.replace(record, extra={**record.extra, "synthetic": True})
            records.append(record)
    return records


def local_mapper(section: CurateParams | SpoofParams) -> ChunkMapper:
    if section.runner.kind == "sequential" or section.runner.workers == 1:
        return map_in_order
    return process_pool_mapper(section.runner.workers)


def run_curation(section: CurateParams | SpoofParams, kind: str, seed: int, report_dir: Path,
                 mapper: ChunkMapper | None = None, progress: bool = True) -> CurationResult:
    """Curate the section's sources into ``section.out_dir`` and write the report into ``report_dir``."""
    records = collect_records(section)
    settings = settings_for(section, kind)
    chunk_size = section.runner.chunk_size
    with Progress(TextColumn(f"[bold]{kind} curation"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress) as bar:
        task = bar.add_task(kind, total=len(chunked(records, chunk_size)))
        result = curate(
            records, settings, Path(section.out_dir), dict(section.splits), seed,
            shard_size=section.shard_size, chunk_size=chunk_size, mapper=mapper or local_mapper(section),
            on_chunk=lambda _: bar.advance(task),
        )
    synthetic = bool(result.manifest["synthetic"].any())
    title = "Live-face curation" if kind == LIVE_KIND else "Spoof-set preparation"
    write_curation_report(result.manifest, result.accepted_samples, result.rejected_samples, report_dir, title, synthetic)
    return result


def generate_demo(params: Params, out_dir: Path | None = None, progress: bool = True, workers: int = 1) -> dict:
    """The SYNTHETIC demo dataset that ``params.demo`` sizes, seeded by ``base.seed``; ``workers`` processes
    render identities in parallel and write the same bytes as one."""
    from liveness.data.synthetic.writer import generate_demo_dataset

    demo = params.demo
    return generate_demo_dataset(
        out_dir or demo.out_dir, seed=params.base.seed, identities_live=demo.identities_live,
        images_per_identity=demo.images_per_identity, identities_spoof=demo.identities_spoof,
        live_per_spoof_subject=demo.live_per_spoof_subject, attacks_per_species=demo.attacks_per_species,
        size=demo.size, progress=progress, workers=workers,
    )
