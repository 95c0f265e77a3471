"""The operations behind `edgecl learn / classify / status / forget`: each returns the report the CLI prints (learn and
status as typed reports, edgecl.reports, whose to_json() is the --json output). Progress goes through a callback;
nothing here prints."""

from __future__ import annotations

import contextlib
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
from edgecl.learn.methods import DEFAULT_GROUPS, DEFAULT_METHOD
from edgecl.names import known_as
from edgecl.profiles import DEFAULT_DEVICE
from edgecl.ram import BatchPlan, PeakRss, TrainSizes, host_bytes, peak_rss_bytes
from edgecl.reports import Batches, LearnReport, StatusReport, TaskResult
from edgecl.runtime import DEFAULT_ENCODE_BATCH, Runtime
from edgecl.state import (
    Snapshot,
    StateError,
    commit_snapshot,
    read_state,
    state_root,
    without_rollback_mark,
    writer_lock,
)
from edgecl.tasks import TaskScan, collect_images, display, scan_task_dir
from edgecl.units import format_bytes, parse_bytes

Progress = Callable[[str, int, int], None]  # (stage, done, total)
AUTO_BACKBONE = "auto"  # the profile's CLIP when obtainable, else the bundled backbone
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
    seed: int | None = None  # None: 0 for a new state; a later learn keeps the state's (another is refused)
    lock_timeout_s: float = 300.0
    profile_file: str | None = None
    force: bool = False
    groups: str | None = None  # what the memory balances and GDRO weighs (LearnerConfig.groups)


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


def _encoder(model_dir: str | Path, runtime: Runtime) -> Any:
    """An encoder for `model_dir` with the runtime's execution providers (missing ones fall back) and threads, its
    INT8 towers re-measured once if this CPU's int8 kernels differ from the exporting CPU's (a line warns when this
    CPU loses accuracy against the export's own figures)."""
    from edgecl.encoder import Encoder
    from edgecl.int8_check import recheck_on_this_cpu

    encoder = Encoder(model_dir, providers=runtime.providers, threads=runtime.threads)
    recheck_on_this_cpu(encoder)
    return encoder


def _runtime(meta: dict[str, Any]) -> Runtime:
    """This device's runtime for a state: from the device profile its metadata records (never from the learner)."""
    return Runtime.from_profile(meta.get("profile") or {})


def _load_learner(snapshot: Snapshot) -> Any:
    from edgecl.learner import Learner

    runtime = _runtime(snapshot.meta)
    encoder = _encoder(snapshot.meta["model_dir"], runtime)
    check_same_model(snapshot.meta, encoder.manifest.data["files"])
    return Learner.load_from(snapshot.folder, encoder, runtime)


def check_same_model(meta: dict[str, Any], files: dict[str, str]) -> None:
    """The model folder must hold the export the state learned with (snapshot.json records its files' hashes): a
    re-export swaps the embedding space under the stored samples, class means and adapters, which would then answer
    wrongly without a word."""
    recorded = meta.get("model_files")
    if recorded is None or recorded == files:  # states made before the hashes were recorded are not checked
        return
    changed = sorted(name for name in set(recorded) | set(files) if recorded.get(name) != files.get(name))
    raise StateError(
        f"{display(meta['model_dir'])} was re-exported after this state learned ({changed[0]} differs): its "
        "embeddings no longer match what the state stored; put the earlier export back, or learn the photos again "
        "into a new --state-dir"
    )


def _new_learner(opts: LearnOptions, progress: Progress) -> tuple[Any, dict[str, Any]]:
    """A learner with the flags' settings over the profile's over the defaults (edgecl.settings.resolve); a budget
    above the profile's maximum is refused unless --force."""
    from edgecl.learner import Learner
    from edgecl.models import ensure_model
    from edgecl.profiles import get_profile
    from edgecl.settings import resolve

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
    encoder = _encoder(manifest.root, settings.runtime)
    meta = {"backbone": backbone, "model_dir": str(manifest.root.resolve()), "device": profile.name,
            "profile": profile.to_dict(), "forced_budget": budget > profile.max_budget_bytes,
            "model_files": manifest.data["files"], "created": _now()}  # fmt: skip
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
        now = f"{cfg.memory.codec} (now {learner.memory.codec.name})" if learner.memory.codec else cfg.memory.codec
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
    opts: LearnOptions, progress: Progress = _quiet, on_wait: Callable[[str], None] = lambda m: None
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
        encode_plan = _encode_plan(learner, host)
        x, kept, skipped = _encode_task(learner, scan, opts.task_dir, encode_plan, progress)
        labels = [scan.labels[i] for i in kept]
        result = learner.learn_embeddings(x, labels, opts.domain, sizes=_train_sizes(learner, labels, host),
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
    _check_codec_flag(opts.codec)
    if opts.method or opts.groups:
        from edgecl.settings import LearnerConfig

        LearnerConfig.from_flat({"method": opts.method or DEFAULT_METHOD, "groups": opts.groups or DEFAULT_GROUPS})
    if opts.device or opts.profile_file:
        from edgecl.profiles import get_profile

        get_profile(opts.device, opts.profile_file)


def _check_codec_flag(codec: str | None) -> None:
    """An unknown --codec is refused by its flag's name, before any work."""
    from edgecl.memory.codec import CODEC_NAMES

    if codec is not None and codec not in (*CODEC_NAMES, "auto"):
        raise EdgeclError(f"unknown --codec {codec!r}; use auto, {', '.join(CODEC_NAMES)}")


def _open_learner(root: Path, opts: LearnOptions, progress: Progress) -> tuple[Any, dict[str, Any]]:
    """The state's learner and snapshot metadata, or a new learner on the first learn."""
    snapshot = read_state(root)
    if snapshot is None:
        return _new_learner(opts, progress)
    learner = _load_learner(snapshot)
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
    task = {"task_dir": display(Path(opts.task_dir).resolve()), "classes": list(learner.tasks[-1]["classes"]),
            "new_classes": new_classes, "domain": opts.domain, "samples": samples, "skipped": skipped,
            "already_learned": repeats, "seconds": round(time.perf_counter() - start, 2), "time": _now()}  # fmt: skip
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
                      training.replay_rows_available if training else None)  # fmt: skip
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


