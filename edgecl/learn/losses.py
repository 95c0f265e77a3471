"""Training losses over adapted embeddings: ce, gcl (global contrastive, per-sample estimators), gdro (GCL with
class-level KL-regularised DRO weights) and gdro_ce (cross-entropy with the same DRO weights). Formulas: docs/method.md,
"Learner".

Every loss scores a batch through its similarities (edgecl.learn.similarity: the cosines of its adapted rows to
the class texts, by column) and returns a LossOutput: `objective` to backpropagate (a surrogate whose gradient is the
method's compositional gradient), `per_sample` values of the loss itself (detached), and the group weights q
(gdro). Losses take each row's group key (`groups`); only gdro and gdro_ce use it.

A loss object owns its estimators across tasks: `state_arrays()` / `from_arrays()` (what estimators.npz holds),
`forget()` (samples evicted from memory) and `drop_class()` (a forgotten class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import numpy as np
import torch

from edgecl.learn.configs import LossConfig
from edgecl.learn.similarity import Sims
from edgecl.memory.groups import grouping

EPS = 1e-8


@dataclass
class LossOutput:
    objective: torch.Tensor  # scalar to backpropagate
    per_sample: torch.Tensor  # (B,) detached loss values
    weights_of: Callable[[], dict[int, float]] | None = None  # gdro: its q, computed only when asked for

    @property
    def class_weights(self) -> dict[int, float] | None:
        """gdro's q over every group after this step (group key -> weight); None for other losses."""
        return self.weights_of() if self.weights_of is not None else None


def cross_entropy(sims: Sims, y: torch.Tensor, cfg: LossConfig, candidates: torch.Tensor | None = None) -> LossOutput:
    """CLIP-style CE: logits s(z, t_c) / tau over `candidates` (class indices; default all)."""
    per_sample = _cross_entropy_rows(sims, y, cfg, candidates)
    return LossOutput(per_sample.mean(), per_sample.detach())


def _cross_entropy_rows(sims: Sims, y: torch.Tensor, cfg: LossConfig, candidates: torch.Tensor | None) -> torch.Tensor:
    """(B,) CE of each row, with gradient."""
    logits = sims.columns() / cfg.temperature  # (B, C)
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

    def __call__(self, sims: Sims, y: torch.Tensor, ids: torch.Tensor, candidates: torch.Tensor | None = None,
                 groups: torch.Tensor | None = None) -> LossOutput:  # fmt: skip
        return cross_entropy(sims, y, self.cfg, candidates)


class BalancedCrossEntropyLoss(CrossEntropyLoss):
    """Class-balanced cross-entropy (er_cb): the mean loss of each class in the batch, averaged over those classes,
    so a class with many rows in the batch does not outweigh one with few."""

    def __call__(self, sims: Sims, y: torch.Tensor, ids: torch.Tensor, candidates: torch.Tensor | None = None,
                 groups: torch.Tensor | None = None) -> LossOutput:  # fmt: skip
        per_sample = _cross_entropy_rows(sims, y, self.cfg, candidates)
        classes, index = torch.unique(y, return_inverse=True)
        sums = torch.zeros(len(classes), dtype=per_sample.dtype).index_add(0, index, per_sample)
        class_means = sums / torch.bincount(index, minlength=len(classes)).to(per_sample.dtype)
        return LossOutput(class_means.mean(), per_sample.detach())


TEXT_NEGATIVES = 128  # classes whose texts a step scores; with more learned classes the rest are sampled


