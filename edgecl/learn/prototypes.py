"""Class prototypes beside the trained head: running class means of the raw embeddings, the weight that mixes
their cosines into the head's scores, and how that weight is measured on a held-out slice of a task. numpy only,
so classification stays torch-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)  # candidate weights, measured on the held-out slice
DEFAULT_WEIGHT = 16.0  # chosen by the README's sweep over task sizes and budgets; the prior of a measurement
HOLDOUT_FRACTION = 0.2  # of each class's new rows, for classes with at least MIN_ROWS_TO_HOLD_OUT
MIN_ROWS_TO_HOLD_OUT = 3
MAX_HELD_OUT_PER_CLASS = 25  # a slice this big already measures the weight; the rest trains the head
OLD_ROWS_PER_CLASS = 25  # memory rows per earlier class in the validation slice


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class ClassMeans:
    """Running means of every image seen per class, in the frozen backbone's space. means (C, D) f32, counts (C,)."""

    means: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> ClassMeans:
        return cls(np.zeros((0, dim), np.float32), np.zeros(0, np.int64))

    def updated(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> ClassMeans:
        """These means after also seeing rows x (N, D) of classes y (N,); classes up to n_classes - 1 exist."""
        grow = n_classes - len(self.counts)
        sums = np.concatenate([self.means, np.zeros((grow, self.means.shape[1]), np.float32)]).astype(np.float64)
        counts = np.concatenate([self.counts, np.zeros(grow, np.int64)])
        sums *= counts[:, None]
        np.add.at(sums, y, x.astype(np.float64))
        counts = counts + np.bincount(y, minlength=n_classes)
        means = sums / np.maximum(counts, 1)[:, None]
        return ClassMeans(means.astype(np.float32), counts)

    def without(self, index: int) -> ClassMeans:
        return ClassMeans(np.delete(self.means, index, axis=0), np.delete(self.counts, index))

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(N, C) cosine of each raw embedding with each class mean (0 for a class never seen)."""
        return normalize(np.asarray(x, np.float32)) @ normalize(self.means).T


def holdout_mask(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: the rows held out to measure the weight, HOLDOUT_FRACTION of each class that has enough rows."""
    held = np.zeros(len(y), bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        if len(rows) >= MIN_ROWS_TO_HOLD_OUT:
            k = min(MAX_HELD_OUT_PER_CLASS, max(1, round(HOLDOUT_FRACTION * len(rows))))
            held[rng.choice(rows, size=k, replace=False)] = True
    return held


def balanced_accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean over the classes present in y of the share of their rows whose best score is their class."""
    hit = scores.argmax(1) == y
    return float(np.mean([hit[y == c].mean() for c in np.unique(y)]))


def measure_weight(head_scores: np.ndarray, prototype_scores: np.ndarray, y: np.ndarray, prior: float) -> float:
    """The grid weight w whose scores head + w * prototype classify the validation rows best (class-balanced);
    among equally good weights the one nearest the prior (log scale), so a tiny slice does not swing it."""
    accuracy = [balanced_accuracy(head_scores + w * prototype_scores, y) for w in WEIGHT_GRID]
    best = max(accuracy)
    tied = [w for w, a in zip(WEIGHT_GRID, accuracy, strict=True) if a >= best - 1e-9]
    return min(tied, key=lambda w: abs(np.log1p(w) - np.log1p(prior)))
