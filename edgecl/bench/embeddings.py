"""Embeddings of offline data sets, cached on disk by model files and selection, so that re-runs only train."""

from __future__ import annotations

import hashlib

import numpy as np

from edgecl.backbones.bundled import cache_dir
from edgecl.datasets import fashion_mnist
from edgecl.encoder import Encoder


def fashion_embeddings(encoder: Encoder, split: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) embeddings and (N,) labels of the first `per_class` images of each Fashion-MNIST class."""
    images, labels = fashion_mnist(split)
    pick = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    key = hashlib.sha256(f"{encoder.manifest.data['files']}|{split}|{per_class}".encode()).hexdigest()[:16]
    path = cache_dir() / "bench-embeddings" / f"fashion-{split}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return data["x"], data["y"]
    x = encoder.encode_images(list(images[pick]), batch_size=32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x=x, y=labels[pick])
    tmp.replace(path)
    return x, labels[pick]
