"""Measure every INT8 recipe of a tower: cosine to fp32 on real images, and images/s, interleaved in one run.

    python benchmarks/quant_recipes.py --backbone bundled
    python benchmarks/quant_recipes.py --backbone openclip:ViT-B-32

The candidate order in export/quantize.py (RECIPES, fastest first) comes from this script's output.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecl.backbones import build_backbone
from edgecl.export.calibration import calibration_sets
from edgecl.export.onnx_export import IMAGE_INPUT, export_image_tower
from edgecl.export.quant_source import QuantSource
from edgecl.export.quantize import RECIPES, quantize, run_batched, session
from edgecl.vectors import row_cosines


def _time_batch(sess: object, pixels: np.ndarray) -> float:
    start = time.perf_counter()
    sess.run(None, {IMAGE_INPUT: pixels})  # type: ignore[attr-defined]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="bundled")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        built = build_backbone(args.backbone)
    recipes = RECIPES[built.image_arch]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export_image_tower(built, work / "fp32.onnx")
        calib, evaluate, source, _ = calibration_sets(built.preprocess, None)
        fp32 = QuantSource(work / "fp32.onnx", calib, IMAGE_INPUT)  # the recipes share its preparation and ranges
        sessions = {"fp32": session(work / "fp32.onnx")}
        reference = run_batched(sessions["fp32"], {IMAGE_INPUT: evaluate})
        cosines = {"fp32": 1.0}
        for i, recipe in enumerate(recipes):
            path = work / f"{i}.onnx"
            start = time.perf_counter()
            quantize(fp32, path, recipe)
            print(f"quantised {recipe.name} in {time.perf_counter() - start:.1f}s", flush=True)
            sessions[recipe.name] = session(path)
            cosines[recipe.name] = float(
                row_cosines(reference, run_batched(sessions[recipe.name], {IMAGE_INPUT: evaluate})).mean()
            )
        batch = evaluate[: args.batch]
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for sess in sessions.values():
            _time_batch(sess, batch)  # warm-up
        for _ in range(args.rounds):  # interleaved rounds: every recipe sees the same machine load
            for name, sess in sessions.items():
                times[name].append(_time_batch(sess, batch))
    base = statistics.median(times["fp32"])
    print(f"\n{args.backbone} image tower, batch {args.batch}, median of {args.rounds} interleaved rounds")
    print(f"evaluation images: {len(evaluate)} ({source})")
    print(f"{'recipe':<40} {'img/s':>8} {'time vs fp32':>13} {'cosine':>8}")
    for name in sessions:
        med = statistics.median(times[name])
        print(f"{name:<40} {args.batch / med:8.1f} {med / base:12.2f}x {cosines[name]:8.4f}")


if __name__ == "__main__":
    main()
