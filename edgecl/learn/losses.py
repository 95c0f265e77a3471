"""Training losses over adapted embeddings: ce, gcl (global contrastive, per-sample estimators) and gdro (GCL with
class-level KL-regularised DRO weights). Formulas: README, "Learner".

Every loss returns a LossOutput: `objective` to backpropagate (a surrogate whose gradient is the method's
compositional gradient), `per_sample` values of the loss itself (detached), and the group weights q (gdro). Losses
take each row's group key (`groups`); only gdro uses it.

A loss object owns its estimators across tasks: `state_arrays()` / `from_arrays()` (what estimators.npz holds),
`forget()` (samples evicted from memory) and `drop_class()` (a forgotten class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import torch

from edgecl.learn.configs import LossConfig
from edgecl.memory.policy import group_keys, group_parts

EPS = 1e-8


@dataclass
class LossOutput:
    objective: torch.Tensor  # scalar to backpropagate
    per_sample: torch.Tensor  # (B,) detached loss values
    class_weights: dict[int, float] | None = None


def cross_entropy(z: torch.Tensor, text: torch.Tensor, y: torch.Tensor, cfg: LossConfig,
                  candidates: torch.Tensor | None = None) -> LossOutput:  # fmt: skip
    """CLIP-style CE: logits s(z, t_c) / tau over `candidates` (class indices; default all). z (B, D), text (C, D)."""
    per_sample = _cross_entropy_rows(z, text, y, cfg, candidates)
    return LossOutput(per_sample.mean(), per_sample.detach())


def _cross_entropy_rows(z: torch.Tensor, text: torch.Tensor, y: torch.Tensor, cfg: LossConfig,
                        candidates: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """(B,) CE of each row, with gradient."""
    logits = z @ text.T / cfg.temperature  # (B, C)
    if candidates is not None:
        mask = torch.full_like(logits, float("-inf"))
        mask[:, candidates] = 0.0
        logits = logits + mask
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


class CrossEntropyLoss:
    """`cross_entropy` as a loss object (no estimators)."""

    def __init__(self, cfg: LossConfig) -> None:
        self.cfg = cfg

    @classmethod
    def from_arrays(cls, cfg: LossConfig, arrays: dict[str, np.ndarray]) -> Self:
        return cls(cfg)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def forget(self, keep_ids: set[int]) -> None:
        """Nothing per sample to drop."""

    def drop_class(self, index: int, groups: str) -> None:
        """Nothing per class to drop."""

    def __call__(self, z: torch.Tensor, text: torch.Tensor, y: torch.Tensor, ids: torch.Tensor,
                 candidates: torch.Tensor | None = None, groups: torch.Tensor | None = None) -> LossOutput:  # fmt: skip
        return cross_entropy(z, text, y, self.cfg, candidates)


class BalancedCrossEntropyLoss(CrossEntropyLoss):
    """Class-balanced cross-entropy (er_cb): the mean loss of each class in the batch, averaged over those classes,
    so a class with many rows in the batch does not outweigh one with few."""

    def __call__(self, z: torch.Tensor, text: torch.Tensor, y: torch.Tensor, ids: torch.Tensor,
                 candidates: torch.Tensor | None = None, groups: torch.Tensor | None = None) -> LossOutput:  # fmt: skip
        per_sample = _cross_entropy_rows(z, text, y, self.cfg, candidates)
        classes, index = torch.unique(y, return_inverse=True)
        sums = torch.zeros(len(classes), dtype=per_sample.dtype).index_add(0, index, per_sample)
        class_means = sums / torch.bincount(index, minlength=len(classes)).to(per_sample.dtype)
        return LossOutput(class_means.mean(), per_sample.detach())


class GlobalContrastiveLoss:
    """GCL with a moving-average estimator u2 per sample id (image negatives); text negatives are exact."""

    def __init__(self, cfg: LossConfig) -> None:
        self.cfg = cfg
        self.u2: dict[int, float] = {}  # per-sample estimator, keyed by the memory's stable sample ids

    @classmethod
    def from_arrays(cls, cfg: LossConfig, arrays: dict[str, np.ndarray]) -> Self:
        """The loss with the estimators `state_arrays` gave (none: a fresh loss)."""
        loss = cls(cfg)
        if "u2_ids" in arrays:
            loss.u2 = dict(zip(arrays["u2_ids"].tolist(), arrays["u2"].tolist(), strict=True))
        return loss

    def state_arrays(self) -> dict[str, np.ndarray]:
        """u2 per sample id, as arrays."""
        return {"u2_ids": np.array(list(self.u2), dtype=np.int64), "u2": np.array(list(self.u2.values()), np.float64)}

    def forget(self, keep_ids: set[int]) -> None:
        """Drop the estimators of samples no longer in the training pool (evicted from memory)."""
        self.u2 = {i: v for i, v in self.u2.items() if i in keep_ids}

    def drop_class(self, index: int, groups: str) -> None:
        """Per-sample estimators stay valid when a class goes."""

    def terms(self, z: torch.Tensor, text: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """g1 (B,) exact over seen classes, g2 (B,) in-batch estimate over images of other classes."""
        tau = self.cfg.temperature
        sim = z @ text.T  # (B, C)
        pos = sim.gather(1, y[:, None])  # (B, 1) s(z_i, t_{y_i})
        other_class = torch.ones_like(sim, dtype=torch.bool).scatter_(1, y[:, None], False)
        g1 = (torch.exp((sim - pos) / tau) * other_class).sum(1) / other_class.sum(1).clamp(min=1)
        cross = sim[:, y].T  # (B, B): cross[i, j] = s(z_j, t_{y_i})
        negatives = (y[:, None] != y[None, :]).to(z.dtype)  # j is a negative of i when y_j != y_i
        g2 = (torch.exp((cross - pos) / tau) * negatives).sum(1) / negatives.sum(1).clamp(min=1)
        return g1, g2

    def estimators(self, g2: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Update and return u2 (B,): gamma-average per id; a first visit takes the batch value (gamma = 1)."""
        gamma, out = self.cfg.gamma, []
        for value, sample_id in zip(g2.detach().tolist(), ids.tolist(), strict=False):
            prev = self.u2.get(sample_id)
            new = value if prev is None else (1 - gamma) * prev + gamma * value
            self.u2[sample_id] = new
            out.append(new)
        return torch.tensor(out, dtype=g2.dtype)

    def per_sample(
        self, z: torch.Tensor, text: torch.Tensor, y: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """(surrogate (B,), value (B,)): surrogate's gradient is tau * (grad g1 / (eps + g1) + grad g2 / (eps + u2))."""
        tau = self.cfg.temperature
        g1, g2 = self.terms(z, text, y)
        u2 = self.estimators(g2, ids)
        surrogate = tau * (g1 / (EPS + g1).detach() + g2 / (EPS + u2))
        value = tau * (torch.log(EPS + g1.detach()) + torch.log(EPS + u2))
        return surrogate, value

    def __call__(self, z: torch.Tensor, text: torch.Tensor, y: torch.Tensor, ids: torch.Tensor,
                 candidates: torch.Tensor | None = None, groups: torch.Tensor | None = None) -> LossOutput:  # fmt: skip
        surrogate, value = self.per_sample(z, text, y, ids)
        return LossOutput(surrogate.mean(), value)


class GroupDROLoss:
    """GCL whose per-group mean losses are weighted by q = softmax(log pi + v / lambda), v a moving average. A group
    is a class (the paper's), a (class, domain) pair or a domain: `groups` gives each row's key (default: its
    class)."""

    def __init__(self, cfg: LossConfig) -> None:
        self.cfg = cfg
        self.gcl = GlobalContrastiveLoss(cfg)
        self.v: dict[int, float] = {}  # per-group moving average of the batch group-mean loss

    @classmethod
    def from_arrays(cls, cfg: LossConfig, arrays: dict[str, np.ndarray]) -> Self:
        """The loss with the estimators `state_arrays` gave (none: a fresh loss)."""
        loss = cls(cfg)
        loss.gcl = GlobalContrastiveLoss.from_arrays(cfg, arrays)
        if "v_classes" in arrays:
            loss.v = dict(zip(arrays["v_classes"].tolist(), arrays["v"].tolist(), strict=True))
        return loss

    def state_arrays(self) -> dict[str, np.ndarray]:
        """GCL's u2 per sample id and v per group key, as arrays."""
        return self.gcl.state_arrays() | {"v_classes": np.array(list(self.v), dtype=np.int64),
                                          "v": np.array(list(self.v.values()), dtype=np.float64)}  # fmt: skip

    def forget(self, keep_ids: set[int]) -> None:
        self.gcl.forget(keep_ids)

    def drop_class(self, index: int, groups: str) -> None:
        """The group estimators without class `index`, later classes moved down (domain groups stay valid)."""
        if groups == "domain":
            return
        parts = [(group_parts(groups, k), v) for k, v in self.v.items()]
        self.v = {int(group_keys(groups, c - (c > index), d or 0)): v for (c, d), v in parts if c != index}

    def class_weights(self, seen: list[int]) -> dict[int, float]:
        """q over the seen groups with a uniform prior (groups without an estimate yet count as v = 0)."""
        v = torch.tensor([self.v.get(c, 0.0) for c in seen], dtype=torch.float64)
        q = torch.softmax(v / self.cfg.dro_lambda, dim=0)  # log(pi) is constant for a uniform prior
        return {c: float(w) for c, w in zip(seen, q.tolist(), strict=False)}

    def __call__(self, z: torch.Tensor, text: torch.Tensor, y: torch.Tensor, ids: torch.Tensor,
                 candidates: torch.Tensor | None = None, groups: torch.Tensor | None = None) -> LossOutput:  # fmt: skip
        surrogate, value = self.gcl.per_sample(z, text, y, ids)
        g = y if groups is None else groups
        batch_groups = sorted(set(g.tolist()))
        for k in batch_groups:
            mean_value = float(value[g == k].mean())
            prev = self.v.get(k)
            self.v[k] = (
                mean_value if prev is None else (1 - self.cfg.dro_gamma) * prev + self.cfg.dro_gamma * mean_value
            )
        q = self.class_weights(sorted(set(self.v) | set(batch_groups)))
        weights = torch.tensor([q[k] for k in batch_groups], dtype=z.dtype)
        group_means = torch.stack([surrogate[g == k].mean() for k in batch_groups])
        objective = (weights * group_means).sum() / weights.sum()
        return LossOutput(objective, value, q)


LOSSES = {"ce": CrossEntropyLoss, "ce_balanced": BalancedCrossEntropyLoss, "gcl": GlobalContrastiveLoss,
          "gdro": GroupDROLoss}  # fmt: skip  # the method table's loss kinds
