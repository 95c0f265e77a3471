"""One device of a fleet, on its own state directory: what it shares (its own learning only) and how it takes the
fleet's result, committed with the same lock and atomic snapshot as `edgecl learn`. Its replay memory never leaves
it and is never touched here, so it stays within its byte budget.

What came from the fleet is kept apart from what the device learned itself: the fleet's class means live in
groups of a reserved domain index (FLEET_DOMAIN), so a device shares only its own images' means and counts and a
later round never counts a sample twice.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.errors import EdgeclError
from edgecl.fleet.aggregate import Update, pooled_means
from edgecl.learn.prototypes import ClassMeans
from edgecl.learned import LearnedState, files
from edgecl.memory.policy import DOMAIN_SLOTS
from edgecl.state import commit_snapshot, read_state, state_root, writer_lock

FLEET_DOMAIN = DOMAIN_SLOTS - 1  # class means received from the fleet (a learner never has this many domains)
ADAPTER = "adapter"


def _snapshot(state_dir: str | Path) -> Any:
    snapshot = read_state(state_root(state_dir))
    if snapshot is None:
        raise EdgeclError(f"{state_dir}: this device has learned nothing yet; run `edgecl learn` on it first")
    return snapshot


def local_update(state_dir: str | Path) -> Update:
    """What this device learned itself: adapter tensors, classes with counts, text embeddings, class means."""
    snapshot = _snapshot(state_dir)
    state = files.load(snapshot.folder)
    mine = _own_means(state)
    counts = mine.samples_of(len(state.classes))
    class_counts = {c: int(n) for c, n in zip(state.classes, counts, strict=True) if n > 0}
    pooled = pooled_means(zip([state.classes[c] for c in mine.classes], mine.means, mine.counts, strict=True))
    means = {(c, ""): mean_count for c, mean_count in pooled.items()}
    text = {c: state.text[i] for i, c in enumerate(state.classes) if c in class_counts}
    samples = sum(int(task["samples"]) for task in state.tasks)
    return Update(snapshot.meta["backbone"], state.dim, samples, _lora_tensors(snapshot.folder / ADAPTER),
                  class_counts, text, means)  # fmt: skip


def _own_means(state: LearnedState) -> ClassMeans:
    """The class means of this device's own images: its prototypes without the fleet's groups, or, for a method
    without prototypes (ncm), the means of its memory rows."""
    cm = state.class_means if state.uses_prototypes else state.means_from_memory()
    own = cm.domains != FLEET_DOMAIN
    return ClassMeans(cm.means[own], cm.counts[own], cm.classes[own], cm.domains[own])


def _lora_tensors(folder: Path) -> dict[str, np.ndarray]:
    """The adapter's LoRA tensors under peft's own names (none when the method trains nothing)."""
    path = folder / "adapter_model.safetensors"
    if not path.is_file():
        return {}
    from safetensors.numpy import load_file

    return {k: v for k, v in load_file(str(path)).items() if "lora_" in k}


def apply_fleet(state_dir: str | Path, fleet: Update, lock_timeout_s: float = 300.0) -> dict[str, Any]:
    """Take the fleet's adapter (when this device has one to replace), every class and the others' class means;
    commit atomically. Returns what changed."""
    root = state_root(state_dir)
    with writer_lock(root, lock_timeout_s, lambda m: None):
        snapshot = _snapshot(root)
        if snapshot.meta["backbone"] != fleet.backbone:
            raise EdgeclError(f"this device uses backbone {snapshot.meta['backbone']}, the fleet {fleet.backbone}")
        state = files.load(snapshot.folder)
        new_classes = [c for c in fleet.class_counts if c not in state.classes]
        text = np.concatenate([state.text, *[fleet.text[c][None] for c in new_classes]]).astype(np.float32)
        state = state.replaced(classes=[*state.classes, *new_classes], text=text)
        state = state.replaced(class_means=_with_fleet_means(state, fleet))
        with tempfile.TemporaryDirectory(prefix="edgecl-fleet-") as tmp:
            adapter = _write_adapter(snapshot.folder / ADAPTER, fleet.lora, Path(tmp) / ADAPTER)
            if adapter is not None:
                from edgecl.learn.adapters import load_adapter, merge

                dirs = {**state.resume.adapter_dirs, ADAPTER: adapter}
                state = state.replaced(merged=merge(load_adapter(state.dim, adapter)),
                                       resume=replace(state.resume, head=None, adapter_dirs=dirs))  # fmt: skip
            rounds = int(snapshot.meta.get("fleet", {}).get("rounds", 0)) + 1
            meta = {**snapshot.meta, "fleet": {"rounds": rounds, "classes": len(state.classes)}}
            commit_snapshot(root, lambda folder: files.save(state, folder), meta)
    memory = state.memory
    return {"new_classes": new_classes, "classes": list(state.classes), "adapter": adapter is not None,
            "memory_bytes": memory.size_bytes(), "budget_bytes": memory.config.budget_bytes}  # fmt: skip


def _write_adapter(own: Path, lora: dict[str, np.ndarray], out: Path) -> Path | None:
    """The device's peft adapter folder with the fleet's LoRA tensors in place of its own (same names, shapes)."""
    mine = _lora_tensors(own)
    if not mine or not lora:
        return None
    if mine.keys() != lora.keys() or any(mine[k].shape != lora[k].shape for k in mine):
        raise EdgeclError("the fleet's adapter differs from this device's in names or shapes (another LoRA rank?)")
    from safetensors.numpy import load_file, save_file

    shutil.copytree(own, out)
    tensors = load_file(str(own / "adapter_model.safetensors")) | {k: np.ascontiguousarray(v) for k, v in lora.items()}
    save_file(tensors, str(out / "adapter_model.safetensors"))
    json.loads((out / "adapter_config.json").read_text())  # peft's config travels unchanged
    return out


def _with_fleet_means(state: LearnedState, fleet: Update) -> ClassMeans:
    """The device's own class means plus, per class, the fleet's contribution without its own (count-weighted)."""
    cm = state.class_means
    own = cm.domains != FLEET_DOMAIN
    means, counts = list(cm.means[own]), list(cm.counts[own])
    classes, domains = list(cm.classes[own]), list(cm.domains[own])
    shared = _own_means(state)  # what this device contributed to the fleet's means
    for (name, _), (mean, n) in fleet.means.items():
        c = state.classes.index(name)
        mine = shared.classes == c
        own_n = int(shared.counts[mine].sum())
        own_sum = (shared.means[mine].astype(np.float64) * shared.counts[mine][:, None]).sum(0)
        others = n - own_n
        if others <= 0:
            continue
        means.append(((n * mean.astype(np.float64) - own_sum) / others).astype(np.float32))
        counts.append(others)
        classes.append(c)
        domains.append(FLEET_DOMAIN)
    dim = state.dim
    return ClassMeans(np.array(means, np.float32).reshape(-1, dim), np.array(counts, np.int64),
                      np.array(classes, np.int64), np.array(domains, np.int64))  # fmt: skip
