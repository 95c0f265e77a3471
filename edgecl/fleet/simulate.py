"""`edgecl fleet simulate`: N devices on one machine, each learning its own part of an offline data set with
`edgecl learn`'s code, then R rounds of Flower's simulation engine (edgecl.fleet.apps).

Device k learns with seed `--seed + k` (so the devices' adapters start from different random initialisations, as
on a real fleet). Each device is measured before and after the rounds on all classes: `acc_all_*` as classify
answers (head and class prototypes), `acc_head_*` with the head alone (prototype weight 0), which shows what the
adapter average itself carries."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.errors import EdgeclError
from edgecl.units import parse_bytes

STREAMS = ("fashion-mnist", "mnist")
SPLITS = ("disjoint", "dirichlet")
DIRICHLET_ALPHA = 0.5


@dataclass(frozen=True)
class FleetSpec:
    devices: int = 3
    rounds: int = 3
    stream: str = "fashion-mnist"
    split: str = "disjoint"
    budget: str = "64KB"
    train_per_class: int = 100
    test_per_class: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.devices <= 32:
            raise EdgeclError(f"--devices must be 2..32, got {self.devices}")
        if self.rounds < 1:
            raise EdgeclError(f"--rounds must be at least 1, got {self.rounds}")
        if self.stream not in STREAMS or self.split not in SPLITS:
            raise EdgeclError(f"--stream is one of {', '.join(STREAMS)}, --split one of {', '.join(SPLITS)}")
        parse_bytes(self.budget)  # a bad budget string fails before any device learns
        if self.split == "disjoint" and self.devices > 10:
            raise EdgeclError("a disjoint split gives every device at least one of the 10 classes: --devices <= 10")


def _data(stream: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[str, ...]]:
    from edgecl.datasets import DIGIT_CLASSES, FASHION_MNIST_CLASSES, fashion_mnist, mnist

    loader, labels = (fashion_mnist, FASHION_MNIST_CLASSES) if stream == "fashion-mnist" else (mnist, DIGIT_CLASSES)
    # a class folder is named by its label up to a "/" ("T-shirt/top" would be a folder inside a folder, learned as
    # "T-shirt", and then never matched to its test images)
    return loader("train"), loader("test"), tuple(label.split("/")[0] for label in labels)


def partition(labels: np.ndarray, spec: FleetSpec) -> list[np.ndarray]:
    """Row indices of each device's training images: `train_per_class` of every class, dealt out disjointly by
    class (seeded class order, nearly equal numbers of classes) or by Dirichlet(0.5) shares per class."""
    rng = np.random.default_rng(spec.seed)
    per_class = [np.flatnonzero(labels == c)[: spec.train_per_class] for c in range(10)]
    if spec.split == "disjoint":
        order = rng.permutation(10)
        groups = np.array_split(order[::-1], spec.devices)[::-1]  # 10 over 3: 3, 3, 4
        return [np.concatenate([per_class[c] for c in sorted(g)]) for g in groups]
    parts: list[list[np.ndarray]] = [[] for _ in range(spec.devices)]
    for rows in per_class:
        shares = rng.dirichlet(np.full(spec.devices, DIRICHLET_ALPHA))
        cuts = np.round(np.cumsum(shares)[:-1] * len(rows)).astype(int)
        for d, chunk in enumerate(np.split(rng.permutation(rows), cuts)):
            parts[d].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def write_task(folder: Path, images: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> Path:
    """Class folders of PNG files, as a user's photos would arrive (each named by its row: 0.png, 1.png, ...)."""
    from edgecl.datasets import write_pngs

    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        write_pngs(folder / names[label], images[rows], [f"{i}.png" for i in rows])
    return folder


def learn_device(state_dir: Path, task_dir: Path, budget: str, seed: int) -> Any:
    from edgecl.commands import LearnOptions, learn

    return learn(LearnOptions(str(task_dir), budget, str(state_dir), backbone="bundled", seed=seed))


def device_seed(seed: int, device: int) -> int:
    """The seed device `device` learns with: a fleet's devices do not share their adapters' initialisation."""
    return seed + device


def accuracy(state_dir: Path, x: np.ndarray, y: np.ndarray, names: tuple[str, ...], head_only: bool = False) -> float:
    """Share of (N, D) test embeddings whose best learned class is their label (a class not learned counts wrong);
    `head_only`: scored by the head alone (prototype weight 0)."""
    from edgecl.learned import files, scoring
    from edgecl.state import read_state

    snapshot = read_state(state_dir)
    if snapshot is None:
        raise EdgeclError(f"{state_dir}: no learned state to measure")
    state = files.load(snapshot.folder)
    if head_only:
        state = state.replaced(prototype_weight=0.0, config=replace(state.config, prototypes=replace(
            state.config.prototypes, domain_weight=0.0)))  # fmt: skip
    return scoring.accuracy(state, x, [names[t] for t in y])


