"""Fleet learning against one device that learned everything: the README's fleet table.

    python benchmarks/fleet.py     # Fashion-MNIST, 3 devices (3/3/4 classes), 64 KB, 3 rounds, 3 seeds
    python benchmarks/fleet.py --seeds 1 --split dirichlet

For each seed: `edgecl fleet simulate`'s code (each device learns its part with `learn`, then Flower's simulation
engine runs the rounds), and a single device that learns the same parts one after another (one `learn` per part,
in the same order) with the devices' budgets added up (3 x 64 KB = 192 KB). All accuracies on the same 100 test
images per class of all 10 classes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecl.fleet.simulate import FleetSpec, _data, _embed, accuracy, learn_device, partition, simulate, write_task
from edgecl.units import format_bytes, parse_bytes


def single_device(spec: FleetSpec) -> float:
    """Accuracy on all classes of one device that learned every device's part in sequence, with all their bytes."""
    (train_x, train_y), (test_x, test_y), names = _data(spec.stream)
    rows = np.concatenate([np.flatnonzero(test_y == c)[: spec.test_per_class] for c in range(10)])
    budget = format_bytes(spec.devices * parse_bytes(spec.budget)).replace(" ", "")
    with tempfile.TemporaryDirectory(prefix="edgecl-single-") as tmp:
        state = Path(tmp) / "state"
        for d, part in enumerate(partition(train_y, spec)):
            task = write_task(Path(tmp) / f"task-{d}", train_x[part], train_y[part], names)
            learn_device(state, task, budget, spec.seed)
        return accuracy(state, _embed(test_x[rows]), test_y[rows], names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", default="64KB")
    parser.add_argument("--split", default="disjoint")
    parser.add_argument("--stream", default="fashion-mnist")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fleet.json"))
    args = parser.parse_args()
    start, runs = time.perf_counter(), []
    for seed in range(args.seeds):
        spec = FleetSpec(args.devices, args.rounds, args.stream, args.split, args.budget, seed=seed)
        fleet = simulate(spec)
        runs.append({"seed": seed, "fleet": fleet, "single_device": single_device(spec)})
        print(f"seed {seed}: single device {100 * runs[-1]['single_device']:.1f}%; devices before -> after "
              + ", ".join(f"{100 * d['acc_all_before']:.1f} -> {100 * d['acc_all_after']:.1f}"
                          for d in fleet["devices"]), flush=True)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "runs": runs}, indent=1))

    def mean(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"

    devices = [d for r in runs for d in r["fleet"]["devices"]]
    print(f"\n{args.stream}, {args.devices} devices ({args.split}), {args.budget} each, {args.rounds} rounds, "
          f"{args.seeds} seeds, {time.perf_counter() - start:.0f} s")  # fmt: skip
    print("| | accuracy on all 10 classes |\n|---|---|")
    print(f"| a device before federation (its own classes only) | {mean([d['acc_all_before'] for d in devices])} |")
    print(f"| a device after federation | {mean([d['acc_all_after'] for d in devices])} |")
    print(f"| one device that learned every part in sequence, {args.devices} x {args.budget} | "
          f"{mean([r['single_device'] for r in runs])} |")  # fmt: skip
    print(f"\nown classes after federation: {mean([d['acc_local_after'] for d in devices])}; bytes per round: "
          f"{int(statistics.mean(r['fleet']['bytes_up_per_round'] for r in runs))} up (all devices), "
          f"{int(statistics.mean(r['fleet']['bytes_down_per_round'] for r in runs))} down; largest memory file "
          f"{max(d['memory_bytes'] for d in devices)} B of {devices[0]['budget_bytes']} B")  # fmt: skip


if __name__ == "__main__":
    main()
