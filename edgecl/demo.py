"""`edgecl demo`: the embedded default job, offline. Fashion-MNIST arrives as 5 image-folder tasks of 2 classes;
each is learned with `edgecl learn`'s own code, held-out images are classified after every task, and the final
state is shown. The bundled backbone stands in for CLIP (real CLIP weights give far better zero-shot accuracy)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecl import commands
from edgecl.datasets import FASHION_MNIST_CLASSES, fashion_mnist, write_pngs

TASKS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
DEMO_BUDGET = "64KB"


def folder_name(cls: int) -> str:
    return FASHION_MNIST_CLASSES[cls].replace("/", "_").replace(" ", "_")


def write_stream(root: Path, train_per_class: int, test_per_class: int) -> tuple[list[Path], Path]:
    """Task folders (one class sub-folder each) from the training split and one held-out folder per class."""
    train_x, train_y = fashion_mnist("train")
    test_x, test_y = fashion_mnist("test")
    tasks = []
    for t, task in enumerate(TASKS):
        for cls in task:
            train = np.flatnonzero(train_y == cls)[:train_per_class]
            test = np.flatnonzero(test_y == cls)[:test_per_class]
            write_pngs(root / f"task{t + 1}" / folder_name(cls), train_x[train])
            write_pngs(root / "test" / folder_name(cls), test_x[test])
        tasks.append(root / f"task{t + 1}")
    return tasks, root / "test"


def _accuracy(state: Path, test_root: Path, classes: list[int]) -> float:
    folders = [str(test_root / folder_name(c)) for c in classes]
    results, _ = commands.classify(folders, str(state), top_k=1)
    correct = sum(Path(r["image"]).parent.name == r["predictions"][0]["label"] for r in results)
    return correct / max(1, len(results))


def run_demo(
    state_dir: str | None,
    train_per_class: int,
    test_per_class: int,
    method: str,
    on_task: Callable[[dict[str, Any]], None] = lambda row: None,
    progress: commands.Progress = commands.quiet,
) -> dict[str, Any]:
    """Learn the stream into a fresh state; returns per-task accuracy rows and the final status."""
    with tempfile.TemporaryDirectory(prefix="edgecl-demo-") as tmp:
        tasks, test_root = write_stream(Path(tmp), train_per_class, test_per_class)
        state = Path(state_dir) if state_dir else Path(tmp) / "state"
        rows = []
        for t, task_dir in enumerate(tasks):
            opts = commands.LearnOptions(str(task_dir), DEMO_BUDGET, str(state), method=method, backbone="bundled")
            report = commands.learn(opts, progress)
            seen = [c for task in TASKS[: t + 1] for c in task]
            row = {"task": t + 1, "new_classes": report.new_classes, "seconds": report.seconds,
                   "accuracy_seen": round(_accuracy(state, test_root, seen), 4),
                   "accuracy_first_task": round(_accuracy(state, test_root, list(TASKS[0])), 4),
                   "memory_bytes": report.memory_bytes, "codec": report.codec}  # fmt: skip
            rows.append(row)
            on_task(row)
        return {"tasks": rows, "status": commands.status(str(state)).to_json(), "note": __doc__.split("\n\n")[0]}
