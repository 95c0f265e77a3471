"""Finding images: task directories (one sub-folder per class), calibration folders, classify arguments."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgecl.errors import EdgeclError
from edgecl.names import class_key, clean_name
from edgecl.paths import display

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif",
                            ".avif"})  # fmt: skip


class TaskDirError(EdgeclError):
    """A task or image folder is missing, empty or malformed."""


# Folders that file managers, NAS boxes and archivers add beside photos: never a class, never walked.
SYSTEM_FOLDERS = frozenset({"__macosx", "@eadir", "#recycle", "#snapshot", "$recycle.bin", "system volume information",
                            "lost+found", "__pycache__"})  # fmt: skip


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_hidden(name: str) -> bool:
    """A hidden or system file or folder (".thumbnails", "._IMG_1.jpg", "__MACOSX", "@eaDir", ...): skipped."""
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


def _walk(root: Path, task_root: Path | None = None) -> tuple[list[Path], list[Path], list[Path]]:
    """(image files, other files, cut links) below root, sorted, following directory links once (loops are cut). With
    `task_root` (the task folder root is a class folder of), a folder link that leads elsewhere inside the task folder
    (another class's folder, the task folder itself) is cut: following it would learn another class's photos as this
    one's. Links to folders outside the task folder are followed."""
    images: list[Path] = []
    others: list[Path] = []
    cut: list[Path] = []
    seen: set[tuple[int, int]] = set()
    fence = (Path(os.path.realpath(task_root)), Path(os.path.realpath(root))) if task_root else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            stat = os.stat(dirpath)
        except OSError:
            dirnames.clear()
            continue
        if (stat.st_dev, stat.st_ino) in seen:
            dirnames.clear()  # a symlink loop or a second path to the same folder
            continue
        seen.add((stat.st_dev, stat.st_ino))
        if fence and _crosses(Path(os.path.realpath(dirpath)), *fence):
            dirnames.clear()
            cut.append(Path(dirpath))
            continue
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(n for n in filenames if not is_hidden(n)):
            path = Path(dirpath) / name
            (images if is_image_name(path) else others).append(path)
    return images, others, cut


def _crosses(real: Path, task: Path, own: Path) -> bool:
    """Whether a folder (its real path) lies inside the task folder but outside the class folder being walked."""
    return real.is_relative_to(task) and not real.is_relative_to(own)


def list_images(folder: str | Path) -> list[Path]:
    """Image files below `folder` (by extension), sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise TaskDirError(f"{display(root)}: no such folder")
    return _walk(root)[0]


@dataclass
class TaskScan:
    """A scanned task directory: image paths with their class names, and what was skipped and why."""

    paths: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, path: Path, reason: str) -> None:
        self.skipped.append({"path": display(path), "reason": reason})


def scan_task_dir(task_dir: str | Path) -> TaskScan:
    """One sub-folder per class (its name is the class name), images anywhere inside it."""
    root = Path(task_dir)
    if not root.exists():
        raise TaskDirError(f"{display(root)}: task folder not found; pass a folder with one sub-folder per class")
    if not root.is_dir():
        raise TaskDirError(f"{display(root)}: not a folder; --task-dir takes a folder with one sub-folder per class")
    entries = sorted(root.iterdir())
    hidden = [p for p in entries if is_hidden(p.name) and p.is_dir()]
    entries = [p for p in entries if not is_hidden(p.name)]
    folders = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file() and is_image_name(p)]
    if not folders:
        hint = f" ({len(loose)} images lie at the top level)" if loose else ""
        raise TaskDirError(
            f"{display(root)}: no class folders{hint}; put each class's images in a sub-folder named after the class, "
            "e.g. task/cat/1.jpg, task/dog/2.jpg"
        )
    scan = TaskScan()
    for path in hidden:
        scan.skip(path, "hidden or system folder, not a class")
    for path in loose:
        scan.skip(path, "image outside any class folder")
    _check_collisions(folders)
    for folder in folders:
        name = clean_name(display(folder.name))
        images, others, cut = _walk(folder, root)
        for path in others:
            scan.skip(path, _not_image_reason(path))
        for path in cut:
            scan.skip(path, "a folder link to elsewhere in the task folder (another class's photos), not followed")
        if not images:
            scan.skip(folder, "class folder holds no images")
            continue
        scan.paths += images
        scan.labels += [name] * len(images)
    if not scan.paths:
        raise TaskDirError(f"{display(root)}: no images found in its class folders (extensions: {_suffixes()})")
    return scan


def _not_image_reason(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a link to nothing (its target is gone)"
    return "not an image file (by extension)"


def _check_collisions(folders: list[Path]) -> None:
    seen: dict[str, str] = {}
    for folder in folders:
        name = clean_name(display(folder.name))
        key = class_key(name)
        if not key:
            raise TaskDirError(f"{display(folder)}: a class folder needs a name with letters or digits")
        if key in seen:
            raise TaskDirError(
                f"class folders {seen[key]!r} and {name!r} name the same class; merge or rename one of them"
            )
        seen[key] = name


def _suffixes() -> str:
    return ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))


MISSING = "no such file or folder"


def collect_images(arguments: list[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files and folders given on the command line to image paths (folders are walked), and the arguments that
    name nothing ({path, reason: MISSING}: skipped like unreadable files); none found at all is an error."""
    paths: list[Path] = []
    missing: list[dict[str, str]] = []
    for arg in arguments:
        path = Path(arg)
        if path.is_dir():
            paths += list_images(path)
        elif path.exists():
            paths.append(path)
        else:
            missing.append({"path": display(path), "reason": MISSING})
    if not paths:
        named = f"{missing[0]['path']}: {MISSING}" if len(missing) == len(arguments) == 1 else (
            f"no images found in {', '.join(arguments)} (extensions: {_suffixes()})")  # fmt: skip
        raise TaskDirError(named)
    return paths, missing
