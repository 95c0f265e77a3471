"""Embeddings of offline data sets, cached on disk by model files and data, so that re-runs only train."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from edgecl.datasets import fashion_mnist
from edgecl.encoder import Encoder
from edgecl.paths import cache_dir


class Embedder:
    """Encodes image arrays once and caches the embeddings on disk, keyed by model files and data hash."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self._model_key = hashlib.sha256(str(sorted(encoder.manifest.data["files"].items())).encode()).hexdigest()

    def __call__(self, images: np.ndarray | list[Path]) -> np.ndarray:
        """Image arrays (N, H, W[, C]) or image files (keyed by path, size and modification time)."""
        if isinstance(images, np.ndarray):
            data = np.ascontiguousarray(images).tobytes()
        else:
            data = "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in images).encode()
        key = hashlib.sha256(self._model_key.encode() + data).hexdigest()[:24]
        path = cache_dir() / "bench-embeddings" / f"{key}.npy"
        if path.is_file():
            return np.load(path, allow_pickle=False)
        x = self.encoder.encode_images(list(images), batch_size=32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, x, allow_pickle=False)
        tmp.replace(path)
        return x


def fashion_embeddings(encoder: Encoder, split: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) embeddings and (N,) labels of the first `per_class` images of each Fashion-MNIST class."""
    images, labels = fashion_mnist(split)
    pick = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    return Embedder(encoder)(images[pick]), labels[pick]
