"""Replay-memory codecs on real embeddings: samples per MB, reconstruction cosine, and nearest-class-mean accuracy
from memory at equal byte budgets (fp32 rows as the reference), Fashion-MNIST through the bundled backbone.

    python benchmarks/memory_codecs.py                      # budgets 16KB..8MB, 3 seeds
    python benchmarks/memory_codecs.py --budgets 64KB,1MB --seeds 1
    python benchmarks/memory_codecs.py --report-only        # the table again from --out's JSON

Writes benchmarks/results/memory-codecs.json (or --out) and, beside it, the .md that docs/benchmarks.md includes.
Every run rewrites them: give --out elsewhere for a trial with other arguments.

The memory is filled the way `edgecl learn` fills it: 5 class-incremental tasks of 2 classes each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from results_file import add_options, keep

from edgecl.bench.embeddings import fashion_embeddings
from edgecl.encoder import Encoder
from edgecl.memory import MemoryConfig, ReplayMemory
from edgecl.model_dir import ensure_model
from edgecl.units import BudgetError, format_bytes, parse_bytes

CODECS = ("fp32", "fp16", "int8", "int4", "pq", "auto")
TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
HEADER = f"{'budget':>9} {'codec':<6} {'used':<5} {'samples':>8} {'samples/MB':>11} {'recon cos':>9} {'NCM acc':>14}"


def ncm_accuracy(mem_x: np.ndarray, mem_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    means = np.stack([mem_x[mem_y == c].mean(0) for c in range(10)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    return float(((test_x @ means.T).argmax(1) == test_y).mean())


def fp32_reference(train_x: np.ndarray, train_y: np.ndarray, budget: int, seed: int) -> tuple[np.ndarray, ...]:
    """What plain fp32 rows (4 bytes per dim + the same 7 bytes of label/id) would hold, balanced per class."""
    per_class = budget // (4 * train_x.shape[1] + 7) // 10
    if per_class < 1:
        raise BudgetError("too small")
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(np.flatnonzero(train_y == c), per_class, replace=False) for c in range(10)])
    return train_x[rows], train_y[rows], 10 * per_class


def run_codec(codec: str, budget: int, seed: int, data: tuple[np.ndarray, ...]) -> dict[str, object]:
    train_x, train_y, test_x, test_y = data
    if codec == "fp32":
        mem_x, mem_y, n = fp32_reference(train_x, train_y, budget, seed)
        return {"samples": n, "cosine": 1.0, "ncm": ncm_accuracy(mem_x, mem_y, test_x, test_y), "used": codec}
    memory = ReplayMemory(MemoryConfig(budget, codec, seed=seed), train_x.shape[1])
    for task in TASKS:
        rows = np.flatnonzero(np.isin(train_y, task))
        memory.add(train_x[rows], [str(c) for c in train_y[rows]])
    assert memory.size_bytes() <= budget
    samples = memory.samples()
    mem_y = np.array([int(samples.classes[i]) for i in samples.labels])
    stats = memory.stats()
    return {"samples": stats.samples, "cosine": stats.mean_reconstruction_cosine, "used": stats.codec,
            "ncm": ncm_accuracy(samples.embeddings, mem_y, test_x, test_y)}  # fmt: skip


def measure(args: argparse.Namespace) -> dict:
    """Every codec at every budget over the seeds: one row each (`ncm`: the seeds' accuracies; None: too small)."""
    start = time.perf_counter()
    encoder = Encoder(ensure_model("bundled").root, threads=os.cpu_count())
    train_x, train_y = fashion_embeddings(encoder, "train", args.train_per_class)
    test_x, test_y = fashion_embeddings(encoder, "test", args.test_per_class)
    data = (train_x, train_y, test_x, test_y)
    rows = []
    for budget_text in args.budgets.split(","):
        budget = parse_bytes(budget_text)
        for codec in CODECS:
            try:
                runs = [run_codec(codec, budget, seed, data) for seed in range(args.seeds)]
            except BudgetError:
                rows.append({"budget": budget, "codec": codec, "ncm": None})
                continue
            rows.append({"budget": budget, "codec": codec, "used": runs[0]["used"], "samples": int(runs[0]["samples"]),
                         "cosine": float(runs[0]["cosine"]), "ncm": [float(r["ncm"]) for r in runs]})  # fmt: skip
            print(f"{budget_text} {codec}: {100 * statistics.mean(rows[-1]['ncm']):.1f}", flush=True)
    return {"dim": int(train_x.shape[1]), "train": len(train_x), "test": len(test_x), "seeds": args.seeds,
            "seconds": round(time.perf_counter() - start), "date": time.strftime("%Y-%m-%d"), "rows": rows}  # fmt: skip


def report(r: dict) -> str:
    """The table, from a results JSON (what the .md beside it holds, in a code block)."""
    lines = [f"bundled backbone, {r['dim']}-d; memory filled by 5 tasks x 2 classes from {r['train']} Fashion-MNIST "
             f"train embeddings; NCM accuracy on {r['test']} test images; {r['seeds']} seeds (mean +- std); "
             f"{r['date']}", "", HEADER]
    for x in r["rows"]:
        budget = format_bytes(x["budget"])
        if x["ncm"] is None:
            lines.append(f"{budget:>9} {x['codec']:<6} {'':<5} {'too small for 10 classes':>45}")
            continue
        n, acc = x["samples"], x["ncm"]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        lines.append(f"{budget:>9} {x['codec']:<6} {x['used']!s:<5} {n:>8} {n / x['budget'] * 1e6:>11.0f} "
                     f"{x['cosine']:>9.4f} {100 * statistics.mean(acc):>7.1f} +- {100 * std:>3.1f}")  # fmt: skip
    return "\n".join([*lines, "", f"({r['seconds']} s)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="16KB,64KB,256KB,1MB,8MB")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=200)
    add_options(parser, "memory-codecs.json")
    args = parser.parse_args()
    keep(args, "memory-codecs.json", lambda: measure(args), report)


if __name__ == "__main__":
    main()
