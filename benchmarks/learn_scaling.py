"""Learn time against what is already learned: one task of 2 new classes (30 rows each) into learners that already
hold 2 ... 1,000 classes. Two ways:

- the learner (default): through the same code `edgecl learn` runs (load the saved state, learn, save it again), with
  synthetic clustered unit embeddings standing in for images (encoding costs the same at every class count);
- `--cli`: whole `edgecl learn --json` processes (bundled backbone; import, model load, encoding 2 x 30 Fashion-MNIST
  photos, learning, committing the snapshot) into a state that a first CLI learn made and that then grew to N classes
  with synthetic embeddings; each timed learn starts from a copy of that state.

    python benchmarks/learn_scaling.py --classes 2,20,200,1000 --budget 8MB
    python benchmarks/learn_scaling.py --cli --classes 20,1000
    python benchmarks/learn_scaling.py [--cli] --report-only   # the report again from this CPU kind's JSON

Writes benchmarks/results/learn-scaling[-cli]-<int8_isa>.json and, beside it, the .md that docs/benchmarks.md
includes (the figures depend on the CPU kind: each kind measured keeps its own pair).
Every run rewrites them: give --out elsewhere for a trial with other arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import add_options, commit, keep

from edgecl.demo import write_stream
from edgecl.learn.methods import DEFAULT_METHOD
from edgecl.learner import Learner
from edgecl.learner_config import LearnerConfig
from edgecl.model_dir import cpu_int8_isa
from edgecl.runtime import Runtime
from edgecl.state import commit_snapshot, read_state
from edgecl.units import parse_bytes
from edgecl.vectors import unit_rows

DIM, ROWS_PER_CLASS, NEW_CLASSES = 1280, 30, 2
ROOT = Path(__file__).resolve().parents[1]


def _rows(rng: np.random.Generator, centres: np.ndarray, first: int, n: int) -> tuple[np.ndarray, list[str]]:
    """(n * ROWS_PER_CLASS, DIM) rows around centres[first : first + n] and their class names."""
    y = np.repeat(np.arange(first, first + n), ROWS_PER_CLASS)
    x = unit_rows(centres[y] + 0.6 * rng.standard_normal((len(y), DIM)).astype(np.float32) / np.sqrt(DIM) * 8)
    return x, [f"class{c:04d}" for c in y]


def _texts(names: list[str], centres: np.ndarray) -> dict[str, np.ndarray]:
    return {n: centres[int(n[5:])] for n in set(names)}


def _grown(config: LearnerConfig, centres: np.ndarray, n_classes: int, folder: Path) -> None:
    """A saved learner that learned n_classes in tasks of up to 100 classes (the schedule is per task)."""
    learner = Learner(config, DIM, runtime=Runtime())
    _grow(learner, centres, 0, n_classes)
    learner.save_to(folder)


def _grow(learner: Learner, centres: np.ndarray, first: int, last: int) -> None:
    """Learn synthetic classes [first, last) in tasks of up to 100 classes."""
    rng = np.random.default_rng(1)
    for start in range(first, last, 100):
        x, names = _rows(rng, centres, start, min(100, last - start))
        learner.learn_embeddings(x, names, text=_texts(names, centres))


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


def _edgecl_learn(home: Path, state: Path, task: Path, *extra: str) -> tuple[float, dict]:
    """Wall seconds of one `edgecl learn --json` process and its JSON answer."""
    env = os.environ | {"EDGECL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cli", "learn", "--task-dir", str(task), "--state-dir", str(state),
                          "--json", *extra], capture_output=True, text=True, env=env, cwd=ROOT)  # fmt: skip
    if out.returncode:
        raise SystemExit(f"edgecl learn failed: {out.stderr.strip()}")
    return time.perf_counter() - start, json.loads(out.stdout)


def _cli_state(home: Path, state: Path, task: Path, n_classes: int, args: argparse.Namespace) -> None:
    """A state made by a first CLI learn of `task` (2 classes) and grown to n_classes with synthetic classes."""
    _edgecl_learn(home, state, task, "--budget", args.budget, "--method", args.method, "--backbone", "bundled")
    snapshot = read_state(state)
    assert snapshot is not None
    learner = Learner.load_from(snapshot.folder, runtime=Runtime())
    centres = unit_rows(np.random.default_rng(0).standard_normal((n_classes, learner.dim)).astype(np.float32))
    _grow(learner, centres, 0, n_classes - NEW_CLASSES)
    commit_snapshot(state, learner.save_to, snapshot.meta)


def cli_rows(counts: list[int], args: argparse.Namespace) -> list[dict[str, float]]:
    """Median wall and JSON seconds of whole `edgecl learn` processes into states grown to each class count."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecl-learn-scaling-") as tmp:
        home, tasks = Path(tmp) / "home", write_stream(Path(tmp) / "data", ROWS_PER_CLASS, 1)[0]
        for n in counts:
            grown = Path(tmp) / f"grown{n}"
            _cli_state(home, grown, tasks[0], n, args)
            runs = []
            for r in range(args.rounds):
                state = Path(tmp) / f"run{n}-{r}"
                shutil.copytree(grown, state, symlinks=True)
                wall, report = _edgecl_learn(home, state, tasks[1])
                assert len(report["classes"]) == n + NEW_CLASSES, report["classes"][-3:]
                runs.append((wall, report["seconds"]))
                shutil.rmtree(state)
            wall, seconds = (float(np.median([r[i] for r in runs])) for i in (0, 1))
            rows.append({"learned": n, "wall": round(wall, 3), "seconds": round(seconds, 3)})
            print(f"{n} classes: {wall:.2f} s", flush=True)
    return rows


