"""The operations behind `edgecl learn / classify / status / forget`: each returns the JSON-able report the CLI
prints. Progress goes through a callback; nothing here prints."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import edgecl
from edgecl.backbones import parse_backbone_id
from edgecl.errors import EdgeclError, ImageLoadError
from edgecl.state import Snapshot, StateError, commit_snapshot, read_state, state_root, writer_lock
from edgecl.tasks import collect_images, display, scan_task_dir
from edgecl.units import parse_bytes

Progress = Callable[[str, int, int], None]  # (stage, done, total)
DEFAULT_DEVICE = "cpu"  # the profile used when --device is not given
FORGET_NOTE = (
    "removed from memory and from classification; the adapters keep what the class taught them until later "
    "tasks retrain them, so other classes' scores may still reflect it"
)


def _quiet(stage: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class LearnOptions:
    task_dir: str
    budget: str | None = None
    state_dir: str | None = None
    domain: str | None = None
    method: str | None = None
    backbone: str | None = None
    device: str | None = None
    codec: str | None = None
    seed: int = 0
    lock_timeout_s: float = 300.0
    profile_file: str | None = None
    force: bool = False


def encode_files(
    encoder: Any, paths: Sequence[Path], progress: Progress, batch: int = 16
) -> tuple[np.ndarray, list[int], list[dict[str, str]]]:
    """Encode image files one batch at a time; unreadable files are skipped with the reason.
    Returns ((M, D) embeddings, indices of the encoded paths, skipped)."""
    from edgecl.preprocess import preprocess

    kept, skipped, chunks, pending = [], [], [], []
    for i, path in enumerate(paths):
        try:
            pending.append(preprocess(path, encoder.preprocess_spec))
            kept.append(i)
        except ImageLoadError as exc:
            skipped.append({"path": display(path), "reason": str(exc).removeprefix(f"{path}: ")})
        if len(pending) == batch or (i == len(paths) - 1 and pending):
            chunks.append(encoder.encode_pixels(np.stack(pending), batch))
            pending = []
        progress("encoding images", i + 1, len(paths))
    emb = np.concatenate(chunks) if chunks else np.zeros((0, encoder.embed_dim), np.float32)
    return emb, kept, skipped


def _open_encoder(meta: dict[str, Any]) -> Any:
    """The state's encoder with its profile's execution providers and threads (missing providers fall back)."""
    from edgecl.encoder import Encoder

    profile = meta.get("profile") or {}
    return Encoder(meta["model_dir"], providers=profile.get("providers"), threads=profile.get("threads"))


def _load_learner(snapshot: Snapshot) -> Any:
    from edgecl.learner import Learner

    return Learner.load_from(snapshot.folder, _open_encoder(snapshot.meta))


def _checked_budget(opts: LearnOptions, profile: Any) -> int:
    """--budget (or the profile's default), refused above the profile's maximum unless --force."""
    budget = parse_bytes(opts.budget) if opts.budget else profile.default_budget_bytes
    if budget > profile.max_budget_bytes and not opts.force:
        raise EdgeclError(
            f"budget {opts.budget} is above the {profile.name} profile's maximum of {profile.max_budget}; "
            "pass --force to use it anyway"
        )
    return budget


def _new_learner(opts: LearnOptions, progress: Progress) -> tuple[Any, dict[str, Any]]:
    from edgecl.encoder import Encoder
    from edgecl.learner import Learner, LearnerConfig
    from edgecl.models import ensure_model
    from edgecl.profiles import get_profile

    profile = get_profile(opts.device, opts.profile_file)
    budget = _checked_budget(opts, profile)
    backbone = parse_backbone_id(opts.backbone or profile.default_backbone).canonical
    manifest = ensure_model(backbone, None, lambda message: progress(message, 0, 0))
    encoder = Encoder(manifest.root, providers=profile.providers, threads=profile.threads)
    config = LearnerConfig(method=opts.method or "gdro", budget_bytes=budget, codec=opts.codec or "auto",
                           seed=opts.seed, rank=profile.adapter_rank, batch_size=profile.train_batch,
                           optimizer=profile.optimizer)  # fmt: skip
    meta = {"backbone": backbone, "model_dir": str(manifest.root.resolve()), "device": profile.name,
            "profile": profile.to_dict(), "forced_budget": budget > profile.max_budget_bytes,
            "model_files": manifest.data["files"], "created": _now()}  # fmt: skip
    return Learner(config, encoder.embed_dim, encoder), meta


def _check_same(snapshot: Snapshot, learner: Any, opts: LearnOptions) -> None:
    meta, cfg = snapshot.meta, learner.config
    if (opts.device and opts.device != meta.get("device")) or opts.profile_file:
        raise EdgeclError(f"this state uses device profile {meta.get('device')}; omit --device/--profile-file")
    if opts.backbone and parse_backbone_id(opts.backbone).canonical != meta["backbone"]:
        raise EdgeclError(f"this state uses backbone {meta['backbone']}; omit --backbone or use a new --state-dir")
    if opts.budget and parse_bytes(opts.budget) != cfg.budget_bytes:
        raise EdgeclError(
            f"this state has a budget of {cfg.budget_bytes} bytes; omit --budget or use a new --state-dir"
        )
    if opts.method and opts.method != cfg.method:
        raise EdgeclError(f"this state learns with --method {cfg.method}; omit --method or use a new --state-dir")
    if opts.codec and opts.codec != cfg.codec:
        raise EdgeclError(f"this state's memory codec is {cfg.codec}; omit --codec or use a new --state-dir")


def learn(
    opts: LearnOptions, progress: Progress = _quiet, on_wait: Callable[[str], None] = lambda m: None
) -> dict[str, Any]:
    """Learn one task folder into the state directory (created on first use)."""
    start = time.perf_counter()
    if opts.budget is not None:
        parse_bytes(opts.budget)  # a bad budget string fails before anything else happens
    if opts.device or opts.profile_file:
        from edgecl.profiles import get_profile

        get_profile(opts.device, opts.profile_file)  # so does an unknown device or a bad profile file
    scan = scan_task_dir(opts.task_dir)
    root = state_root(opts.state_dir)
    with writer_lock(root, opts.lock_timeout_s, on_wait):
        snapshot = read_state(root)
        if snapshot is None:
            learner, meta = _new_learner(opts, progress)
        else:
            learner, meta = _load_learner(snapshot), dict(snapshot.meta)
            _check_same(snapshot, learner, opts)
        x, kept, bad = encode_files(learner.encoder, scan.paths, progress)
        skipped = scan.skipped + bad
        if not kept:
            raise EdgeclError(
                f"{display(opts.task_dir)}: none of its {len(scan.paths)} images could be read ({bad[0]['reason']})"
            )
        labels = [scan.labels[i] for i in kept]
        progress("training", 0, 0)
        report = learner.learn_embeddings(x, labels, opts.domain)
        seconds = time.perf_counter() - start
        task = {"task_dir": display(Path(opts.task_dir).resolve()), "classes": sorted(set(labels)),
                "new_classes": report["new_classes"], "domain": opts.domain, "samples": len(labels),
                "skipped": len(skipped), "seconds": round(seconds, 2), "time": _now()}  # fmt: skip
        meta = {**meta, "tasks": [*meta.get("tasks", []), task], "edgecl_version": edgecl.__version__,
                "providers_used": learner.encoder.providers_in_use}  # fmt: skip
        commit_snapshot(root, learner.save_to, meta)
    stats = learner.memory.stats()
    return {
        "classes": list(learner.classes), "new_classes": report["new_classes"], "samples_stored": stats["samples"],
        "memory_bytes": stats["bytes"], "budget_bytes": stats["budget_bytes"], "codec": stats["codec"],
        "skipped": skipped, "seconds": round(time.perf_counter() - start, 3), "method": learner.config.method,
        "domain": opts.domain, "loss": report.get("loss", []),
        "class_weights": (report.get("class_weights") or [None])[-1],
        "state_dir": str(root), "device": meta.get("device"), "providers_used": meta["providers_used"],
        "peak_rss_bytes": peak_rss_bytes(), "ram_cap_bytes": _ram_cap(meta),
    }  # fmt: skip


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (what `/usr/bin/time -v` reports as maximum RSS)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _ram_cap(meta: dict[str, Any]) -> int | None:
    cap = (meta.get("profile") or {}).get("ram_cap")
    return parse_bytes(cap) if cap else None


def _current(state_dir: str | None) -> Snapshot:
    root = state_root(state_dir)
    snapshot = read_state(root)
    if snapshot is None:
        raise StateError(f"{display(root)}: nothing learned yet; run `edgecl learn --task-dir DIR --budget 8MB` first")
    return snapshot


def classify(images: Sequence[str], state_dir: str | None = None, top_k: int = 5, labels: Sequence[str] = (),
             progress: Progress = _quiet) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:  # fmt: skip
    """Top-k labels per image; returns (results, skipped). Imports numpy and onnxruntime only."""
    if top_k < 1:
        raise EdgeclError("--top-k must be at least 1")
    learner = _load_learner(_current(state_dir))
    paths = collect_images(list(images))
    x, kept, skipped = encode_files(learner.encoder, paths, progress)
    if not kept:
        raise EdgeclError(f"no readable image among {len(paths)} given ({skipped[0]['reason']})")
    predictions = learner.classify_embeddings(x, top_k, [label.strip() for label in labels if label.strip()])
    return [{"image": display(paths[i]), "predictions": p} for i, p in zip(kept, predictions, strict=True)], skipped


def status(state_dir: str | None = None) -> dict[str, Any]:
    """What the state holds: backbone, device, classes, domains, memory, task history."""
    snapshot = _current(state_dir)
    from edgecl.learner import Learner

    learner = Learner.load_from(snapshot.folder)
    stats = learner.memory.stats()
    return {
        "backbone": snapshot.meta["backbone"], "device": snapshot.meta.get("device", DEFAULT_DEVICE),
        "classes": list(learner.classes), "domains": [d for d in learner.memory.domains if d],
        "method": learner.config.method,
        "memory": {"path": str(snapshot.folder / "memory.safetensors"), "bytes": stats["bytes"],
                   "budget_bytes": stats["budget_bytes"], "codec": stats["codec"], "per_class": stats["per_class"],
                   "per_class_domain": stats["per_class_domain"], "samples": stats["samples"]},
        "tasks": snapshot.meta.get("tasks", []), "state_dir": str(snapshot.root),
        "providers_used": snapshot.meta.get("providers_used", []),
        "forced_budget": snapshot.meta.get("forced_budget", False),
        "model_dir": snapshot.meta["model_dir"],
    }  # fmt: skip


def forget(name: str, state_dir: str | None = None, lock_timeout_s: float = 300.0,
           on_wait: Callable[[str], None] = lambda m: None) -> dict[str, Any]:  # fmt: skip
    root = state_root(state_dir)
    with writer_lock(root, lock_timeout_s, on_wait):
        snapshot = _current(state_dir)
        from edgecl.learner import Learner

        learner = Learner.load_from(snapshot.folder)
        freed = learner.forget_class(name)
        meta = {**snapshot.meta, "forgotten": [*snapshot.meta.get("forgotten", []), {"class": name, "time": _now()}]}
        commit_snapshot(root, learner.save_to, meta)
    return {"forgotten": name, "bytes_freed": freed, "classes": list(learner.classes), "note": FORGET_NOTE}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
