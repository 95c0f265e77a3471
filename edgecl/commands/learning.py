"""`edgecl learn`: open or create the state's learner, encode the task's new photos, learn them, commit a
snapshot and report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edgecl
from edgecl.backbones import parse_backbone_id
from edgecl.commands.common import Progress, check_codec_flag, load_learner, now_iso, open_encoder, quiet
from edgecl.commands.encoding import encode_files, plan_encoding, plan_training
from edgecl.errors import EdgeclError, ImageLoadError
from edgecl.learn.methods import DEFAULT_GROUPS, DEFAULT_METHOD
from edgecl.paths import display
from edgecl.ram import BatchPlan, host_bytes, peak_rss_bytes
from edgecl.reports import Batches, LearnReport, TaskResult
from edgecl.state import (
    Snapshot,
    commit_snapshot,
    read_state,
    state_root,
    without_rollback_mark,
    writer_lock,
)
from edgecl.tasks import TaskScan, scan_task_dir
from edgecl.units import format_bytes, parse_bytes

AUTO_BACKBONE = "auto"  # the profile's CLIP when obtainable, else the bundled backbone


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
    seed: int | None = None  # None: 0 for a new state; a later learn keeps the state's (another is refused)
    lock_timeout_s: float = 300.0
    profile_file: str | None = None
    force: bool = False
    groups: str | None = None  # what the memory balances and GDRO weighs (LearnerConfig.groups)
    source: str | None = None  # what the task history records instead of task_dir (an upload, an image list)


def _new_learner(opts: LearnOptions, progress: Progress) -> tuple[Any, dict[str, Any]]:
    """A learner with the flags' settings over the profile's over the defaults (edgecl.learner_config.resolve); a budget
    above the profile's maximum is refused unless --force."""
    from edgecl.learner import Learner
    from edgecl.learner_config import resolve
    from edgecl.model_dir import ensure_model
    from edgecl.profiles import get_profile

    profile = get_profile(opts.device, opts.profile_file)
    settings = resolve(profile, method=opts.method, budget_bytes=parse_bytes(opts.budget) if opts.budget else None,
                       codec=opts.codec, groups=opts.groups, seed=opts.seed or 0)  # fmt: skip
    budget = settings.config.memory.budget_bytes
    if budget > profile.max_budget_bytes and not opts.force:
        raise EdgeclError(
            f"budget {opts.budget} is above the {profile.name} profile's maximum of {profile.max_budget}; "
            "pass --force to use it anyway"
        )
    backbone = _resolve_backbone(opts.backbone, profile.default_backbone, progress)
    manifest = ensure_model(backbone, None, lambda message: progress(message, 0, 0))
    encoder = open_encoder(manifest.root, settings.runtime)
    meta = {"backbone": backbone, "model_dir": str(manifest.root.resolve()), "device": profile.name,
            "profile": profile.to_dict(), "forced_budget": budget > profile.max_budget_bytes,
            "model_files": manifest.data["files"], "created": now_iso()}  # fmt: skip
    return Learner(settings.config, encoder.embed_dim, encoder, settings.runtime), meta


def _resolve_backbone(given: str | None, default: str, progress: Progress) -> str:
    """--backbone, or `auto` (the default): the profile's CLIP when its weights can be had, else the bundled backbone
    with one notice line. A new state records the result; later learns keep it."""
    if given and given != AUTO_BACKBONE:
        return parse_backbone_id(given).canonical
    ref = parse_backbone_id(default)
    if ref.family == "bundled":
        return ref.canonical
    from edgecl.backbones.openclip import AUTO_NOTICE, clip_obtainable
    from edgecl.paths import default_model_dir

    if (default_model_dir(ref.canonical) / "manifest.json").is_file() or clip_obtainable(ref):
        return ref.canonical
    progress(f"notice: {AUTO_NOTICE}", -1, 0)
    return "bundled"


def _check_same(snapshot: Snapshot, learner: Any, opts: LearnOptions) -> None:
    meta, cfg = snapshot.meta, learner.config
    if opts.device or opts.profile_file:
        _check_same_profile(meta, opts)
    given = opts.backbone if opts.backbone != AUTO_BACKBONE else None
    if given and parse_backbone_id(given).canonical != meta["backbone"]:
        raise EdgeclError(f"this state uses backbone {meta['backbone']}; omit --backbone or use a new --state-dir")
    if opts.budget and parse_bytes(opts.budget) != cfg.memory.budget_bytes:
        raise EdgeclError(
            f"this state has a budget of {format_bytes(cfg.memory.budget_bytes)}; omit --budget, or change it with "
            "`edgecl memory --budget B`"
        )
    if opts.method and opts.method != cfg.method:
        raise EdgeclError(f"this state learns with --method {cfg.method}; omit --method or use a new --state-dir")
    if opts.codec and opts.codec != cfg.memory.codec:
        held = learner.memory.codec.name if learner.memory.codec else cfg.memory.codec  # auto: what it picked
        now = cfg.memory.codec if held == cfg.memory.codec else f"{cfg.memory.codec} (now {held})"
        raise EdgeclError(f"this state's memory codec is {now}; omit --codec, or change it with "
                          f"`edgecl memory --codec {opts.codec}`")  # fmt: skip
    if opts.groups and opts.groups != cfg.groups:
        raise EdgeclError(f"this state balances --groups {cfg.groups}; omit --groups or use a new --state-dir")
    if opts.seed is not None and opts.seed != cfg.seed:
        raise EdgeclError(f"this state learns with --seed {cfg.seed}; omit --seed or use a new --state-dir")


