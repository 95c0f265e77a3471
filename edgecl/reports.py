"""Typed results of the learn path: what learning one task did (`TaskResult`), and the reports `edgecl learn --json`
and `edgecl status --json` print (`LearnReport`, `StatusReport`). Frozen dataclasses; `to_json()` gives the
documented JSON contracts (docs/usage.md "JSON contracts")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgecl.memory import MemoryStats


@dataclass(frozen=True)
class Training:
    """What training the heads on one task did (methods that train)."""

    seconds: float
    loss: list[float]  # mean loss over each of up to 10 equal spans of the steps
    steps: int
    class_weights: list[dict[str, float]]  # gdro's weight per group at the end of each span, groups by name
    batch: int  # rows per step: the runtime's training batch, or less under the RAM cap
    replayed_rows: int  # memory rows decoded for replay
    replay_rows_available: int  # memory rows of earlier tasks that could have been
    translated_rows: int  # rows made for earlier groups from the task's own (edgecl.learn.translation)
    translated_rows_available: int  # rows those groups lacked (more than translated_rows: the RAM cap cut them)
    precision: str  # the autocast precision the heads trained in (Runtime.train_precision)
    held_out_rows: int | None = None  # rows held out to measure the prototype weight (methods with prototypes)


@dataclass(frozen=True)
class TaskResult:
    """What Learner.learn_embeddings / learn_images did with one task."""

    new_classes: list[str]
    classes: list[str]  # every learned class, in order
    method: str
    memory: MemoryStats | None  # the memory after the task (None: the method keeps none)
    training: Training | None = None  # None: the method trains nothing
    prototype_weight: float | None = None  # the weight scores use now (methods that train with prototypes)
    encode_seconds: float | None = None  # learn_images only
    seconds_total: float | None = None  # learn_images only
    validation: dict[str, Any] | None = None  # how well the task's classes are told apart (calibration.task_validation)
    joined: dict[str, str] = field(default_factory=dict)  # a spelling given -> the learned class it is (edgecl.names)
    samples: int = 0  # rows learned
    skipped: list[dict[str, str]] = field(default_factory=list)  # learn_images: unreadable images, with the reason

    @property
    def train_seconds(self) -> float:
        return self.training.seconds if self.training else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Batches:
    """How learning batched its work under the RAM cap."""

    encode: dict[str, Any]  # the encode plan's summary (edgecl.ram.BatchPlan.summary)
    train: int | None  # rows per training step (None: the method trains nothing)
    replayed_rows: int | None
    replay_rows_available: int | None
    translated_rows: int | None  # rows made for earlier groups from the task's own (edgecl.learn.translation)
    translated_rows_available: int | None  # rows those groups lacked (more than translated_rows: the RAM cap cut them)


@dataclass(frozen=True)
class LearnReport:
    """`edgecl learn --json`: one field per key, in the contract's order."""

    classes: list[str]
    new_classes: list[str]
    samples_stored: int
    memory_bytes: int
    budget_bytes: int
    codec: str
    skipped: list[dict[str, str]]  # files not learned, with the reason
    seconds: float
    method: str
    groups: str
    domain: str | None
    loss: list[float]
    class_weights: dict[str, float] | None  # gdro's last weights per group
    state_dir: str
    backbone: str
    device: str | None
    providers_used: list[str]
    peak_rss_bytes: int
    ram_cap_bytes: int | None
    host_rss_bytes: int
    batches: Batches
    train_precision: str | None
    train_steps: int | None
    prototype_weight: float | None
    validation: dict[str, Any] | None  # per class of the task: held-out accuracy, most confused with; hints
    samples_learned: int = 0  # photos learned by this call (0: all were learned before, nothing changed)
    already_learned: int = 0  # photos not learned again: the state learned them before as the same class
    joined_classes: dict[str, str] = field(default_factory=dict)  # a folder name -> the learned class it is

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StatusReport:
    """`edgecl status --json`: what a state holds, one field per key in the contract's order."""

    backbone: str
    device: str
    classes: list[str]
    domains: list[str]
    method: str
    groups: str
    memory: MemoryStats
    tasks: list[dict[str, Any]]  # the task history of the state's metadata
    state_dir: str
    providers_used: list[str]
    forced_budget: bool
    model_dir: str
    memory_path: str  # reported inside `memory`

    def to_json(self) -> dict[str, Any]:
        """The contract's `memory` object: the file's path, then the stats' bytes, budget, codec, per-class counts
        and samples."""
        out = asdict(self)
        m = out["memory"]
        out["memory"] = {"path": out.pop("memory_path")} | {k: m[k] for k in STATUS_MEMORY_KEYS}
        return out


STATUS_MEMORY_KEYS = ("bytes", "budget_bytes", "codec", "per_class", "per_class_domain", "samples")
