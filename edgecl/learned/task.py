"""One task on its way into a learned state, and the pool of rows it trains on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecl.learn import translation
from edgecl.learned.value import LearnedState, class_indices
from edgecl.memory import ReplayMemory
from edgecl.memory.groups import grouping

TRANSLATION_SEED = 104_729  # keeps the translated rows' draws apart from the memory subsample's


@dataclass(frozen=True)
class Task:
    """A task's rows, and the classes, text embeddings and memory the state will have with it (computed from the
    current state's, which stays as it is until the task succeeds)."""

    x: np.ndarray  # (N, D) f32
    y: np.ndarray  # (N,) index into `classes`
    ids: np.ndarray  # (N,) memory ids given to the rows (zeros for methods without memory)
    domain: int  # the task's domain index (see LearnedState.domains)
    domain_name: str  # "" for a task without a domain
    classes: list[str]  # the learned classes, the task's new ones appended
    text: np.ndarray  # (C, D) f32 their text embeddings
    memory: ReplayMemory  # the memory with the task's rows added


@dataclass(frozen=True)
class TrainingPool:
    """What a task trains on (an edgecl.learn.trainer.TrainData) and how many translated rows its earlier groups
    lacked (edgecl.learn.translation; more than the pool holds when the RAM cap left no room for them all)."""

    data: Any
    translated_available: int = 0


def earlier_rows(memory: ReplayMemory, new_ids: np.ndarray) -> np.ndarray:
    """Rows of `memory` stored by earlier tasks (not among this task's `new_ids`)."""
    return np.flatnonzero(~np.isin(memory.ids.astype(np.int64), new_ids))


def training_pool(state: LearnedState, task: Task, trains: np.ndarray, old: np.ndarray,
                  replay_rows: int | None) -> TrainingPool:  # fmt: skip
    """The edgecl.learn.trainer.TrainData a task trains on: its rows `trains` (a mask; new rows train at full
    precision), then the memory rows `old` of earlier tasks (at most `replay_rows` of them, drawn at random, are
    decoded), then rows translated to the earlier groups from the task's own (edgecl.learn.translation: as many as
    the RAM cap leaves room for, id -1)."""
    from edgecl.learn.trainer import TrainData

    groups, task_classes = grouping(state.config.groups), np.unique(task.y)
    x, y, ids = task.x[trains], task.y[trains], task.ids[trains]
    if not state.method.replay:
        return TrainingPool(TrainData(x, y, ids, task.text, task_classes,
                                      groups=groups.keys(y, np.full(len(y), task.domain))))  # fmt: skip
    if replay_rows is not None and len(old) > replay_rows:
        rng = np.random.default_rng(state.config.seed + len(state.tasks))
        old = np.sort(rng.choice(old, size=replay_rows, replace=False))
    stored = task.memory.samples(old)
    old_y, old_domains = class_indices(task.classes, stored), state.domain_indices(stored)
    room = None if replay_rows is None else replay_rows - len(old)
    seed = state.config.seed + len(state.tasks) + TRANSLATION_SEED
    made = translation.for_task(x, y, task.domain, state.class_means, (old_y, old_domains),
                                state.config.prototypes.translated_replay, room, seed, len(state.domains))  # fmt: skip
    pool_y = np.concatenate([y, old_y, made.classes])
    pool_domains = np.concatenate([np.full(len(x), task.domain), old_domains, made.domains])
    data = TrainData(np.concatenate([x, stored.embeddings, made.x]), pool_y,
                     np.concatenate([ids, stored.ids, np.full(len(made.x), -1)]), task.text, task_classes,
                     n_new=len(x), groups=groups.keys(pool_y, pool_domains))  # fmt: skip
    return TrainingPool(data, made.wanted)
