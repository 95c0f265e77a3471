"""One device of a fleet, on its own state directory: what it shares (its own learning only) and how it takes the
fleet's result, committed with the same lock and atomic snapshot as `edgecl learn`. Its replay memory never leaves
it and is never touched here, so it stays within its byte budget.

What came from the fleet is kept apart from what the device learned itself: the fleet's class means live in
groups of a reserved domain index (FLEET_DOMAIN), so a device shares only its own images' means and counts, a
round replaces the fleet's groups whole (with the others' means: nothing of its own is subtracted) and a later
round never counts a sample twice. A learn between rounds is kept: its own groups and its head are never
overwritten, the fleet's head being formed from the device's head as it is when the result arrives
(edgecl.fleet.aggregate.taken_head).

A class this device has forgotten (`edgecl forget`) stays forgotten: the device refuses it from the fleet (it is
reported in `refused_classes` and in the snapshot's fleet record) until the device itself learns that class again.
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
from edgecl.fleet.aggregate import Update, compact, pooled_means, taken_head
from edgecl.learn.merged import MergedHead
from edgecl.learn.prototypes import ClassMeans
from edgecl.learned import LearnedState, files
from edgecl.memory.groups import DOMAIN_SLOTS
from edgecl.names import class_key, known_as
from edgecl.state import commit_snapshot, read_state, state_root, without_rollback_mark, writer_lock

FLEET_DOMAIN = DOMAIN_SLOTS - 1  # class means received from the fleet (a learner never has this many domains)
ADAPTER = "adapter"


def _snapshot(state_dir: str | Path) -> Any:
    snapshot = read_state(state_root(state_dir))
    if snapshot is None:
        raise EdgeclError(f"{state_dir}: this device has learned nothing yet; run `edgecl learn` on it first")
    return snapshot


def local_update(state_dir: str | Path) -> Update:
    """What this device learned itself: its image head's update, classes with counts, text embeddings, class means."""
    snapshot = _snapshot(state_dir)
    state = files.load(snapshot.folder)
    mine = _own_means(state)
    counts = mine.samples_of(len(state.classes))
    class_counts = {c: int(n) for c, n in zip(state.classes, counts, strict=True) if n > 0}
    pooled = pooled_means(zip([state.classes[c] for c in mine.classes], mine.means, mine.counts, strict=True))
    means = {(c, ""): mean_count for c, mean_count in pooled.items()}
    text = {c: state.text[i] for i, c in enumerate(state.classes) if c in class_counts}
    samples = sum(int(task["samples"]) for task in state.tasks)
    head = state.merged if _has_adapter(snapshot.folder / ADAPTER) else None
    return Update(snapshot.meta["backbone"], state.dim, samples, head, class_counts, text, means)


def _own_means(state: LearnedState) -> ClassMeans:
    """The class means of this device's own images: its prototypes without the fleet's groups, or, for a method
    without prototypes (ncm), the means of its memory rows."""
    cm = state.class_means if state.uses_prototypes else state.means_from_memory()
    own = cm.domains != FLEET_DOMAIN
    return ClassMeans(cm.means[own], cm.counts[own], cm.classes[own], cm.domains[own])


def _has_adapter(folder: Path) -> bool:
    """Whether the state has a LoRA adapter (methods that train nothing have none); reads the file's header only."""
    path = folder / "adapter_model.safetensors"
    if not path.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as tensors:
        return any("lora_" in k for k in tensors.keys())  # noqa: SIM118 - safe_open has keys(), no iteration


def forgotten_classes(meta: dict[str, Any], learned: tuple[str, ...] | list[str]) -> set[str]:
    """Classes forgotten on this device and not learned again since: the fleet may not bring them back."""
    return {str(f["class"]) for f in meta.get("forgotten", []) if known_as(str(f["class"]), learned) is None}


