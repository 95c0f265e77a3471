"""Embedding-row arithmetic shared by the encoder, the learner, the memory and export: one definition each."""

from __future__ import annotations

import numpy as np

EPS = 1e-12  # a zero row stays zero instead of dividing by zero


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows (..., D) scaled to unit length; the dtype is kept."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), EPS)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) cosine of each row of a (N, D) with the same row of b (N, D)."""
    b = b.astype(np.float32) if b.dtype != a.dtype else b
    return (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), EPS)
