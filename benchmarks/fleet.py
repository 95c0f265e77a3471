"""Fleet learning against one device that learned everything: the fleet table in docs/fleet.md.

    python benchmarks/fleet.py     # Fashion-MNIST, 3 devices (3/3/4 classes), 64 KB, 3 rounds, 3 seeds
    python benchmarks/fleet.py --seeds 1 --split dirichlet
    python benchmarks/fleet.py --report-only      # the report again from --out's JSON (benchmarks/results/fleet.md)

For each seed: `edgecl fleet simulate`'s code (each device learns its part with `learn`, device k with seed
seed + k, then Flower's simulation engine runs the rounds), and a single device that learns the same parts one after
another (one `learn` per part, in the same order) with the devices' budgets added up (3 x 64 KB = 192 KB). All
accuracies on the same 100 test images per class of all 10 classes, as classify answers and with the head alone
(prototype weight 0: what the adapter average carries).

Then, once (seed 0), a fleet whose devices keep working between runs: device 0 learns 100 more images of each of
its classes with `learn`, device 1 forgets a class it received from the fleet, and one more round runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.fleet import simulate as sim
from edgecl.fleet.simulate import FleetSpec, accuracy, learn_device, partition, simulate, write_task
from edgecl.units import format_bytes, parse_bytes


def single_device(spec: FleetSpec) -> float:
    """Accuracy on all classes of one device that learned every device's part in sequence, with all their bytes."""
    (train_x, train_y), (test_x, test_y), names = sim._data(spec.stream)
    rows = np.concatenate([np.flatnonzero(test_y == c)[: spec.test_per_class] for c in range(10)])
    budget = format_bytes(spec.devices * parse_bytes(spec.budget)).replace(" ", "")
    with tempfile.TemporaryDirectory(prefix="edgecl-single-") as tmp:
        state = Path(tmp) / "state"
        for d, part in enumerate(partition(train_y, spec)):
            task = write_task(Path(tmp) / f"task-{d}", train_x[part], train_y[part], names)
            learn_device(state, task, budget, spec.seed)
        return accuracy(state, sim._embed(test_x[rows]), test_y[rows], names)


