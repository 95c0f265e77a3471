"""Continual-learning metrics over an accuracy matrix a[t][k] = accuracy on task k's test split after task t."""

from __future__ import annotations

import numpy as np


def last_accuracy(seen_accuracy: list[float]) -> float:
    """Accuracy on all seen classes after the final task (seen_accuracy[t]: after task t, on tasks 0..t)."""
    return float(seen_accuracy[-1])


def average_incremental_accuracy(seen_accuracy: list[float]) -> float:
    """Mean over t of the accuracy on the union of test splits of tasks 0..t."""
    return float(np.mean(seen_accuracy))


def forgetting(matrix: np.ndarray) -> float:
    """Mean over k < T of (max_{l < T} a[l][k] - a[T][k]); 0 for a single task. matrix: (T, T), a[t][k]."""
    t_last = len(matrix) - 1
    if t_last == 0:
        return 0.0
    return float(np.mean([matrix[k:t_last, k].max() - matrix[t_last, k] for k in range(t_last)]))


def backward_transfer(matrix: np.ndarray) -> float:
    """Mean over k < T of (a[T][k] - a[k][k])."""
    t_last = len(matrix) - 1
    if t_last == 0:
        return 0.0
    return float(np.mean([matrix[t_last, k] - matrix[k, k] for k in range(t_last)]))


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Area under the ROC curve of a score that should be higher on `known` rows than on `unknown` ones (ties count
    half): the chance a random known row outscores a random unknown one."""
    if not len(known) or not len(unknown):
        return float("nan")
    scores = np.concatenate([known, unknown])
    values, index, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[index]  # 1-based, ties given their mean rank
    n = len(known)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * len(unknown)))


def fpr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = 0.95) -> float:
    """Share of unknown rows scoring at least the threshold that keeps `tpr` of the known rows."""
    if not len(known) or not len(unknown):
        return float("nan")
    return float((unknown >= np.quantile(known, 1.0 - tpr)).mean())


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width confidence bins of (share of rows in the bin) x |mean confidence - accuracy|."""
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        rows = which == b
        if rows.any():
            total += rows.mean() * abs(confidence[rows].mean() - correct[rows].mean())
    return float(total)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per equal-width bin: rows, mean confidence, accuracy (the reliability diagram's points)."""
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return [{"bin": (b + 0.5) / bins, "rows": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()) if (which == b).any() else float("nan"),
             "accuracy": float(correct[which == b].mean()) if (which == b).any() else float("nan")}
            for b in range(bins)]  # fmt: skip
