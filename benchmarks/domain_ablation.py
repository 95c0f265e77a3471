"""Methods side by side, class- and domain-incremental, at equal byte budgets: the ablation table in docs/method.md.

    python benchmarks/domain_ablation.py                       # 3 seeds, 2 worker processes, about 20 minutes
    python benchmarks/domain_ablation.py --seeds 1 --workers 1 --budgets 64KB
    python benchmarks/domain_ablation.py --report-only                # the table again from --out's JSON

Streams: class-incremental Fashion-MNIST and MNIST (5 tasks x 2 classes) and two domain-incremental streams over
the same 10 classes (digits: MNIST -> optdigits -> inverted -> rotated; fashion: original -> inverted -> rotated ->
faded). Methods: gdro (the paper's: DRO over (class, domain) groups), gcl, er, er_cb (the default), ncm; plus
gdro with the other DRO groups (class, the paper's; domain) on the domain streams. 400 train / 150 test images per
class, bundled backbone, memory codec auto. Prints last accuracy, forgetting and zero-shot accuracy on never-learned
classes after the stream (mean +- std over seeds) and writes every run to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from edgecl.units import parse_bytes

CLASS_STREAMS = ("fashion-mnist", "mnist")
DOMAIN_STREAMS = ("digits-domains", "fashion-domains")
METHODS = ("gdro", "gcl", "er", "er_cb", "ncm")
GROUP_VARIANTS = ("class", "domain")  # gdro's other DRO groups, run on the domain streams


def jobs(seeds: int, budgets: list[str], class_budgets: list[str]) -> list[tuple[str, str, str, str, int]]:
    """(stream, method, groups or "", budget, seed) for every run."""
    out = []
    for seed in range(seeds):
        out += [(s, m, "", b, seed) for s in CLASS_STREAMS for m in METHODS for b in class_budgets]
        out += [(s, m, "", b, seed) for s in DOMAIN_STREAMS for m in METHODS for b in budgets]
        out += [(s, "gdro", g, b, seed) for s in DOMAIN_STREAMS for g in GROUP_VARIANTS for b in budgets[:2]]
    return out


_STREAMS: dict[str, Any] = {}


def run(job: tuple[str, str, str, str, int]) -> dict[str, Any]:
    """One run in a worker process (streams are built once per process from the embedding cache)."""
    from edgecl.bench.embeddings import Embedder
    from edgecl.bench.runner import RunSpec, run_stream
    from edgecl.bench.streams import build_streams
    from edgecl.encoder import Encoder
    from edgecl.model_dir import ensure_model
    from edgecl.prompts import prompt_for

    name, method, groups, budget, seed = job
    if name not in _STREAMS:
        encoder = Encoder(ensure_model("bundled").root)
        (stream,), _ = build_streams([name], Embedder(encoder), 0, 400, 150, None)
        text = encoder.encode_texts([prompt_for(label) for label in stream.labels])
        held = encoder.encode_texts([prompt_for(label) for label in stream.heldout_labels])
        _STREAMS[name] = (stream, text, held)
    stream, text, held = _STREAMS[name]
    overrides = {"groups": groups} if groups else None
    result = run_stream(stream, RunSpec(method, parse_bytes(budget), "auto", seed), text, held, overrides)
    label = method if not groups else f"gdro ({groups} groups)"
    return {k: result[k] for k in ("stream", "seed", "last_accuracy", "forgetting", "zero_shot_before",
                                   "zero_shot_after", "memory_bytes", "seconds_per_task")} | {
        "method": label, "budget": budget, "kind": "domain" if name in DOMAIN_STREAMS else "class"}  # fmt: skip


def _cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: one row per stream x method, last accuracy / forgetting / zero-shot after per budget."""
    budgets = list(dict.fromkeys(r["budget"] for r in sorted(runs, key=lambda r: parse_bytes(r["budget"]))))
    lines = ["| stream | method | " + " | ".join(f"{b} last acc | {b} forgetting" for b in budgets)
             + " | zero-shot before → after |", "|---|---|" + "---|---|" * len(budgets) + "---|"]  # fmt: skip
    streams = list(dict.fromkeys(r["stream"] for r in runs))
    for stream in streams:
        methods = list(dict.fromkeys(r["method"] for r in runs if r["stream"] == stream))
        for method in methods:
            mine = [r for r in runs if r["stream"] == stream and r["method"] == method]
            cells = []
            for b in budgets:
                at = [r for r in mine if r["budget"] == b]
                cells += [_cell([r["last_accuracy"] for r in at]), _cell([r["forgetting"] for r in at])] if at else [
                    "", ""]  # fmt: skip
            zs_before = statistics.mean(r["zero_shot_before"] for r in mine)
            zs_after = statistics.mean(r["zero_shot_after"] for r in mine)
            lines.append(f"| {stream} | {method} | " + " | ".join(cells)
                         + f" | {100 * zs_before:.1f} → {100 * zs_after:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", default="64KB,256KB,1MB", help="domain streams")
    parser.add_argument("--class-budgets", default="64KB,1MB", help="class-incremental streams")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/domain-ablation.json"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from --out's JSON, run nothing")
    args = parser.parse_args()
    if args.report_only:
        write_table(json.loads(args.out.read_text())["runs"], args.out)
        return
    start = time.perf_counter()
    todo = jobs(args.seeds, args.budgets.split(","), args.class_budgets.split(","))
    todo.sort(key=lambda j: (j[0], j[4]))  # a worker keeps reusing the streams it has built
    runs = []
    with ProcessPoolExecutor(args.workers) as pool:
        for i, result in enumerate(pool.map(run, todo, chunksize=4), 1):
            runs.append(result)
            print(f"[{i}/{len(todo)}] {result['stream']} {result['method']} {result['budget']} seed "
                  f"{result['seed']}: {100 * result['last_accuracy']:.1f}", flush=True)  # fmt: skip
    seconds = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seconds": round(seconds, 1), "seeds": args.seeds, "runs": runs}, indent=1))
    print(f"\n{args.seeds} seed(s), 400 train / 150 test images per class, codec auto, {seconds:.0f} s\n")
    print(write_table(runs, args.out))


def write_table(runs: list[dict[str, Any]], out: Path) -> str:
    """The markdown table beside the JSON (`<out>.md`, what docs/method.md includes); returns it."""
    text = table(runs)
    out.with_suffix(".md").write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
