"""Every method of the method table on class-incremental Fashion-MNIST (5 tasks x 2 classes), same byte budget.

    python benchmarks/learner_methods.py                          # 64KB int8 memory, 3 seeds
    python benchmarks/learner_methods.py --budget 1MB --codec auto --seeds 1

Prints last accuracy, average incremental accuracy and forgetting (mean +- std over seeds), training seconds per
task against the seconds needed to encode that task's images with the INT8 encoder, and a same-seed rerun of
gdro to show reproducibility. Every method runs through edgecl.learner.Learner, the code `edgecl learn` uses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from edgecl.bench.embeddings import Embedder, fashion_embeddings
from edgecl.bench.runner import RunSpec, run_stream
from edgecl.bench.streams import Stream, Task
from edgecl.datasets import DIGIT_CLASSES, FASHION_MNIST_CLASSES, fashion_mnist, mnist
from edgecl.encoder import Encoder
from edgecl.learn.methods import METHOD_NAMES
from edgecl.model_dir import ensure_model
from edgecl.prompts import prompt_for
from edgecl.units import parse_bytes

TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
NAMES = list(FASHION_MNIST_CLASSES)


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


def main() -> None:
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
    args = parser.parse_args()
    encoder = Encoder(ensure_model("bundled").root, threads=os.cpu_count())
    stream = fashion_stream(encoder, args.train_per_class, args.test_per_class)
    text = encoder.encode_texts([prompt_for(n) for n in NAMES])
    held = encoder.encode_texts([prompt_for(n) for n in DIGIT_CLASSES])
    enc_s = encode_seconds(encoder, args.train_per_class)
    budget = parse_bytes(args.budget)
    extra = {"epochs": args.epochs, "dro_lambda": args.dro_lambda, "temperature": args.temperature, "rank": args.rank}
    print(f"class-incremental Fashion-MNIST, 5 tasks x 2 classes, {args.train_per_class} train / "
          f"{args.test_per_class} test images per class, bundled backbone, memory {args.budget} {args.codec}, "
          f"{args.seeds} seeds, {args.epochs} epochs, rank {args.rank}, tau {args.temperature}, "
          f"lambda {args.dro_lambda}\n")  # fmt: skip
    print(
        f"{'method':<9} {'last acc':>13} {'avg inc acc':>13} {'forgetting':>13} {'train s/task':>12} "
        f"{'train/encode':>12}"
    )
    for method in args.methods.split(","):
        runs = [run_stream(stream, RunSpec(method, budget, args.codec, seed), text, held, extra)
                for seed in range(args.seeds)]  # fmt: skip
        last = [r["last_accuracy"] for r in runs]
        avg = [r["average_incremental_accuracy"] for r in runs]
        fgt = [r["forgetting"] for r in runs]
        train_task = statistics.mean(r["train_seconds_per_task"] for r in runs)
        ratio = statistics.mean(r["train_seconds_per_task"] / statistics.mean(enc_s) for r in runs)
        print(f"{method:<9} {_fmt(last):>13} {_fmt(avg):>13} {_fmt(fgt):>13} {train_task:>12.2f} {100 * ratio:>11.1f}%")
    print(f"\nencoding each task's {2 * args.train_per_class} images (INT8, {os.cpu_count()} threads): "
          f"{statistics.mean(enc_s):.2f} s per task")  # fmt: skip
    a, b = (run_stream(stream, RunSpec("gdro", budget, args.codec, 0), text, held, extra) for _ in range(2))
    print(f"reproducibility: gdro seed 0 twice, last accuracy {100 * a['last_accuracy']:.2f} "
          f"vs {100 * b['last_accuracy']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
