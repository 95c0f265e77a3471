"""A trained head as plain numpy arrays, so that classification never imports torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecl.vectors import unit_rows


@dataclass(frozen=True)
class MergedHead:
    """A trained head as plain arrays: z = normalize(e + (e @ down) @ up). down (D, r), up (r, D) f32."""

    down: np.ndarray
    up: np.ndarray

    @classmethod
    def identity(cls, dim: int) -> MergedHead:
        return cls(np.zeros((dim, 1), np.float32), np.zeros((1, dim), np.float32))

    def __call__(self, e: np.ndarray) -> np.ndarray:
        return unit_rows(e + (e @ self.down) @ self.up)
