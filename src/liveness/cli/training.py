"""Training commands: ``train``, ``demo-data``, ``identity fetch|check`` and ``ablate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from liveness.cli.common import _fail, _parse_overrides, _rank_console, app, console, identity_app
from liveness.config import ConfigError, load_params


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
    from liveness.train.stage import training_dataset, validation_crops
    from liveness.model.identity import IdentityWeightsError
    from liveness.train.checkpoint import CheckpointError
    from liveness.train.trainer import Trainer, TrainingDataError, TrainingInterrupted

    say = _rank_console()
    try:
        params = load_params(params_path, _parse_overrides(overrides or []))
        dataset, description = training_dataset(params, data, smoke_count)
        validation, held_out = validation_crops(params, data)
        say.print(f"data: {description}; reconstruction quality on {held_out}")
        trainer = Trainer(params, out, progress=progress)
        if trainer.identity is not None and trainer.identity.stand_in:
            say.print("identity: onet, an offline STAND-IN for the identity network (not identity features)")
        elif trainer.identity is None:
            say.print("identity: none, the identity loss L_id is dropped for this run")
        result = trainer.fit(dataset, resume=resume, validation=validation)
    except TrainingInterrupted as stop:
        _fail(str(stop), code=130)
    except (ConfigError, IdentityWeightsError, CheckpointError, TrainingDataError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
    losses = " ".join(f"{name}={value:.4f}" for name, value in result.final_losses.items())
    say.print(f"done: {result.epochs} epochs, {result.steps} steps in {result.seconds:.1f}s. {losses}")
    if result.reconstruction:
        say.print(f"held-out reconstruction: PSNR {result.reconstruction['psnr_db']:.2f} dB, "
                  f"SSIM {result.reconstruction['ssim']:.3f}")
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
        network = build_identity_network(params.identity.backbone, params.identity.weights, params.curate.crop.context)
    except (ConfigError, IdentityWeightsError) as error:
        _fail(str(error))
    if network is None:
        console.print("identity.backbone: none (the identity loss is dropped)")
    else:
        real = "identity embedding (a real, pretrained face-recognition network)"
        kind = "offline stand-in, not identity" if network.stand_in else real
        weights = f", weights {network.weights}" if network.weights is not None else ""
        console.print(f"identity.backbone: {network.name}, {network.embedding_dim}-d {kind}, "
                      f"input {network.input_size} px{weights}")


@app.command()
def ablate(
    params_path: Annotated[Path, typer.Option("--params", help="Base params.yaml; each ablation overrides a few keys of it.")] = Path("params.yaml"),
    rows: Annotated[str, typer.Option(help="Comma-separated ablation names (see liveness.evaluate.ablation.ABLATIONS), or 'all'.")] = "baseline,latent_stop_gradient,latent_relative",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; every row runs once per seed.")] = "0,1,2",
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs of the baseline (default train.epochs); half/double_training scale it.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for each run and ablations.json / ablations.md.")] = Path("reports/ablations"),
    bootstrap_resamples: Annotated[int, typer.Option(help="Bootstrap resamples of each run's test CIs (small: the table uses AUCs).")] = 50,
    recalibrate: Annotated[bool, typer.Option(help="Keep each run's trained model (from an earlier ablate with the same --out) and only calibrate again: for a change of the scores, not of training.")] = False,
) -> None:
    """Train and calibrate each ablation row for each seed on the curated data; every run is an MLflow run.

    Prints and writes the table: per score, the worst attack species' AUC on the calibration split (mean ± std
    over seeds), and the test AUC per species of the score each run shipped. Needs `dvc repro curate
    prepare_spoof` (or the whole pipeline) first.
    """
    from liveness.evaluate.ablation import ABLATIONS, run_ablations

    names = list(ABLATIONS) if rows == "all" else [name.strip() for name in rows.split(",") if name.strip()]
    try:
        seed_list = [int(seed) for seed in seeds.split(",") if seed.strip()]
    except ValueError:
        _fail(f"--seeds expects comma-separated integers, got {seeds!r}")
    unknown = [name for name in names if name not in ABLATIONS]
    if unknown or not names:
        _fail(f"unknown ablations {unknown or names}; choose from {', '.join(ABLATIONS)} or 'all'")
    try:
        run_ablations(params_path, names, seed_list, out, epochs, bootstrap_resamples, recalibrate=recalibrate,
                      on_run=lambda r: console.print(f"{r.row} seed {r.seed}: shipped {r.shipped_score}, test AUC "
                                                     + ", ".join(f"{k} {v:.3f}" for k, v in r.test_per_species.items())))
    except (ConfigError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
    typer.echo((out / "ablations.md").read_text())
