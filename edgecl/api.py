"""The Python API that stays loaded: `edgecl.open(state_dir)` gives a `State` whose classify answers from one loaded
snapshot at a time, picks up a commit made by another process (the CLI, another server) and learns or forgets
through the same code as the CLI (the state's writer lock, an atomic commit). Safe to share between threads: the
served snapshot is one immutable reference, replaced whole, so no call ever sees a mix of two snapshots.

    import edgecl
    state = edgecl.open("~/.edgecl")
    state.learn("./new_photos")                  # class folders, as `edgecl learn --task-dir`
    for answer in state.classify(["cam/frame1.jpg"]):
        print(answer["label"], answer["confidence"])
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecl.errors import EdgeclError
from edgecl.names import clean_name, joined_names
from edgecl.tasks import is_hidden

log = logging.getLogger("edgecl")
RELOAD_CHECK_S = 0.5  # how often a classify looks at the state pointer for another process's commit
RETRY_FAILED_S = 30.0  # a snapshot that failed to load is tried again after this long
MAX_LABEL_CHARS = 100


@dataclass(frozen=True)
class Served:
    """One loaded snapshot: never changed after it is built, only replaced whole."""

    snapshot: str  # the snapshot folder's name (the state pointer's `snapshot`)
    learner: Any  # edgecl.learner.Learner loaded from it (numpy only; never trained in place)
    min_confidence: float  # the state's device profile's threshold


class State:
    """A state directory, loaded once and kept current. `classify`, `learn`, `forget` and `status` mirror the CLI
    commands and return their `--json` forms (learn and status as typed reports with to_json())."""

    def __init__(self, state_dir: str | Path | None = None) -> None:
        from edgecl.state import state_root

        self.root = state_root(str(state_dir) if state_dir is not None else None)
        self._served: Served | None = None
        self._encoder: Any = None
        self._checked = 0.0
        self._failed: tuple[str, float] | None = None  # a snapshot that failed to load, and when (logged once)
        self._load_lock = threading.Lock()  # one reload at a time; readers never wait for it
        self._learn_lock = threading.Lock()  # one learn or forget at a time in this process
        self.reload()

    # ---- serving -------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether a snapshot is loaded (nothing learned yet: not ready)."""
        return self._served is not None

    @property
    def snapshot(self) -> str | None:
        served = self._served
        return served.snapshot if served else None

    def reload(self) -> bool:
        """Load the state's current snapshot if it is not the one served; True when a new one is now served. A
        snapshot that fails to load keeps the old one serving (logged once)."""
        with self._load_lock:
            return self._reload_locked()

    def _reload_locked(self) -> bool:
        from edgecl.state import read_state

        self._checked = time.monotonic()
        snapshot = read_state(self.root)
        if snapshot is None or snapshot.folder.name == self.snapshot or self._failed_recently(snapshot.folder.name):
            return False
        try:
            self._served = self._load(snapshot)
        except Exception as exc:  # noqa: BLE001 - whatever a damaged snapshot raises, the old one keeps serving
            if self._failed is None or self._failed[0] != snapshot.folder.name:
                log.warning("edgecl: snapshot %s failed to load, still serving %s: %s", snapshot.folder.name,
                            self.snapshot, exc)  # fmt: skip
            self._failed = (snapshot.folder.name, time.monotonic())
            return False
        self._failed = None
        return True

    def _failed_recently(self, name: str) -> bool:
        return self._failed is not None and self._failed[0] == name and (
            time.monotonic() - self._failed[1] < RETRY_FAILED_S)  # fmt: skip

    def _load(self, snapshot: Any) -> Served:
        from edgecl.commands import check_same_model, open_encoder, saved_runtime, state_min_confidence
        from edgecl.learner import Learner

        runtime = saved_runtime(snapshot.meta)
        if self._encoder is None or str(self._encoder.manifest.root.resolve()) != snapshot.meta["model_dir"]:
            self._encoder = open_encoder(snapshot.meta["model_dir"], runtime)
        check_same_model(snapshot.meta, self._encoder.manifest.data["files"])
        learner = Learner.load_from(snapshot.folder, self._encoder, runtime)
        return Served(snapshot.folder.name, learner, state_min_confidence(snapshot.meta))

    @property
    def min_confidence(self) -> float:
        """The served state's default threshold (its device profile's)."""
        return self._current().min_confidence

    def _current(self) -> Served:
        """The served snapshot, after a look for a newer one when due; a reader never waits for another's load."""
        if time.monotonic() - self._checked > RELOAD_CHECK_S and self._load_lock.acquire(blocking=False):
            try:
                self._reload_locked()
            finally:
                self._load_lock.release()
        served = self._served
        if served is None:
            raise EdgeclError(f"{self.root}: nothing learned yet; learn a task first")
        return served

    def classify(self, images: Sequence[str | Path], top_k: int = 5, labels: Sequence[str] = (),
                 min_confidence: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Answers for image files (classify --json's list); unreadable files are an error naming them."""
        results, skipped = self.classify_files([Path(p) for p in images], top_k, labels, min_confidence)
        if skipped:
            raise EdgeclError(f"{skipped[0]['path']}: {skipped[0]['reason']}")
        return results

    def classify_files(self, paths: Sequence[Path], top_k: int = 5, labels: Sequence[str] = (),
                       min_confidence: float | None = None, names: Sequence[str] | None = None,
                       ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:  # fmt: skip
        """(answers for the readable files, the unreadable ones with the reason), from one snapshot; `names`: what
        to call each file in both (default: its path)."""
        from edgecl.commands import answer_files

        _check_request(top_k, min_confidence)
        served = self._current()
        threshold = served.min_confidence if min_confidence is None else min_confidence
        return answer_files(served.learner, list(paths), top_k, labels, threshold, names)

    # ---- learning ------------------------------------------------------------------------------------------
    def learn(self, folder: str | Path | None = None, *, images: Sequence[str | Path] = (),
              labels: Sequence[str] = (), domain: str | None = None, **options: Any) -> Any:  # fmt: skip
        """Learn a task folder (class sub-folders, as `edgecl learn --task-dir`), or image files with one label
        each; `options` are edgecl.commands.LearnOptions fields (budget, method, backbone, ...). Returns the
        LearnReport; the new snapshot is served when this returns."""
        from edgecl.commands import LearnOptions, learn

        if images:  # the task history names them, not the temporary folder they are learned from
            options.setdefault("source", f"{len(images)} images given to the Python API")
        with self._learn_lock, _task_folder(folder, images, labels) as task_dir:
            report = learn(LearnOptions(task_dir=str(task_dir), state_dir=str(self.root), domain=domain, **options))
        self.reload()
        return report

    def forget(self, name: str) -> dict[str, Any]:
        from edgecl.commands import forget

        with self._learn_lock:
            result = forget(name, str(self.root))
        self.reload()
        return result

    def status(self) -> Any:
        from edgecl.commands import status

        return status(str(self.root))


def open(state_dir: str | Path | None = None) -> State:  # noqa: A001 - the API's name: edgecl.open(...)
    """The state at `state_dir` (default $EDGECL_HOME, else ~/.edgecl), loaded and kept current."""
    return State(state_dir)


def _check_request(top_k: int, min_confidence: float | None) -> None:
    if top_k < 1:
        raise EdgeclError("top_k must be at least 1")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise EdgeclError(f"min_confidence must be from 0 to 1 (0 turns unknown off), got {min_confidence}")


class _task_folder:  # noqa: N801 - used as a context manager, like tempfile's
    """The folder to learn: the one given, or a temporary one with `images` linked or copied under their labels
    (removed afterwards: images are not kept, only their embeddings)."""

    def __init__(self, folder: str | Path | None, images: Sequence[str | Path], labels: Sequence[str]) -> None:
        if (folder is None) == (not images):
            raise EdgeclError("learn needs a task folder or images with labels, not both")
        if images and len(images) != len(labels):
            raise EdgeclError(f"learn needs one label per image (got {len(images)} images, {len(labels)} labels)")
        self.folder, self.images, self.labels = folder, list(images), list(labels)
        self._tmp: str | None = None

    def __enter__(self) -> Path:
        if self.folder is not None:
            return Path(self.folder)
        names = label_folders(self.labels)
        self._tmp = tempfile.mkdtemp(prefix="edgecl-task-")
        try:
            for i, (image, name) in enumerate(zip(self.images, names, strict=True)):
                target = Path(self._tmp) / name
                target.mkdir(exist_ok=True)
                shutil.copyfile(image, target / f"{i}{image_suffix(Path(image))}")
        except OSError as exc:
            self.__exit__()
            raise EdgeclError(f"could not stage the images to learn ({exc}); check the free disk space") from None
        return Path(self._tmp)

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def class_folder_name(label: str) -> str:
    """A label as a class folder name; a label that cannot be one (empty, a path, dots) is an error."""
    name = clean_name(label)
    if not name or is_hidden(name) or "/" in name or "\\" in name or "\0" in name or len(name) > MAX_LABEL_CHARS:
        raise EdgeclError(f"label {label[:40]!r} cannot name a class: use up to {MAX_LABEL_CHARS} letters, digits, "
                          "spaces, '_' or '-', not starting with '.' and not a system folder name such as "
                          "__MACOSX")  # fmt: skip
    return name


def label_folders(labels: Sequence[str]) -> list[str]:
    """Each label's class folder, labels that name one class ("Cat" and "cat") sharing the first one's folder."""
    joined = joined_names([class_folder_name(label) for label in labels], [])
    return [joined[class_folder_name(label)] for label in labels]


def image_suffix(path: Path, filename: str | None = None) -> str:
    """An image extension edgecl reads for the file at `path`: that of `filename` (or the path's name) when it is
    one, else the one of the format PIL finds in the file, else '.img' (not an image: the scan says so). A
    client's file name never becomes a path."""
    from edgecl.tasks import IMAGE_SUFFIXES

    suffix = Path(filename if filename is not None else path.name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return suffix
    from PIL import Image

    try:
        with Image.open(path) as image:
            found = f".{(image.format or '').lower()}".replace(".jpeg", ".jpg")
    except Exception:  # noqa: BLE001 - anything PIL cannot open is not an image we read
        return ".img"
    return found if found in IMAGE_SUFFIXES else ".img"
