"""Translated replay: training rows for the earlier (class, domain) groups, made from this task's new rows by moving
each from its own class mean to an earlier group's running mean (x - mean(source) + mean(target), back on the unit
sphere): exemplar-free feature translation in the spirit of FeTrIL (Petit et al., WACV 2023). A small memory keeps a
handful of rows per group; the class means (edgecl.learn.prototypes.ClassMeans) summarise every image ever seen, so
each earlier group is replayed from at least `per_group` rows: its memory rows, topped up with translated ones.
Nothing is stored: the rows are made afresh for each task and the byte budget is untouched. numpy only.
Measured: docs/method.md "Translated replay"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecl.learn.prototypes import ClassMeans
from edgecl.vectors import unit_rows

MAX_ROWS = 4096  # translated rows per task, however many groups were learned: the pool stays flat in classes


@dataclass(frozen=True)
class Translated:
    """Rows made for earlier groups: x (M, D) f32 unit rows, classes (M,) and domains (M,) their group's."""

    x: np.ndarray
    classes: np.ndarray
    domains: np.ndarray

    @classmethod
    def none(cls, dim: int) -> Translated:
        empty = np.zeros(0, np.int64)
        return cls(np.zeros((0, dim), np.float32), empty, empty)


def translated_rows(x: np.ndarray, y: np.ndarray, domain: int, means: ClassMeans, replayed: np.ndarray,
                    per_group: int, limit: int, rng: np.random.Generator) -> Translated:  # fmt: skip
    """Rows for every group of `means` that this task does not bring itself (not its domain and one of its classes),
    as many as it lacks to reach `per_group` beside the `replayed` (G,) memory rows it has, in all at most `limit`
    (each group's share cut in proportion). A group's source rows are this task's rows of the same class (a known
    class in a new domain), else of classes of this task drawn at random (a class learned in an earlier task)."""
    task_classes = np.unique(y)
    targets = np.flatnonzero(~((means.domains == domain) & np.isin(means.classes, task_classes)))
    lacking = np.maximum(0, per_group - replayed[targets])
    if lacking.sum() > limit:
        lacking = np.floor(lacking * (limit / lacking.sum())).astype(np.int64)
    if not len(x) or not lacking.sum():
        return Translated.none(x.shape[1])
    own_mean = np.stack([x[y == c].mean(0) for c in task_classes])  # (K, D), row k: task_classes[k]
    rows_of = [np.flatnonzero(y == c) for c in task_classes]
    position = {int(c): k for k, c in enumerate(task_classes)}
    parts = []
    for group, count in zip(targets.tolist(), lacking.tolist(), strict=True):
        if count:
            c = int(means.classes[group])
            source = np.full(count, position[c]) if c in position else rng.integers(0, len(task_classes), count)
            moved = x[_rows_from(rows_of, source, rng)] + (means.means[group] - own_mean[source])
            parts.append((moved, np.full(count, c), np.full(count, int(means.domains[group]))))
    return Translated(unit_rows(np.concatenate([p[0] for p in parts]).astype(np.float32)),
                      np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))  # fmt: skip


def _rows_from(rows_of: list[np.ndarray], source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(M,) a row drawn at random from rows_of[source[i]] for each i."""
    picked = np.empty(len(source), np.int64)
    for k in np.unique(source).tolist():
        at = source == k
        picked[at] = rows_of[k][rng.integers(0, len(rows_of[k]), int(at.sum()))]
    return picked


def for_task(x: np.ndarray, y: np.ndarray, domain: int, means: ClassMeans, replayed: tuple[np.ndarray, np.ndarray],
             per_group: int, room: int | None, seed: int) -> Translated:  # fmt: skip
    """The translated rows of one task: `replayed` the (classes, domains) of the memory rows it replays; `room` how
    many more rows the RAM cap lets the pool hold (None: no cap)."""
    limit = MAX_ROWS if room is None else min(MAX_ROWS, max(0, room))
    if per_group <= 0 or not limit or not len(means.counts):
        return Translated.none(x.shape[1])
    group = means.group_of(*replayed)
    have = np.bincount(group[group >= 0], minlength=len(means.counts))
    return translated_rows(x, y, domain, means, have, per_group, limit, np.random.default_rng(seed))
