"""The learn package's configs: the LoRA adapter, the losses and the training schedule. Plain dataclasses without
torch, so that a saved learner's config loads on classify's numpy-only path; each validates in __post_init__ and its
errors name the field."""

from __future__ import annotations

import math
from dataclasses import dataclass

STEP_ROWS = 128  # new rows per step that the schedule counts passes in (half of the CPU profile's batch)


@dataclass(frozen=True)
class AdapterConfig:
    """LoRA settings of a residual head; errors name the field."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    text_head: bool = False  # also adapt the class (text) embeddings

    def __post_init__(self) -> None:
        if not 1 <= self.rank <= 1024:
            raise ValueError(f"AdapterConfig.rank must be in [1, 1024], got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"AdapterConfig.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"AdapterConfig.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class LossConfig:
    """Hyper-parameters of the losses; validated so that errors name the field."""

    temperature: float = 0.05  # tau
    gamma: float = 0.9  # moving-average rate of the per-sample GCL estimator u2
    dro_lambda: float = 1.0  # lambda of the KL-regularised class weights (-> inf gives plain GCL)
    dro_gamma: float = 0.9  # moving-average rate of the per-class loss v_c

    def __post_init__(self) -> None:
        if not 0 < self.temperature <= 10:
            raise ValueError(f"LossConfig.temperature must be in (0, 10], got {self.temperature}")
        for name in ("gamma", "dro_gamma"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"LossConfig.{name} must be in (0, 1], got {getattr(self, name)}")
        if self.dro_lambda <= 0:
            raise ValueError(f"LossConfig.dro_lambda must be > 0, got {self.dro_lambda}")


@dataclass(frozen=True)
class TrainSchedule:
    """How long and how fast a task trains; saved with the learner. Errors name the field."""

    epochs: int = 5  # passes over the task's new rows that the schedule aims for...
    min_steps: int = 200  # ...but never fewer optimiser steps than this (a folder of 20 photos still fits)
    max_steps: int = 2000  # nor more than this
    max_seconds: float = 60.0  # nor more wall time than this
    lr: float = 1e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr <= 0:
            raise ValueError("TrainSchedule: epochs >= 1 and lr > 0 are required")
        if not 1 <= self.min_steps <= self.max_steps or self.max_seconds <= 0:
            raise ValueError("TrainSchedule: 1 <= min_steps <= max_steps and max_seconds > 0 are required")

    def steps_for(self, n_new: int) -> int:
        """Optimiser steps for a task of n_new new rows: `epochs` passes of STEP_ROWS new rows per step, clamped to
        [min_steps, max_steps]. It depends on the folder only, not on the batch size the RAM cap allows."""
        return min(self.max_steps, max(self.min_steps, self.epochs * math.ceil(n_new / STEP_ROWS)))
