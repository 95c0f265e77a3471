"""What a device shares and how the server combines it (numpy only, no Flower): the aggregation rule.

A device's update holds its image head's update as the two arrays classification uses (`MergedHead`: down (D, r)
and up (r, D), the product being what LoRA learned: scaling * B @ A), its class names with per-class sample counts,
each class's text embedding, and its class means per (class, domain) with their counts. Never images, never memory
rows, never LoRA's factors on their own.

The rule (`aggregate`, `share_for`):
- Heads: the sample-weighted average of the devices' head updates, M = sum_k w_k down_k @ up_k with w_k = n_k /
  sum_j n_j over the devices that train one. The average of the products, not the product of averaged factors:
  devices whose adapters started from other random initialisations (another --seed) average what they learned,
  not unrelated bases. It is kept exactly as factors of rank <= min(D, sum of the ranks) (`compact`).
- Each device takes its own share (`share_for`): the others' part of M (sum over j != k of w_j M_j) and its own
  weight w_k, and forms w_k * (its head now) + the others' part. Nothing of its own is ever added and subtracted
  again, so a learn on the device between its answer and the fleet's result is kept (weighted in as if it had been
  sent); with no learn in between it is exactly M.
- Classes: the union, ordered by first appearance in device order; a class's sample count is the sum.
- Text embeddings: per class, the first device's (the backbone is shared, so they agree).
- Class means: per (class, domain), the count-weighted mean of the devices' means; counts add up. A device's share
  holds the others' means only.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from edgecl.learn.merged import MergedHead
from edgecl.names import class_key

K = TypeVar("K", bound=Hashable)
RANK_TOLERANCE = 1e-7  # singular values below this share of the largest are zero in `compact`


@dataclass(frozen=True)
class Update:
    """One device's share, or the fleet's result for one device. head: the image head's update (None: the method
    trains none); class_counts: class -> images learned; text: class -> (D,) text embedding; means: (class, domain)
    -> ((D,) mean, count). In a result for a device, head is the others' part of the average and own_weight the
    device's weight in it (0.0 in a device's own update)."""

    backbone: str
    dim: int
    samples: int
    head: MergedHead | None
    class_counts: dict[str, int]
    text: dict[str, np.ndarray]
    means: dict[tuple[str, str], tuple[np.ndarray, int]]
    own_weight: float = 0.0

    def nbytes(self) -> int:
        """Bytes of the arrays and names it carries (what goes over the wire, before framing)."""
        arrays = (self.head.down.nbytes + self.head.up.nbytes if self.head else 0)
        arrays += sum(t.nbytes for t in self.text.values()) + sum(m.nbytes for m, _ in self.means.values())
        names = sum(len(c) for c in self.class_counts) + sum(len(c) + len(d) for c, d in self.means)
        return arrays + names + len(self.backbone)


class FleetMismatchError(ValueError):
    """An update from a device whose backbone or embedding size differs from the fleet's."""


def check_compatible(reference: Update, other: Update) -> None:
    """Same backbone and embedding size (adapter ranks may differ: heads are averaged as products)."""
    if other.backbone != reference.backbone or other.dim != reference.dim:
        raise FleetMismatchError(
            f"device uses backbone {other.backbone} ({other.dim}-d) but the fleet uses {reference.backbone} "
            f"({reference.dim}-d); a device joins a fleet only with the same backbone"
        )
    head = other.head
    if head is not None and (head.down.ndim != 2 or head.up.ndim != 2 or head.down.shape[0] != other.dim
                             or head.up.shape != (head.down.shape[1], other.dim)):  # fmt: skip
        raise FleetMismatchError(f"device's head has shapes {head.down.shape} and {head.up.shape}; a {other.dim}-d "
                                 f"fleet takes (D, r) and (r, D) with D = {other.dim}")  # fmt: skip


def aggregate(updates: list[Update]) -> Update:
    """The fleet's result over every device's update (all compatible: check_compatible)."""
    return _combine(updates, exclude=None)


def share_for(updates: list[Update], index: int) -> Update:
    """What device `index` of `updates` takes: the fleet's classes and texts, the others' class means, the others'
    part of the head average and its own weight in it."""
    return _combine(updates, exclude=index)


