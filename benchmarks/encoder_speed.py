"""Image-encoder speed: open_clip/torch fp32 vs ONNX Runtime fp32 vs ONNX Runtime INT8, interleaved in one run.

    python benchmarks/encoder_speed.py                       # ViT-B-32 (random weights) and the bundled backbone
    python benchmarks/encoder_speed.py --backbones bundled --rounds 3
    python benchmarks/encoder_speed.py --ops                 # also: where ORT's time goes (GEMM kernels vs rest)

Each round runs every (backbone, engine, batch) once, in turn, so that all of them see the same machine load;
the table reports the median over rounds and ratios against torch fp32 and ORT fp32.

Writes benchmarks/results/encoder-speed-<int8_isa>.json and, beside it, the .md that docs/benchmarks.md includes
(`--report-only` rewrites the .md from the JSON). Every run rewrites them: give --out elsewhere for a trial.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from results_file import add_options, commit, keep

from edgecl.backbones import build_backbone
from edgecl.encoder import Encoder
from edgecl.export import ExportOptions, export_model
from edgecl.model_dir import cpu_int8_isa

Runner = Callable[[np.ndarray], object]
# Matrix-multiply and convolution kernels, fp32 and INT8 (after onnxruntime's fusions)
GEMM_OPS = {"MatMul", "Gemm", "Conv", "FusedConv", "FusedMatMul", "FusedGemm", "QLinearMatMul", "QGemm",
            "QLinearConv", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}  # fmt: skip


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


def _op_split(model: Path, pixels: np.ndarray, threads: int, runs: int = 3) -> tuple[float, float]:
    """(GEMM/conv kernel ms, all other kernels ms) per run at this batch, from onnxruntime's profiler."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.enable_profiling, options.log_severity_level = threads, True, 3
    options.profile_file_prefix = str(model.parent / f"profile-{model.stem}")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: pixels}
    for _ in range(runs):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    gemm = other = 0.0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            is_gemm = event["args"].get("op_name") in GEMM_OPS
            gemm, other = (gemm + event["dur"], other) if is_gemm else (gemm, other + event["dur"])
    return gemm / 1e3 / runs, other / 1e3 / runs


def _ops(work: Path, backbone: str, pixels: np.ndarray, threads: int, torch_s: float) -> dict:
    """Where ORT's kernel time goes at this batch, fp32 and INT8, beside torch fp32's whole run."""
    encoder = Encoder(work)
    split = {p: _op_split(encoder.manifest.tower_file("image", p), pixels, threads) for p in ("fp32", "int8")}
    return {"backbone": backbone, "batch": len(pixels), "torch_ms": torch_s * 1e3} | split


def _ops_lines(x: dict) -> list[str]:
    (g32, o32), (g8, o8) = x["fp32"], x["int8"]
    return [f"{x['backbone']} batch {x['batch']}: kernel ms per run (profiler on)",
            f"  ORT fp32: GEMM/conv {g32:8.1f}  other {o32:7.1f}",
            f"  ORT INT8: GEMM/conv {g8:8.1f}  other {o8:7.1f}   GEMM/conv speed-up {g32 / g8:.2f}x",
            f"  torch fp32 {x['torch_ms']:.1f} ms; INT8 vs torch if every non-GEMM kernel took no time at all: "
            f"{x['torch_ms'] / g8:.2f}x"]  # fmt: skip


def _measure(runner: Runner, pixels: np.ndarray) -> float:
    start = time.perf_counter()
    runner(pixels)
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict:
    """Every (backbone, engine, batch) timed in interleaved rounds; with --ops, ORT's kernel split at the largest
    batch."""
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
        ops = []
        for i, (backbone, (_, inputs)) in enumerate(setups.items() if args.ops else ()):
            big = max(inputs)
            torch_s = statistics.median(times[(backbone, "torch fp32", big)])
            ops.append(_ops(Path(tmp) / f"m{i}", backbone, inputs[big], args.threads, torch_s))
    rows = [{"backbone": b, "engine": e, "batch": n, "median_s": statistics.median(t)}
            for (b, e, n), t in times.items()]  # fmt: skip
    return {"rounds": args.rounds, "threads": args.threads, "torch": torch.__version__, "int8_isa": cpu_int8_isa(),
            "commit": commit(), "date": time.strftime("%Y-%m-%d"), "rows": rows, "ops": ops}  # fmt: skip



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="openclip:ViT-B-32,bundled", help="comma-separated backbone ids")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ops", action="store_true", help="also split ORT kernel time: GEMM/conv vs the rest")
    add_options(parser, "encoder-speed-<int8_isa>.json")
    args = parser.parse_args()
    keep(args, f"encoder-speed-{cpu_int8_isa()}.json", lambda: measure(args), report)


def report(r: dict) -> str:
    """The tables, from a results JSON (what the .md beside it holds, in a code block)."""
    med = {(x["backbone"], x["engine"], x["batch"]): x["median_s"] for x in r["rows"]}
    lines = [f"images/s, median of {r['rounds']} interleaved rounds, {r['threads']} threads, torch {r['torch']}, "
             f"int8_isa {r['int8_isa']} (commit {r['commit']}, {r['date']})",
             f"{'backbone':<22} {'batch':>5} {'engine':<11} {'img/s':>8} {'x torch fp32':>13} {'x ORT fp32':>11}"]
    for (backbone, engine, batch), seconds in med.items():
        torch_s, ort_s = med[(backbone, "torch fp32", batch)], med[(backbone, "ORT fp32", batch)]
        lines.append(f"{backbone:<22} {batch:>5} {engine:<11} {batch / seconds:8.1f} {torch_s / seconds:12.2f}x "
                     f"{ort_s / seconds:10.2f}x")  # fmt: skip
    for x in r["ops"]:
        lines += ["", *_ops_lines(x)] if x is r["ops"][0] else _ops_lines(x)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
