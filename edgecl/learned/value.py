"""`LearnedState`: everything classify needs (class names, text rows, merged heads, class means, prototype weight,
calibration, the replay memory) and what training resumes from, as one frozen value. Its arrays are read-only and
its memory is never changed in place (a learn adds rows to a copy), so one value can be shared by any number of
readers while a learn builds the next."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from edgecl.learn.calibration import Calibration
from edgecl.learn.merged import MergedHead
from edgecl.learn.methods import METHODS, Method
from edgecl.learn.prototypes import DEFAULT_WEIGHT, ClassMeans
from edgecl.learned.seen import SeenImages
from edgecl.learner_config import LearnerConfig
from edgecl.memory import ReplayMemory
from edgecl.memory.groups import grouping


@dataclass(frozen=True)
class Resume:
    """What training resumes from: the torch heads and loss trained in this process (never trained in place: a learn
    trains deep copies), else the saved adapter folders and loss estimators they are rebuilt from."""

    head: Any = None  # peft model of the image head, once trained in this process
    text_head: Any = None
    loss: Any = None  # the method's loss with its estimators (GCL, GDRO)
    adapter_dirs: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    estimators: Mapping[str, np.ndarray] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class LearnedState:
    """One learned state. Build a changed one with `dataclasses.replace` (or `LearnedState.new`); never assign."""

    config: LearnerConfig
    dim: int
    classes: tuple[str, ...]
    text: np.ndarray  # (C, D) f32 class text embeddings
    memory: ReplayMemory  # never changed in place
    merged: MergedHead  # the image head as arrays
    merged_text: MergedHead
    class_means: ClassMeans  # every method: familiarity; `prototypes` methods also score by them
    calibration: Calibration  # what turns scores into a confidence (edgecl.learn.calibration)
    prototype_weight: float
    tasks: tuple[Mapping[str, Any], ...]  # per learned task: classes, domain, samples
    seen: SeenImages = field(default_factory=SeenImages.empty)  # the photos learned, by content (skipped next time)
    resume: Resume = field(default_factory=Resume)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "tasks", tuple(MappingProxyType(dict(t)) for t in self.tasks))
        for array in (self.text, self.merged.down, self.merged.up, self.merged_text.down, self.merged_text.up,
                      *vars(self.class_means).values(), *self.calibration.to_arrays().values()):  # fmt: skip
            array.flags.writeable = False

    @classmethod
    def new(cls, config: LearnerConfig, dim: int) -> LearnedState:
        """Nothing learned yet."""
        weight = DEFAULT_WEIGHT if config.prototypes.weight is None else config.prototypes.weight
        return cls(config, dim, (), np.zeros((0, dim), np.float32), ReplayMemory(config.memory, dim),
                   MergedHead.identity(dim), MergedHead.identity(dim), ClassMeans.empty(dim), Calibration.empty(),
                   weight, ())  # fmt: skip

    def replaced(self, **changes: Any) -> LearnedState:
        return replace(self, **changes)

    @property
    def method(self) -> Method:
        """The method's row of the method table (edgecl.learn.methods)."""
        return METHODS[self.config.method]

    @property
    def domains(self) -> list[str]:
        """Domains learned so far, in order ("" for tasks without one); a group's domain index points here."""
        return list(dict.fromkeys(task["domain"] or "" for task in self.tasks))

    def domain_index(self, domain: str | None) -> int:
        """The index a task of `domain` gets: its own if learned, else the next one."""
        known = self.domains
        return known.index(domain or "") if (domain or "") in known else len(known)

    @property
    def weight_in_use(self) -> float:
        """The prototype weight scores use: the class-incremental one, or the domain-incremental one once a class is
        learned in a second domain (there a task retrains the head on classes it already knows; docs/method.md,
        "Domain-incremental"). New classes under a new --domain keep the class-incremental weight."""
        return self.config.prototypes.domain_weight if self.revisits_domains else self.prototype_weight

    @property
    def revisits_domains(self) -> bool:
        """Whether some class was learned in more than one domain (a task without --domain is the unnamed one)."""
        domains: dict[str, set[str]] = {}
        for task in self.tasks:
            for name in task["classes"]:
                domains.setdefault(name, set()).add(task["domain"] or "")
        return any(len(d) > 1 for d in domains.values())

    @property
    def uses_prototypes(self) -> bool:
        """Whether scores add class-mean cosines to the head's."""
        return self.method.prototypes

    @property
    def trains(self) -> bool:
        """Whether learning trains adapters (zeroshot and ncm only store)."""
        return self.method.trains

    def class_indices(self, stored: Any) -> np.ndarray:
        """(N,) index into `classes` of each decoded memory row (the memory numbers its classes its own way)."""
        return class_indices(self.classes, stored)

    def domain_indices(self, stored: Any) -> np.ndarray:
        """(N,) domain index of each decoded memory row (see `domains`)."""
        to_domain = np.array([self.domain_index(d) for d in stored.domain_names], dtype=np.int64)
        return to_domain[stored.domains] if len(to_domain) else np.zeros(0, np.int64)

    def means_from_memory(self) -> ClassMeans:
        """Class means of the memory's rows: the best prototypes a state saved without class means can have."""
        stored = self.memory.samples()
        return ClassMeans.empty(self.dim).updated(stored.embeddings, self.class_indices(stored),
                                                  self.domain_indices(stored))  # fmt: skip

    def group_name(self, key: int, domains: list[str], classes: tuple[str, ...] | list[str]) -> str:
        """How a report names a group: its class, "class|domain" (just the class while there is one domain), or
        its domain."""
        c, d = grouping(self.config.groups).parts(key)
        if d is None or (c is not None and len(domains) <= 1):
            return classes[c]
        return domains[d] if c is None else f"{classes[c]}|{domains[d]}"


def class_indices(classes: tuple[str, ...] | list[str], stored: Any) -> np.ndarray:
    """(N,) index into `classes` of each decoded memory row (the memory numbers its classes its own way)."""
    to_class = np.array([classes.index(c) for c in stored.classes], dtype=np.int64)
    return to_class[stored.labels] if len(to_class) else np.zeros(0, np.int64)
