"""Sweep learner settings across task sizes and budgets (how the defaults were chosen): each configuration is a set
of LearnerConfig overrides, run on every (images per class, classes per task, budget) cell of a class-incremental
stream, or with `--shapes domains` on every (images per class and domain, budget) cell of a domain-incremental one
(`--stream digits-domains`); the table shows last accuracy per cell and the mean over cells.

    python benchmarks/default_sweep.py --config shipped: --config "w=64:prototype_weight=64" \\
        --config "measured:prototype_weight=None" --per-class 10,25,100,400 --budgets 16KB,64KB --workers 2
"""

from __future__ import annotations

import argparse
import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from edgecl.bench.runner import RunSpec, run_stream
from edgecl.bench.streams import Embedder, build_streams
from edgecl.bench.task_sizes import resized, resized_domains
from edgecl.encoder import Encoder
from edgecl.learn.methods import DEFAULT_METHOD
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


_STREAM: dict[str, Any] = {}  # per process: the stream and its text embeddings, built once


def _prepare(name: str, most: int) -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker
    encoder = Encoder(ensure_model("bundled").root)
    (stream,), _ = build_streams([name], Embedder(encoder), 0, most, 150, None)
    _STREAM.update(stream=stream, text=encoder.encode_texts([prompt_for(label) for label in stream.labels]),
                   held=encoder.encode_texts([prompt_for(label) for label in stream.heldout_labels]))  # fmt: skip


def _run(job: tuple[str, int, str, str, dict[str, object], int]) -> float:
    method, n, shape, budget, overrides, seed = job
    stream = _STREAM["stream"]
    cut = resized_domains(stream, n) if shape == "domains" else resized(stream, n, shape, seed)
    spec = RunSpec(method, parse_bytes(budget), "auto", seed)
    return float(run_stream(cut, spec, _STREAM["text"], _STREAM["held"], overrides)["last_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="name:key=value,... (repeatable)")
    parser.add_argument("--method", default=DEFAULT_METHOD)
    parser.add_argument("--stream", default="fashion-mnist")
    parser.add_argument("--per-class", default="10,25,100,400")
    parser.add_argument("--shapes", default="1,2,3-4", help="classes per task, or 'domains' (a domain stream)")
    parser.add_argument("--budgets", default="16KB,64KB")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes, one core each")
    args = parser.parse_args()
    configs = [parse_config(c) for c in args.config or ["shipped:"]]
    per_class = [int(v) for v in args.per_class.split(",")]
    start = time.perf_counter()
    cells = list(itertools.product(per_class, args.shapes.split(","), args.budgets.split(",")))
    todo = [(args.method, n, shape, budget, overrides, seed) for n, shape, budget in cells
            for _, overrides in configs for seed in range(args.seeds)]  # fmt: skip
    with ProcessPoolExecutor(args.workers, initializer=_prepare, initargs=(args.stream, max(per_class))) as pool:
        accs = np.array(list(pool.map(_run, todo))).reshape(len(cells), len(configs), args.seeds)
    table = 100 * accs.mean(2)
    print(f"{args.stream}, method {args.method}, codec auto, {args.seeds} seed(s): last accuracy (%)")
    print(f"{'images/class  tasks  budget':<28}" + "".join(f"{name:>12}" for name, _ in configs))
    for (n, shape, budget), row in zip(cells, table, strict=True):
        print(f"{n:>12}  {shape:>5}  {budget:>6}  " + "".join(f"{v:12.1f}" for v in row))
    print(f"{'mean':<28}" + "".join(f"{v:12.2f}" for v in table.mean(0)))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
