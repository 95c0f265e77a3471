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
    """Rows made for earlier groups: x (M, D) f32 unit rows, classes (M,) and domains (M,) their group's; `wanted`
    how many the groups lacked (at most MAX_ROWS), M or more when the RAM cap's room cut them."""

    x: np.ndarray
    classes: np.ndarray
    domains: np.ndarray
    wanted: int = 0

    @classmethod
    def none(cls, dim: int, wanted: int = 0) -> Translated:
        empty = np.zeros(0, np.int64)
        return cls(np.zeros((0, dim), np.float32), empty, empty, wanted)


def translated_rows(x: np.ndarray, y: np.ndarray, domain: int, means: ClassMeans, replayed: np.ndarray,
                    per_group: int, limit: int, rng: np.random.Generator, domains: int) -> Translated:  # fmt: skip
    """Rows for every group of `means` in one of the learner's `domains` (not the fleet's means, edgecl.fleet) with
    images seen, except the groups this task brings itself (its domain and one of its classes): as many as a group
    lacks to reach `per_group` beside the `replayed` (G,) memory rows it has, in all at most `limit` (each group's
    share cut in proportion, the rows left over by rounding down going to the largest remainders). A group's source
    rows are this task's rows of the same class (a known class in a new domain), else of classes of this task drawn
    at random (a class learned in an earlier task). The result's `wanted`: what the groups lacked before `limit`."""
    task_classes = np.unique(y)
    targets = _targets(task_classes, domain, means, domains)
    lacking = np.maximum(0, per_group - replayed[targets])
    wanted = min(MAX_ROWS, int(lacking.sum())) if len(x) else 0
    lacking = _cut(lacking, limit, rng)
    if not len(x) or not lacking.sum():
        return Translated.none(x.shape[1], wanted)
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
    return Translated(unit_rows(np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False)),
                      np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]), wanted)  # fmt: skip


def _targets(task_classes: np.ndarray, domain: int, means: ClassMeans, domains: int) -> np.ndarray:
    """Indices of the groups of `means` that get rows: the learner's own (_learned_groups), except those this task
    brings (its domain and one of its `task_classes`)."""
    own = (means.domains == domain) & np.isin(means.classes, task_classes)
    return np.flatnonzero(~own & _learned_groups(means, domains))


def _learned_groups(means: ClassMeans, domains: int) -> np.ndarray:
    """(G,) bool: the groups in one of the learner's `domains` (not the fleet's means) with images seen."""
    return (means.domains < domains) & (means.counts > 0)


def most_rows(means: ClassMeans, per_group: int, domains: int) -> int:
    """At most how many rows a task's translation makes (before its own groups and memory rows lower it): what the
    RAM plan reserves room for (edgecl.ram.plan_training)."""
    return min(MAX_ROWS, max(0, per_group) * int(_learned_groups(means, domains).sum()))


def _cut(lacking: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """(G,) `lacking` cut in proportion to sum to `limit` when it is more: floors, then one more row each for the
    groups with the largest remainders (ties in a random order), so that the rows a cap allows are all made."""
    total = int(lacking.sum())
    if total <= limit:
        return lacking
    share = lacking * (limit / total)
    out = np.floor(share).astype(np.int64)
    order = rng.permutation(len(share))
    order = order[np.argsort(-(share - out)[order], kind="stable")]
    out[order[: limit - int(out.sum())]] += 1
    return out


def _rows_from(rows_of: list[np.ndarray], source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(M,) a row drawn at random from rows_of[source[i]] for each i."""
    picked = np.empty(len(source), np.int64)
    for k in np.unique(source).tolist():
        at = source == k
        picked[at] = rows_of[k][rng.integers(0, len(rows_of[k]), int(at.sum()))]
    return picked


def for_task(x: np.ndarray, y: np.ndarray, domain: int, means: ClassMeans, replayed: tuple[np.ndarray, np.ndarray],
             per_group: int, room: int | None, seed: int, domains: int) -> Translated:  # fmt: skip
    """The translated rows of one task: `replayed` the (classes, domains) of the memory rows it replays; `room` how
    many more rows the RAM cap lets the pool hold (None: no cap); `domains` how many domains the learner has."""
    limit = MAX_ROWS if room is None else min(MAX_ROWS, max(0, room))
    if per_group <= 0 or not len(means.counts):
        return Translated.none(x.shape[1])
    group = means.group_of(*replayed)
    have = np.bincount(group[group >= 0], minlength=len(means.counts))
    return translated_rows(x, y, domain, means, have, per_group, limit, np.random.default_rng(seed), domains)
