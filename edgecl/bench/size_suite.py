"""`edgecl bench --suite task-size`: last accuracy per method across images per class x task shape, and a budget
sweep at one task size, so that a default is judged where users live (10-100 photos per class), not at one size."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecl.bench.suite import aggregate
from edgecl.learn.methods import DEFAULT_METHOD
from edgecl.units import format_bytes, parse_bytes


@dataclass(frozen=True)
class SizeSuite:
    streams: tuple[str, ...]
    methods: tuple[str, ...]
    per_class: tuple[int, ...]  # training images per class
    shapes: tuple[str, ...]  # keys of edgecl.bench.task_sizes.SHAPES
    budget: str  # for the task-size table
    budget_sweep: tuple[str, ...]  # at sweep_per_class / sweep_shape
    sweep_per_class: int
    sweep_shape: str
    seeds: int
    codec: str = "auto"
    test_per_class: int = 150


SIZE_SUITES = {
    "task-size": SizeSuite(("fashion-mnist", "mnist"), ("er_cb", "gdro", "ncm", "er", "finetune"), (10, 25, 100, 400),
                           ("1", "2", "3-4"), "64KB", ("16KB", "64KB", "256KB", "1MB"), 100, "3-4", 3),
}  # fmt: skip


def jobs(suite: SizeSuite) -> list[tuple[str, str, int, str, str, int]]:
    """(stream, method, per_class, shape, budget, seed) for the size table and the budget sweep, without repeats."""
    table = itertools.product(suite.streams, suite.methods, suite.per_class, suite.shapes, (suite.budget,),
                              range(suite.seeds))  # fmt: skip
    sweep = itertools.product(suite.streams, suite.methods, (suite.sweep_per_class,), (suite.sweep_shape,),
                              suite.budget_sweep, range(suite.seeds))  # fmt: skip
    return sorted(set(table) | set(sweep))


def run_size_suite(suite: SizeSuite, out_dir: Path, name: str = "task-size",
                   progress: Callable[[str, int, int], None] = lambda s, d, t: None) -> dict[str, Any]:  # fmt: skip
    """Run every job with the bundled backbone through the Learner; writes results.json and report.md."""
    from edgecl.bench.runner import RunSpec, run_stream
    from edgecl.bench.streams import Embedder, build_streams
    from edgecl.bench.task_sizes import resized
    from edgecl.encoder import Encoder
    from edgecl.model_dir import ensure_model
    from edgecl.prompts import prompt_for

    start = time.perf_counter()
    encoder = Encoder(ensure_model("bundled", None, lambda m: progress(m, 0, 0)).root)
    progress("embedding data sets (cached after the first run)", 0, 0)
    most = max((*suite.per_class, suite.sweep_per_class))
    streams, notes = build_streams(list(suite.streams), Embedder(encoder), 0, most, suite.test_per_class, None)
    by_name = {s.name: s for s in streams}
    texts = {s.name: (encoder.encode_texts([prompt_for(x) for x in s.labels]),
                      encoder.encode_texts([prompt_for(x) for x in s.heldout_labels])) for s in streams}  # fmt: skip
    todo = [j for j in jobs(suite) if j[0] in by_name]
    runs = []
    for i, (stream, method, per_class, shape, budget, seed) in enumerate(todo):
        spec = RunSpec(method, parse_bytes(budget), suite.codec, seed)
        run = run_stream(resized(by_name[stream], per_class, shape, seed), spec, *texts[stream])
        runs.append(run | {"stream": stream, "per_class": per_class, "shape": shape})
        progress(f"{stream} {method} {per_class}/class tasks of {shape} {budget} seed {seed}", i + 1, len(todo))
    results = {"suite": name, "config": asdict(suite), "notes": notes, "backbone": "bundled", "runs": runs,
               "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "report.md").write_text(size_markdown(results))
    return results


def _cell(row: dict[str, Any] | None) -> str:
    return "" if row is None else f"{100 * row['last_accuracy']:.1f} ± {100 * row['last_accuracy_std']:.1f}"


def _margins(rows: dict[str, dict[str, Any]]) -> str:
    """Default minus the better of ncm and er, and minus finetune, in points (blank where a method is missing)."""
    if DEFAULT_METHOD not in rows:
        return " | "
    best = max((rows[m]["last_accuracy"] for m in ("ncm", "er") if m in rows), default=None)
    own = rows[DEFAULT_METHOD]["last_accuracy"]
    vs_best = "" if best is None else f"{100 * (own - best):+.1f}"
    vs_ft = f"{100 * (own - rows['finetune']['last_accuracy']):+.1f}" if "finetune" in rows else ""
    return f"{vs_best} | {vs_ft}"


def size_markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    methods = list(cfg["methods"])
    head = "| " + " | ".join(methods) + " | default − max(ncm, er) | default − finetune |"
    rule = "|---|---|" + "---|" * (len(methods) + 2)
    lines = [f"# edgecl bench — suite `{results['suite']}`", "",
             f"Bundled backbone; {cfg['seeds']} seed(s); codec {cfg['codec']}; {cfg['test_per_class']} test images "
             f"per class; last accuracy (%) after the final task, mean ± std over seeds; {results['seconds']:.0f} s.",
             ""]  # fmt: skip
    lines += [f"- {note}" for note in results["notes"]]
    for stream in cfg["streams"]:
        runs = [r for r in results["runs"] if r["stream"] == stream]
        table = [r for r in runs if r["budget_bytes"] == parse_bytes(cfg["budget"])]
        keys = ("per_class", "shape", "method")
        rows = {tuple(r[k] for k in keys): r for r in aggregate(table, keys)}
        lines += ["", f"{stream}, {cfg['budget']}: images per class x classes per task", "",
                  "| images/class | classes/task " + head, rule]  # fmt: skip
        for per_class, shape in itertools.product(cfg["per_class"], cfg["shapes"]):
            cell = {m: rows[(per_class, shape, m)] for m in methods if (per_class, shape, m) in rows}
            lines.append(f"| {per_class} | {shape} | " + " | ".join(_cell(cell.get(m)) for m in methods)
                         + f" | {_margins(cell)} |")  # fmt: skip
        sweep = [r for r in runs if r["per_class"] == cfg["sweep_per_class"] and r["shape"] == cfg["sweep_shape"]]
        rows = {(r["budget_bytes"], r["method"]): r for r in aggregate(sweep, ("budget_bytes", "method"))}
        lines += ["", f"{stream}, {cfg['sweep_per_class']} images per class, tasks of {cfg['sweep_shape']} classes: "
                  "budget sweep", "", "| budget " + head, "|---|" + rule[9:]]  # fmt: skip
        for budget in sorted({b for b, _ in rows}):
            cell = {m: rows[(budget, m)] for m in methods if (budget, m) in rows}
            lines.append(f"| {format_bytes(budget)} | " + " | ".join(_cell(cell.get(m)) for m in methods)
                         + f" | {_margins(cell)} |")  # fmt: skip
    return "\n".join(lines) + "\n"
