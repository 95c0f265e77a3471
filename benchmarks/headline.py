"""The headline case: a state that knows 4 classes (50 photos each) learns one new class from 20 photos, five times
in a row, each time as a cold `edgecl learn` process. Reports each new class's held-out accuracy right after its
learn, the earlier classes' accuracy before and after, and each learn's wall time; default method vs --method ncm
(and any others given), Fashion-MNIST, 64KB, bundled backbone.

    python benchmarks/headline.py --seeds 3

Accuracy is read from the committed state with the same Learner code `edgecl classify` runs (test images are encoded
once, not once per step); every learn is a separate `edgecl learn` process, timed from outside.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.datasets import FASHION_MNIST_CLASSES, fashion_mnist, write_pngs
from edgecl.learned import scoring
from edgecl.learner import Learner
from edgecl.state import read_state

BASE_CLASSES, BASE_PHOTOS, NEW_CLASSES, NEW_PHOTOS, TEST_PHOTOS = 4, 50, 5, 20, 100


def _folders(root: Path, seed: int) -> tuple[list[int], dict[str, Path], dict[int, np.ndarray]]:
    """Class order, task folders (base, new1..new5) and held-out test image arrays per class."""
    train, train_y = fashion_mnist("train")
    test, test_y = fashion_mnist("test")
    rng = np.random.default_rng(seed)
    order = [int(c) for c in rng.permutation(10)[: BASE_CLASSES + NEW_CLASSES]]
    tasks = {"base": root / "base"}
    for i, c in enumerate(order):
        rows = rng.choice(np.flatnonzero(train_y == c), BASE_PHOTOS if i < BASE_CLASSES else NEW_PHOTOS, replace=False)
        folder = tasks["base"] if i < BASE_CLASSES else root / f"new{i - BASE_CLASSES + 1}"
        tasks.setdefault(folder.name, folder)
        write_pngs(folder / FASHION_MNIST_CLASSES[c].replace("/", "-"), train[rows])
    held = {c: test[np.flatnonzero(test_y == c)[:TEST_PHOTOS]] for c in order}
    return order, tasks, held


def learn_cold(task: Path, state: Path, method: str | None, budget: str = "64KB", domain: str | None = None) -> float:
    """Seconds of one cold `edgecl learn` process (bundled backbone); exits with its error if it fails. Also used by
    benchmarks/cli_streams.py."""
    cmd = [sys.executable, "-m", "cli", "learn", "--task-dir", str(task), "--state-dir", str(state), "--json",
           "--budget", budget, "--backbone", "bundled", *(["--domain", domain] if domain else []),
           *(["--method", method] if method else [])]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    if out.returncode:
        raise SystemExit(f"edgecl learn failed: {out.stderr.strip()}")
    return time.perf_counter() - start


def _recall(state: Path, embeddings: dict[int, np.ndarray], classes: list[int]) -> dict[int, float]:
    learner = Learner.load_from(read_state(state).folder)
    names = [FASHION_MNIST_CLASSES[c].replace("/", "-") for c in classes]
    out = {}
    for c, name in zip(classes, names, strict=True):
        out[c] = scoring.accuracy(learner.state, embeddings[c], [name] * len(embeddings[c]))
    return out


def run(method: str | None, seed: int, embed: object) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        order, tasks, held = _folders(Path(tmp), seed)
        emb = {c: embed.encode_images(list(held[c]), batch_size=32) for c in order}  # type: ignore[attr-defined]
        state = Path(tmp) / "state"
        learn_cold(tasks["base"], state, method)
        known = order[:BASE_CLASSES]
        new_acc, old_drop, seconds = [], [], []
        for i in range(NEW_CLASSES):
            before = _recall(state, emb, known)
            seconds.append(learn_cold(tasks[f"new{i + 1}"], state, method))
            new = order[BASE_CLASSES + i]
            after = _recall(state, emb, [*known, new])
            new_acc.append(after[new])
            old_drop.append(statistics.mean(before[c] - after[c] for c in known))
            known = [*known, new]
        final = _recall(state, emb, known)
        return {"new_class_accuracy": new_acc, "old_drop": old_drop, "learn_seconds": seconds,
                "final_all": [statistics.mean(final.values())]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default="default,ncm", help="comma-separated; 'default' = no --method")
    parser.add_argument("--json", type=Path, help="also write every raw number here (and the table beside it, .md)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from --json's file, run nothing")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads(args.json.read_text())
        args.json.with_suffix(".md").write_text(f"```\n{report(results)}\n```\n")
        return
    from edgecl.encoder import Encoder
    from edgecl.model_dir import ensure_model

    encoder = Encoder(ensure_model("bundled").root)
    results = {m: [run(None if m == "default" else m, s, encoder) for s in range(args.seeds)]
               for m in args.methods.split(",")}  # fmt: skip
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        args.json.with_suffix(".md").write_text(f"```\n{report(results)}\n```\n")


def report(results: dict[str, list[dict[str, Any]]]) -> str:
    """The table this benchmark prints, from its results (method -> one run per seed); with --json it is also
    written beside the JSON (`<json>.md`, what docs/method.md includes)."""
    seeds = len(next(iter(results.values())))
    lines = [
        f"Fashion-MNIST, {BASE_CLASSES} classes x {BASE_PHOTOS} photos, then {NEW_CLASSES} x one new class of "
        f"{NEW_PHOTOS} photos, 64KB, bundled; {TEST_PHOTOS} held-out test images per class; {seeds} seeds",
        f"{'method':<9} {'new class acc right after its learn (%), per step':<44} {'mean':>6} "
        f"{'old-class drop/new class':>25} {'all classes at end':>19} {'cold learn s (max)':>19}",
    ]
    for method, runs in results.items():
        per_step = np.array([r["new_class_accuracy"] for r in runs]) * 100  # (seeds, steps)
        drop = 100 * np.mean([r["old_drop"] for r in runs])
        final = 100 * np.mean([r["final_all"] for r in runs])
        secs = [s for r in runs for s in r["learn_seconds"]]
        steps = " ".join(f"{v:5.1f}" for v in per_step.mean(0))
        lines.append(f"{method:<9} {steps:<44} {per_step.mean():6.1f} {drop:24.1f}pt {final:18.1f}% "
                     f"{statistics.median(secs):8.1f} ({max(secs):.1f})")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
