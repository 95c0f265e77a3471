"""Finding image files in folders (task directories, calibration folders, classify arguments)."""

from __future__ import annotations

import os
from pathlib import Path

from edgecl.errors import EdgeclError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class TaskDirError(EdgeclError):
    """A task or image folder is missing, empty or malformed."""


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | Path) -> list[Path]:
    """Image files below `folder`, sorted, following directory links once (link loops are cut)."""
    root = Path(folder)
    if not root.is_dir():
        raise TaskDirError(f"{root}: no such folder")
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        stat = os.stat(dirpath)
        if (stat.st_dev, stat.st_ino) in seen:
            dirnames.clear()  # a symlink loop or a second path to the same folder
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirnames.sort()
        found += [Path(dirpath) / name for name in sorted(filenames) if is_image_name(Path(name))]
    return found
