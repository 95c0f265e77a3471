"""`edgecl bench --suite methods`: which method should be the default? Every candidate on every cell of the range
users bring (images per class x classes per task, budgets 16 KB-8 MB; class- and domain-incremental), 3 seeds,
beside the full-memory reference (the same method with a budget that holds every embedding) and the budget's share
of it. The reading: where the DRO reweighting helps (gdro_ce vs er: the same cross-entropy with and without the
reweighting), and the one method never more than DEFAULT_TOLERANCE behind the best in any cell.

Runs go to two worker processes (one torch thread each) so that the sweep uses both cores of a small machine.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.units import parse_bytes

FULL = "full"  # the budget of the full-memory reference: every embedding kept (FULL_BYTES holds them at fp32)
FULL_BYTES = 256 * 2**20
DEFAULT_TOLERANCE = 0.01  # the default is never more than 1 point behind the best method of a cell


@dataclass(frozen=True)
class MethodSuite:
    methods: tuple[str, ...]
    class_stream: str
    per_class: tuple[int, ...]  # class-incremental: training images per class...
    shapes: tuple[str, ...]  # ...x classes per task (edgecl.bench.task_sizes.SHAPES), at `budget`
    budget: str
    budget_sweep: tuple[str, ...]  # class-incremental at sweep_per_class / sweep_shape
    sweep_per_class: int
    sweep_shape: str
    domain_stream: str
    domain_per_class: tuple[int, ...]  # domain-incremental: images per class and domain, x domain_budgets
    domain_budgets: tuple[str, ...]
    seeds: int
    test_per_class: int = 150
    workers: int = 2


METHOD_SUITES = {
    "methods": MethodSuite(("gdro", "gdro_ce", "er", "er_cb", "ncm"), "fashion-mnist", (10, 25, 100, 400),
                           ("1", "2", "3-4"), "64KB", ("16KB", "64KB", "256KB", "1MB", "8MB"), 100, "3-4",
                           "digits-domains", (25, 400), ("16KB", "64KB", "256KB", "1MB", "8MB"), 3),
    "methods-quick": MethodSuite(("gdro", "gdro_ce", "er"), "fashion-mnist", (25,), ("2",), "64KB", ("16KB",), 25,
                                 "2", "digits-domains", (25,), ("64KB",), 1, 50, 1),
}  # fmt: skip

Job = tuple[str, str, int, str, str, int]  # (stream, method, per_class, shape ("" for domain), budget, seed)


def cells(suite: MethodSuite) -> list[tuple[str, int, str, str]]:
    """(stream, per_class, shape, budget) of every cell of the table, in table order, without repeats."""
    table = [(suite.class_stream, n, s, suite.budget) for n, s in itertools.product(suite.per_class, suite.shapes)]
    sweep = [(suite.class_stream, suite.sweep_per_class, suite.sweep_shape, b) for b in suite.budget_sweep]
    domain = [(suite.domain_stream, n, "", b) for n, b in itertools.product(suite.domain_per_class,
                                                                             suite.domain_budgets)]  # fmt: skip
    return list(dict.fromkeys(table + sweep + domain))


def jobs(suite: MethodSuite) -> list[Job]:
    """Every run: each cell's methods and, once per (stream, per_class, shape), the full-memory references."""
    out: list[Job] = []
    for stream, per_class, shape, budget in cells(suite):
        out += [(stream, m, per_class, shape, b, seed) for m in suite.methods for b in (budget, FULL)
                for seed in range(suite.seeds)]  # fmt: skip
    return list(dict.fromkeys(out))


_WORKER: dict[str, Any] = {}


def _worker_init(suite: MethodSuite) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER["suite"] = suite


def _streams(suite: MethodSuite) -> dict[str, tuple[Any, np.ndarray, np.ndarray]]:
    """Both streams with their class and held-out text embeddings, built once per process (embeddings cached)."""
    if "streams" not in _WORKER:
        from edgecl.bench.streams import Embedder, build_streams
        from edgecl.encoder import Encoder
        from edgecl.model_dir import ensure_model
        from edgecl.prompts import prompt_for

        encoder = Encoder(ensure_model("bundled").root)
        most = max((*suite.per_class, suite.sweep_per_class, *suite.domain_per_class))
        built, _ = build_streams([suite.class_stream, suite.domain_stream], Embedder(encoder), 0, most,
                                 suite.test_per_class, None)  # fmt: skip
        _WORKER["streams"] = {s.name: (s, encoder.encode_texts([prompt_for(x) for x in s.labels]),
                                       encoder.encode_texts([prompt_for(x) for x in s.heldout_labels]))
                              for s in built}  # fmt: skip
    return _WORKER["streams"]


