"""Inference cost of each width profile: GFLOP per face and 1-thread latency per face, torch and onnxruntime.

What is timed is the scoring graph (``liveness.export.onnx.ScoringGraph``): E1, both decoders, the
recombination head, E2, then the score (``latent_bg``, the patent's Δ, by default), on one face (batch 1), on
one CPU thread: ``torch.set_num_threads(1)`` for torch, ``intra_op_num_threads=1`` for onnxruntime. The ONNX
graph is the one ``liveness export onnx`` writes (same exporter and parity check). Weights are random: the
latency of these plain conv stacks does not depend on the weight values.

All (profile, backend) pairs are timed round-robin, one call each per round, so a load change on a shared
machine hits every pair alike; each figure is the median over the rounds. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` as in ``bench/train_throughput.py`` (2 FLOPs per multiply-add,
convolutions and matmuls only).

Targets (the issue): the ``deploy`` profile at least 8x faster than ``patent`` at 128 px, and at most 0.5 GFLOP
per face. For scale, a published mobile anti-spoofing network needs about 0.08 GFLOP per face.

Prints ONE JSON object on stdout; diagnostics go to stderr. Examples::

    .venv/bin/python bench/infer_latency.py
    .venv/bin/python bench/infer_latency.py --profiles tiny deploy --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from liveness.bundle import INPUT_NAME, OUTPUT_NAME, make_session
from liveness.export.onnx import DEFAULT_OPSET, ScoringGraph, export_scoring_graph
from liveness.model.generator import Generator
from liveness.model.profiles import PROFILES, get_profile

DEFAULT_PROFILES = ("patent", "small", "deploy")
TARGET_SPEEDUP = 8.0  # patent / deploy latency, 1 thread
TARGET_DEPLOY_GFLOP = 0.5
REFERENCE_MOBILE_GFLOP = 0.08
RANDOM_WEIGHTS = "random init (latency does not depend on the weight values)"


def log(message: str) -> None:
    print(f"[infer_latency] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="GFLOP and 1-thread latency per face of each width profile, "
                                                 "torch and onnxruntime; prints one JSON object on stdout.")
    parser.add_argument("--profiles", nargs="+", choices=sorted(PROFILES), default=list(DEFAULT_PROFILES),
                        help=f"width profiles, each at its own image_size (default: {' '.join(DEFAULT_PROFILES)})")
    parser.add_argument("--size", action="append", default=[], metavar="PROFILE=PX",
                        help="another input size for a profile, e.g. --size small=64 (repeatable)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds; one call per pair each (default: 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default: 2)")
    parser.add_argument("--score", default="latent_bg", help="score of the graph (default: latent_bg, the patent's Δ)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for weights and input (default: 0)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup at least 0")
    sizes = {name: PROFILES[name].image_size for name in args.profiles}
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in sizes or not value.isdigit() or int(value) % 4 or int(value) < 8:
            parser.error(f"--size expects PROFILE=PX for a chosen profile, PX divisible by 4, got {item!r}")
        sizes[name] = int(value)
    args.sizes = sizes
    return args


def gflop_per_face(graph: ScoringGraph, image: torch.Tensor) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        graph(image)
    return counter.get_total_flops() / image.shape[0] / 1e9


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    calls: dict[tuple[str, str], Callable[[], object]] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, size in args.sizes.items():
        generator = Generator(get_profile(name)).eval()
        graph = ScoringGraph(generator, args.score).eval()
        image = torch.rand(1, 3, size, size) * 2 - 1
        log(f"{name} @ {size} px: counting FLOPs, exporting to ONNX")
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
            exported = export_scoring_graph(generator, args.score, size, args.opset)
        session = make_session(exported.model, threads=1)
        feed = {INPUT_NAME: image.numpy()}
        with torch.no_grad():
            torch_score = float(graph(image)[0])
        onnx_score = float(session.run([OUTPUT_NAME], feed)[0][0])
        results[name] = {
            "image_size": size,
            "gflop_per_face": round(gflop_per_face(graph, image), 4),
            "parameters": sum(p.numel() for p in generator.parameters()),
            "onnx_exporter": exported.exporter,
            "onnx_max_abs_diff": float(f"{max(exported.max_abs_diff, abs(onnx_score - torch_score)):.3g}"),
        }
        calls[(name, "torch")] = lambda graph=graph, image=image: _torch_call(graph, image)
        calls[(name, "onnxruntime")] = lambda session=session, feed=feed: session.run([OUTPUT_NAME], feed)

    log(f"timing {len(calls)} (profile, backend) pairs round-robin: {args.warmup} warmup + {args.rounds} rounds")
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    for round_index in range(args.warmup + args.rounds):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            if round_index >= args.warmup:
                samples[key].append((time.perf_counter() - start) * 1000)
    for (name, backend), values in samples.items():
        results[name][f"{backend}_ms_per_face"] = round(statistics.median(values), 3)
        results[name][f"{backend}_ms_per_face_min"] = round(min(values), 3)

    output: dict[str, Any] = {
        "profiles": results,
        "batch": 1,
        "threads": 1,
        "rounds": args.rounds,
        "score": args.score,
        "weights": RANDOM_WEIGHTS,
    }
    if "patent" in results and "deploy" in results:
        patent, deploy = results["patent"], results["deploy"]
        ratios = {backend: round(patent[f"{backend}_ms_per_face"] / deploy[f"{backend}_ms_per_face"], 2)
                  for backend in ("torch", "onnxruntime")}
        output["patent_over_deploy"] = {**{f"{k}_latency": v for k, v in ratios.items()},
                                        "gflop": round(patent["gflop_per_face"] / deploy["gflop_per_face"], 1)}
        output["targets"] = {"speedup_min": TARGET_SPEEDUP, "deploy_gflop_max": TARGET_DEPLOY_GFLOP,
                             "met": min(ratios.values()) >= TARGET_SPEEDUP
                             and deploy["gflop_per_face"] <= TARGET_DEPLOY_GFLOP}
    output.update({
        "reference_mobile_gflop_per_face": REFERENCE_MOBILE_GFLOP,
        "cpu": f"{platform.machine()}, {os.cpu_count()} logical cores",
        "torch": torch.__version__,
        "onnxruntime": _ort_version(),
        "note": "latency = median ms per face over round-robin rounds, batch 1, one thread; FLOPs from "
                "FlopCounterMode (2/MAC, convs+matmuls) on the scoring graph (no clear-face head)",
    })
    return output


def _torch_call(graph: ScoringGraph, image: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return graph(image).numpy()


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(run(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