def local_work(spec: FleetSpec) -> dict:
    """After the rounds: device 0 learns more of its own classes, device 1 forgets a class another device brought;
    one more round. Is the learn kept, and does the forgotten class stay forgotten on device 1 (and only there)?"""
    from edgecl.commands import forget
    from edgecl.fleet.device import local_update

    (train_x, train_y), (test_x, test_y), names = sim._data(spec.stream)
    rows = np.concatenate([np.flatnonzero(test_y == c)[: spec.test_per_class] for c in range(10)])
    x, y = sim._embed(test_x[rows]), test_y[rows]
    with tempfile.TemporaryDirectory(prefix="edgecl-fleet-work-") as tmp:
        root = Path(tmp)
        first = simulate(spec, root)
        zero, one = root / "device-0", root / "device-1"
        own = [names.index(c) for c in first["devices"][0]["local_classes"]]
        local = np.isin(y, own)
        more = np.concatenate([np.flatnonzero(train_y == c)[spec.train_per_class: 2 * spec.train_per_class]
                               for c in own])  # fmt: skip
        before = {"own": accuracy(zero, x[local], y[local], names), "all": accuracy(zero, x, y, names)}
        learn_device(zero, write_task(root / "more-0", train_x[more], train_y[more], names), spec.budget,
                     sim.device_seed(spec.seed, 0))  # fmt: skip
        learned = {"own": accuracy(zero, x[local], y[local], names), "all": accuracy(zero, x, y, names),
                   "samples": sum(local_update(zero).class_counts.values())}  # fmt: skip
        from edgecl.learned import files
        from edgecl.state import read_state

        def held(d: int) -> list[str]:
            return list(files.load(read_state(root / f"device-{d}").folder).classes)

        mine = set(first["devices"][1]["local_classes"])
        gone = next(c for c in held(1) if c not in mine)  # a class device 1 received from the fleet only
        forget(gone, str(one))
        summary = sim.run_fleet(root, spec.devices, 1)
        after = {"own": accuracy(zero, x[local], y[local], names), "all": accuracy(zero, x, y, names),
                 "samples": sum(local_update(zero).class_counts.values())}  # fmt: skip
        classes = {d: local_update(root / f"device-{d}").class_counts for d in range(spec.devices)}
        kept = {d: held(d) for d in range(spec.devices)}
    return {"learn_between_rounds": {"before": before, "after_learn": learned, "after_round": after},
            "forgotten": gone, "forgotten_on_device_1_after_round": gone not in kept[1],
            "forgotten_kept_by_others": all(gone in kept[d] for d in range(spec.devices) if d != 1),
            "refused": [x for r in summary["rounds"] for x in r["refused"]],
            "own_samples": {d: sum(c.values()) for d, c in classes.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", default="64KB")
    parser.add_argument("--split", default="disjoint")
    parser.add_argument("--stream", default="fashion-mnist")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fleet.json"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from --out's JSON, run nothing")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(args.out.read_text()), args.out)
        return
    start, runs = time.perf_counter(), []
    for seed in range(args.seeds):
        spec = FleetSpec(args.devices, args.rounds, args.stream, args.split, args.budget, seed=seed)
        fleet = simulate(spec)
        runs.append({"seed": seed, "fleet": fleet, "single_device": single_device(spec)})
        print(f"seed {seed}: single device {100 * runs[-1]['single_device']:.1f}%; devices before -> after "
              + ", ".join(f"{100 * d['acc_all_before']:.1f} -> {100 * d['acc_all_after']:.1f} (head "
                          f"{100 * d['acc_head_before']:.1f} -> {100 * d['acc_head_after']:.1f})"
                          for d in fleet["devices"]), flush=True)  # fmt: skip
    work = local_work(FleetSpec(args.devices, args.rounds, args.stream, args.split, args.budget, seed=0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {"args": vars(args) | {"out": str(args.out)}, "runs": runs, "local_work": work}
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\n{args.stream}, {args.devices} devices ({args.split}), {args.budget} each, {args.rounds} rounds, "
          f"{args.seeds} seeds, {time.perf_counter() - start:.0f} s")  # fmt: skip
    print(write_report(results, args.out))


def _mean(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def write_report(results: dict[str, Any], out: Path) -> str:
    """The table and the figures under it, from the results JSON, written beside it (`<out>.md`, what
    docs/fleet.md includes); returns the text."""
    args, runs, work = results["args"], results["runs"], results["local_work"]
    devices = [d for r in runs for d in r["fleet"]["devices"]]
    gains = [d["acc_head_after"] - d["acc_head_before"] for d in devices]
    lw = work["learn_between_rounds"]
    lines = [
        "| | accuracy on all 10 classes |", "|---|---|",
        f"| a device before federation (its own classes only) | {_mean([d['acc_all_before'] for d in devices])} |",
        f"| a device after federation | {_mean([d['acc_all_after'] for d in devices])} |",
        "| a device before federation, head alone (prototype weight 0) | "
        f"{_mean([d['acc_head_before'] for d in devices])} |",
        f"| a device after federation, head alone | {_mean([d['acc_head_after'] for d in devices])} |",
        f"| one device that learned every part in sequence, {args['devices']} x {args['budget']} | "
        f"{_mean([r['single_device'] for r in runs])} |", "",
        f"Own classes after federation: {_mean([d['acc_local_after'] for d in devices])}; bytes per round: "
        f"{int(statistics.mean(r['fleet']['bytes_up_per_round'] for r in runs))} up (all devices), "
        f"{int(statistics.mean(r['fleet']['bytes_down_per_round'] for r in runs))} down; largest memory file "
        f"{max(d['memory_bytes'] for d in devices)} B of {devices[0]['budget_bytes']} B. Head alone, after - before: "
        f"smallest gain of any device {100 * min(gains):+.1f} points (target +20). Device 0 learns between rounds: "
        f"own classes {100 * lw['before']['own']:.1f} -> {100 * lw['after_learn']['own']:.1f} after the learn -> "
        f"{100 * lw['after_round']['own']:.1f} after a round; own samples {lw['after_learn']['samples']} -> "
        f"{lw['after_round']['samples']}; device 1 forgot {work['forgotten']!r}: gone after the round "
        f"{work['forgotten_on_device_1_after_round']}, kept by the others {work['forgotten_kept_by_others']}.",
    ]  # fmt: skip
    text = "\n".join(lines)
    out.with_suffix(".md").write_text(text + "\n")
    return text

if __name__ == "__main__":
    main()