def simulate(spec: FleetSpec, work: Path | None = None,
             progress: Callable[[str, int, int], None] = lambda s, d, t: None) -> dict[str, Any]:  # fmt: skip
    """Learn each device's part, run the rounds on Flower's simulation engine, measure before and after."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecl-fleet-") as tmp:
        root = Path(work or tmp)
        (train_x, train_y), (test_x, test_y), names = _data(spec.stream)
        test_rows = np.concatenate([np.flatnonzero(test_y == c)[: spec.test_per_class] for c in range(10)])
        x_test, y_test = _embed(test_x[test_rows]), test_y[test_rows]
        devices = []
        for d, rows in enumerate(partition(train_y, spec)):
            progress(f"device {d}: learning {len(rows)} images", d, spec.devices)
            state = root / f"device-{d}"
            learn_device(state, write_task(root / f"task-{d}", train_x[rows], train_y[rows], names), spec.budget,
                         device_seed(spec.seed, d))  # fmt: skip
            local = sorted({int(c) for c in train_y[rows]})
            devices.append({"id": d, "seed": device_seed(spec.seed, d), "local_classes": [names[c] for c in local],
                            "acc_all_before": accuracy(state, x_test, y_test, names),
                            "acc_head_before": accuracy(state, x_test, y_test, names, head_only=True)})  # fmt: skip
        progress(f"{spec.rounds} rounds on Flower's simulation engine", spec.devices, spec.devices)
        summary = run_fleet(root, spec.devices, spec.rounds)
        for device in devices:
            state = root / f"device-{device['id']}"
            local = np.isin(y_test, [names.index(c) for c in device["local_classes"]])
            figures = next((f for f in summary["devices"] if f["state-dir"] == str(state)), {"error": "no answer"})
            device.update(acc_all_after=accuracy(state, x_test, y_test, names),
                          acc_head_after=accuracy(state, x_test, y_test, names, head_only=True),
                          acc_local_after=accuracy(state, x_test[local], y_test[local], names),
                          memory_bytes=int(figures.get("memory_bytes", -1)),
                          budget_bytes=int(figures.get("budget_bytes", -1)), error=figures.get("error"))  # fmt: skip
    rounds = summary["rounds"]
    return {"rounds": spec.rounds, "devices": devices,
            "bytes_up_per_round": int(np.mean([r["bytes_up"] for r in rounds])),
            "bytes_down_per_round": int(np.mean([r["bytes_down"] for r in rounds])),
            "refused": [x for r in rounds for x in r["refused"]], "seconds": round(time.perf_counter() - start, 1),
            "stream": spec.stream, "split": spec.split, "budget": spec.budget}  # fmt: skip


def run_fleet(root: Path, devices: int, rounds: int, progress: Callable[[str], None] = lambda m: None,
              ) -> dict[str, Any]:  # fmt: skip
    """R rounds over the state directories <root>/device-<k> with Flower's simulation runtime (Ray, one CPU each),
    the current Flower way: a SuperLink of its own on a loopback port and `flwr run` (edgecl.fleet.local_link).
    The ServerApp's summary comes back through a result file; the run's log is kept in <root>/flower.log."""
    from edgecl.fleet.local_link import flwr_run, local_superlink

    result, log = root / "fleet-result.json", root / "flower.log"
    result.unlink(missing_ok=True)
    settings = {"rounds": rounds, "min-nodes": devices, "round-timeout": 600.0, "state-root": str(root),
                "result-file": str(result)}  # fmt: skip
    run_config = root / "fleet-run.toml"
    run_config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    federation = f"num-supernodes={devices} client-resources-num-cpus=1 client-resources-num-gpus=0.0"
    with local_superlink(root, simulation=True, log_path=log) as link:
        progress(f"Flower SuperLink on 127.0.0.1:{link.port}; `flwr run` of {devices} simulated devices")
        run = flwr_run(link, run_config, timeout_s=600.0 * (rounds + 2), federation_config=federation)
    with open(log, "a", encoding="utf-8") as out:
        out.write(run.stdout + run.stderr)
    if not result.is_file():
        tail = (run.stdout + run.stderr).strip().splitlines()[-1:] or ["no output"]
        raise EdgeclError(f"the Flower run ended without a result ({tail[0][:200]}); its log: {log}")
    out = json.loads(result.read_text(encoding="utf-8"))
    if "error" in out:
        raise EdgeclError(f"the fleet run failed: {out['error']}")
    if "rounds" not in out:
        raise EdgeclError(f"the Flower run ended without rounds; its log: {log}")
    return out


def _embed(images: np.ndarray) -> np.ndarray:
    from edgecl.bench.embeddings import Embedder
    from edgecl.encoder import Encoder
    from edgecl.model_dir import ensure_model

    return Embedder(Encoder(ensure_model("bundled").root))(images)
