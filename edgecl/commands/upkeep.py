"""`edgecl forget`, `edgecl memory` and `edgecl rollback`: changes to a state that learn nothing new."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecl.commands.common import check_codec_flag, current_snapshot, now_iso
from edgecl.errors import EdgeclError
from edgecl.names import known_as
from edgecl.paths import display
from edgecl.state import (
    StateError,
    commit_snapshot,
    state_root,
    without_rollback_mark,
    writer_lock,
)
from edgecl.units import format_bytes, parse_bytes

FORGET_NOTE = (
    "removed from memory and from classification; the adapters keep what the class taught them until later "
    "tasks retrain them, so other classes' scores may still reflect it"
)


def forget(name: str, state_dir: str | None = None, lock_timeout_s: float = 300.0,
           on_wait: Callable[[str], None] = lambda m: None) -> dict[str, Any]:  # fmt: skip
    root = state_root(state_dir)
    with writer_lock(root, lock_timeout_s, on_wait):
        snapshot = current_snapshot(state_dir)
        from edgecl.learner import Learner

        learner = Learner.load_from(snapshot.folder)
        name = known_as(name, learner.classes) or name  # the learned spelling (edgecl.names)
        freed = learner.forget_class(name)
        meta = without_rollback_mark(snapshot.meta)
        meta = {**meta, "forgotten": [*meta.get("forgotten", []), {"class": name, "time": now_iso()}]}
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
    check_codec_flag(codec)
    new_budget = parse_bytes(budget) if budget is not None else None
    root = state_root(state_dir)
    with writer_lock(root, lock_timeout_s, on_wait):
        snapshot = current_snapshot(state_dir)
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
                  "time": now_iso()}  # fmt: skip
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
        current = current_snapshot(state_dir)
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

        rolled = {"from": current.folder.name, "to": before.folder.name, "time": now_iso()}
        new = commit_snapshot(root, write, {**before.meta, "rolled_back": rolled})
    return {"rolled_back_to": before.folder.name, "rolled_back_from": current.folder.name,
            "snapshot": new.folder.name, "classes": list(state.classes), "tasks": len(before.meta.get("tasks", [])),
            "note": "run `edgecl rollback` again to undo"}  # fmt: skip
