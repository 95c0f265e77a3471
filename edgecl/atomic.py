"""Crash-safe writes of files and folders: a temporary copy beside the target, fsync, one rename, fsync the parent."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse directory fsync; the rename is still atomic
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_tree(folder: Path) -> None:
    """Every file and folder below `folder` on disk."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            with open(Path(dirpath) / name, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(dirpath))


def publish_folder(work: Path, target: Path, replace_existing: bool = False) -> bool:
    """Move the finished folder `work` to `target` in one rename, so that a reader (or a crash) sees the whole
    folder or none of it: contents fsynced first, the parent after. An existing `target` is swapped out and removed
    (`replace_existing`), or else kept: another process published first, `work` is removed and False returned.
    Other failures (a full disk, ...) raise OSError with `work` left for the caller to remove."""
    fsync_tree(work)
    os.chmod(work, 0o755)  # mkdtemp made it private
    old = None
    if replace_existing and target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
    try:
        os.rename(work, target)
    except OSError:
        if replace_existing or not target.exists():
            raise
        shutil.rmtree(work, ignore_errors=True)
        return False
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return True
