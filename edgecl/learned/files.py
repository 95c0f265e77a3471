"""A learned state's files: memory.safetensors, learned.npz (text rows, merged heads, class means, calibration),
estimators.npz, the peft adapter folders and learner.json. The state directory (edgecl.state) commits them
atomically; reading them needs numpy only (the adapters are loaded when training resumes)."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from edgecl.atomic import publish_folder
from edgecl.errors import EdgeclError
from edgecl.learn.calibration import Calibration
from edgecl.learn.merged import MergedHead
from edgecl.learn.prototypes import ClassMeans
from edgecl.learned.seen import SeenImages
from edgecl.learned.value import LearnedState, Resume
from edgecl.learner_config import CONFIG_VERSION, LearnerConfig
from edgecl.memory import ReplayMemory

ADAPTERS = ("adapter", "text_adapter")


def save(state: LearnedState, folder: Path) -> None:
    """Write the state's files into `folder` (created if needed). A folder that holds files already (the one the
    state was loaded from, say) is replaced whole: written beside it, then swapped in, so a failure half-way leaves
    it as it was and the adapters it was loaded from are read before they are replaced."""
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        _write(state, folder)
        return
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.saving-", dir=folder.parent))
    try:
        _write(state, work)
        publish_folder(work, folder, replace_existing=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(state: LearnedState, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state.memory.save(folder / "memory.safetensors")
    cm = state.class_means
    arrays = {"text": state.text, "down": state.merged.down, "up": state.merged.up,
              "text_down": state.merged_text.down, "text_up": state.merged_text.up,
              "class_means": cm.means, "class_counts": cm.counts, "class_mean_classes": cm.classes,
              "class_mean_domains": cm.domains, **state.calibration.to_arrays(), **state.seen.to_arrays()}  # fmt: skip
    np.savez(folder / "learned.npz", **arrays)
    resume = state.resume
    estimators = resume.loss.state_arrays() if resume.loss is not None else dict(resume.estimators)
    np.savez(folder / "estimators.npz", **estimators)
    for name, head in zip(ADAPTERS, (resume.head, resume.text_head), strict=True):
        if head is not None:
            from edgecl.learn.adapters import save_adapter

            save_adapter(head, folder / name)
        elif resume.adapter_dirs.get(name):  # loaded but not retrained: carry the files over
            shutil.copytree(resume.adapter_dirs[name], folder / name)
    meta = {"config": state.config.to_json(), "config_version": CONFIG_VERSION, "dim": state.dim,
            "classes": list(state.classes), "tasks": [dict(t) for t in state.tasks],
            "prototype_weight": state.prototype_weight}  # fmt: skip
    (folder / "learner.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def load(folder: Path) -> LearnedState:
    """Read what `save` wrote (and the layouts older versions wrote). numpy only."""
    meta, config = _read_learner_json(folder / "learner.json")
    empty = LearnedState.new(config, int(meta["dim"]))
    classes = list(meta["classes"])
    memory = ReplayMemory.load(folder / "memory.safetensors")
    with _damaged_is_an_error(folder / "learned.npz"), np.load(folder / "learned.npz", allow_pickle=False) as data:
        learned = _read_learned(data, len(classes))
    estimators = folder / "estimators.npz"
    with _damaged_is_an_error(estimators), np.load(estimators, allow_pickle=False) as data:
        saved = MappingProxyType({k: data[k] for k in data.files})
    adapters = MappingProxyType({n: folder / n for n in ADAPTERS if (folder / n).is_dir()})
    state = empty.replaced(classes=classes, tasks=list(meta["tasks"]), memory=memory,
                           prototype_weight=float(meta.get("prototype_weight", empty.prototype_weight)),
                           resume=Resume(adapter_dirs=adapters, estimators=saved), **learned)  # fmt: skip
    if state.method.memory and classes and not len(state.class_means.counts):
        state = state.replaced(class_means=state.means_from_memory())  # saved before every method kept class means
    _check_agrees(state, folder)
    return state


def _check_agrees(state: LearnedState, folder: Path) -> None:
    """learner.json's classes, learned.npz's rows and the memory must describe one state (files mixed from two
    saves would score with columns that belong to other classes)."""
    n, dim = len(state.classes), state.dim
    problems = [
        f"{len(state.text)} text rows for {n} classes" if state.text.shape != (n, dim) else "",
        "class means of classes it does not have" if len(state.class_means.classes)
        and int(state.class_means.classes.max()) >= n else "",
        f"memory classes {sorted(set(state.memory.classes) - set(state.classes))} not learned"
        if set(state.memory.classes) - set(state.classes) else "",
        "photo hashes of classes it does not have" if len(state.seen) and int(state.seen.classes.max()) >= n else "",
    ]  # fmt: skip
    problem = next((p for p in problems if p), None)
    if problem:
        raise EdgeclError(f"{folder}: its files do not belong together ({problem}); restore the state directory "
                          "from a backup or start a new --state-dir")  # fmt: skip


def _read_learned(data: Any, n_classes: int) -> dict[str, Any]:
    """learned.npz's arrays: text rows, merged heads, class means (three layouts over time), calibration."""
    learned: dict[str, Any] = {"text": data["text"], "merged": MergedHead(data["down"], data["up"]),
                               "merged_text": MergedHead(data["text_down"], data["text_up"]),
                               "calibration": Calibration.from_arrays(data, n_classes),
                               "seen": SeenImages.from_arrays(data)}  # fmt: skip
    if "class_mean_classes" in data.files:
        learned["class_means"] = ClassMeans(data["class_means"], data["class_counts"], data["class_mean_classes"],
                                            data["class_mean_domains"])  # fmt: skip
    elif "class_means" in data.files:  # one mean per class, from before domains had their own
        learned["class_means"] = ClassMeans.per_class(data["class_means"], data["class_counts"])
    return learned


@contextlib.contextmanager
def _damaged_is_an_error(path: Path) -> Iterator[None]:
    """A missing, truncated or damaged state array file is a one-line error naming it, not a traceback."""
    try:
        yield
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise EdgeclError(f"{path}: damaged or missing state file ({type(exc).__name__}: {exc}); restore the state "
                          "directory from a backup or start a new --state-dir") from None  # fmt: skip


def _read_learner_json(path: Path) -> tuple[dict[str, Any], LearnerConfig]:
    """learner.json and its config; a damaged one is a one-line error, not a traceback."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        config = LearnerConfig.from_json(meta["config"], int(meta.get("config_version", 1)))
        int(meta["dim"]), list(meta["classes"]), list(meta["tasks"])  # the other keys load reads
    except (OSError, ValueError, KeyError, TypeError, EdgeclError) as exc:
        raise EdgeclError(f"{path}: damaged learner file ({type(exc).__name__}: {exc}); restore the state "
                          "directory from a backup or start a new --state-dir") from None  # fmt: skip
    return meta, config
