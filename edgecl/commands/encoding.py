"""Image files to embeddings in batches a RAM plan sizes (the profile's RAM cap), and the sizes a learn's
encoding and training batches get on this host."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.commands.common import Progress
from edgecl.errors import ImageLoadError
from edgecl.paths import display
from edgecl.ram import BatchPlan, PeakRss, TrainSizes
from edgecl.runtime import DEFAULT_ENCODE_BATCH


def encode_files(
    encoder: Any, paths: Sequence[Path], progress: Progress, plan: BatchPlan | None = None
) -> tuple[np.ndarray, list[int], list[dict[str, str]]]:
    """Encode image files one batch at a time, batches sized by `plan` (default: 16, no RAM cap); unreadable
    files are skipped with the reason. Returns ((M, D) embeddings, indices of the encoded paths, skipped)."""
    plan = plan or BatchPlan(None, DEFAULT_ENCODE_BATCH)
    kept: list[int] = []
    skipped: list[dict[str, str]] = []
    chunks = []
    start = 0
    while start < len(paths):  # one batch at a time: the plan sizes each batch by what the last one cost
        stop = min(len(paths), start + plan.size)
        with PeakRss() if plan.cap_bytes is not None else contextlib.nullcontext() as meter:
            batch = _read_batch(encoder, paths, range(start, stop), progress)
            if batch.kept:
                chunks.append(encoder.encode_pixels(batch.pixels, len(batch.kept), plan.release_after_batch))
        if batch.kept:
            plan.record(len(batch.kept), meter.before if meter else 0, meter.peak if meter else 0)
        kept += batch.kept
        skipped += batch.skipped
        start = stop
    emb = np.concatenate(chunks) if chunks else np.zeros((0, encoder.embed_dim), np.float32)
    return emb, kept, skipped


@dataclass(frozen=True)
class _ReadBatch:
    pixels: np.ndarray  # (len(kept), 3, S, S) f32 preprocessed
    kept: list[int]  # indices of the files read
    skipped: list[dict[str, str]]  # the others, with the reason


def _read_batch(encoder: Any, paths: Sequence[Path], indices: range, progress: Progress) -> _ReadBatch:
    """The readable files among `indices`, preprocessed; the unreadable ones with the reason."""
    from edgecl.preprocess import preprocess

    pixels, kept, skipped = [], [], []
    for i in indices:
        try:
            pixels.append(preprocess(paths[i], encoder.preprocess_spec))
            kept.append(i)
        except ImageLoadError as exc:
            skipped.append({"path": display(paths[i]), "reason": str(exc).removeprefix(f"{paths[i]}: ")})
        progress("encoding images", i + 1, len(paths))
    return _ReadBatch(np.stack(pixels) if pixels else np.zeros((0,), np.float32), kept, skipped)


def plan_encoding(learner: Any, host: int) -> BatchPlan:
    """Encode batches under the profile's RAM cap. Everything learning loads (both towers, and torch + peft when
    the method trains) is loaded first, so that a cap too small for it fails before any work, and batches are
    sized against what the process really holds."""
    learner.encoder.prepare("image")
    learner.encoder.prepare("text")
    if learner.trains:
        from edgecl.learn.trainer import warm_up

        warm_up(learner.dim, learner.runtime, learner.config.adapter.rank)
    plan = BatchPlan(_ram_cap(learner, host), learner.runtime.encode_batch, "learning")
    plan.check_start()
    return plan


def plan_training(learner: Any, labels: list[str], host: int) -> TrainSizes | None:
    """Training batch and replayed rows under the RAM cap (None: the method does not train)."""
    from edgecl.ram import plan_training

    if not learner.trains:
        return None
    classes = set(learner.classes) | set(labels)
    return plan_training(_ram_cap(learner, host), learner.runtime.train_batch, learner.dim, len(classes), len(labels),
                         _replay_wanted(learner))  # fmt: skip


def _replay_wanted(learner: Any) -> int:
    """At most how many rows a learn replays: every stored memory row and the translated rows the earlier groups
    could get (edgecl.learn.translation; an upper bound: a group's own memory rows lower what it gets)."""
    from edgecl.learn.translation import most_rows

    if not learner.method.replay:
        return 0
    per_group = learner.config.prototypes.translated_replay
    return len(learner.memory.ids) + most_rows(learner.state.class_means, per_group, len(learner.domains))


def _ram_cap(learner: Any, host: int) -> int | None:
    """The runtime's RAM cap on this process, above the `host` bytes it held before learning (edgecl.ram)."""
    cap = learner.runtime.ram_cap_bytes
    return cap + host if cap is not None else None
