"""Class prototypes beside the trained head: running class means of the raw embeddings, the weight that mixes
their cosines into the head's scores, and how that weight is measured on a held-out slice of a task. numpy only,
so classification stays torch-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecl.vectors import unit_rows

WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)  # candidate weights, measured on the held-out slice
DEFAULT_WEIGHT = 4.0  # chosen by the sweep over task sizes and budgets (docs/method.md); the prior of a measurement
DOMAIN_WEIGHT = 1.0  # once a learner has seen two domains: chosen by benchmarks/domain_ablation.py (docs/method.md)
HOLDOUT_FRACTION = 0.2  # of each class's new rows, for classes with at least MIN_ROWS_TO_HOLD_OUT
MIN_ROWS_TO_HOLD_OUT = 3
MAX_HELD_OUT_PER_CLASS = 25  # a slice this big already measures the weight; the rest trains the head
OLD_ROWS_PER_CLASS = 25  # memory rows per earlier class in the validation slice...
OLD_ROWS_IN_ALL = 500  # ...fewer per class (at least 1) once the earlier classes would pass this many in all
NCM_TEXT_WEIGHT = 0.1  # ncm: how much of a class's text embedding joins the mean of its memory rows
TRANSLATED_REPLAY = 200  # rows each earlier (class, domain) is replayed from, topped up by edgecl.learn.translation


@dataclass(frozen=True)
class PrototypeConfig:
    """How class prototypes join the head's scores; saved with the learner. Errors name the field."""

    weight: float | None = DEFAULT_WEIGHT  # None: measured on a held-out slice of each task instead
    domain_weight: float = DOMAIN_WEIGHT  # the weight once more than one domain is learned
    ncm_text_weight: float = NCM_TEXT_WEIGHT
    translated_replay: int = TRANSLATED_REPLAY  # memory rows per earlier group topped up to this many; 0: none

    def __post_init__(self) -> None:
        for name in ("weight", "domain_weight", "ncm_text_weight", "translated_replay"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"PrototypeConfig.{name} must be >= 0, got {value}")
        if isinstance(self.translated_replay, bool) or int(self.translated_replay) != self.translated_replay:
            raise ValueError(f"PrototypeConfig.translated_replay must be a whole number, got {self.translated_replay}")
        object.__setattr__(self, "translated_replay", int(self.translated_replay))