def _encode_plan(learner: Any, host: int) -> BatchPlan:
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


def _train_sizes(learner: Any, labels: list[str], host: int) -> TrainSizes | None:
    """Training batch and replayed rows under the RAM cap (None: the method does not train)."""
    from edgecl.ram import plan_training

    if not learner.trains:
        return None
    classes = set(learner.classes) | set(labels)
    return plan_training(_ram_cap(learner, host), learner.runtime.train_batch, learner.dim, len(classes), len(labels))


def _ram_cap(learner: Any, host: int) -> int | None:
    """The runtime's RAM cap on this process, above the `host` bytes it held before learning (edgecl.ram)."""
    cap = learner.runtime.ram_cap_bytes
    return cap + host if cap is not None else None


def _current(state_dir: str | None) -> Snapshot:
    root = state_root(state_dir)
    snapshot = read_state(root)
    if snapshot is None:
        raise StateError(f"{display(root)}: nothing learned yet; run `edgecl learn --task-dir DIR --budget 8MB` first")
    return snapshot


def classify(images: Sequence[str], state_dir: str | None = None, top_k: int = 5, labels: Sequence[str] = (),
             progress: Progress = _quiet, min_confidence: float | None = None,
             ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:  # fmt: skip
    """Per image its answer (label or unknown, confidence) and top-k candidates; returns (results, skipped).
    `min_confidence`: None takes the state's device profile's. Imports numpy and onnxruntime only."""
    if top_k < 1:
        raise EdgeclError("--top-k must be at least 1")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise EdgeclError(f"--min-confidence must be from 0 to 1 (0 turns unknown off), got {min_confidence}")
    snapshot = _current(state_dir)
    threshold = min_confidence if min_confidence is not None else state_min_confidence(snapshot.meta)
    learner = _load_learner(snapshot)
    paths, missing = collect_images(list(images))
    results, skipped = answer_files(learner, paths, top_k, labels, threshold, progress=progress)
    if not results:
        raise EdgeclError(f"no readable image among {len(paths)} given ({skipped[0]['reason']})")
    return results, missing + skipped


def answer_files(learner: Any, paths: Sequence[Path], top_k: int, labels: Sequence[str], min_confidence: float,
                 names: Sequence[str] | None = None,
                 progress: Progress = _quiet) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:  # fmt: skip
    """classify --json's answers for the readable image files, and the unreadable ones with the reason; each
    file is called by its entry in `names` (default: its path), so a server can give back the upload's name."""
    names = list(names) if names is not None else [display(p) for p in paths]
    x, kept, skipped = encode_files(learner.encoder, paths, progress)
    called = {display(p): name for p, name in zip(paths, names, strict=True)}
    skipped = [{**item, "path": called.get(item["path"], item["path"])} for item in skipped]
    extra = [label.strip() for label in labels if label.strip()]
    answers = learner.classify_embeddings(x, top_k, extra, min_confidence) if kept else []
    return [{"image": names[i], **a} for i, a in zip(kept, answers, strict=True)], skipped


def state_min_confidence(meta: dict[str, Any]) -> float:
    """The threshold below which a state's classify answers unknown: its device profile's, else the default."""
    from edgecl.learn.calibration import DEFAULT_MIN_CONFIDENCE

    return float((meta.get("profile") or {}).get("min_confidence", DEFAULT_MIN_CONFIDENCE))


def status(state_dir: str | None = None) -> StatusReport:
    """What the state holds: backbone, device, classes, domains, memory, task history."""
    snapshot = _current(state_dir)
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


def forget(name: str, state_dir: str | None = None, lock_timeout_s: float = 300.0,
           on_wait: Callable[[str], None] = lambda m: None) -> dict[str, Any]:  # fmt: skip
    root = state_root(state_dir)
    with writer_lock(root, lock_timeout_s, on_wait):
        snapshot = _current(state_dir)
        from edgecl.learner import Learner

        learner = Learner.load_from(snapshot.folder)
        name = known_as(name, learner.classes) or name  # the learned spelling (edgecl.names)
        freed = learner.forget_class(name)
        meta = without_rollback_mark(snapshot.meta)
        meta = {**meta, "forgotten": [*meta.get("forgotten", []), {"class": name, "time": _now()}]}
        commit_snapshot(root, learner.save_to, meta)
    return {"forgotten": name, "bytes_freed": freed, "classes": list(learner.classes), "note": FORGET_NOTE}


def change_memory(budget: str | None, codec: str | None, state_dir: str | None = None, force: bool = False,
                  lock_timeout_s: float = 300.0, on_wait: Callable[[str], None] = lambda m: None,
                  ) -> dict[str, Any]:  # fmt: skip
    """`edgecl memory`: the state's replay memory under another budget and/or codec, as a new snapshot (its stored
    rows re-encoded and re-selected; classes, class means and adapters untouched): the way out when a state's groups
    outgrow its budget. A budget above the profile's maximum needs --force, as on a first learn."""
    from dataclasses import replace

    from edgecl.learner import Learner
    if budget is None and codec is None:
        raise EdgeclError("give --budget and/or --codec, e.g. `edgecl memory --budget 256KB`")
    _check_codec_flag(codec)
    new_budget = parse_bytes(budget) if budget is not None else None
    root = state_root(state_dir)
    with writer_lock(root, lock_timeout_s, on_wait):
        snapshot = _current(state_dir)
        learner = Learner.load_from(snapshot.folder)
        config, before = learner.config, learner.memory.stats()
        new_budget = new_budget or config.memory.budget_bytes
        maximum = parse_bytes((snapshot.meta.get("profile") or {}).get("max_budget", str(new_budget)))
        if new_budget > maximum and not force:
            raise EdgeclError(f"budget {format_bytes(new_budget)} is above this state's profile maximum of "
                              f"{format_bytes(maximum)}; pass --force to use it anyway")  # fmt: skip
        if new_budget == config.memory.budget_bytes and (codec or config.memory.codec) == config.memory.codec:
            raise EdgeclError(f"nothing to change: the memory already has a budget of {format_bytes(new_budget)} and "
                              f"codec {config.memory.codec}")  # fmt: skip
        memory = learner.memory.rebudgeted(new_budget, codec or config.memory.codec)
        config = replace(config, memory=replace(config.memory, budget_bytes=new_budget, codec=memory.config.codec))
        learner.state = learner.state.replaced(config=config, memory=memory)
        change = {"from": {"budget_bytes": before.budget_bytes, "codec": before.codec, "samples": before.samples},
                  "to": {"budget_bytes": new_budget, "codec": memory.stats().codec, "samples": memory.stats().samples},
                  "time": _now()}  # fmt: skip
        meta = without_rollback_mark(snapshot.meta)
        meta = {**meta, "memory_changes": [*meta.get("memory_changes", []), change],
                "forced_budget": bool(meta.get("forced_budget")) or new_budget > maximum}  # fmt: skip
        new = commit_snapshot(root, learner.save_to, meta)
    return {"before": before.to_json(), "after": memory.stats().to_json(), "snapshot": new.folder.name,
            "note": "run `edgecl rollback` to go back"}


def rollback(state_dir: str | None = None, lock_timeout_s: float = 300.0,
             on_wait: Callable[[str], None] = lambda m: None) -> dict[str, Any]:  # fmt: skip
    """Make the snapshot before the current one current again, as a new snapshot (a copy), so that a second
    rollback undoes the first. The earlier snapshot is loaded before anything changes (learner.json, the memory
    file and the npz arrays; its peft adapter folder is only read when training resumes)."""
    import shutil

    from edgecl.learned import files
    from edgecl.state import KEEP_SNAPSHOTS, SNAPSHOT_META, previous_snapshot

    root = state_root(state_dir)
    with writer_lock(root, lock_timeout_s, on_wait):
        current = _current(state_dir)
        before = previous_snapshot(current)
        if before is None:
            raise StateError(f"{display(root)}: no earlier snapshot to go back to (edgecl keeps {KEEP_SNAPSHOTS}: the "
                             "current one and the one before the last learn, forget, memory change or fleet "
                             "round)")  # fmt: skip
        state = files.load(before.folder)  # a damaged earlier snapshot is an error here, and the current one stays

        def write(folder: Path) -> None:
            for path in before.folder.iterdir():
                if path.name == SNAPSHOT_META:
                    continue
                copy = shutil.copytree if path.is_dir() else shutil.copy2
                copy(path, folder / path.name)

        rolled = {"from": current.folder.name, "to": before.folder.name, "time": _now()}
        new = commit_snapshot(root, write, {**before.meta, "rolled_back": rolled})
    return {"rolled_back_to": before.folder.name, "rolled_back_from": current.folder.name,
            "snapshot": new.folder.name, "classes": list(state.classes), "tasks": len(before.meta.get("tasks", [])),
            "note": "run `edgecl rollback` again to undo"}  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
