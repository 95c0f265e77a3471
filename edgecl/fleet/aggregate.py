"""What a device shares and how the server combines it (numpy only, no Flower): the aggregation rule.

A device's update holds its adapter's LoRA tensors (named as peft names them), its class names with per-class
sample counts, each class's text embedding, and its class means per (class, domain) with their counts. Never
images, never memory rows.

The rule (`aggregate`):
- LoRA tensors: FedAvg, each tensor the average of the devices' tensors weighted by the device's sample count
  (the images it has learned from): W = sum_k n_k W_k / sum_k n_k. A and B are averaged separately, as FedAvg
  does for every parameter (the merged product of averages is not the average of products; the rule is exact for
  the tensors it names).
- Classes: the union, ordered by first appearance in device order; a class's sample count is the sum.
- Text embeddings: per class, the first device's (the backbone is shared, so they agree).
- Class means: per (class, domain), the count-weighted mean of the devices' means; counts add up.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Update:
    """One device's share. lora: peft tensor name -> array; class_counts: class -> images learned; text: class ->
    (D,) text embedding; means: (class, domain) -> ((D,) mean, count)."""

    backbone: str
    dim: int
    samples: int
    lora: dict[str, np.ndarray]
    class_counts: dict[str, int]
    text: dict[str, np.ndarray]
    means: dict[tuple[str, str], tuple[np.ndarray, int]]

    def nbytes(self) -> int:
        """Bytes of the arrays and names it carries (what goes over the wire, before framing)."""
        arrays = sum(a.nbytes for a in self.lora.values()) + sum(t.nbytes for t in self.text.values())
        arrays += sum(m.nbytes for m, _ in self.means.values())
        names = sum(len(k) for k in self.lora) + sum(len(c) for c in self.class_counts)
        names += sum(len(c) + len(d) for c, d in self.means)
        return arrays + names + len(self.backbone)


class FleetMismatchError(ValueError):
    """An update from a device whose backbone or embedding size differs from the fleet's."""


def check_compatible(reference: Update, other: Update) -> None:
    if other.backbone != reference.backbone or other.dim != reference.dim:
        raise FleetMismatchError(
            f"device uses backbone {other.backbone} ({other.dim}-d) but the fleet uses {reference.backbone} "
            f"({reference.dim}-d); a device joins a fleet only with the same backbone"
        )
    if reference.lora and other.lora and (other.lora.keys() != reference.lora.keys() or any(
            other.lora[k].shape != reference.lora[k].shape for k in reference.lora)):  # fmt: skip
        raise FleetMismatchError("device's adapter tensors differ in names or shapes (another LoRA rank?)")


def aggregate(updates: list[Update]) -> Update:
    """The fleet's update from the devices' (all compatible: check_compatible). Devices whose method trains no
    adapter (ncm, zeroshot) share classes and means only and take no part in the LoRA average."""
    if not updates:
        raise ValueError("nothing to aggregate")
    first = updates[0]
    for other in updates[1:]:
        check_compatible(first, other)
    counts: dict[str, int] = {}
    text: dict[str, np.ndarray] = {}
    for u in updates:
        for name, n in u.class_counts.items():
            counts[name] = counts.get(name, 0) + n
            text.setdefault(name, u.text[name])
    return Update(first.backbone, first.dim, int(sum(u.samples for u in updates)), fedavg(updates), counts, text,
                  _merged_means(updates))  # fmt: skip


def fedavg(updates: list[Update]) -> dict[str, np.ndarray]:
    """Sample-weighted average of each LoRA tensor over the updates that carry one."""
    trained = [u for u in updates if u.lora]
    if not trained:
        return {}
    weights = np.array([max(u.samples, 0) for u in trained], np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(trained), 1 / len(trained))
    return {name: sum(w * u.lora[name].astype(np.float64) for w, u in zip(weights, trained, strict=True)).astype(
        trained[0].lora[name].dtype) for name in trained[0].lora}  # fmt: skip


def pooled_means(entries: Iterable[tuple[K, np.ndarray, int]]) -> dict[K, tuple[np.ndarray, int]]:
    """Per key, the count-weighted mean of the (key, mean, count) entries (summed in float64) and the summed count,
    keys in order of first appearance."""
    sums: dict[K, tuple[np.ndarray, int]] = {}
    for key, mean, n in entries:
        total, count = sums.get(key, (np.zeros_like(mean, np.float64), 0))
        sums[key] = (total + n * mean.astype(np.float64), count + int(n))
    return {k: ((total / max(n, 1)).astype(np.float32), n) for k, (total, n) in sums.items()}


def _merged_means(updates: list[Update]) -> dict[tuple[str, str], tuple[np.ndarray, int]]:
    return pooled_means((key, mean, n) for u in updates for key, (mean, n) in u.means.items())
