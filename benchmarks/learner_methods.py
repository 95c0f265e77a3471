"""Every method of the method table on class-incremental Fashion-MNIST (5 tasks x 2 classes), same byte budget.

    python benchmarks/learner_methods.py                          # 64KB int8 memory, 3 seeds
    python benchmarks/learner_methods.py --budget 1MB --codec auto --seeds 1 --out /tmp/methods-1mb.json
    python benchmarks/learner_methods.py --report-only                # the report again from this CPU kind's JSON

Prints last accuracy, average incremental accuracy and forgetting (mean +- std over seeds), training seconds per
task against the seconds needed to encode that task's images with the INT8 encoder, and a same-seed rerun of
gdro to show reproducibility. Every method runs through edgecl.learner.Learner, the code `edgecl learn` uses.

Writes benchmarks/results/learner-methods-<int8_isa>.json and, beside it, the .md that docs/benchmarks.md includes
(the embeddings come from this CPU kind's INT8 towers and the seconds from its cores). Every run rewrites them: give
--out elsewhere for a trial with other arguments.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
from results_file import add_options, commit, keep

from edgecl.bench.embeddings import Embedder, fashion_embeddings
from edgecl.bench.runner import RunSpec, run_stream
from edgecl.bench.streams import Stream, Task
from edgecl.datasets import DIGIT_CLASSES, FASHION_MNIST_CLASSES, fashion_mnist, mnist
from edgecl.encoder import Encoder
from edgecl.learn.methods import METHOD_NAMES
from edgecl.model_dir import cpu_int8_isa, ensure_model
from edgecl.prompts import prompt_for
from edgecl.units import parse_bytes

TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
NAMES = list(FASHION_MNIST_CLASSES)
KEPT = ("last_accuracy", "average_incremental_accuracy", "forgetting", "train_seconds_per_task")  # per run, per method


def fashion_stream(encoder: Encoder, train_per_class: int, test_per_class: int) -> Stream:
    """The 5 tasks in the natural class order, from cached embeddings; MNIST digits as never-learned classes."""
    train_x, train_y = fashion_embeddings(encoder, "train", train_per_class)
    test_x, test_y = fashion_embeddings(encoder, "test", test_per_class)
    tasks = []
    for task in TASKS:
        tr, te = np.isin(train_y, task), np.isin(test_y, task)
        tasks.append(Task(task, None, train_x[tr], train_y[tr], test_x[te], test_y[te]))
    digits, digit_y = mnist("test")
    pick = np.concatenate([np.flatnonzero(digit_y == d)[:20] for d in range(10)])
    heldout = Embedder(encoder)(digits[pick])
    return Stream("fashion-mnist", "class", tuple(NAMES), tuple(tasks), heldout, digit_y[pick], DIGIT_CLASSES)


def encode_seconds(encoder: Encoder, per_class: int) -> list[float]:
    """Seconds the INT8 encoder takes for each task's training images (what training is compared against)."""
    images, labels = fashion_mnist("train")
    out = []
    for task in TASKS:
        pick = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in task])
        start = time.perf_counter()
        encoder.encode_images(list(images[pick]), batch_size=32)
        out.append(time.perf_counter() - start)
    return out


def _fmt(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} +- {100 * std:3.1f}"


def _options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="64KB")
    parser.add_argument("--codec", default="int8")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHOD_NAMES))
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lambda", dest="dro_lambda", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--rank", type=int, default=8)
    add_options(parser, "learner-methods-<int8_isa>.json")
    return parser


def measure(args: argparse.Namespace) -> dict[str, Any]:
    encoder = Encoder(ensure_model("bundled").root, threads=os.cpu_count())
    stream = fashion_stream(encoder, args.train_per_class, args.test_per_class)
    text = encoder.encode_texts([prompt_for(n) for n in NAMES])
    held = encoder.encode_texts([prompt_for(n) for n in DIGIT_CLASSES])
    enc_s = encode_seconds(encoder, args.train_per_class)
    budget = parse_bytes(args.budget)
    extra = {"epochs": args.epochs, "dro_lambda": args.dro_lambda, "temperature": args.temperature, "rank": args.rank}
    rows = {}
    for method in args.methods.split(","):
        runs = [run_stream(stream, RunSpec(method, budget, args.codec, seed), text, held, extra)
                for seed in range(args.seeds)]  # fmt: skip
        rows[method] = {key: [r[key] for r in runs] for key in KEPT}
    again = [run_stream(stream, RunSpec("gdro", budget, args.codec, 0), text, held, extra)["last_accuracy"]
             for _ in range(2)]  # fmt: skip
    config = {k: getattr(args, k) for k in ("budget", "codec", "seeds", "train_per_class", "test_per_class")}
    return {**config, **extra, "cores": os.cpu_count(), "int8_isa": cpu_int8_isa(), "commit": commit(),
            "date": time.strftime("%Y-%m-%d"), "encode_seconds_per_task": statistics.mean(enc_s), "methods": rows,
            "gdro_seed0_twice": again}  # fmt: skip


def report(r: dict[str, Any]) -> str:
    """The table, from a results JSON (what the .md beside it holds, in a code block)."""
    lines = [f"class-incremental Fashion-MNIST, 5 tasks x 2 classes, {r['train_per_class']} train / "
             f"{r['test_per_class']} test images per class, bundled backbone, memory {r['budget']} {r['codec']}, "
             f"{r['seeds']} seeds, {r['epochs']} epochs, rank {r['rank']}, tau {r['temperature']}, "
             f"lambda {r['dro_lambda']}, int8_isa {r['int8_isa']} (commit {r['commit']}, {r['date']})", "",
             f"{'method':<9} {'last acc':>13} {'avg inc acc':>13} {'forgetting':>13} {'train s/task':>12} "
             f"{'train/encode':>12}"]  # fmt: skip
    enc = r["encode_seconds_per_task"]
    for method, x in r["methods"].items():
        train = statistics.mean(x["train_seconds_per_task"])
        lines.append(f"{method:<9} {_fmt(x['last_accuracy']):>13} {_fmt(x['average_incremental_accuracy']):>13} "
                     f"{_fmt(x['forgetting']):>13} {train:>12.2f} {100 * train / enc:>11.1f}%")  # fmt: skip
    a, b = r["gdro_seed0_twice"]
    lines += ["", f"encoding each task's {2 * r['train_per_class']} images (INT8, {r['cores']} threads): "
              f"{enc:.2f} s per task", f"reproducibility: gdro seed 0 twice, last accuracy {100 * a:.2f} vs "
              f"{100 * b:.2f}"]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    args = _options().parse_args()
    keep(args, f"learner-methods-{cpu_int8_isa()}.json", lambda: measure(args), report)


if __name__ == "__main__":
    main()
