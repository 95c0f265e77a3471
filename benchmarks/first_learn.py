"""First learn on a fresh machine (the one-time export of the bundled backbone included), later learns, and a cold
classify: whole `edgecl` processes in a fresh $EDGECL_HOME, as a new user runs them, on this machine's CPU kind.

    python benchmarks/first_learn.py                # 3 tasks of 2 Fashion-MNIST classes x 30 photos, 64KB
    python benchmarks/first_learn.py --report-only  # the report again from this CPU kind's JSON

Writes benchmarks/results/first-learn-<int8_isa>.json and, beside it, the .md that docs/benchmarks.md includes: the
figures depend on the CPU kind, so each kind measured keeps its own pair.
Every run rewrites them: give --out elsewhere for a trial with other arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import add_options, commit, keep

from edgecl.demo import write_stream
from edgecl.model_dir import cpu_int8_isa

ROOT = Path(__file__).resolve().parents[1]


def _edgecl(home: Path, *args: str) -> tuple[float, dict]:
    """Wall seconds of one `edgecl ... --json` process and its JSON answer."""
    env = os.environ | {"EDGECL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cli", *args, "--json"], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True)  # fmt: skip
    return time.perf_counter() - start, json.loads(out.stdout)


def _measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgecl-first-learn-") as tmp:
        home = Path(tmp) / "home"
        tasks, test_root = write_stream(Path(tmp) / "data", args.photos, 1)
        state = str(Path(tmp) / "state")
        learns = []
        for task in tasks[: args.tasks]:
            seconds, _ = _edgecl(home, "learn", "--task-dir", str(task), "--budget", args.budget,
                                 "--state-dir", state, "--backbone", "bundled")  # fmt: skip
            learns.append(round(seconds, 2))
        image = str(next(test_root.rglob("*.png")))
        classify = [_edgecl(home, "classify", image, "--state-dir", state)[0] for _ in range(args.classify_rounds)]
        manifest = json.loads((home / "models" / "bundled" / "manifest.json").read_text())
    recipes = {}
    for tower in ("text", "image"):
        quant = manifest["towers"][tower]["quantization"]
        recipes[tower] = {"chosen": quant["chosen"], "tried": len(quant["tried"]),
                          "cosine": quant["tried"][-1]["cosine_mean"], "agreement": quant.get("agreement", 0)}
    return {"int8_isa": cpu_int8_isa(), "cores": os.cpu_count(), "photos": args.photos, "budget": args.budget,
            "commit": commit(), "date": time.strftime("%Y-%m-%d"), "learns_s": learns,
            "classify_cold_s": round(statistics.median(classify), 3), "recipes": recipes}  # fmt: skip



def report(r: dict) -> str:
    """The printed table, from a results JSON (what the .md beside it holds, in a code block)."""
    learns = r["learns_s"]
    lines = [f"fresh $EDGECL_HOME, bundled backbone, int8_isa {r['int8_isa']}, {r['cores']} cores; tasks of 2 "
             f"classes x {r['photos']} photos, {r['budget']} (commit {r['commit']}, {r['date']})"]  # fmt: skip
    for tower, q in r["recipes"].items():
        lines.append(f"  {tower} recipe {q['chosen']} after {q['tried']} tried (cosine {q['cosine']:.4f}, "
                     f"agreement {q['agreement']:.3f})")  # fmt: skip
    lines += [f"{'step':<36} {'wall s':>7}", f"{'first learn (export included)':<36} {learns[0]:7.1f}"]
    lines += [f"{f'learn {i}':<36} {seconds:7.1f}" for i, seconds in enumerate(learns[1:], 2)]
    lines.append(f"{'classify one image, cold (median)':<36} {r['classify_cold_s']:7.2f}")
    lines.append(f"first learn vs a later one: {learns[0] / statistics.median(learns[1:] or learns):.1f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=30, help="photos per class")
    parser.add_argument("--budget", default="64KB")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--classify-rounds", type=int, default=3)
    add_options(parser, "first-learn-<int8_isa>.json")
    args = parser.parse_args()
    keep(args, f"first-learn-{cpu_int8_isa()}.json", lambda: _measure(args), report)


if __name__ == "__main__":
    main()
