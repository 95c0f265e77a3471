"""Measure every INT8 recipe of a tower: cosine to fp32 on real images, and images/s, interleaved in one run.

    python benchmarks/quant_recipes.py --backbone bundled
    python benchmarks/quant_recipes.py --backbone openclip:ViT-B-32

The candidate order in export/quantize.py (RECIPES, fastest first) comes from this script's output. Writes
benchmarks/results/quant-recipes-<backbone>-<int8_isa>.json and, beside it, the .md that docs include
(`--report-only` rewrites the .md from the JSON). Every run rewrites them: give --out elsewhere for a trial.
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
from results_file import add_options, commit, keep

from edgecl.backbones import build_backbone
from edgecl.export.calibration import calibration_sets
from edgecl.export.onnx_export import IMAGE_INPUT, export_image_tower
from edgecl.export.quant_source import QuantSource
from edgecl.export.quantize import RECIPES, quantize, run_batched, session
from edgecl.model_dir import cpu_int8_isa
from edgecl.vectors import row_cosines


def _time_batch(sess: object, pixels: np.ndarray) -> float:
    start = time.perf_counter()
    sess.run(None, {IMAGE_INPUT: pixels})  # type: ignore[attr-defined]
    return time.perf_counter() - start


def _sessions(args: argparse.Namespace, work: Path) -> tuple[dict, dict[str, float], np.ndarray, str]:
    """fp32 and every recipe's INT8 session of the image tower, their cosines to fp32 on the evaluation images."""
    with contextlib.redirect_stdout(io.StringIO()):
        built = build_backbone(args.backbone)
    export_image_tower(built, work / "fp32.onnx")
    calib, evaluate, source, _ = calibration_sets(built.preprocess, None)
    fp32 = QuantSource(work / "fp32.onnx", calib, IMAGE_INPUT)  # the recipes share its preparation and ranges
    sessions = {"fp32": session(work / "fp32.onnx")}
    reference = run_batched(sessions["fp32"], {IMAGE_INPUT: evaluate})
    cosines = {"fp32": 1.0}
    for i, recipe in enumerate(RECIPES[built.image_arch]):
        path = work / f"{i}.onnx"
        start = time.perf_counter()
        quantize(fp32, path, recipe)
        print(f"quantised {recipe.name} in {time.perf_counter() - start:.1f}s", flush=True)
        sessions[recipe.name] = session(path)
        outputs = run_batched(sessions[recipe.name], {IMAGE_INPUT: evaluate})
        cosines[recipe.name] = float(row_cosines(reference, outputs).mean())
    return sessions, cosines, evaluate, source


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sessions, cosines, evaluate, source = _sessions(args, Path(tmp))
        batch = evaluate[: args.batch]
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for sess in sessions.values():
            _time_batch(sess, batch)  # warm-up
        for _ in range(args.rounds):  # interleaved rounds: every recipe sees the same machine load
            for name, sess in sessions.items():
                times[name].append(_time_batch(sess, batch))
    rows = [{"recipe": name, "median_s": statistics.median(times[name]), "cosine": cosines[name]} for name in sessions]
    return {"backbone": args.backbone, "batch": args.batch, "rounds": args.rounds, "int8_isa": cpu_int8_isa(),
            "commit": commit(), "date": time.strftime("%Y-%m-%d"), "evaluation": len(evaluate), "source": source,
            "rows": rows}  # fmt: skip



def report(r: dict) -> str:
    """The table, from a results JSON (what the .md beside it holds, in a code block)."""
    base = r["rows"][0]["median_s"]  # fp32
    lines = [f"{r['backbone']} image tower, batch {r['batch']}, median of {r['rounds']} interleaved rounds, int8_isa "
             f"{r['int8_isa']} (commit {r['commit']}, {r['date']})",
             f"evaluation images: {r['evaluation']} ({r['source']})",
             f"{'recipe':<40} {'img/s':>8} {'time vs fp32':>13} {'cosine':>8}"]  # fmt: skip
    lines += [f"{x['recipe']:<40} {r['batch'] / x['median_s']:8.1f} {x['median_s'] / base:12.2f}x {x['cosine']:8.4f}"
              for x in r["rows"]]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="bundled")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    add_options(parser, "quant-recipes-<backbone>-<int8_isa>.json")
    args = parser.parse_args()
    slug = args.backbone.replace(":", "-").replace("/", "-")
    keep(args, f"quant-recipes-{slug}-{cpu_int8_isa()}.json", lambda: measure(args), report)


if __name__ == "__main__":
    main()
