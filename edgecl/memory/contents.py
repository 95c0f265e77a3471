"""A replay memory's contents as values: its stored rows (`StoredRows`), everything it holds besides its config
(`MemoryContents`, replaced whole on every change) and decoded rows (`MemorySamples`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecl.memory.codec import Codec


@dataclass(frozen=True)
class StoredRows:
    """The memory's rows, aligned by index: codes (N, B) uint8, class index (N,) uint16, domain index (N,) uint8 and
    stable id (N,) uint32 (the 7 bytes beside each code, _ROW_BYTES)."""

    codes: np.ndarray
    labels: np.ndarray
    domains: np.ndarray
    ids: np.ndarray

    @classmethod
    def empty(cls, bytes_per_vector: int = 0) -> StoredRows:
        return cls(np.zeros((0, bytes_per_vector), np.uint8), np.zeros(0, np.uint16), np.zeros(0, np.uint8),
                   np.zeros(0, np.uint32))  # fmt: skip

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, keep: np.ndarray) -> StoredRows:
        return StoredRows(self.codes[keep], self.labels[keep], self.domains[keep], self.ids[keep])

    def then(self, other: StoredRows) -> StoredRows:
        """These rows followed by `other`'s."""
        codes = np.concatenate([self.codes, other.codes]) if len(self) else other.codes
        return StoredRows(codes, np.concatenate([self.labels, other.labels]).astype(np.uint16),
                          np.concatenate([self.domains, other.domains]).astype(np.uint8),
                          np.concatenate([self.ids, other.ids]).astype(np.uint32))  # fmt: skip

    def tensors(self) -> dict[str, np.ndarray]:
        """As the memory file names them."""
        return {"codes": self.codes, "labels": self.labels, "domains": self.domains, "ids": self.ids}


@dataclass(frozen=True)
class MemoryContents:
    """Everything a memory holds besides its config. A memory changes only by replacing this whole value (its lists
    and dicts are never changed in place), so a failed add leaves the memory as it was."""

    codec: Codec | None
    classes: list[str]
    domains: list[str]
    rows: StoredRows
    next_id: int = 0
    supplied: dict[tuple[str, str], int] = field(default_factory=dict)  # samples ever offered per (class, domain)
    recon: dict[str, Any] = field(default_factory=lambda: {"count": 0, "cosine_sum": 0.0})  # running cosines


@dataclass(frozen=True)
class MemorySamples:
    """Decoded memory contents, aligned by row."""

    embeddings: np.ndarray  # (N, D) f32
    labels: np.ndarray  # (N,) int64 index into classes
    domains: np.ndarray  # (N,) int64 index into domains
    ids: np.ndarray  # (N,) int64 stable sample ids
    classes: tuple[str, ...]
    domain_names: tuple[str, ...]
