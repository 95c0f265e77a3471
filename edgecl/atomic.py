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
    (`replace_existing`): in one atomic exchange where the system has one (Linux renameat2), else by two renames
    that `restore_interrupted_swap` undoes if a crash falls between them; or else kept: another process published
    first, `work` is removed and False returned. Other failures (a full disk, ...) raise OSError with `work` left
    for the caller to remove."""
    fsync_tree(work)
    os.chmod(work, 0o755)  # mkdtemp made it private
    if replace_existing and target.exists():
        if _exchange(work, target):  # `work` now holds the old folder
            fsync_dir(target.parent)
            shutil.rmtree(work, ignore_errors=True)
            return True
        old = _old_name(target)
        os.rename(target, old)
        os.rename(work, target)
        fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
        return True
    try:
        os.rename(work, target)
    except OSError:
        if replace_existing or not target.exists():
            raise
        shutil.rmtree(work, ignore_errors=True)
        return False
    fsync_dir(target.parent)
    return True


def restore_interrupted_swap(target: Path) -> None:
    """A `target` that a crash left missing between publish_folder's two renames is put back from its old copy."""
    if target.exists():
        return
    for old in sorted(target.parent.glob(f".{target.name}.old-*")):
        with contextlib.suppress(OSError):
            os.rename(old, target)
            return


def _old_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.old-{os.getpid()}")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where the system cannot."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0  # EINVAL (a filesystem without it), ENOSYS (an old kernel): the two renames instead