def _text_negatives(y: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The text columns one step scores for g1, sorted, with each one's weight in the mean over negatives: every
    class while there are at most TEXT_NEGATIVES (weight 1: the exact mean), else the batch's own classes (weight 1)
    and a uniform sample of the others, each weighted by (others) / (sampled) so that the mean stays unbiased. This
    keeps a step's cost flat in the classes learned (docs/benchmarks.md "Learn time")."""
    if n_classes <= TEXT_NEGATIVES:
        return torch.arange(n_classes), torch.ones(n_classes)
    own = torch.unique(y)
    others = torch.ones(n_classes, dtype=torch.bool)
    others[own] = False
    pool = others.nonzero().squeeze(1)
    if not len(pool):  # the batch holds every class: the exact mean
        return torch.arange(n_classes), torch.ones(n_classes)
    take = max(1, TEXT_NEGATIVES - len(own))
    sampled = pool[torch.randperm(len(pool))[:take]]  # torch's generator, seeded by the trainer
    columns, order = torch.sort(torch.cat([own, sampled]))
    weights = torch.cat([torch.ones(len(own)), torch.full((len(sampled),), len(pool) / len(sampled))])[order]
    return columns, weights


class GlobalContrastiveLoss:
    """GCL with a moving-average estimator u2 per sample id (image negatives); text negatives exact up to
    TEXT_NEGATIVES classes, an unbiased sample beyond."""

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

    def terms(self, sims: Sims, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """g1 (B,) over the seen classes' texts (exact up to TEXT_NEGATIVES classes, beyond that an unbiased
        estimate, see _text_negatives), g2 (B,) in-batch estimate over images of other classes."""
        tau = self.cfg.temperature
        n_classes = sims.n_classes
        columns, weights = _text_negatives(y, n_classes)  # (S,) class indices, (S,) their weight in the mean
        every = len(columns) == n_classes
        sim = sims.columns(None if every else columns)  # (B, S); all C columns in order when S == C
        y_col = y if every else torch.searchsorted(columns, y)  # (B,) each row's own column
        pos = sim.gather(1, y_col[:, None])  # (B, 1) s(z_i, t_{y_i})
        other_class = torch.ones_like(sim).scatter_(1, y_col[:, None], 0.0) * weights  # y_i's own column: 0
        g1 = (torch.exp((sim - pos) / tau) * other_class).sum(1) / max(1, n_classes - 1)
        cross = sim[:, y_col].T  # (B, B): cross[i, j] = s(z_j, t_{y_i})
        negatives = (y[:, None] != y[None, :]).to(sim.dtype)  # j is a negative of i when y_j != y_i
        g2 = (torch.exp((cross - pos) / tau) * negatives).sum(1) / negatives.sum(1).clamp(min=1)
        return g1, g2

    def estimators(self, g2: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Update and return u2 (B,): gamma-average per id; a first visit takes the batch value (gamma = 1), and so
        does a row without a memory id (id < 0: a translated row, made afresh each task), which keeps no estimator."""
        gamma, out = self.cfg.gamma, []
        for value, sample_id in zip(g2.detach().tolist(), ids.tolist(), strict=False):
            prev = self.u2.get(sample_id)
            new = value if prev is None else (1 - gamma) * prev + gamma * value
            if sample_id >= 0:
                self.u2[sample_id] = new
            out.append(new)
        return torch.tensor(out, dtype=g2.dtype)

    def per_sample(self, sims: Sims, y: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(surrogate (B,), value (B,)): surrogate's gradient is tau * (grad g1 / (eps + g1) + grad g2 / (eps + u2))."""
        tau = self.cfg.temperature
        g1, g2 = self.terms(sims, y)
        u2 = self.estimators(g2, ids)
        surrogate = tau * (g1 / (EPS + g1).detach() + g2 / (EPS + u2))
        value = tau * (torch.log(EPS + g1.detach()) + torch.log(EPS + u2))
        return surrogate, value

    def __call__(self, sims: Sims, y: torch.Tensor, ids: torch.Tensor, candidates: torch.Tensor | None = None,
                 groups: torch.Tensor | None = None) -> LossOutput:  # fmt: skip
        surrogate, value = self.per_sample(sims, y, ids)
        return LossOutput(surrogate.mean(), value)


class GroupDROLoss:
    """GCL whose per-group mean losses are weighted by q = softmax(log pi + v / lambda), v a moving average. A group
    is a class (the paper's), a (class, domain) pair or a domain: `groups` gives each row's key (default: its
    class). `rows` is the loss being reweighted (GroupDROCrossEntropyLoss reweights cross-entropy instead)."""

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
        by = grouping(groups)
        if not by.by_class:
            return
        parts = [(by.parts(k), v) for k, v in self.v.items()]
        self.v = {int(by.keys(c - (c > index), d or 0)): v for (c, d), v in parts if c != index}

    def rows(self, sims: Sims, y: torch.Tensor, ids: torch.Tensor,
             candidates: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(surrogate (B,), value (B,)) of the loss being reweighted: GCL's."""
        return self.gcl.per_sample(sims, y, ids)

    def class_weights(self, seen: list[int], v_of: dict[int, float] | None = None) -> dict[int, float]:
        """q over the seen groups with a uniform prior (groups without an estimate yet count as v = 0); `v_of`: the
        estimators to use (default: the current ones)."""
        v_of = self.v if v_of is None else v_of
        v = torch.tensor([v_of.get(c, 0.0) for c in seen], dtype=torch.float64)
        q = torch.softmax(v / self.cfg.dro_lambda, dim=0)  # log(pi) is constant for a uniform prior
        return {c: float(w) for c, w in zip(seen, q.tolist(), strict=False)}

    def __call__(self, sims: Sims, y: torch.Tensor, ids: torch.Tensor, candidates: torch.Tensor | None = None,
                 groups: torch.Tensor | None = None) -> LossOutput:  # fmt: skip
        surrogate, value = self.rows(sims, y, ids, candidates)
        keys, index = torch.unique(y if groups is None else groups, sorted=True, return_inverse=True)  # (K,), (B,)
        batch_groups = keys.tolist()
        # a fixed number of tensor ops per step, whatever the number of groups in the batch (learn time stays flat
        # in the classes learned: a loop of masks per group cost more the more classes a batch held)
        for k, mean_value in zip(batch_groups, _group_means(value, index, len(keys)).tolist(), strict=True):
            prev = self.v.get(k)
            self.v[k] = (
                mean_value if prev is None else (1 - self.cfg.dro_gamma) * prev + self.cfg.dro_gamma * mean_value
            )
        # q restricted to the batch's groups: the softmax's normaliser over every group cancels in the ratio below
        v = torch.tensor([self.v[k] for k in batch_groups], dtype=torch.float64) / self.cfg.dro_lambda
        weights = torch.softmax(v, dim=0).to(value.dtype)
        objective = (weights * _group_means(surrogate, index, len(keys))).sum() / weights.sum()
        seen = dict(self.v)  # the estimators as of this step, for a report that asks for q
        return LossOutput(objective, value, lambda: self.class_weights(sorted(seen), seen))


class GroupDROCrossEntropyLoss(GroupDROLoss):
    """gdro_ce: cross-entropy replay (er's loss) whose per-group mean losses get gdro's KL-regularised DRO weights,
    with the same estimator v and lambda; no per-sample estimators (its u2 stays empty)."""

    def rows(self, sims: Sims, y: torch.Tensor, ids: torch.Tensor,
             candidates: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        per_sample = _cross_entropy_rows(sims, y, self.cfg, candidates)
        return per_sample, per_sample.detach()


def _group_means(values: torch.Tensor, index: torch.Tensor, n_groups: int) -> torch.Tensor:
    """(K,) mean of `values` (B,) over the rows of each group (`index` (B,) in [0, K)), with gradient."""
    sums = torch.zeros(n_groups, dtype=values.dtype).index_add(0, index, values)
    return sums / torch.bincount(index, minlength=n_groups).to(values.dtype)


LOSSES = {"ce": CrossEntropyLoss, "ce_balanced": BalancedCrossEntropyLoss, "gcl": GlobalContrastiveLoss,
          "gdro": GroupDROLoss, "gdro_ce": GroupDROCrossEntropyLoss}  # fmt: skip  # the method table's loss kinds