def _check_same_profile(meta: dict[str, Any], opts: LearnOptions) -> None:
    """An identical --device / --profile-file is accepted; a different one is refused naming the first difference."""
    from edgecl.profiles import OPTIONAL_KEYS, get_profile

    given, saved = get_profile(opts.device, opts.profile_file).to_dict(), meta.get("profile") or {}
    for key in sorted(set(given) | set(saved)):
        if key not in saved and key in OPTIONAL_KEYS:  # a state made before this optional key existed
            continue
        if given.get(key) != saved.get(key):
            raise EdgeclError(
                f"this state uses device profile {meta.get('device')} and yours differs in {key} "
                f"({saved.get(key)!r} vs {given.get(key)!r}); omit --device/--profile-file or use a new --state-dir"
            )


def learn(
    opts: LearnOptions, progress: Progress = quiet, on_wait: Callable[[str], None] = lambda m: None
) -> LearnReport:
    """Learn one task folder into the state directory (created on first use): check the request, open (or create)
    the state under its writer lock, encode the task's images, learn them, commit the new snapshot."""
    start, host = time.perf_counter(), host_bytes()
    _refuse_bad_options_early(opts)
    scan = scan_task_dir(opts.task_dir)
    root = state_root(opts.state_dir)
    with writer_lock(root, opts.lock_timeout_s, on_wait):
        progress("loading the backbone", 0, 0)
        learner, meta = _open_learner(root, opts, progress)
        scan, hashes, repeats = _drop_learned_photos(learner, scan, opts.domain)
        if not scan.paths:  # every photo was learned before: nothing changes
            return _learn_report(learner, meta, opts, _nothing_learned(learner), scan.skipped, None, root, host,
                                 start, repeats)  # fmt: skip
        encode_plan = plan_encoding(learner, host)
        x, kept, skipped = _encode_task(learner, scan, opts.task_dir, encode_plan, progress)
        labels = [scan.labels[i] for i in kept]
        result = learner.learn_embeddings(x, labels, opts.domain, sizes=plan_training(learner, labels, host),
                                          image_hashes=np.array([hashes[i] for i in kept], np.uint64),
                                          on_train_step=lambda done, steps: progress("training", done, steps),
                                          )  # fmt: skip
        meta = _with_task(meta, learner, opts, len(labels), result.new_classes, len(skipped), start, repeats)
        commit_snapshot(root, learner.save_to, meta)
    return _learn_report(learner, meta, opts, result, skipped, encode_plan, root, host, start, repeats)


def _drop_learned_photos(learner: Any, scan: TaskScan, domain: str | None) -> tuple[TaskScan, list[int], int]:
    """The task without the photos this state learned before as the same class (or that repeat one earlier in the
    task), by content hash; returns (that task, the content hash of each of its paths, how many were dropped).
    An unreadable file stays, for the encoder to skip with its reason."""
    from edgecl.learned.seen import content_hash

    hashes: list[int | None] = []
    for path in scan.paths:
        try:
            hashes.append(content_hash(path))
        except (OSError, ImageLoadError):
            hashes.append(None)
    readable = [i for i, h in enumerate(hashes) if h is not None]
    repeat = learner.already_learned(np.array([hashes[i] for i in readable], np.uint64),
                                     [scan.labels[i] for i in readable], domain)  # fmt: skip
    dropped = {readable[j] for j in np.flatnonzero(repeat)}
    keep = [i for i in range(len(scan.paths)) if i not in dropped]
    kept = TaskScan([scan.paths[i] for i in keep], [scan.labels[i] for i in keep], scan.skipped)
    return kept, [hashes[i] or 0 for i in keep], len(dropped)


def _nothing_learned(learner: Any) -> TaskResult:
    state = learner.state
    return TaskResult([], list(state.classes), state.config.method, state.memory.stats() if state.method.memory
                      else None)  # fmt: skip


