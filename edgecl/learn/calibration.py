"""Answers a device can act on: a calibrated `confidence` per image, `unknown` below a threshold, and extra labels
(`--labels`) on the same probability scale as the learned classes. numpy only (classify stays torch-free).

The model (docs/answers.md "Answers: unknown, confidence, open vocabulary"):
- familiarity: how typical the image is of its best class, as a z-score of its cosine to the class mean against the
  class's own leave-one-out cosines (each class's spread is its own: bags vary more than trousers);
- known = Phi(z + KNOWN_SHIFT): the chance the image is one of the learned classes at all (0.98 for an image as
  typical as the class's own, one half two spreads below it, near 0 beyond);
- P(class | known) = softmax(scores / temperature), the temperature fitted (temperature scaling) on leave-one-out
  class-mean scores of the task's rows and of a few stored rows of each earlier class;
- extra labels share the rest, 1 - known, by zero-shot probability among every name (learned and extra), its
  temperature fitted the same way on the image-to-text cosines of those rows (a backbone whose zero-shot is weak
  on these images gets a flat one, so its guesses stay below the threshold);
- confidence = the answer's probability; below the threshold the answer is `unknown`.
Everything here is recomputed when a learn or forget changes the state, from the rows the task gave and the class
means the state keeps; it costs 3 floats per class beside the class means.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KNOWN_SHIFT = 2.0  # z = -2 is even odds of being known; chosen by `edgecl bench --suite open-set` (docs/answers.md)
DEFAULT_TEMPERATURE = 0.05  # before anything was fitted: the temperature the heads train with
DEFAULT_TEXT_TEMPERATURE = 0.01  # CLIP's logit scale of 100
TEMPERATURE_GRID = tuple(float(t) for t in np.geomspace(0.002, 0.5, 41))
MIN_STD = 0.02  # a class whose rows all look alike still has some spread
DEFAULT_MIN_CONFIDENCE = 0.45  # chosen by `edgecl bench --suite open-set` (docs/answers.md): keeps ~90% of known images


@dataclass(frozen=True)
class Calibration:
    """What turns scores into a confidence, per learned class (C,) and for the whole state."""

    temperature: float  # of the learned classes' softmax
    text_temperature: float  # of zero-shot cosines (extra labels)
    mean: np.ndarray  # (C,) f64 mean leave-one-out cosine of a class's images to its own mean
    var: np.ndarray  # (C,) f64 their variance
    counts: np.ndarray  # (C,) images behind mean / var

    @classmethod
    def empty(cls) -> Calibration:
        none = np.zeros(0, np.float64)
        return cls(DEFAULT_TEMPERATURE, DEFAULT_TEXT_TEMPERATURE, none, none, np.zeros(0, np.int64))

    def with_classes(self, n_classes: int) -> Calibration:
        """Room for classes added since (no statistics yet: they count as familiar until measured)."""
        grow = n_classes - len(self.counts)
        if grow <= 0:
            return self
        pad = np.zeros(grow)
        mean, var = np.concatenate([self.mean, pad]), np.concatenate([self.var, pad])
        return Calibration(self.temperature, self.text_temperature, mean, var,
                           np.concatenate([self.counts, pad.astype(np.int64)]))  # fmt: skip

    def updated(self, cosines: np.ndarray, y: np.ndarray, n_classes: int) -> Calibration:
        """These statistics after also seeing leave-one-out cosines (N,) of rows of classes y (N,)."""
        cal = self.with_classes(n_classes)
        counts = np.bincount(y, minlength=n_classes).astype(np.int64)
        sums = np.bincount(y, weights=cosines, minlength=n_classes)
        new_mean = sums / np.maximum(counts, 1)
        new_var = np.bincount(y, weights=(cosines - new_mean[y]) ** 2, minlength=n_classes) / np.maximum(counts, 1)
        total = cal.counts + counts
        share = counts / np.maximum(total, 1)  # the new rows' share of each class's rows (Chan et al.'s merge)
        delta = new_mean - cal.mean
        mean = cal.mean + delta * share
        var = cal.var * (1 - share) + new_var * share + delta**2 * share * (1 - share)
        return Calibration(cal.temperature, cal.text_temperature, mean, var, total)

    def with_temperatures(self, temperature: float, text_temperature: float) -> Calibration:
        return Calibration(temperature, text_temperature, self.mean, self.var, self.counts)

    def without(self, index: int) -> Calibration:
        keep = np.arange(len(self.counts)) != index
        return Calibration(self.temperature, self.text_temperature, self.mean[keep], self.var[keep], self.counts[keep])

    def known(self, mean_cosine: np.ndarray, answer: np.ndarray) -> np.ndarray:
        """(N,) the chance each image is one of the learned classes, from its cosine (N,) to its answer's mean."""
        if not len(self.counts):
            return np.ones(len(answer))
        n = self.counts[answer]
        std = np.sqrt(self.var[answer] * n / np.maximum(n - 1, 1) + MIN_STD**2)  # few rows: a wider spread
        z = (mean_cosine - self.mean[answer]) / std
        return np.where(n >= 2, 0.5 * (1.0 + _erf((z + KNOWN_SHIFT) / math.sqrt(2.0))), 1.0)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"calibration_temperatures": np.array([self.temperature, self.text_temperature]),
                "calibration_mean": self.mean, "calibration_var": self.var,
                "calibration_counts": self.counts}  # fmt: skip

    @classmethod
    def from_arrays(cls, data: Any, n_classes: int) -> Calibration:
        """Read to_arrays' keys from an npz; a state saved before calibration gets the defaults."""
        if "calibration_temperatures" not in data.files:
            return cls.empty().with_classes(n_classes)
        t, text_t = (float(v) for v in data["calibration_temperatures"])
        return cls(t, text_t, data["calibration_mean"], data["calibration_var"],
                   data["calibration_counts"]).with_classes(n_classes)  # fmt: skip


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(scores: np.ndarray, y: np.ndarray, default: float) -> float:
    """The grid temperature whose softmax(scores / T) gives the rows' classes y the least negative log-likelihood
    (temperature scaling); `default` when there is nothing to fit (fewer than two classes or rows). The NLL is
    convex in 1 / T, so along the grid it falls and then rises: a bisection on its slope finds the grid's first
    minimum in about 2 log2(len(grid)) evaluations instead of len(grid) (each costs a pass over the scores)."""
    if scores.shape[1] < 2 or len(y) < 2:
        return default
    rows = np.arange(len(y))

    @functools.cache
    def nll(i: int) -> float:
        z = scores / TEMPERATURE_GRID[i]
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[rows, y]))

    low, high = 0, len(TEMPERATURE_GRID) - 1
    while low < high:  # the first i whose next value is no lower
        mid = (low + high) // 2
        low, high = (low, mid) if nll(mid) <= nll(mid + 1) else (mid + 1, high)
    return TEMPERATURE_GRID[low]


