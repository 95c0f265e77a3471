"""What the operations share: the progress callback, the current snapshot, loading a saved learner with
its encoder on this device, the model and codec checks, the state's threshold, the clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgecl.errors import EdgeclError
from edgecl.paths import display
from edgecl.runtime import Runtime
from edgecl.state import (
    Snapshot,
    StateError,
    read_state,
    refuse_non_directory,
    state_root,
)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def quiet(stage: str, done: int, total: int) -> None:
    pass


def current_snapshot(state_dir: str | None) -> Snapshot:
    root = state_root(state_dir)
    refuse_non_directory(root)
    snapshot = read_state(root)
    if snapshot is None:
        raise StateError(f"{display(root)}: nothing learned yet; run `edgecl learn --task-dir DIR --budget 8MB` first")
    return snapshot


def open_encoder(model_dir: str | Path, runtime: Runtime) -> Any:
    """An encoder for `model_dir` with the runtime's execution providers (missing ones fall back) and threads, its
    INT8 towers re-measured once if this CPU's int8 kernels differ from the exporting CPU's (a line warns when this
    CPU loses accuracy against the export's own figures)."""
    from edgecl.encoder import Encoder
    from edgecl.int8_check import recheck_on_this_cpu

    encoder = Encoder(model_dir, providers=runtime.providers, threads=runtime.threads)
    recheck_on_this_cpu(encoder)
    return encoder


def saved_runtime(meta: dict[str, Any]) -> Runtime:
    """This device's runtime for a state: from the device profile its metadata records (never from the learner)."""
    return Runtime.from_profile(meta.get("profile") or {})


def load_learner(snapshot: Snapshot) -> Any:
    from edgecl.learner import Learner

    runtime = saved_runtime(snapshot.meta)
    encoder = open_encoder(snapshot.meta["model_dir"], runtime)
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


def check_codec_flag(codec: str | None) -> None:
    """An unknown --codec is refused by its flag's name, before any work."""
    from edgecl.memory.codec import CODEC_NAMES

    if codec is not None and codec not in (*CODEC_NAMES, "auto"):
        raise EdgeclError(f"unknown --codec {codec!r}; use auto, {', '.join(CODEC_NAMES)}")


def state_min_confidence(meta: dict[str, Any]) -> float:
    """The threshold below which a state's classify answers unknown: its device profile's, else the default."""
    from edgecl.learn.calibration import DEFAULT_MIN_CONFIDENCE

    return float((meta.get("profile") or {}).get("min_confidence", DEFAULT_MIN_CONFIDENCE))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
