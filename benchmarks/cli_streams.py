"""Held-out streams through the CLI: every task is a cold `edgecl learn` process on a folder of PNG photos, as a user
runs it; accuracy on every class seen so far is read from the committed state with the Learner code `edgecl
classify` runs (test images encoded once). The photos are drawn at random from parts of the data sets that the
in-process benchmarks (edgecl.bench.streams: the first images of each class) never use.

- fashion-uneven: Fashion-MNIST, 100 photos a class, tasks of 4, 3 and 3 classes in a seeded order, 64 KB.
- digits-3-domains: the 10 digits upright, then inverted, then rotated (`--domain`), 100 photos a class in each,
  256 KB.

    python benchmarks/cli_streams.py --seeds 3 --methods default,er,ncm

Writes benchmarks/results/cli-streams.json and the table beside it (.md), which docs/method.md includes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import results_file
from headline import learn_cold

from edgecl.datasets import DIGIT_CLASSES, FASHION_MNIST_CLASSES, fashion_mnist, mnist, write_pngs
from edgecl.learned import scoring
from edgecl.learner import Learner
from edgecl.state import read_state

PHOTOS, TEST_PHOTOS = 100, 150
TRAIN_FROM, TEST_FROM = 30_000, 5_000  # rows before these the in-process streams may use; photos come from after
STREAMS = {"fashion-uneven": ("64KB", "Fashion-MNIST, tasks of 4/3/3 classes"),
           "digits-3-domains": ("256KB", "digits upright -> inverted -> rotated")}  # fmt: skip
Transform = Callable[[np.ndarray], np.ndarray]
DOMAINS: list[tuple[str | None, Transform]] = [
    (None, lambda a: a),
    ("inverted", lambda a: 255 - a),
    ("rotated", lambda a: np.ascontiguousarray(np.rot90(a, k=1, axes=(1, 2)))),
]


def _rows(labels: np.ndarray, c: int, start: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(start + np.flatnonzero(labels[start:] == c), n, replace=False)


def _tasks(stream: str, root: Path, seed: int) -> list[tuple[Path, str | None, dict[str, np.ndarray]]]:
    """(folder, domain, held-out test images per class name) of each task, written as PNG folders."""
    rng = np.random.default_rng(1000 + seed)
    if stream == "fashion-uneven":
        (train, train_y), (test, test_y) = fashion_mnist("train"), fashion_mnist("test")
        order, sizes, out, at = [int(c) for c in rng.permutation(10)], (4, 3, 3), [], 0
        for t, size in enumerate(sizes):
            folder, held = root / f"task{t}", {}
            for c in order[at : at + size]:
                name = FASHION_MNIST_CLASSES[c].replace("/", "-")
                write_pngs(folder / name, train[_rows(train_y, c, TRAIN_FROM, PHOTOS, rng)])
                held[name] = test[_rows(test_y, c, TEST_FROM, TEST_PHOTOS, rng)]
            out.append((folder, None, held))
            at += size
        return out
    (train, train_y), (test, test_y) = mnist("train"), mnist("test")
    out = []
    for t, (domain, fn) in enumerate(DOMAINS):
        folder, held = root / f"task{t}", {}
        for c in range(10):
            write_pngs(folder / DIGIT_CLASSES[c], fn(train[_rows(train_y, c, TRAIN_FROM, PHOTOS, rng)]))
            held[f"{DIGIT_CLASSES[c]}|{domain}"] = fn(test[_rows(test_y, c, TEST_FROM, TEST_PHOTOS, rng)])
        out.append((folder, domain, held))
    return out


def run(stream: str, method: str | None, seed: int, encoder: Any) -> dict[str, Any]:
    """One stream, one method, one seed: accuracy on all test images seen so far after each task."""
    budget = STREAMS[stream][0]
    with tempfile.TemporaryDirectory() as tmp:
        tasks, state, seen = _tasks(stream, Path(tmp), seed), Path(tmp) / "state", {}
        after, seconds = [], []
        for folder, domain, held in tasks:
            seconds.append(learn_cold(folder, state, method, budget, domain))
            seen |= {key: encoder.encode_images(list(images), batch_size=64) for key, images in held.items()}
            learner = Learner.load_from(read_state(state).folder)
            x = np.concatenate(list(seen.values()))
            truth = [key.split("|")[0] for key, rows in seen.items() for _ in range(len(rows))]
            after.append(scoring.accuracy(learner.state, x, truth))
        return {"accuracy_after_each_task": after, "learn_seconds": seconds}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from edgecl.encoder import Encoder
    from edgecl.model_dir import ensure_model

    encoder, start = Encoder(ensure_model("bundled").root), time.perf_counter()
    runs = {stream: {m: [run(stream, None if m == "default" else m, s, encoder) for s in range(args.seeds)]
                     for m in args.methods.split(",")} for stream in args.streams.split(",")}  # fmt: skip
    return {"commit": results_file.commit(), "seeds": args.seeds, "photos_per_class": PHOTOS,
            "test_per_class": TEST_PHOTOS, "seconds": round(time.perf_counter() - start), "runs": runs}  # fmt: skip


def report(results: dict[str, Any]) -> str:
    lines = [f"Held-out streams through the CLI (cold `edgecl learn` per task), {results['photos_per_class']} photos a "
             f"class, {results['test_per_class']} test images a class, bundled backbone, {results['seeds']} seeds, "
             f"commit {results['commit']}, {results['seconds']} s"]  # fmt: skip
    for stream, by_method in results["runs"].items():
        budget, what = STREAMS[stream]
        lines += ["", f"{stream} ({what}), {budget}: accuracy on everything seen (%) after each task",
                  f"{'method':<9} {'after each task':<22} {'last':>12} {'learn s (median)':>17}"]  # fmt: skip
        for method, runs in by_method.items():
            acc = 100 * np.array([r["accuracy_after_each_task"] for r in runs])
            last = acc[:, -1]
            spread = f"{last.mean():5.1f} ± {last.std(ddof=1) if len(last) > 1 else 0.0:3.1f}"
            secs = statistics.median(s for r in runs for s in r["learn_seconds"])
            lines.append(f"{method:<9} {' '.join(f'{v:5.1f}' for v in acc.mean(0)):<22} {spread:>12} {secs:17.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default="default,er,ncm", help="comma-separated; 'default' = no --method")
    parser.add_argument("--streams", default=",".join(STREAMS))
    results_file.add_options(parser, "cli-streams.json")
    args = parser.parse_args()
    results_file.keep(args, "cli-streams.json", lambda: measure(args), report)


if __name__ == "__main__":
    main()
