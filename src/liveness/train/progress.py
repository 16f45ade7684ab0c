"""A rich progress bar showing the losses and img/s; silent off rank 0 or when disabled."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, total_steps: int, completed: int, enabled: bool, console: Console | None = None) -> None:
        self._progress = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self._task = self._progress.add_task("train", total=total_steps, completed=completed, epoch="-", status="")

    def __enter__(self) -> "TrainingProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, step: int, epoch: int, losses: dict[str, float] | None = None, images_per_second: float | None = None):
        if self._progress is None:
            return
        fields = {"epoch": epoch}
        if losses is not None:
            shown = " ".join(f"{name.removeprefix('loss_')}={value:.4g}" for name, value in losses.items())
            rate = f" | {images_per_second:.1f} img/s" if images_per_second is not None else ""
            fields["status"] = shown + rate
        self._progress.update(self._task, completed=step, **fields)
