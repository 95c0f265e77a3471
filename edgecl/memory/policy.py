"""Replay-memory policy: which codec `auto` picks, how capacity is shared between groups, which samples stay."""

from __future__ import annotations

import numpy as np

from edgecl.memory.codec import SCALAR_CODECS
from edgecl.vectors import unit_rows

# `auto` picks the most precise of fp16 / int8 / int4 that still holds AUTO_TARGET_PER_GROUP samples per group
# (class, or class x domain), else int4; and product quantisation when even int4 holds fewer than
# AUTO_PQ_BELOW per group. Measured by benchmarks/memory_codecs.py (docs/benchmarks.md): at equal bytes
# more samples beat precision until about 150 per class; below ~10 int4 samples per class, PQ's many coarse
# samples win by 10+ points of nearest-class-mean accuracy.
AUTO_TARGET_PER_GROUP = 150
AUTO_PQ_BELOW = 10
# The decision assumes at least this many groups will share the budget (a first task usually brings a few of
# many classes): every later codec change strands capacity, since evicted samples cannot come back.
AUTO_MIN_GROUPS = 10
_MIX = np.uint64(0x9E3779B97F4A7C15)
def choose_auto_codec(
    capacity_for: dict[str, int],
    n_groups: int,
    first: bool = True,
    target: int = AUTO_TARGET_PER_GROUP,
    allow_pq: bool = True,
) -> str:
    """`capacity_for[codec]` = samples that fit the budget with that codec; returns the codec name. PQ is only
    chosen for an empty memory (`first`): switching to it later would strand most of its capacity; and only when
    `allow_pq` (the learner allows it for NCM, whose class means like many coarse samples; trained methods
    replay better from int4: docs/benchmarks.md "gdro last accuracy vs codec and budget")."""
    groups = max(AUTO_MIN_GROUPS, n_groups)
    for name in SCALAR_CODECS:  # most precise first
        if capacity_for[name] >= target * groups:
            return name
    return "pq" if allow_pq and first and capacity_for["int4"] < AUTO_PQ_BELOW * groups else "int4"


def water_fill(available: np.ndarray, capacity: int) -> np.ndarray:
    """Per-group quotas: as equal as possible (differing by at most 1 among groups that have enough samples),
    never more than a group has, summing to min(capacity, total). available: (G,) int. Returns (G,) int."""
    available = np.asarray(available, dtype=np.int64)
    if capacity >= available.sum():
        return available.copy()
    lo, hi = 0, int(available.max())
    while lo < hi:  # largest level L with sum(min(available, L)) <= capacity
        mid = (lo + hi + 1) // 2
        if np.minimum(available, mid).sum() <= capacity:
            lo = mid
        else:
            hi = mid - 1
    quota = np.minimum(available, lo)
    spare = capacity - int(quota.sum())
    for g in np.flatnonzero(available > lo)[:spare]:  # one more for the first groups that can take it
        quota[g] += 1
    return quota


def balanced_quotas(available: np.ndarray, supplied: np.ndarray, capacity: int) -> np.ndarray:
    """Water-filled quotas, kept within 1 of each other. A group that already lost samples to eviction
    (available < supplied) cannot grow back, so no other group may exceed its count by more than 1: balance
    wins over filling capacity left free after a codec change. Groups merely supplied with few samples
    keep them all without capping the others. available, supplied: (G,) int. Returns (G,) int."""
    quota = water_fill(available, capacity)
    stuck = (available < supplied) & (quota == available)
    if stuck.any():
        quota = np.minimum(quota, int(available[stuck].min()) + 1)
    return quota


def random_priority(ids: np.ndarray, seed: int) -> np.ndarray:
    """A fixed pseudo-random priority per sample id (splitmix64): lower is kept first, so evictions are stable."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(seed) * _MIX + _MIX
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def herding_order(x: np.ndarray, keep: int) -> np.ndarray:
    """iCaRL herding: indices of `keep` rows whose running mean best tracks the mean of all rows. x: (n, D)."""
    x = unit_rows(x)
    mean = x.mean(axis=0)
    chosen: list[int] = []
    running = np.zeros_like(mean)
    free = np.ones(len(x), bool)
    for k in range(min(keep, len(x))):
        candidate_means = (running + x) / (k + 1)  # (n, D)
        dist = np.linalg.norm(candidate_means - mean, axis=1)
        dist[~free] = np.inf
        best = int(np.argmin(dist))
        chosen.append(best)
        free[best] = False
        running += x[best]
    return np.asarray(chosen, dtype=np.int64)