def learner_rows(counts: list[int], args: argparse.Namespace) -> list[dict[str, float]]:
    """Median seconds of each part of one learner learn into learners grown to each class count."""
    config = LearnerConfig.from_flat({"method": args.method, "budget_bytes": parse_bytes(args.budget)})
    centres = unit_rows(np.random.default_rng(0).standard_normal((max(counts) + NEW_CLASSES, DIM)).astype(np.float32))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            folder = Path(tmp) / f"c{n}"
            _grown(config, centres, n, folder)
            runs = [_timed_learn(folder, Path(tmp) / f"out{n}-{r}", centres, n) for r in range(args.rounds)]
            rows.append({"learned": n} | {k: round(float(np.median([r[k] for r in runs])), 4) for k in runs[0]})
            print(f"{n} classes: {rows[-1]['total']:.2f} s", flush=True)
    return rows


def report(r: dict) -> str:
    """The table, from a results JSON (what the .md beside it holds, in a code block)."""
    base = r["rows"][0]["wall" if r["cli"] else "total"]
    common = f"{r['method']}, budget {r['budget']}, int8_isa {r['int8_isa']}, median of {r['rounds']}"
    if r["cli"]:
        lines = [f"whole `edgecl learn --json` of {NEW_CLASSES} new classes x {ROWS_PER_CLASS} Fashion-MNIST photos, "
                 f"bundled backbone, {common}; seconds (commit {r['commit']}, {r['date']})",
                 f"{'learned':>8} {'wall':>6} {'seconds':>8} {'x first':>8}   (seconds: the JSON's own, after imports)"]
        lines += [f"{x['learned']:>8} {x['wall']:6.2f} {x['seconds']:8.2f} {x['wall'] / base:7.2f}x" for x in r["rows"]]
    else:
        lines = [f"one learn of {NEW_CLASSES} new classes x {ROWS_PER_CLASS} rows, {DIM}-d, {common}; seconds "
                 f"(commit {r['commit']}, {r['date']})",
                 f"{'learned':>8} {'load':>6} {'train':>6} {'other':>6} {'save':>6} {'total':>6} {'x first':>8}"]
        lines += [f"{x['learned']:>8} {x['load']:6.2f} {x['train']:6.2f} {x['learn_other']:6.2f} {x['save']:6.2f} "
                  f"{x['total']:6.2f} {x['total'] / base:7.2f}x" for x in r["rows"]]  # fmt: skip
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> dict:
    counts = [int(c) for c in args.classes.split(",")]
    rows = cli_rows(counts, args) if args.cli else learner_rows(counts, args)
    return {"cli": args.cli, "method": args.method, "budget": args.budget, "rounds": args.rounds,
            "int8_isa": cpu_int8_isa(), "commit": commit(), "date": time.strftime("%Y-%m-%d"),
            "rows": rows}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", default="2,20,200,1000")
    parser.add_argument("--budget", default="8MB")
    parser.add_argument("--method", default=DEFAULT_METHOD)
    parser.add_argument("--rounds", type=int, default=3, help="timed learns per class count (median)")
    parser.add_argument("--cli", action="store_true", help="time whole `edgecl learn` processes (bundled backbone)")
    add_options(parser, "learn-scaling[-cli]-<int8_isa>.json")
    args = parser.parse_args()
    keep(args, f"learn-scaling{'-cli' if args.cli else ''}-{cpu_int8_isa()}.json", lambda: measure(args), report)


if __name__ == "__main__":
    main()
