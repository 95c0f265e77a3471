"""The state directory: immutable snapshots, an atomically swapped pointer, a writer lock, a format version.

    <state>/edgecl-state.json     pointer: {"format": ..., "format_version": 1, "snapshot": "snapshots/000003"}
    <state>/lock                  flock()ed by the one writer (learn, forget)
    <state>/snapshots/000003/     learner files (memory, adapters, merged arrays) + snapshot.json

A writer builds a new snapshot in a temporary folder, fsyncs it, renames it into place and only then replaces
the pointer (temp + fsync + rename), so a crash at any instant leaves the previous state loadable.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecl.atomic import atomic_write_bytes, publish_folder
from edgecl.errors import EdgeclError, check_file_format
from edgecl.paths import display

STATE_FORMAT = "edgecl-state"
STATE_FORMAT_VERSION = 1
POINTER = "edgecl-state.json"
SNAPSHOT_META = "snapshot.json"
LOCK_FILE, LOCK_OWNER = "lock", "lock.owner"  # the writer lock (flock) and the pid of its holder
KEEP_SNAPSHOTS = 2


class StateError(EdgeclError):
    """The state directory is missing, damaged, locked, or cannot be written."""


@dataclass(frozen=True)
class Snapshot:
    """One committed state: its folder and its snapshot.json."""

    root: Path
    folder: Path
    meta: dict[str, Any]


def state_root(state_dir: str | Path | None) -> Path:
    """--state-dir, else $EDGECL_HOME, else ~/.edgecl."""
    from edgecl.paths import edgecl_home

    return Path(state_dir).expanduser() if state_dir else edgecl_home()


def refuse_non_directory(root: Path) -> None:
    """A --state-dir that exists but is not a folder is an error that says so (not "nothing learned yet")."""
    if root.exists() and not root.is_dir():
        raise StateError(f"{display(root)} is a file, not a state directory; pick another --state-dir")


def read_state(root: Path) -> Snapshot | None:
    """The current snapshot, or None when no state was ever committed here."""
    pointer = root / POINTER
    if not pointer.is_file():
        return None
    for _ in range(3):  # a writer may retire the snapshot we just read the name of: read the pointer again
        try:
            data = json.loads(pointer.read_text(encoding="utf-8"))
            _check_version(data, pointer)
            folder = root / data["snapshot"]
            meta = json.loads((folder / SNAPSHOT_META).read_text(encoding="utf-8"))
        except FileNotFoundError:
            time.sleep(0.05)
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"{display(pointer)}: state pointer is damaged ({exc}); restore it or use a new --state-dir"
            ) from exc
        return Snapshot(root, folder, meta)
    raise StateError(f"{display(root)}: the current snapshot is missing; the state directory was modified by hand")


def previous_snapshot(current: Snapshot) -> Snapshot | None:
    """The newest kept snapshot older than `current` whose snapshot.json reads (None when there is none)."""
    snapshots = current.root / "snapshots"
    older = sorted((p for p in snapshots.iterdir() if p.name.isdigit() and int(p.name) < int(current.folder.name)),
                   key=lambda p: int(p.name))  # fmt: skip
    for folder in reversed(older):
        try:
            return Snapshot(current.root, folder, json.loads((folder / SNAPSHOT_META).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return None


def _check_version(data: Any, pointer: Path) -> None:
    check_file_format(data, STATE_FORMAT, STATE_FORMAT_VERSION, display(pointer), StateError)


@contextlib.contextmanager
def writer_lock(
    root: Path, timeout_s: float = 300.0, on_wait: Callable[[str], None] = lambda m: None
) -> Iterator[None]:
    """Hold the state's writer lock (`filelock`, an flock on root/lock); a second writer waits (with a message) up
    to timeout_s, then fails. The holder's pid is in root/lock.owner for the messages. A folder this call created
    that ends with no state in it (a first learn that failed) is removed again, lock files and all."""
    from filelock import FileLock, Timeout

    refuse_non_directory(root)
    made = [p for p in (root, *root.parents) if not p.exists()]  # root first: what a failure removes again
    created = bool(made)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(root / LOCK_FILE)
        try:
            created |= _acquire(lock, root / LOCK_FILE, 0)
        except Timeout:
            on_wait(f"waiting for another edgecl process (pid {_holder(root)}) to finish with {display(root)}")
            created |= _acquire(lock, root / LOCK_FILE, timeout_s)
    except Timeout:
        raise StateError(f"{display(root)} is locked by another edgecl process (pid {_holder(root)}); "
                         "try again when it has finished") from None  # fmt: skip
    except OSError as exc:
        raise StateError(
            f"{display(root)}: cannot write the state directory ({exc.strerror}); pick another --state-dir"
        ) from exc
    try:
        with contextlib.suppress(OSError):
            (root / LOCK_OWNER).write_text(str(os.getpid()))
        yield
    finally:
        empty = created and not (root / POINTER).exists()
        if empty:  # unlinked while held: a process waiting on it retries on a new lock file (_acquire)
            for name in (LOCK_OWNER, LOCK_FILE):
                with contextlib.suppress(OSError):
                    (root / name).unlink()
        lock.release()
        if empty:
            for folder in made or [root]:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if nothing else is in it


def _acquire(lock: Any, path: Path, timeout_s: float) -> bool:
    """Acquire `lock` on the file at `path` within timeout_s, again if the file was replaced or its folder removed
    while this process waited (the holder's first learn failed: see writer_lock), so that two processes never hold
    locks on different files. Returns whether this process had to make the folder again."""
    deadline, remade = time.monotonic() + timeout_s, False
    while True:
        try:
            lock.acquire(timeout=max(0.0, deadline - time.monotonic()), poll_interval=0.2)
        except FileNotFoundError:  # the folder is gone: filelock does not make it again
            path.parent.mkdir(parents=True, exist_ok=True)
            remade = True
            continue
        fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
        try:
            if fd is None or os.fstat(fd).st_ino == os.stat(path).st_ino:
                return remade
        except FileNotFoundError:
            pass
        lock.release()
        remade |= not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)


def _holder(root: Path) -> str:
    with contextlib.suppress(OSError):
        return (root / LOCK_OWNER).read_text().strip() or "?"
    return "?"


def commit_snapshot(root: Path, write: Callable[[Path], None], meta: dict[str, Any]) -> Snapshot:
    """Write a new snapshot with `write(folder)` + snapshot.json, then swap the pointer. Caller holds the lock."""
    snapshots = root / "snapshots"
    try:
        snapshots.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(snapshots)
        _remove_orphans(root, snapshots)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=snapshots))
    except OSError as exc:
        raise _write_error(root, exc) from exc
    try:
        write(work)
        (work / SNAPSHOT_META).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        name = f"{_next_number(snapshots):06d}"
        if not publish_folder(work, snapshots / name):  # never under the lock: the number is new
            raise OSError(errno.EEXIST, f"snapshot {name} already exists")
        pointer = {"format": STATE_FORMAT, "format_version": STATE_FORMAT_VERSION, "snapshot": f"snapshots/{name}"}
        atomic_write_bytes(root / POINTER, json.dumps(pointer, indent=2).encode())
    except OSError as exc:
        raise _write_error(root, exc) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _retire_old(snapshots, keep=name)
    return Snapshot(root, snapshots / name, meta)


def _write_error(root: Path, exc: OSError) -> StateError:
    if exc.errno == errno.ENOSPC:
        return StateError(f"{display(root)}: disk full; free some space and run again (the previous state is intact)")
    return StateError(f"{display(root)}: cannot write the state ({exc.strerror}); the previous state is intact")


def _next_number(snapshots: Path) -> int:
    numbers = [int(p.name) for p in snapshots.iterdir() if p.name.isdigit()]
    return max(numbers, default=0) + 1


def _remove_stale_temps(snapshots: Path) -> None:
    """Temp folders of writers that were killed (we hold the lock, so none is in use)."""
    for path in snapshots.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)


def _remove_orphans(root: Path, snapshots: Path) -> None:
    """Snapshots newer than the current one (a commit that died before its pointer moved): never current, so they
    must not count as the previous state that retiring keeps and rollback returns to."""
    current = read_state(root)
    if current is None or not current.folder.name.isdigit():
        return
    for path in snapshots.iterdir():
        if path.name.isdigit() and int(path.name) > int(current.folder.name):
            shutil.rmtree(path, ignore_errors=True)


def _retire_old(snapshots: Path, keep: str) -> None:
    names = sorted((p.name for p in snapshots.iterdir() if p.name.isdigit()), key=int)
    for name in names[:-KEEP_SNAPSHOTS]:
        if name != keep:
            shutil.rmtree(snapshots / name, ignore_errors=True)


def without_rollback_mark(meta: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's metadata for the next change: `rolled_back` says how the snapshot it is copied from was made."""
    return {k: v for k, v in meta.items() if k != "rolled_back"}
