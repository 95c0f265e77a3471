"""First learn on a fresh machine (the one-time export of the bundled backbone included), later learns, and a cold
classify: whole `edgecl` processes in a fresh $EDGECL_HOME, as a new user runs them, on this machine's CPU kind.

    python benchmarks/first_learn.py            # 3 tasks of 2 Fashion-MNIST classes x 30 photos, 64KB
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=30, help="photos per class")
    parser.add_argument("--budget", default="64KB")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--classify-rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgecl-first-learn-") as tmp:
        home = Path(tmp) / "home"
        tasks, test_root = write_stream(Path(tmp) / "data", args.photos, 1)
        state = str(Path(tmp) / "state")
        learns = []
        for task in tasks[: args.tasks]:
            seconds, _ = _edgecl(home, "learn", "--task-dir", str(task), "--budget", args.budget,
                                 "--state-dir", state, "--backbone", "bundled")  # fmt: skip
            learns.append(seconds)
        image = str(next(test_root.rglob("*.png")))
        classify = [_edgecl(home, "classify", image, "--state-dir", state)[0] for _ in range(args.classify_rounds)]
        manifest = json.loads((home / "models" / "bundled" / "manifest.json").read_text())
    towers = manifest["towers"]
    print(f"fresh $EDGECL_HOME, bundled backbone, int8_isa {cpu_int8_isa()}, {os.cpu_count()} cores; tasks of 2 "
          f"classes x {args.photos} photos, {args.budget}")
    for tower in ("text", "image"):
        quant = towers[tower]["quantization"]
        print(f"  {tower} recipe {quant['chosen']} after {len(quant['tried'])} tried "
              f"(cosine {quant['tried'][-1]['cosine_mean']:.4f}, agreement {quant.get('agreement', 0):.3f})")
    print(f"{'step':<36} {'wall s':>7}")
    print(f"{'first learn (export included)':<36} {learns[0]:7.1f}")
    for i, seconds in enumerate(learns[1:], 2):
        print(f"{f'learn {i}':<36} {seconds:7.1f}")
    print(f"{'classify one image, cold (median)':<36} {statistics.median(classify):7.2f}")
    print(f"first learn vs a later one: {learns[0] / statistics.median(learns[1:] or learns):.1f}x")


if __name__ == "__main__":
    main()
