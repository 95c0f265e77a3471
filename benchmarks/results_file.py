"""What the benchmarks that keep their results share: the commit a run measured, the --out / --report-only options,
and writing the results JSON with, beside it, the .md report (a code block) that the docs include."""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def commit() -> str:
    """The checkout's short commit hash, with "+dirty" when files other than the results differ from it ("unknown"
    outside a git checkout)."""
    git = ["git", "-C", str(RESULTS.parent)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        return "unknown"
    changed = subprocess.run([*git, "status", "--porcelain", "--", ":/", ":(exclude,top)benchmarks/results"],
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
    return f"{head}+dirty" if changed else head


def add_options(parser: argparse.ArgumentParser, default_name: str) -> None:
    """--out (default benchmarks/results/`default_name`) and --report-only."""
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results JSON (default benchmarks/results/{default_name})")  # fmt: skip
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from --out's JSON, run nothing")


def keep(args: argparse.Namespace, default_name: str, measure: Callable[[], dict[str, Any]],
         report: Callable[[dict[str, Any]], str]) -> None:  # fmt: skip
    """Measure (unless --report-only: read --out's JSON instead), write the JSON and the .md beside it, print the
    report. Every run rewrites them: give --out elsewhere for a trial with other arguments."""
    out = args.out or RESULTS / default_name
    results = json.loads(out.read_text()) if args.report_only else measure()
    if not args.report_only:
        out.write_text(json.dumps(results, indent=1) + "\n")
    text = report(results)
    out.with_suffix(".md").write_text(f"```\n{text}\n```\n")
    print(text)
