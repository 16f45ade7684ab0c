"""The ``liveness`` command line: one entry point for every stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console

from liveness.config import ConfigError, load_params

app = typer.Typer(
    help="One-class silent face liveness: train on live faces only, score spoofs by latent inconsistency.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
identity_app = typer.Typer(help="The frozen identity network f (VGGFace2 InceptionResnetV1).", no_args_is_help=True)
app.add_typer(identity_app, name="identity")
console = Console(stderr=True, soft_wrap=True)
# Under torchrun only rank 0 talks; the other ranks' consoles stay quiet.
quiet_console = Console(stderr=True, quiet=True)


def _rank_console() -> Console:
    return console if int(os.environ.get("RANK", "0")) == 0 else quiet_console


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _parse_overrides(pairs: list[str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--set expects KEY=VALUE (for example train.epochs=2), got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


@app.command()
def train(
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml to read (sections base, model, identity, loss, train).")] = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Output folder: checkpoints/, metrics.jsonl, generator.pt, summary.json.")] = Path("runs/train"),
    data: Annotated[Optional[str], typer.Option(help="Curated folder (manifest.parquet + shards/; default train.data), 'smoke' for built-in synthetic smoke crops, or a .npy of uint8 (N, H, W, 3) crops.")] = None,
    smoke_count: Annotated[int, typer.Option(help="How many smoke crops to generate when --data smoke.")] = 256,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a param, e.g. --set train.epochs=2 (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoints/last.pt when it exists.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar with losses and img/s.")] = True,
) -> None:
    """Train G and D on live crops (alternating D/G steps, Adam, cosine annealing).

    Runs on CUDA with bf16 when present, else on CPU in fp32. For several GPUs launch it with
    `torchrun --nproc_per_node N -m liveness train ...`; train.batch_size is the global batch.
    Ctrl-C writes a checkpoint of the last whole step; run the same command again to resume.
    """
    from liveness.train.stage import training_dataset
    from liveness.model.identity import IdentityWeightsError
    from liveness.train.checkpoint import CheckpointError
    from liveness.train.trainer import Trainer, TrainingDataError, TrainingInterrupted

    say = _rank_console()
    try:
        params = load_params(params_path, _parse_overrides(overrides or []))
        dataset, description = training_dataset(params, data, smoke_count)
        say.print(f"data: {description}")
        trainer = Trainer(params, out, progress=progress)
        if trainer.identity is not None and trainer.identity.stand_in:
            say.print("identity: onet, an offline STAND-IN for the identity network (not identity features)")
        elif trainer.identity is None:
            say.print("identity: none, the identity loss L_id is dropped for this run")
        result = trainer.fit(dataset, resume=resume)
    except TrainingInterrupted as stop:
        _fail(str(stop), code=130)
    except (ConfigError, IdentityWeightsError, CheckpointError, TrainingDataError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
    losses = " ".join(f"{name}={value:.4f}" for name, value in result.final_losses.items())
    say.print(f"done: {result.epochs} epochs, {result.steps} steps in {result.seconds:.1f}s. {losses}")
    say.print(f"outputs: {out}/generator.pt, {out}/summary.json, {out}/metrics.jsonl, {out}/checkpoints/last.pt")


@app.command("demo-data")
def demo_data(
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml whose demo section sizes the set.")] = Path("params.yaml"),
    out: Annotated[Optional[Path], typer.Option(help="Output folder; default demo.out_dir from params.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a param, e.g. --set demo.identities_live=200.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate the SYNTHETIC demo dataset: procedural faces (CelebA layout) and simulated print, screen-replay
    and cut-photo attacks (CelebA-Spoof layout). Deterministic from base.seed; reruns with the same params do
    nothing."""
    from liveness.data.stage import generate_demo

    try:
        params = load_params(params_path, _parse_overrides(overrides or []))
    except ConfigError as error:
        _fail(str(error))
    destination = out or params.demo.out_dir
    summary = generate_demo(params, destination, progress)
    console.print(f"SYNTHETIC demo data in {destination}: {summary}")


@identity_app.command("fetch")
def identity_fetch(
    dest: Annotated[Optional[Path], typer.Option(help="Where to write the weights; default: facenet-pytorch's torch cache path.")] = None,
    url: Annotated[Optional[str], typer.Option(help="Source URL (file:// works for a local copy).")] = None,
) -> None:
    """Download the VGGFace2 InceptionResnetV1 weights (needs internet), check they load, and put them in place."""
    from liveness.model.identity import VGGFACE2_URL, IdentityWeightsError, fetch_vggface2_weights

    try:
        path = fetch_vggface2_weights(dest, url or VGGFACE2_URL)
    except IdentityWeightsError as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"could not download {url or VGGFACE2_URL}: {error}. Without internet, copy the file by hand.")
    console.print(f"VGGFace2 weights ready at {path}")


@identity_app.command("check")
def identity_check(
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml whose identity section to check.")] = Path("params.yaml"),
) -> None:
    """Load the identity network the params select and report what it is."""
    from liveness.model.identity import IdentityWeightsError, build_identity_network

    try:
        params = load_params(params_path)
        network = build_identity_network(params.identity.backbone, params.identity.weights)
    except (ConfigError, IdentityWeightsError) as error:
        _fail(str(error))
    if network is None:
        console.print("identity.backbone: none (the identity loss is dropped)")
    else:
        kind = "offline stand-in, not identity" if network.stand_in else "identity embedding"
        console.print(f"identity.backbone: {network.name}, {network.embedding_dim}-d {kind}, input {network.input_size} px")


if __name__ == "__main__":
    app()
