"""Sweep learner settings across task sizes and budgets (how the defaults were chosen): each configuration is a set
of LearnerConfig overrides, run on every (images per class, classes per task, budget) cell of a class-incremental
stream; the table shows last accuracy per cell and the mean over cells.

    python benchmarks/default_sweep.py --config shipped: --config "w=64:prototype_weight=64" \\
        --config "measured:prototype_weight=None" --per-class 10,25,100,400 --budgets 16KB,64KB
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from edgecl.bench.runner import RunSpec, run_stream
from edgecl.bench.streams import Embedder, build_streams
from edgecl.bench.task_sizes import resized
from edgecl.encoder import Encoder
from edgecl.model_dir import ensure_model
from edgecl.prompts import prompt_for
from edgecl.units import parse_bytes


def _value(text: str) -> object:
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_config(spec: str) -> tuple[str, dict[str, object]]:
    """'name:key=value,key=value' -> (name, overrides)."""
    name, _, rest = spec.partition(":")
    pairs = [p.split("=", 1) for p in rest.split(",") if p]
    return name, {k: _value(v) for k, v in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="name:key=value,... (repeatable)")
    parser.add_argument("--method", default="gdro")
    parser.add_argument("--stream", default="fashion-mnist")
    parser.add_argument("--per-class", default="10,25,100,400")
    parser.add_argument("--shapes", default="1,2,3-4")
    parser.add_argument("--budgets", default="16KB,64KB")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    configs = [parse_config(c) for c in args.config or ["shipped:"]]
    per_class = [int(v) for v in args.per_class.split(",")]
    start = time.perf_counter()
    encoder = Encoder(ensure_model("bundled").root)
    (stream,), _ = build_streams([args.stream], Embedder(encoder), 0, max(per_class), 150, None)
    text = encoder.encode_texts([prompt_for(label) for label in stream.labels])
    held = encoder.encode_texts([prompt_for(label) for label in stream.heldout_labels])
    cells = list(itertools.product(per_class, args.shapes.split(","), args.budgets.split(",")))
    table = np.zeros((len(cells), len(configs)))
    for (i, (n, shape, budget)), (j, (_, overrides)) in itertools.product(enumerate(cells), enumerate(configs)):
        accs = [run_stream(resized(stream, n, shape, seed), RunSpec(args.method, parse_bytes(budget), "auto", seed),
                           text, held, overrides)["last_accuracy"] for seed in range(args.seeds)]  # fmt: skip
        table[i, j] = 100 * float(np.mean(accs))
    print(f"{args.stream}, method {args.method}, codec auto, {args.seeds} seed(s): last accuracy (%)")
    print(f"{'images/class  tasks  budget':<28}" + "".join(f"{name:>12}" for name, _ in configs))
    for (n, shape, budget), row in zip(cells, table, strict=True):
        print(f"{n:>12}  {shape:>5}  {budget:>6}  " + "".join(f"{v:12.1f}" for v in row))
    print(f"{'mean':<28}" + "".join(f"{v:12.2f}" for v in table.mean(0)))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