def apply_fleet(state_dir: str | Path, share: Update, lock_timeout_s: float = 300.0, round_id: int = 0,
                run_id: str = "") -> dict[str, Any]:  # fmt: skip
    """Take this device's share of the fleet's result: every class it has not forgotten, the others' class means
    and (when this device has an adapter) the head average formed with its head as it is now; commit atomically.
    A result already taken (the same `run_id` and `round_id`, a message delivered twice) is not taken again.
    Returns what changed."""
    root = state_root(state_dir)
    with writer_lock(root, lock_timeout_s, lambda m: None):
        snapshot = _snapshot(root)
        if snapshot.meta["backbone"] != share.backbone:
            raise EdgeclError(f"this device uses backbone {snapshot.meta['backbone']}, the fleet {share.backbone}")
        state = files.load(snapshot.folder)
        taken = snapshot.meta.get("fleet", {})
        if run_id and (taken.get("run"), taken.get("round")) == (run_id, round_id):
            return _figures(state, [], list(taken.get("refused", [])), adapter=False)
        forgotten = {class_key(c) for c in forgotten_classes(snapshot.meta, state.classes)}
        refused = [c for c in share.class_counts if class_key(c) in forgotten]  # one name rule: edgecl.names
        new_classes = [c for c in share.class_counts if known_as(c, state.classes) is None and c not in refused]
        text = np.concatenate([state.text, *[share.text[c][None] for c in new_classes]]).astype(np.float32)
        state = state.replaced(classes=[*state.classes, *new_classes], text=text)
        state = state.replaced(class_means=_with_fleet_means(state, share))
        with tempfile.TemporaryDirectory(prefix="edgecl-fleet-") as tmp:
            head = taken_head(share, state.merged) if _has_adapter(snapshot.folder / ADAPTER) else None
            if head is not None:
                adapter = _write_adapter(snapshot.folder / ADAPTER, head, Path(tmp) / ADAPTER)
                dirs = {**state.resume.adapter_dirs, ADAPTER: adapter}
                state = state.replaced(merged=head, resume=replace(state.resume, head=None, adapter_dirs=dirs))
            rounds = int(taken.get("rounds", 0)) + 1
            record = {"rounds": rounds, "round": round_id, "classes": len(state.classes), "refused": refused}
            record |= {"run": run_id} if run_id else {}
            meta = without_rollback_mark(snapshot.meta)
            commit_snapshot(root, lambda folder: files.save(state, folder), {**meta, "fleet": record})
    return _figures(state, new_classes, refused, adapter=head is not None)


def _figures(state: LearnedState, new_classes: list[str], refused: list[str], adapter: bool) -> dict[str, Any]:
    memory = state.memory
    return {"new_classes": new_classes, "refused_classes": refused, "classes": list(state.classes),
            "adapter": adapter, "memory_bytes": memory.size_bytes(),
            "budget_bytes": memory.config.budget_bytes}  # fmt: skip


def _write_adapter(own: Path, head: MergedHead, out: Path) -> Path:
    """The device's peft adapter folder with LoRA tensors that make the best rank-r approximation of `head` (r the
    adapter's own rank): where a later local learn goes on from. Classification uses `head` itself, exactly."""
    from safetensors.numpy import load_file, save_file

    from edgecl.learn.adapters import load_adapter, merge

    mine = load_file(str(own / "adapter_model.safetensors"))
    a_name = next(k for k in mine if "lora_A" in k)
    b_name = next(k for k in mine if "lora_B" in k)
    rank, dim = mine[a_name].shape
    config = json.loads((own / "adapter_config.json").read_text())
    alpha = float(config.get("lora_alpha", rank))
    scale = alpha / (rank**0.5 if config.get("use_rslora") else rank)
    near = compact(head.down, head.up, dim, rank)
    a = mine[a_name].astype(np.float32)  # rank slots the head does not fill keep the device's own A rows (with B = 0
    b = np.zeros((dim, rank), np.float32)  # there the product is unchanged, and a later learn can still use them)
    kept = near.down.shape[1]
    a[:kept], b[:, :kept] = near.down.T, near.up.T / scale
    shutil.copytree(own, out)
    tensors = {a_name: np.ascontiguousarray(a.astype(mine[a_name].dtype)),
               b_name: np.ascontiguousarray(b.astype(mine[b_name].dtype))}  # fmt: skip
    save_file(mine | tensors, str(out / "adapter_model.safetensors"))
    check = merge(load_adapter(dim, out))
    if not np.allclose(check.down @ check.up, near.down @ near.up, atol=1e-4):
        raise EdgeclError("the fleet's head could not be written as this device's adapter (peft's scaling differs)")
    return out


def _with_fleet_means(state: LearnedState, share: Update) -> ClassMeans:
    """The device's own class means plus, per class it holds, the others' means from the share (the fleet's groups
    of the last round are replaced whole)."""
    cm = state.class_means
    own = cm.domains != FLEET_DOMAIN
    means, counts = list(cm.means[own]), list(cm.counts[own])
    classes, domains = list(cm.classes[own]), list(cm.domains[own])
    for (name, _), (mean, n) in share.means.items():
        mine = known_as(name, state.classes)  # the device's spelling of the fleet's class
        if mine is None or n <= 0:
            continue
        means.append(mean.astype(np.float32))
        counts.append(int(n))
        classes.append(state.classes.index(mine))
        domains.append(FLEET_DOMAIN)
    dim = state.dim
    return ClassMeans(np.array(means, np.float32).reshape(-1, dim), np.array(counts, np.int64),
                      np.array(classes, np.int64), np.array(domains, np.int64))  # fmt: skip
