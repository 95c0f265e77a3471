"""Learn time against what is already learned: one task of 2 new classes (30 rows each) into learners that already
hold 2 ... 1,000 classes, through the same code `edgecl learn` runs (load the saved state, learn, save it again).
Synthetic clustered unit embeddings stand in for images (encoding costs the same at every class count).

    python benchmarks/learn_scaling.py --classes 2,20,200,1000 --budget 8MB
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecl.learn.methods import DEFAULT_METHOD
from edgecl.learner import Learner
from edgecl.runtime import Runtime
from edgecl.settings import LearnerConfig
from edgecl.units import parse_bytes
from edgecl.vectors import unit_rows

DIM, ROWS_PER_CLASS, NEW_CLASSES = 1280, 30, 2


def _rows(rng: np.random.Generator, centres: np.ndarray, first: int, n: int) -> tuple[np.ndarray, list[str]]:
    """(n * ROWS_PER_CLASS, DIM) rows around centres[first : first + n] and their class names."""
    y = np.repeat(np.arange(first, first + n), ROWS_PER_CLASS)
    x = unit_rows(centres[y] + 0.6 * rng.standard_normal((len(y), DIM)).astype(np.float32) / np.sqrt(DIM) * 8)
    return x, [f"class{c:04d}" for c in y]


def _texts(names: list[str], centres: np.ndarray) -> dict[str, np.ndarray]:
    return {n: centres[int(n[5:])] for n in set(names)}


def _grown(config: LearnerConfig, centres: np.ndarray, n_classes: int, folder: Path) -> None:
    """A saved learner that learned n_classes in tasks of up to 100 classes (the schedule is per task)."""
    rng = np.random.default_rng(1)
    learner = Learner(config, DIM, runtime=Runtime())
    for first in range(0, n_classes, 100):
        x, names = _rows(rng, centres, first, min(100, n_classes - first))
        learner.learn_embeddings(x, names, text=_texts(names, centres))
    learner.save_to(folder)


def _timed_learn(folder: Path, out: Path, centres: np.ndarray, n_classes: int) -> dict[str, float]:
    """Seconds of each part of one learn of NEW_CLASSES new classes: load, learn (train + measure), save."""
    x, names = _rows(np.random.default_rng(2), centres, n_classes, NEW_CLASSES)
    t0 = time.perf_counter()
    learner = Learner.load_from(folder, runtime=Runtime())
    t1 = time.perf_counter()
    result = learner.learn_embeddings(x, names, text=_texts(names, centres))
    t2 = time.perf_counter()
    learner.save_to(out)
    t3 = time.perf_counter()
    train = result.training.seconds if result.training else 0.0
    return {"load": t1 - t0, "train": train, "learn_other": t2 - t1 - train, "save": t3 - t2, "total": t3 - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", default="2,20,200,1000")
    parser.add_argument("--budget", default="8MB")
    parser.add_argument("--method", default=DEFAULT_METHOD)
    parser.add_argument("--rounds", type=int, default=3, help="timed learns per class count (median)")
    args = parser.parse_args()
    counts = [int(c) for c in args.classes.split(",")]
    config = LearnerConfig.from_flat({"method": args.method, "budget_bytes": parse_bytes(args.budget)})
    centres = unit_rows(np.random.default_rng(0).standard_normal((max(counts) + NEW_CLASSES, DIM)).astype(np.float32))
    print(f"one learn of {NEW_CLASSES} new classes x {ROWS_PER_CLASS} rows, {args.method}, budget {args.budget}, "
          f"{DIM}-d, median of {args.rounds}; seconds")
    print(f"{'learned':>8} {'load':>6} {'train':>6} {'other':>6} {'save':>6} {'total':>6} {'x first':>8}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            folder = Path(tmp) / f"c{n}"
            _grown(config, centres, n, folder)
            runs = [_timed_learn(folder, Path(tmp) / f"out{n}-{r}", centres, n) for r in range(args.rounds)]
            med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
            base = base or med["total"]
            print(f"{n:>8} {med['load']:6.2f} {med['train']:6.2f} {med['learn_other']:6.2f} {med['save']:6.2f} "
                  f"{med['total']:6.2f} {med['total'] / base:7.2f}x")


if __name__ == "__main__":
    main()