def loo_cosines(x: np.ndarray, group: np.ndarray, means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(N,) cosine of each row x (N, D) with the mean of its group left without it (means (G, D) over counts (G,)
    rows, the row among them); NaN where the row is its group's only one or has no group (-1)."""
    from edgecl.vectors import unit_rows

    if not len(group):
        return np.zeros(0)
    safe = np.maximum(group, 0)
    n = np.where(group >= 0, counts[safe] if len(counts) else 0, 0).astype(np.float64)[:, None]
    others = (means[safe].astype(np.float64) * n - x) / np.maximum(n - 1, 1) if len(means) else np.zeros_like(x)
    cos = (unit_rows(x.astype(np.float64)) * unit_rows(others)).sum(1)
    return np.where(n[:, 0] >= 2, cos, np.nan)


@dataclass(frozen=True)
class Answer:
    """One image's answer: the label (None: unknown), its confidence and the top-k candidates."""

    label: str | None
    unknown: bool
    confidence: float
    predictions: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "unknown": self.unknown, "confidence": self.confidence,
                "predictions": self.predictions}  # fmt: skip


def candidate_probabilities(learned: np.ndarray, known: np.ndarray, zero_shot: np.ndarray | None,
                            n_learned: int) -> np.ndarray:  # fmt: skip
    """(N, C + E) one probability scale over learned classes and extra labels: known * P(class | known) for a learned
    class, (1 - known) * P_zero-shot(label | every name) for an extra label; rows sum to at most 1 (the rest is
    "none of these"). learned: (N, C) P(class | known); zero_shot: (N, C + E) or None without extra labels."""
    p = learned * known[:, None]
    if zero_shot is None:
        return p
    return np.concatenate([p, zero_shot[:, n_learned:] * (1.0 - known)[:, None]], axis=1)


def answers(probability: np.ndarray, scores: np.ndarray, labels: Sequence[str], top_k: int,
            min_confidence: float) -> list[Answer]:  # fmt: skip
    """Per row: candidates ranked by probability (top k, each with its raw score), and the best one as the answer
    unless its probability is below `min_confidence`."""
    order = np.argsort(-probability, axis=1, kind="stable")[:, :top_k]
    out = []
    for p, s, idx in zip(probability, scores, order, strict=True):
        best = int(idx[0])
        confidence = round(float(p[best]), 4)
        unknown = bool(confidence < min_confidence)
        predictions = [{"label": labels[j], "score": round(float(s[j]), 4), "probability": round(float(p[j]), 4)}
                       for j in idx]  # fmt: skip
        out.append(Answer(None if unknown else labels[best], unknown, confidence, predictions))
    return out


WEAK_CLASS_ACCURACY = 0.8  # below this on its held-out estimate, a class gets a hint to add photos


def task_validation(scores: np.ndarray, y: np.ndarray, classes: Sequence[str], given: dict[str, int],
                    estimate: str) -> dict[str, Any]:  # fmt: skip
    """`learn --json` `validation`: per class of the task, the share of its images whose best score (each image
    left out of what scores it: `estimate`) is its class, the class it is most often taken for, and a plain hint
    for each class under WEAK_CLASS_ACCURACY. scores (N, C) and y (N,) are the task's rows; given: photos per
    class in the task."""
    best = scores.argmax(1)
    per_class, hints = {}, []
    for c in np.unique(y):
        rows = y == c
        wrong = best[rows][best[rows] != c]
        confused = classes[int(np.bincount(wrong).argmax())] if len(wrong) else None
        accuracy = float((best[rows] == c).mean())
        name = classes[int(c)]
        per_class[name] = {"images": int(rows.sum()), "accuracy": round(accuracy, 4), "confused_with": confused}
        if accuracy < WEAK_CLASS_ACCURACY:
            taken = f", often taken for {confused}" if confused else ""
            hints.append(f"{name}: {100 * accuracy:.0f}% on held-out photos{taken}; {given.get(name, 0)} photos "
                         "given, add more (or more varied) photos of it")  # fmt: skip
    return {"estimate": estimate, "per_class": per_class, "hints": hints}
