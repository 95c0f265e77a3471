"""Run one method over one stream through edgecl.learner.Learner (the code `edgecl learn` uses) and score it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecl.bench.metrics import average_incremental_accuracy, backward_transfer, forgetting, last_accuracy
from edgecl.bench.streams import Stream
from edgecl.learned import scoring
from edgecl.learner import Learner, LearnerConfig
from edgecl.ram import peak_rss_bytes


@dataclass(frozen=True)
class RunSpec:
    method: str
    budget_bytes: int
    codec: str
    seed: int


def _accuracy(learner: Learner, labels: tuple[str, ...], x: np.ndarray, y: np.ndarray) -> float:
    return scoring.accuracy(learner.state, x, [labels[i] for i in y])


def zero_shot_accuracy(head: Any, x: np.ndarray, y: np.ndarray, text: np.ndarray) -> float:
    """Open-vocabulary accuracy on never-learned classes through the (possibly adapted) image head."""
    if len(x) == 0 or len(text) == 0:
        return float("nan")
    return float(((head(x) @ text.T).argmax(1) == y).mean())


def run_stream(stream: Stream, spec: RunSpec, text: np.ndarray, heldout_text: np.ndarray,
               overrides: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Learn every task, measuring the accuracy matrix a[t][k], accuracy on all seen test data after each task,
    zero-shot retention on held-out classes, bytes, seconds and peak RSS. text: (labels, D) class embeddings;
    overrides: other settings by their flat names (LearnerConfig.from_flat: epochs, temperature, ...)."""
    cfg = LearnerConfig.from_flat({"method": spec.method, "budget_bytes": spec.budget_bytes, "codec": spec.codec,
                                   "seed": spec.seed, **(overrides or {})})  # fmt: skip
    learner = Learner(cfg, text.shape[1])
    n = len(stream.tasks)
    matrix = np.zeros((n, n))
    seen, seconds, train_seconds = [], [], []
    zs_before = zero_shot_accuracy(learner.state.merged, stream.heldout_x, stream.heldout_y, heldout_text)
    for t, task in enumerate(stream.tasks):
        start = time.perf_counter()
        names = [stream.labels[i] for i in task.train_y]
        report = learner.learn_embeddings(task.train_x, names, task.domain,
                                          {stream.labels[c]: text[c] for c in task.classes})  # fmt: skip
        seconds.append(time.perf_counter() - start)
        train_seconds.append(report.train_seconds)
        for k, other in enumerate(stream.tasks[: t + 1]):
            matrix[t, k] = _accuracy(learner, stream.labels, other.test_x, other.test_y)
        all_x = np.concatenate([o.test_x for o in stream.tasks[: t + 1]])
        all_y = np.concatenate([o.test_y for o in stream.tasks[: t + 1]])
        seen.append(_accuracy(learner, stream.labels, all_x, all_y))
    zs_after = zero_shot_accuracy(learner.state.merged, stream.heldout_x, stream.heldout_y, heldout_text)
    return {
        "stream": stream.name, "method": spec.method, "budget_bytes": spec.budget_bytes, "codec": spec.codec,
        "seed": spec.seed, "matrix": matrix.round(4).tolist(), "seen_accuracy": seen,
        "last_accuracy": last_accuracy(seen), "average_incremental_accuracy": average_incremental_accuracy(seen),
        "forgetting": forgetting(matrix), "backward_transfer": backward_transfer(matrix),
        "zero_shot_before": zs_before, "zero_shot_after": zs_after,
        "memory_bytes": learner.memory.size_bytes() if learner.method.memory else 0,
        "codec_used": learner.memory.stats().codec, "seconds_per_task": float(np.mean(seconds)),
        "train_seconds_per_task": float(np.mean(train_seconds)),
        "peak_rss_bytes": peak_rss_bytes(),
    }  # fmt: skip
