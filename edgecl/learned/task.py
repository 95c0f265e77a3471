"""One task on its way into a learned state."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecl.memory import ReplayMemory


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


def earlier_rows(memory: ReplayMemory, new_ids: np.ndarray) -> np.ndarray:
    """Rows of `memory` stored by earlier tasks (not among this task's `new_ids`)."""
    return np.flatnonzero(~np.isin(memory.ids.astype(np.int64), new_ids))
