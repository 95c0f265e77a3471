"""Which photos a state has learned, by content: a 64-bit hash of each image file's bytes (and its --domain) with the
class it was learned as, so that learning the same folder again (or a copy of a photo in the same class) adds
nothing. The hashes live in learned.npz beside the class means (16 bytes a photo, outside the replay memory's
budget)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK = 1 << 20


def in_domain(hashes: np.ndarray, domain: str | None) -> np.ndarray:
    """Content hashes made specific to a domain: the same photo learned again under another --domain is new there."""
    if not domain:
        return np.asarray(hashes, np.uint64)
    salt = int.from_bytes(hashlib.blake2b(domain.encode(), digest_size=8).digest(), "little")
    return np.asarray(hashes, np.uint64) ^ np.uint64(salt)


def content_hash(path: Path) -> int:
    """A 64-bit hash (BLAKE2b) of the file's bytes; OSError if it cannot be read, ImageLoadError if it is not a
    regular file (opened as the image reader opens it: a named pipe never blocks)."""
    from edgecl.preprocess import open_regular

    digest = hashlib.blake2b(digest_size=8)
    with open_regular(path) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return int.from_bytes(digest.digest(), "little")


@dataclass(frozen=True)
class SeenImages:
    """(N,) uint64 content hashes and (N,) int64 class index of every photo learned (fleet classes have none)."""

    hashes: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        for array in (self.hashes, self.classes):
            array.flags.writeable = False

    @classmethod
    def empty(cls) -> SeenImages:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.hashes)

    def learned(self, hashes: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """(M,) bool: whether each (hash, class index) pair was learned already (or repeats an earlier pair in the
        same call: a second copy of a photo in one task)."""
        pairs = set(zip(self.hashes.tolist(), self.classes.tolist(), strict=True))
        out = np.zeros(len(hashes), bool)
        for i, pair in enumerate(zip(np.asarray(hashes).tolist(), np.asarray(classes).tolist(), strict=True)):
            out[i] = pair in pairs
            pairs.add(pair)
        return out

    def added(self, hashes: np.ndarray, classes: np.ndarray) -> SeenImages:
        return SeenImages(np.concatenate([self.hashes, np.asarray(hashes, np.uint64)]),
                          np.concatenate([self.classes, np.asarray(classes, np.int64)]))  # fmt: skip

    def without(self, index: int) -> SeenImages:
        """Class `index` forgotten: its photos dropped, later class indices shifted down."""
        keep = self.classes != index
        classes = self.classes[keep]
        return SeenImages(self.hashes[keep].copy(), classes - (classes > index))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"seen_hashes": self.hashes, "seen_classes": self.classes}

    @classmethod
    def from_arrays(cls, data: object) -> SeenImages:
        files = getattr(data, "files", [])
        if "seen_hashes" not in files:  # saved before photos were remembered
            return cls.empty()
        return cls(np.asarray(data["seen_hashes"], np.uint64), np.asarray(data["seen_classes"], np.int64))  # type: ignore[index]
