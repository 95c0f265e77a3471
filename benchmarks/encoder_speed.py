"""Image-encoder speed: open_clip/torch fp32 vs ONNX Runtime fp32 vs ONNX Runtime INT8, interleaved in one run.

    python benchmarks/encoder_speed.py                       # ViT-B-32 (random weights) and the bundled backbone
    python benchmarks/encoder_speed.py --backbones bundled --rounds 3

Each round runs every (backbone, engine, batch) once, in turn, so that all of them see the same machine load;
the table reports the median over rounds and ratios against torch fp32 and ORT fp32.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgecl.backbones import build_backbone
from edgecl.encoder import Encoder
from export import ExportOptions, export_model

Runner = Callable[[np.ndarray], object]


def _runners(backbone_id: str, work: Path, threads: int) -> dict[str, Runner]:
    with contextlib.redirect_stdout(io.StringIO()):
        built = build_backbone(backbone_id)
    export_model(backbone_id, work, ExportOptions(keep_fp32=True))
    tower = built.image_tower.eval()
    ort32 = Encoder(work, precision="fp32", threads=threads)
    ort8 = Encoder(work, precision="int8", threads=threads)

    def run_torch(x: np.ndarray) -> object:
        with torch.inference_mode():
            return tower(torch.from_numpy(x))

    return {"torch fp32": run_torch, "ORT fp32": ort32.encode_pixels, "ORT INT8": ort8.encode_pixels}


def _measure(runner: Runner, pixels: np.ndarray) -> float:
    start = time.perf_counter()
    runner(pixels)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="openclip:ViT-B-32,bundled", help="comma-separated backbone ids")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    times: dict[tuple[str, str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        setups = {}
        for i, backbone in enumerate(args.backbones.split(",")):
            print(f"exporting {backbone} ...", flush=True)
            runners = _runners(backbone, Path(tmp) / f"m{i}", args.threads)
            size = Encoder(Path(tmp) / f"m{i}").preprocess_spec.size
            setups[backbone] = (
                runners,
                {b: rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in batches},
            )
        for runners, inputs in setups.values():  # warm-up: first calls allocate and pick kernels
            for runner in runners.values():
                for x in inputs.values():
                    runner(x)
        for _ in range(args.rounds):
            for backbone, (runners, inputs) in setups.items():
                for batch, x in inputs.items():
                    for engine, runner in runners.items():
                        times.setdefault((backbone, engine, batch), []).append(_measure(runner, x))
    _report(times, args)


def _report(times: dict[tuple[str, str, int], list[float]], args: argparse.Namespace) -> None:
    print(f"\nimages/s, median of {args.rounds} interleaved rounds, {args.threads} threads, torch {torch.__version__}")
    print(f"{'backbone':<22} {'batch':>5} {'engine':<11} {'img/s':>8} {'x torch fp32':>13} {'x ORT fp32':>11}")
    for (backbone, engine, batch), samples in times.items():
        med = statistics.median(samples)
        torch_med = statistics.median(times[(backbone, "torch fp32", batch)])
        ort_med = statistics.median(times[(backbone, "ORT fp32", batch)])
        print(
            f"{backbone:<22} {batch:>5} {engine:<11} {batch / med:8.1f} {torch_med / med:12.2f}x {ort_med / med:10.2f}x"
        )


if __name__ == "__main__":
    main()