@dataclass(frozen=True)
class ClassMeans:
    """Running means of every image seen per (class, domain) group, in the frozen backbone's space: one domain's
    photos of a class can look nothing like another's (an inverted or rotated digit), so each domain keeps its own
    mean and a class scores its best-matching one. means (G, D) f32, counts (G,), classes (G,) and domains (G,)
    the learner's class and domain index of each group."""

    means: np.ndarray
    counts: np.ndarray
    classes: np.ndarray
    domains: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> ClassMeans:
        none = np.zeros(0, np.int64)
        return cls(np.zeros((0, dim), np.float32), none, none, none)

    @classmethod
    def per_class(cls, means: np.ndarray, counts: np.ndarray) -> ClassMeans:
        """Means saved one per class (states written before domains had their own): group c is class c."""
        return cls(means, counts, np.arange(len(counts)), np.zeros(len(counts), np.int64))

    def updated(self, x: np.ndarray, y: np.ndarray, domains: np.ndarray | int = 0) -> ClassMeans:
        """These means after also seeing rows x (N, D) of classes y (N,) in domains (N,) (or one for all)."""
        d = np.broadcast_to(np.asarray(domains, np.int64), y.shape)
        keys = list(zip(self.classes.tolist(), self.domains.tolist(), strict=True))
        index = {k: g for g, k in enumerate(keys)}
        for k in zip(y.tolist(), d.tolist(), strict=True):
            if k not in index:
                index[k] = len(keys)
                keys.append(k)
        group = np.array([index[k] for k in zip(y.tolist(), d.tolist(), strict=True)], np.int64)
        grow = len(keys) - len(self.counts)
        counts = np.concatenate([self.counts, np.zeros(grow, np.int64)])
        sums = np.concatenate([self.means, np.zeros((grow, self.means.shape[1]), np.float32)]).astype(np.float64)
        sums *= counts[:, None]
        np.add.at(sums, group, x.astype(np.float64))
        counts = counts + np.bincount(group, minlength=len(keys))
        means = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        key_array = np.array(keys, np.int64).reshape(-1, 2)
        return ClassMeans(means, counts, key_array[:, 0], key_array[:, 1])

    def group_of(self, y: np.ndarray, domains: np.ndarray) -> np.ndarray:
        """(N,) the group of each (class y, domain) row, -1 where the means hold no such group."""
        index = {k: g for g, k in enumerate(zip(self.classes.tolist(), self.domains.tolist(), strict=True))}
        return np.array([index.get(k, -1) for k in zip(y.tolist(), domains.tolist(), strict=True)], np.int64)

    def without(self, index: int) -> ClassMeans:
        """Class `index` dropped; later classes move down by one."""
        keep = self.classes != index
        classes = self.classes[keep] - (self.classes[keep] > index)
        return ClassMeans(self.means[keep], self.counts[keep], classes, self.domains[keep])

    def samples_of(self, n_classes: int) -> np.ndarray:
        """(n_classes,) images seen per class, over all domains."""
        return np.bincount(self.classes, weights=self.counts, minlength=n_classes).astype(np.int64)

    def scores(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        """(N, n_classes) per class, the best cosine of each raw embedding with one of the class's group means
        (0 for a class never seen)."""
        cos = unit_rows(np.asarray(x, np.float32)) @ unit_rows(self.means).T  # (N, G)
        out = np.zeros((len(cos), n_classes), np.float32)
        if not len(self.classes):
            return out
        order = np.argsort(self.classes, kind="stable")  # groups of one class side by side
        by_class = self.classes[order]
        starts = np.flatnonzero(np.r_[True, by_class[1:] != by_class[:-1]])
        out[:, by_class[starts]] = np.maximum.reduceat(cos[:, order], starts, axis=1)  # (N, classes seen)
        return out


def validation_rows(y: np.ndarray) -> np.ndarray:
    """Indices of the first rows of each class in `y` (N,) (replayed memory rows): OLD_ROWS_PER_CLASS per class, or
    as many as keep the slice near OLD_ROWS_IN_ALL when there are many classes (beyond OLD_ROWS_IN_ALL classes, the
    first row of OLD_ROWS_IN_ALL of them spread evenly over the class order), so measuring the weight does not grow
    with the square of the classes learned. In class order, each class's rows in their order in `y`."""
    order = np.argsort(y, kind="stable")
    by_class = y[order]
    classes = np.unique(y)
    per_class = max(1, min(OLD_ROWS_PER_CLASS, OLD_ROWS_IN_ALL // max(1, len(classes))))
    starts = np.searchsorted(by_class, by_class)  # the first position of each row's class in `order`
    keep = np.arange(len(y)) - starts < per_class
    if len(classes) > OLD_ROWS_IN_ALL:
        spread = classes[np.linspace(0, len(classes) - 1, OLD_ROWS_IN_ALL).round().astype(int)]
        keep &= np.isin(by_class, spread)
    return order[keep]


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
    _, index = np.unique(y, return_inverse=True)
    return float(np.mean(np.bincount(index, weights=hit) / np.bincount(index)))


def measure_weight(head_scores: np.ndarray, prototype_scores: np.ndarray, y: np.ndarray, prior: float) -> float:
    """The grid weight w whose scores head + w * prototype classify the validation rows best (class-balanced);
    among equally good weights the one nearest the prior (log scale), so a tiny slice does not swing it."""
    accuracy = [balanced_accuracy(head_scores + w * prototype_scores, y) for w in WEIGHT_GRID]
    best = max(accuracy)
    tied = [w for w, a in zip(WEIGHT_GRID, accuracy, strict=True) if a >= best - 1e-9]
    return min(tied, key=lambda w: abs(np.log1p(w) - np.log1p(prior)))