def _refuse_bad_options_early(opts: LearnOptions) -> None:
    """A bad budget string, seed or wait, an unknown --method / --groups / --device or a bad profile file fails
    before anything else happens (before any backbone notice or export)."""
    if opts.seed is not None and opts.seed < 0:
        raise EdgeclError(f"--seed must be 0 or more, got {opts.seed}")
    if opts.lock_timeout_s < 0:
        raise EdgeclError(f"--wait must be 0 or more seconds, got {opts.lock_timeout_s}")
    if opts.budget is not None:
        parse_bytes(opts.budget)
    check_codec_flag(opts.codec)
    if opts.method or opts.groups:
        from edgecl.learner_config import LearnerConfig

        LearnerConfig.from_flat({"method": opts.method or DEFAULT_METHOD, "groups": opts.groups or DEFAULT_GROUPS})
    if opts.device or opts.profile_file:
        from edgecl.profiles import get_profile

        get_profile(opts.device, opts.profile_file)


def _open_learner(root: Path, opts: LearnOptions, progress: Progress) -> tuple[Any, dict[str, Any]]:
    """The state's learner and snapshot metadata, or a new learner on the first learn."""
    snapshot = read_state(root)
    if snapshot is None:
        return _new_learner(opts, progress)
    learner = load_learner(snapshot)
    _check_same(snapshot, learner, opts)
    return learner, dict(snapshot.meta)


def _encode_task(learner: Any, scan: TaskScan, task_dir: str, plan: BatchPlan,
                 progress: Progress) -> tuple[np.ndarray, list[int], list[dict[str, str]]]:  # fmt: skip
    """(embeddings, the indices of the paths they are, skipped files with reasons); a task with no readable image
    is an error."""
    x, kept, bad = encode_files(learner.encoder, scan.paths, progress, plan)
    if not kept:
        raise EdgeclError(
            f"{display(task_dir)}: none of its {len(scan.paths)} images could be read ({bad[0]['reason']})"
        )
    return x, kept, scan.skipped + bad


def _with_task(meta: dict[str, Any], learner: Any, opts: LearnOptions, samples: int, new_classes: list[str],
               skipped: int, start: float, repeats: int) -> dict[str, Any]:  # fmt: skip
    """The snapshot metadata with this task appended to its history (and no `rolled_back` mark: that was the
    snapshot before)."""
    task = {"task_dir": opts.source or display(Path(opts.task_dir).resolve()),
            "classes": list(learner.tasks[-1]["classes"]), "new_classes": new_classes, "domain": opts.domain,
            "samples": samples, "skipped": skipped,
            "already_learned": repeats, "seconds": round(time.perf_counter() - start, 2),
            "time": now_iso()}  # fmt: skip
    meta = without_rollback_mark(meta)
    return {**meta, "tasks": [*meta.get("tasks", []), task], "edgecl_version": edgecl.__version__,
            "providers_used": learner.encoder.providers_in_use}  # fmt: skip


def _learn_report(learner: Any, meta: dict[str, Any], opts: LearnOptions, result: TaskResult,
                  skipped: list[dict[str, str]], encode_plan: BatchPlan | None, root: Path, host: int,
                  start: float, repeats: int) -> LearnReport:  # fmt: skip
    """`edgecl learn --json` (docs/usage.md "JSON contracts")."""
    stats, training = result.memory or learner.memory.stats(), result.training  # a method without memory: empty
    encode_plan = encode_plan or BatchPlan(None, learner.runtime.encode_batch, "learning")  # nothing was encoded
    batches = Batches(encode_plan.summary(), training.batch if training else None,
                      training.replayed_rows if training else None,
                      training.replay_rows_available if training else None,
                      training.translated_rows if training else None,
                      training.translated_rows_available if training else None)  # fmt: skip
    return LearnReport(
        classes=list(learner.classes), new_classes=result.new_classes, samples_stored=stats.samples,
        memory_bytes=stats.bytes, budget_bytes=stats.budget_bytes, codec=stats.codec, skipped=skipped,
        seconds=round(time.perf_counter() - start, 3), method=learner.config.method, groups=learner.config.groups,
        domain=opts.domain, loss=training.loss if training else [],
        class_weights=(training.class_weights or [None])[-1] if training else None, state_dir=str(root),
        backbone=meta["backbone"], device=meta.get("device"), providers_used=meta["providers_used"],
        peak_rss_bytes=peak_rss_bytes(), ram_cap_bytes=learner.runtime.ram_cap_bytes, host_rss_bytes=host,
        batches=batches, train_precision=training.precision if training else None,
        train_steps=training.steps if training else None, prototype_weight=result.prototype_weight,
        validation=result.validation, samples_learned=result.samples, already_learned=repeats,
        joined_classes=result.joined,
    )  # fmt: skip
