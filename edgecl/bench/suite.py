"""`edgecl bench`: suites of streams x methods x budgets x codecs x seeds, aggregated into JSON, Markdown and PNG."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecl.learn.methods import METHOD_NAMES, PAPER_METHOD
from edgecl.memory.codec import CODEC_NAMES
from edgecl.prompts import prompt_for
from edgecl.units import BudgetError, format_bytes, parse_bytes


@dataclass(frozen=True)
class Suite:
    streams: tuple[str, ...]
    methods: tuple[str, ...]
    main_budget: str
    main_codec: str
    budget_sweep: tuple[str, ...]  # run on the first stream, every method
    codec_sweep: tuple[str, ...]  # run on the first stream, PAPER_METHOD, every sweep budget
    seeds: int
    train_per_class: int
    test_per_class: int
    learner_settings: tuple[tuple[str, Any], ...] = ()  # other learner settings by flat name (LearnerConfig.from_flat)


SUITES = {
    "quick": Suite(("fashion-mnist",), METHOD_NAMES, "64KB", "int8", ("16KB", "64KB", "1MB"), (), 1, 150, 60),
    "default": Suite(("fashion-mnist", "mnist", "digits-domains", "cifar100", "domainnet"), METHOD_NAMES, "64KB",
                     "int8", ("16KB", "64KB", "256KB", "1MB", "8MB"), (*CODEC_NAMES, "auto"), 3, 400, 150),
}  # fmt: skip


def run_suite(name: str, out_dir: Path, data_root: Path | None = None, download: bool = False,
              progress: Callable[[str, int, int], None] = lambda s, d, t: None,
              suite: Suite | None = None) -> dict[str, Any]:  # fmt: skip
    """Run a suite (SUITES[name], or `suite` under that name) with the bundled backbone; writes results.json,
    report.md and PNG plots into out_dir."""
    from edgecl.bench.runner import RunSpec, run_stream
    from edgecl.bench.streams import Embedder, build_streams
    from edgecl.encoder import Encoder
    from edgecl.model_dir import ensure_model

    suite = suite or SUITES[name]
    start = time.perf_counter()
    encoder = Encoder(ensure_model("bundled", None, lambda m: progress(m, 0, 0)).root)
    progress("embedding data sets (cached after the first run)", 0, 0)
    streams, notes = build_streams(list(suite.streams), Embedder(encoder), 0, suite.train_per_class,
                                   suite.test_per_class, data_root, download)  # fmt: skip
    jobs = _jobs(suite, [s.name for s in streams])
    runs = []
    for i, (stream_name, method, budget, codec, seed) in enumerate(jobs):
        stream = next(s for s in streams if s.name == stream_name)
        text = encoder.encode_texts([prompt_for(label) for label in stream.labels])
        held = (
            encoder.encode_texts([prompt_for(label) for label in stream.heldout_labels])
            if stream.heldout_labels
            else text[:0]
        )
        try:
            runs.append(run_stream(stream, RunSpec(method, parse_bytes(budget), codec, seed), text, held,
                                   dict(suite.learner_settings)))
        except BudgetError as exc:  # e.g. fp16 at 16 KB cannot hold one sample per class: a result, not a crash
            notes.append(f"{stream_name} {method} {budget} {codec}: not run, {exc}")
        progress(f"{stream_name} {method} {budget} {codec} seed {seed}", i + 1, len(jobs))
    notes = list(dict.fromkeys(notes))  # one note per configuration, not per seed
    results = {"suite": name, "config": asdict(suite), "notes": notes, "backbone": "bundled", "runs": runs,
               "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    write_report(results, out_dir)
    return results


def _jobs(suite: Suite, streams: list[str]) -> list[tuple[str, str, str, str, int]]:
    jobs = set()
    for seed in range(suite.seeds):
        for stream in streams:
            jobs |= {(stream, m, suite.main_budget, suite.main_codec, seed) for m in suite.methods}
        if streams:
            jobs |= {(streams[0], m, b, suite.main_codec, seed) for m in suite.methods for b in suite.budget_sweep}
            jobs |= {(streams[0], PAPER_METHOD, b, c, seed) for b in suite.budget_sweep for c in suite.codec_sweep}
    return sorted(jobs)


METRICS = ("last_accuracy", "average_incremental_accuracy", "forgetting", "backward_transfer", "zero_shot_before",
           "zero_shot_after", "memory_bytes", "seconds_per_task", "peak_rss_bytes")  # fmt: skip


def aggregate(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every metric, grouped by `keys`."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in keys), []).append(run)
    rows = []
    for group, members in sorted(groups.items()):
        row = dict(zip(keys, group, strict=True)) | {"seeds": len(members)}
        for metric in METRICS:
            values = [float(m[metric]) for m in members]
            row[metric] = statistics.mean(values)
            row[metric + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def _pct(row: dict[str, Any], metric: str) -> str:
    return f"{100 * row[metric]:.1f} ± {100 * row[metric + '_std']:.1f}"


def main_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs at the suite's main budget and codec (the side-by-side table)."""
    cfg = results["config"]
    budget = parse_bytes(cfg["main_budget"])
    return [r for r in results["runs"] if r["budget_bytes"] == budget and r["codec"] == cfg["main_codec"]]


def markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [f"# edgecl bench — suite `{results['suite']}`", "",
             f"Bundled backbone; {cfg['seeds']} seed(s); {cfg['train_per_class']} train / {cfg['test_per_class']} test "
             f"images per class; memory {cfg['main_budget']} {cfg['main_codec']} unless swept; "
             f"{results['seconds']:.0f} s in all.", ""]  # fmt: skip
    lines += [f"- {note}" for note in results["notes"]] + [""]
    main = main_runs(results)
    lines += ["| stream | method | last acc | avg inc acc | forgetting | BWT | zero-shot before → after | bytes "
              "| s/task |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in aggregate(main, ("stream", "method")):
        lines.append(f"| {row['stream']} | {row['method']} | {_pct(row, 'last_accuracy')} | "
                     f"{_pct(row, 'average_incremental_accuracy')} | {_pct(row, 'forgetting')} | "
                     f"{_pct(row, 'backward_transfer')} | {100 * row['zero_shot_before']:.1f} → "
                     f"{100 * row['zero_shot_after']:.1f} | {row['memory_bytes']:.0f} | "
                     f"{row['seconds_per_task']:.2f} |")  # fmt: skip
    first = cfg["streams"][0]
    sweep = [r for r in results["runs"] if r["stream"] == first and r["codec"] == cfg["main_codec"]]
    budgets = sorted({r["budget_bytes"] for r in sweep})
    header = ["| method | " + " | ".join(format_bytes(b) for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    lines += ["", f"Last accuracy vs budget ({first}, {cfg['main_codec']}):", "", *header]
    table = {(r["method"], r["budget_bytes"]): r for r in aggregate(sweep, ("method", "budget_bytes"))}
    for method in cfg["methods"]:
        cells = [_pct(table[(method, b)], "last_accuracy") if (method, b) in table else "" for b in budgets]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    codecs = [r for r in results["runs"] if r["stream"] == first and r["method"] == PAPER_METHOD]
    if cfg["codec_sweep"]:
        table = {(r["codec"], r["budget_bytes"]): r for r in aggregate(codecs, ("codec", "budget_bytes"))}
        title = f"{PAPER_METHOD} last accuracy vs codec and budget ({first}):"
        lines += ["", title, "", "| codec" + header[0][8:], header[1]]
        for codec in cfg["codec_sweep"]:
            cells = [_pct(table[(codec, b)], "last_accuracy") if (codec, b) in table else "" for b in budgets]
            lines.append(f"| {codec} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "report.md").write_text(markdown(results))
    from edgecl.bench.plots import plot_all

    plot_all(results, main_runs(results), out_dir)
