"""All six methods on class-incremental Fashion-MNIST (5 tasks x 2 classes), bundled backbone, same byte budget.

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

from edgecl.bench.embeddings import fashion_embeddings
from edgecl.bench.metrics import average_incremental_accuracy, forgetting, last_accuracy
from edgecl.datasets import FASHION_MNIST_CLASSES, fashion_mnist
from edgecl.encoder import Encoder
from edgecl.learner import METHODS, Learner, LearnerConfig, prompt_for
from edgecl.models import ensure_model
from edgecl.units import parse_bytes

TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
NAMES = list(FASHION_MNIST_CLASSES)


def run_stream(cfg: LearnerConfig, data: tuple[np.ndarray, ...], text: np.ndarray) -> dict[str, object]:
    """Learn the 5 tasks; return the accuracy matrix, accuracy on all seen classes after each task, times."""
    train_x, train_y, test_x, test_y = data
    learner = Learner(cfg, train_x.shape[1])
    matrix = np.zeros((len(TASKS), len(TASKS)))
    seen_acc, train_s = [], []
    for t, task in enumerate(TASKS):
        rows = np.isin(train_y, task)
        report = learner.learn_embeddings(
            train_x[rows], [NAMES[i] for i in train_y[rows]], text={NAMES[c]: text[c] for c in task}
        )
        train_s.append(float(report["train_seconds"]))
        predicted = np.array([NAMES.index(learner.classes[p]) for p in learner.predict(test_x)])
        for k, other in enumerate(TASKS[: t + 1]):
            mask = np.isin(test_y, other)
            matrix[t, k] = (predicted[mask] == test_y[mask]).mean()
        seen = np.isin(test_y, [c for tk in TASKS[: t + 1] for c in tk])
        seen_acc.append(float((predicted[seen] == test_y[seen]).mean()))
    return {"matrix": matrix, "seen": seen_acc, "train_s": train_s}


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
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lambda", dest="dro_lambda", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()
    encoder = Encoder(ensure_model("bundled").root, threads=os.cpu_count())
    data = (*fashion_embeddings(encoder, "train", args.train_per_class),
            *fashion_embeddings(encoder, "test", args.test_per_class))  # fmt: skip
    text = encoder.encode_texts([prompt_for(n) for n in NAMES])
    enc_s = encode_seconds(encoder, args.train_per_class)
    budget = parse_bytes(args.budget)
    print(f"class-incremental Fashion-MNIST, 5 tasks x 2 classes, {args.train_per_class} train / "
          f"{args.test_per_class} test images per class, bundled backbone, memory {args.budget} {args.codec}, "
          f"{args.seeds} seeds, {args.epochs} epochs, rank {args.rank}, tau {args.temperature}, "
          f"lambda {args.dro_lambda}\n")  # fmt: skip
    print(
        f"{'method':<9} {'last acc':>13} {'avg inc acc':>13} {'forgetting':>13} {'train s/task':>12} "
        f"{'train/encode':>12}"
    )
    for method in args.methods.split(","):
        runs = []
        for seed in range(args.seeds):
            cfg = LearnerConfig(method=method, budget_bytes=budget, codec=args.codec, seed=seed, epochs=args.epochs,
                                dro_lambda=args.dro_lambda, temperature=args.temperature, rank=args.rank)  # fmt: skip
            runs.append(run_stream(cfg, data, text))
        last = [last_accuracy(r["seen"]) for r in runs]
        avg = [average_incremental_accuracy(r["seen"]) for r in runs]
        fgt = [forgetting(r["matrix"]) for r in runs]
        train_task = statistics.mean(s for r in runs for s in r["train_s"])
        ratio = statistics.mean(sum(r["train_s"]) / sum(enc_s) for r in runs)
        print(f"{method:<9} {_fmt(last):>13} {_fmt(avg):>13} {_fmt(fgt):>13} {train_task:>12.2f} {100 * ratio:>11.1f}%")
    print(f"\nencoding each task's {2 * args.train_per_class} images (INT8, {os.cpu_count()} threads): "
          f"{statistics.mean(enc_s):.2f} s per task")  # fmt: skip
    cfg = LearnerConfig(method="gdro", budget_bytes=budget, codec=args.codec, seed=0, epochs=args.epochs,
                        dro_lambda=args.dro_lambda, temperature=args.temperature, rank=args.rank)  # fmt: skip
    a, b = run_stream(cfg, data, text), run_stream(cfg, data, text)
    print(f"reproducibility: gdro seed 0 twice, last accuracy {100 * a['seen'][-1]:.2f} vs {100 * b['seen'][-1]:.2f}")


if __name__ == "__main__":
    main()
