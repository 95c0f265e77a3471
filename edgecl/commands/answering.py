"""`edgecl classify` and `edgecl status`: answers and the state's description, read-only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecl.commands.common import Progress, current_snapshot, load_learner, quiet, state_min_confidence
from edgecl.commands.encoding import encode_files
from edgecl.errors import EdgeclError
from edgecl.paths import display
from edgecl.profiles import DEFAULT_DEVICE
from edgecl.reports import StatusReport
from edgecl.tasks import collect_images


def classify(images: Sequence[str], state_dir: str | None = None, top_k: int = 5, labels: Sequence[str] = (),
             progress: Progress = quiet, min_confidence: float | None = None,
             ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:  # fmt: skip
    """Per image its answer (label or unknown, confidence) and top-k candidates; returns (results, skipped).
    `min_confidence`: None takes the state's device profile's. Imports numpy and onnxruntime only."""
    if top_k < 1:
        raise EdgeclError("--top-k must be at least 1")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise EdgeclError(f"--min-confidence must be from 0 to 1 (0 turns unknown off), got {min_confidence}")
    snapshot = current_snapshot(state_dir)
    threshold = min_confidence if min_confidence is not None else state_min_confidence(snapshot.meta)
    learner = load_learner(snapshot)
    paths, missing = collect_images(list(images))
    results, skipped = answer_files(learner, paths, top_k, labels, threshold, progress=progress)
    if not results:
        raise EdgeclError(f"no readable image among {len(paths)} given: {skipped[0]['reason']}")
    return results, missing + skipped


def answer_files(learner: Any, paths: Sequence[Path], top_k: int, labels: Sequence[str], min_confidence: float,
                 names: Sequence[str] | None = None,
                 progress: Progress = quiet) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:  # fmt: skip
    """classify --json's answers for the readable image files, and the unreadable ones with the reason; each
    file is called by its entry in `names` (default: its path), so a server can give back the upload's name."""
    names = list(names) if names is not None else [display(p) for p in paths]
    x, kept, skipped = encode_files(learner.encoder, paths, progress)
    called = {display(p): name for p, name in zip(paths, names, strict=True)}
    skipped = [{**item, "path": called.get(item["path"], item["path"])} for item in skipped]
    extra = [label.strip() for label in labels if label.strip()]
    answers = learner.classify_embeddings(x, top_k, extra, min_confidence) if kept else []
    return [{"image": names[i], **a} for i, a in zip(kept, answers, strict=True)], skipped


def status(state_dir: str | None = None) -> StatusReport:
    """What the state holds: backbone, device, classes, domains, memory, task history."""
    snapshot = current_snapshot(state_dir)
    from edgecl.learner import Learner

    learner = Learner.load_from(snapshot.folder)
    meta = snapshot.meta
    return StatusReport(
        backbone=meta["backbone"], device=meta.get("device", DEFAULT_DEVICE), classes=list(learner.classes),
        domains=[d for d in learner.domains if d], method=learner.config.method, groups=learner.config.groups,
        memory=learner.memory.stats(), tasks=meta.get("tasks", []), state_dir=str(snapshot.root),
        providers_used=meta.get("providers_used", []), forced_budget=meta.get("forced_budget", False),
        model_dir=meta["model_dir"], memory_path=str(snapshot.folder / "memory.safetensors"),
    )  # fmt: skip
