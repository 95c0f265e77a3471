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