def run_job(job: Job) -> dict[str, Any]:
    """One run, in a worker process."""
    from edgecl.bench.runner import RunSpec, run_stream
    from edgecl.bench.task_sizes import resized, resized_domains

    stream_name, method, per_class, shape, budget, seed = job
    stream, text, held = _streams(_WORKER["suite"])[stream_name]
    cut = resized(stream, per_class, shape, seed) if shape else resized_domains(stream, per_class)
    bytes_ = FULL_BYTES if budget == FULL else parse_bytes(budget)
    run = run_stream(cut, RunSpec(method, bytes_, "auto", seed), text, held)
    rows = sum(len(t.train_x) for t in cut.tasks)
    return {k: run[k] for k in ("method", "seed", "last_accuracy", "memory_bytes", "seconds_per_task",
                                "codec_used")} | {"stream": stream_name, "per_class": per_class, "shape": shape,
                                                  "budget": budget, "train_rows": rows}  # fmt: skip


def run_method_suite(suite: MethodSuite, out_dir: Path, name: str = "methods",
                     progress: Callable[[str, int, int], None] = lambda s, d, t: None) -> dict[str, Any]:  # fmt: skip
    """Run every job (two processes); writes results.json and report.md."""
    start = time.perf_counter()
    todo = jobs(suite)
    _worker_init(suite)
    progress("embedding data sets (cached after the first run)", 0, len(todo))
    _streams(suite)  # embed once here, so that the workers only read the cache
    _WORKER.pop("streams")
    runs = []
    with ProcessPoolExecutor(suite.workers, initializer=_worker_init, initargs=(suite,)) as pool:
        for i, run in enumerate(pool.map(run_job, todo)):
            runs.append(run)
            progress(f"{run['stream']} {run['method']} {run['per_class']}/class {run['shape'] or 'domains'} "
                     f"{run['budget']} seed {run['seed']}", i + 1, len(todo))  # fmt: skip
    results = {"suite": name, "config": asdict(suite), "backbone": "bundled", "runs": runs,
               "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    results["summary"] = summary(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "report.md").write_text(method_markdown(results))
    return results


def _mean(runs: list[dict[str, Any]], key: str = "last_accuracy") -> float:
    return statistics.mean(float(r[key]) for r in runs) if runs else float("nan")


def _table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per cell: mean last accuracy per method, the full-memory reference per method, and the budget's share."""
    cfg = results["config"]
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in results["runs"]:
        by.setdefault((r["stream"], r["per_class"], r["shape"], r["budget"], r["method"]), []).append(r)
    rows = []
    for stream, per_class, shape, budget in cells(MethodSuite(**{**cfg, "methods": tuple(cfg["methods"])})):
        acc = {m: _mean(by.get((stream, per_class, shape, budget, m), [])) for m in cfg["methods"]}
        full = {m: _mean(by.get((stream, per_class, shape, FULL, m), [])) for m in cfg["methods"]}
        std = {m: statistics.stdev([r["last_accuracy"] for r in by[(stream, per_class, shape, budget, m)]])
               if len(by.get((stream, per_class, shape, budget, m), [])) > 1 else 0.0 for m in cfg["methods"]}
        full_bytes = _mean(by.get((stream, per_class, shape, FULL, cfg["methods"][0]), []), "memory_bytes")
        rows.append({"stream": stream, "per_class": per_class, "shape": shape, "budget": budget, "accuracy": acc,
                     "std": std, "full": full, "full_bytes": full_bytes,
                     "share": parse_bytes(budget) / full_bytes if full_bytes else float("nan")})  # fmt: skip
    return rows


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Per method: the worst gap to the best method of a cell, the mean over cells, the cells where it is more than
    DEFAULT_TOLERANCE behind; the method the rule picks; and how much gdro_ce gains over er (the reweighting)."""
    rows = _table(results)
    methods = results["config"]["methods"]
    out: dict[str, Any] = {"methods": {}}
    for m in methods:
        gaps = [max(r["accuracy"].values()) - r["accuracy"][m] for r in rows]
        out["methods"][m] = {"mean_accuracy": statistics.mean(r["accuracy"][m] for r in rows),
                             "worst_gap": max(gaps), "cells_behind": sum(g > DEFAULT_TOLERANCE for g in gaps)}
    never_behind = [m for m in methods if out["methods"][m]["worst_gap"] <= DEFAULT_TOLERANCE]
    best_mean = max(methods, key=lambda m: out["methods"][m]["mean_accuracy"])
    out["never_behind"] = never_behind
    out["pick"] = max(never_behind, key=lambda m: out["methods"][m]["mean_accuracy"]) if never_behind else best_mean
    out["pick_rule"] = "never behind" if never_behind else "best mean (no method is never behind)"
    if "gdro_ce" in methods and "er" in methods:
        gains = [r["accuracy"]["gdro_ce"] - r["accuracy"]["er"] for r in rows]
        out["reweighting_gain_ce"] = {"mean": statistics.mean(gains), "min": min(gains), "max": max(gains)}
    return out


def _name(row: dict[str, Any]) -> str:
    if row["shape"]:
        return f"{row['stream']} {row['per_class']}/class, tasks of {row['shape']}, {row['budget']}"
    return f"{row['stream']} {row['per_class']}/class/domain, {row['budget']}"


def method_markdown(results: dict[str, Any]) -> str:
    cfg, rows, summ = results["config"], _table(results), results.get("summary") or summary(results)
    methods = list(cfg["methods"])
    lines = [f"# edgecl bench — suite `{results['suite']}`", "",
             f"Bundled backbone; {cfg['seeds']} seed(s); {cfg['test_per_class']} test images per class; codec auto; "
             f"last accuracy (%) after the final task, mean over seeds (± std); full = the same method keeping every "
             f"embedding; share = budget / the full memory's bytes; {results['seconds']:.0f} s in all.", "",
             "| cell | " + " | ".join(methods) + " | best − default | full memory (" + " / ".join(methods)
             + ") | share |", "|---|" + "---|" * (len(methods) + 3)]  # fmt: skip
    from edgecl.learn.methods import DEFAULT_METHOD

    for r in rows:
        acc = r["accuracy"]
        best = max(acc, key=lambda m: acc[m])
        cells_ = [("**" if m == best else "") + f"{100 * acc[m]:.1f} ± {100 * r['std'][m]:.1f}"
                  + ("**" if m == best else "") for m in methods]  # fmt: skip
        gap = f"{100 * (acc[best] - acc[DEFAULT_METHOD]):.1f}" if DEFAULT_METHOD in acc else ""
        full = " / ".join(f"{100 * r['full'][m]:.1f}" for m in methods)
        lines.append(f"| {_name(r)} | " + " | ".join(cells_) + f" | {gap} | {full} | {100 * r['share']:.1f}% |")
    lines += ["", "| method | mean over cells | worst gap to a cell's best | cells > 1 point behind |",
              "|---|---|---|---|"]  # fmt: skip
    for m in methods:
        s = summ["methods"][m]
        lines.append(f"| {m} | {100 * s['mean_accuracy']:.1f} | {100 * s['worst_gap']:.1f} | {s['cells_behind']} |")
    lines += ["", f"Rule (never more than {100 * DEFAULT_TOLERANCE:.0f} point behind the best in any cell, else the "
              f"best mean): **{summ['pick']}** ({summ['pick_rule']}); never behind: "
              f"{', '.join(summ['never_behind']) or 'none'}."]  # fmt: skip
    if "reweighting_gain_ce" in summ:
        g = summ["reweighting_gain_ce"]
        lines.append(f"DRO reweighting on cross-entropy (gdro_ce − er): mean {100 * g['mean']:+.1f}, from "
                     f"{100 * g['min']:+.1f} to {100 * g['max']:+.1f} points over the cells.")
    return "\n".join(lines) + "\n"