def _combine(updates: list[Update], exclude: int | None) -> Update:
    if not updates:
        raise ValueError("nothing to aggregate")
    first = updates[0]
    for other in updates[1:]:
        check_compatible(first, other)
    spelling: dict[str, str] = {}  # one class per name across devices (edgecl.names): the first spelling met

    def fleet_name(name: str) -> str:
        return spelling.setdefault(class_key(name), name)

    counts: dict[str, int] = {}
    text: dict[str, np.ndarray] = {}
    for u in updates:
        for name, n in u.class_counts.items():
            counts[fleet_name(name)] = counts.get(fleet_name(name), 0) + n
            text.setdefault(fleet_name(name), u.text[name])
    weights = head_weights(updates)
    others = [i for i in range(len(updates)) if i != exclude]
    head = weighted_heads([(weights[i], updates[i].head) for i in others if updates[i].head is not None], first.dim)
    means = pooled_means(((fleet_name(c), d), mean, n)
                         for i in others for (c, d), (mean, n) in updates[i].means.items())  # fmt: skip
    own = float(weights[exclude]) if exclude is not None else 0.0
    return Update(first.backbone, first.dim, int(sum(u.samples for u in updates)), head, counts, text, means, own)


def head_weights(updates: list[Update]) -> np.ndarray:
    """(K,) each update's weight in the head average: its samples over those of the updates with a head (0 for an
    update without one; equal weights when none has samples)."""
    trained = np.array([u.head is not None for u in updates])
    samples = np.array([max(u.samples, 0) for u in updates], np.float64) * trained
    if samples.sum() > 0:
        return samples / samples.sum()
    return trained / max(int(trained.sum()), 1)


def weighted_heads(parts: list[tuple[float, MergedHead]], dim: int) -> MergedHead | None:
    """sum_k w_k down_k @ up_k as compact factors (None when there are no parts)."""
    parts = [(w, h) for w, h in parts if w > 0]
    if not parts:
        return None
    down = np.concatenate([w * h.down.astype(np.float64) for w, h in parts], axis=1)
    up = np.concatenate([h.up.astype(np.float64) for _, h in parts], axis=0)
    return compact(down, up, dim)


def compact(down: np.ndarray, up: np.ndarray, dim: int, rank: int | None = None) -> MergedHead:
    """Factors of down @ up with as few columns as its numerical rank (exact), or the best rank-`rank`
    approximation (truncated SVD) when `rank` is given; float32, at least one column."""
    q1, r1 = np.linalg.qr(down.astype(np.float64))
    q2, r2 = np.linalg.qr(up.astype(np.float64).T)
    u, s, vt = np.linalg.svd(r1 @ r2.T)
    keep = int((s > RANK_TOLERANCE * (s[0] if len(s) else 0.0)).sum()) if len(s) and s[0] > 0 else 0
    keep = min(keep, rank) if rank is not None else keep
    if keep == 0:
        return MergedHead.identity(dim)
    root = np.sqrt(s[:keep])
    return MergedHead((q1 @ (u[:, :keep] * root)).astype(np.float32), ((root[:, None] * vt[:keep]) @ q2.T).astype(
        np.float32))  # fmt: skip


def taken_head(share: Update, mine: MergedHead) -> MergedHead | None:
    """The head a device takes from its share: own_weight * its head now + the others' part (None: nothing to take)."""
    if share.head is None and share.own_weight <= 0:
        return None
    parts = [(share.own_weight, mine)] + ([(1.0, share.head)] if share.head is not None else [])
    return weighted_heads(parts, share.dim) or MergedHead.identity(share.dim)


def pooled_means(entries: Iterable[tuple[K, np.ndarray, int]]) -> dict[K, tuple[np.ndarray, int]]:
    """Per key, the count-weighted mean of the (key, mean, count) entries (summed in float64) and the summed count,
    keys in order of first appearance."""
    sums: dict[K, tuple[np.ndarray, int]] = {}
    for key, mean, n in entries:
        total, count = sums.get(key, (np.zeros_like(mean, np.float64), 0))
        sums[key] = (total + n * mean.astype(np.float64), count + int(n))
    return {k: ((total / max(n, 1)).astype(np.float32), n) for k, (total, n) in sums.items()}

