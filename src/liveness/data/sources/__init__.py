"""Source adapters: read each public face database in its own on-disk layout and yield SourceRecords.

Each adapter is ``iter_<name>(root, **options)`` and yields records in a deterministic (sorted) order:
one per image (``is_video=False``), or one per video (``is_video=True``; ``liveness.data.video`` samples
its frames). A record's ``path`` is ``root`` joined with the file's place in the database.

Adapters read layouts and labels; they do not open images (CelebA-Spoof reads image headers for box
scaling). So a file that a label file lists but the disk lacks is still yielded: the curation step
rejects it with a reason, where it is counted and reported, rather than vanishing here. A label line that
cannot be parsed, or labels that contradict each other, stop the read with a SourceError naming the
file and line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

from liveness.data.records import SourceRecord
from liveness.data.sources.common import SourceError
from liveness.data.sources.live import iter_casia_webface, iter_celeba, iter_ffhq, iter_folder, iter_lfw, iter_vggface2
from liveness.data.sources.spoof import (
    iter_casia_fasd,
    iter_celeba_spoof,
    iter_csv_manifest,
    iter_msu_mfsd,
    iter_oulu_npu,
    iter_replay_attack,
    iter_siw,
)

ADAPTERS: dict[str, Callable[..., Iterator[SourceRecord]]] = {
    "folder": iter_folder,
    "celeba": iter_celeba,
    "ffhq": iter_ffhq,
    "lfw": iter_lfw,
    "vggface2": iter_vggface2,
    "casia_webface": iter_casia_webface,
    "celeba_spoof": iter_celeba_spoof,
    "oulu_npu": iter_oulu_npu,
    "replay_attack": iter_replay_attack,
    "casia_fasd": iter_casia_fasd,
    "msu_mfsd": iter_msu_mfsd,
    "siw": iter_siw,
    "csv_manifest": iter_csv_manifest,
}

__all__ = ["ADAPTERS", "SourceError", "iter_records"]


def iter_records(source: str, root: Path, **options) -> Iterator[SourceRecord]:
    """The records of database ``source`` at ``root``; a bad source name or option fails here, before any read."""
    adapter = ADAPTERS.get(source)
    if adapter is None:
        raise SourceError(f"unknown source {source!r}; valid sources: {', '.join(sorted(ADAPTERS))}")
    accepted = [name for name in inspect.signature(adapter).parameters if name != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SourceError(
            f"source {source!r} has no option {', '.join(unknown)}; its options: {', '.join(accepted) or 'none'}"
        )
    return adapter(Path(root), **options)
