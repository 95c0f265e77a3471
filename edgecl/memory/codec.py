"""Embedding codecs for the replay memory: fp16, int8, int4 (per-vector scale) and product quantisation (faiss).

Contract (faiss style): codes are (N, code_bytes) uint8; `encode` takes (N, D) f32 and `decode` returns (N, D) f32;
`bytes_per_vector` is the code size, `state()` the arrays a decoder needs besides the codes (e.g. a PQ codebook),
whose serialised bytes count against the memory budget.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edgecl.errors import EdgeclError
from edgecl.vectors import row_cosines

CODEC_NAMES = ("fp16", "int8", "int4", "pq")  # most precise first: the one order every choice of codec follows
SCALAR_CODECS = CODEC_NAMES[:3]  # a fixed size per sample and no codebook: what `auto` picks among first


def precision_rank(name: str) -> int:
    """0 for the most precise codec (fp16), higher for coarser ones."""
    return CODEC_NAMES.index(name)

_SCALE_BYTES = 2  # per-vector fp16 scale of int8 / int4


class CodecError(EdgeclError):
    """Unknown codec, or a codec used before it was fitted."""


class Codec(Protocol):
    name: str
    dim: int

    @property
    def bytes_per_vector(self) -> int: ...

    @property
    def fitted(self) -> bool: ...

    def fit(self, x: np.ndarray) -> None: ...

    def encode(self, x: np.ndarray) -> np.ndarray: ...

    def decode(self, codes: np.ndarray) -> np.ndarray: ...

    def state(self) -> dict[str, np.ndarray]: ...

    def config(self) -> dict[str, int]: ...


class Fp16Codec:
    """IEEE half precision, 2 bytes per dimension."""

    name = "fp16"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    @property
    def bytes_per_vector(self) -> int:
        return 2 * self.dim

    fitted = True

    def fit(self, x: np.ndarray) -> None:
        pass

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float16).view(np.uint8).reshape(len(x), -1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(codes).view(np.float16).reshape(len(codes), self.dim).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def config(self) -> dict[str, int]:
        return {}


class ScaledIntCodec:
    """Symmetric integer codes with one fp16 scale per vector: int8 (levels -127..127) or int4 (-7..7, packed)."""

    def __init__(self, dim: int, bits: int) -> None:
        if bits not in (4, 8):
            raise ValueError(f"bits must be 4 or 8, got {bits}")
        self.dim, self.bits = dim, bits
        self.name = f"int{bits}"
        self.levels = 127 if bits == 8 else 7

    @property
    def bytes_per_vector(self) -> int:
        payload = self.dim if self.bits == 8 else (self.dim + 1) // 2
        return _SCALE_BYTES + payload

    fitted = True

    def fit(self, x: np.ndarray) -> None:
        pass

    def _quantize(self, x: np.ndarray, clip: float) -> tuple[np.ndarray, np.ndarray]:
        peak = np.abs(x).max(axis=1, keepdims=True)
        scale = (peak * clip / self.levels).astype(np.float16)  # (N, 1) f16
        safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
        return np.clip(np.rint(x / safe), -self.levels, self.levels).astype(np.int8), scale

    def encode(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)  # (N, D)
        q, scale = self._quantize(x, 1.0)
        if self.bits == 4:  # 15 levels: clipping the largest components often gives a better direction
            best = row_cosines(x, q)
            for clip in _INT4_CLIPS:
                q2, scale2 = self._quantize(x, clip)
                cos2 = row_cosines(x, q2)
                better = cos2 > best + 1e-7  # strict: re-encoding a decoded vector keeps clip 1.0 (exact)
                q[better], scale[better], best = q2[better], scale2[better], np.maximum(best, cos2)
        payload = q.view(np.uint8) if self.bits == 8 else _pack_nibbles(q)
        return np.concatenate([scale.view(np.uint8).reshape(len(x), 2), payload], axis=1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        codes = np.ascontiguousarray(codes)
        scale = codes[:, :_SCALE_BYTES].copy().view(np.float16).astype(np.float32)  # (N, 1)
        payload = codes[:, _SCALE_BYTES:]
        q = payload.view(np.int8) if self.bits == 8 else _unpack_nibbles(payload, self.dim)
        return q.astype(np.float32) * scale

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def config(self) -> dict[str, int]:
        return {}


_INT4_CLIPS = (0.85, 0.7, 0.55)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """(N, D) int8 in [-7, 7] -> (N, ceil(D/2)) uint8, two offset-8 nibbles per byte."""
    u = (q.astype(np.int16) + 8).astype(np.uint8)
    if u.shape[1] % 2:
        u = np.concatenate([u, np.full((len(u), 1), 8, np.uint8)], axis=1)
    return (u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8)


def _unpack_nibbles(packed: np.ndarray, dim: int) -> np.ndarray:
    low = (packed & 0x0F).astype(np.int8) - 8
    high = (packed >> 4).astype(np.int8) - 8
    out = np.empty((len(packed), packed.shape[1] * 2), np.int8)
    out[:, 0::2], out[:, 1::2] = low, high
    return out[:, :dim]


class PQCodec:
    """faiss product quantiser: `m` sub-spaces of `nbits` each; its fp16 codebook counts against the budget."""

    name = "pq"

    def __init__(self, dim: int, m: int = 0, nbits: int = 8, codebook: np.ndarray | None = None) -> None:
        self.dim, self.nbits = dim, nbits
        self.m = m or _default_subspaces(dim)
        if dim % self.m:
            raise CodecError(f"pq: dimension {dim} is not divisible by m={self.m}")
        self._codebook = codebook  # (m, 2^nbits, D/m) f16
        self._pq = None

    def __getstate__(self) -> dict[str, object]:
        """Copies and pickles carry the codebook; the faiss object (not copyable) is rebuilt on use."""
        return {**self.__dict__, "_pq": None}

    @property
    def bytes_per_vector(self) -> int:
        return (self.m * self.nbits + 7) // 8

    @property
    def fitted(self) -> bool:
        return self._codebook is not None

    def _faiss(self):  # type: ignore[no-untyped-def]
        import faiss

        if self._pq is None:
            if self._codebook is None:
                raise CodecError("pq codec used before fit(); it trains on the first data it sees")
            pq = faiss.ProductQuantizer(self.dim, self.m, self.nbits)
            faiss.copy_array_to_vector(self._codebook.astype(np.float32).ravel(), pq.centroids)
            self._pq = pq
        return self._pq

    def fit(self, x: np.ndarray) -> None:
        """Train once; later calls keep the codebook stable so stored codes stay valid."""
        if self.fitted:
            return
        import faiss

        x = np.ascontiguousarray(x, dtype=np.float32)
        k = 1 << self.nbits
        if len(x) < k:  # too few points for k centroids: repeat with small seeded jitter
            reps = -(-k // len(x))
            noise = np.random.default_rng(0).normal(0, 1e-3, (len(x) * reps, self.dim)).astype(np.float32)
            x = np.tile(x, (reps, 1)) + noise
        pq = faiss.ProductQuantizer(self.dim, self.m, self.nbits)
        pq.cp.seed = 1234
        pq.cp.verbose = False
        pq.cp.min_points_per_centroid = 1  # small first tasks are normal here; no stderr warning
        pq.train(x)
        centroids = faiss.vector_to_array(pq.centroids).reshape(self.m, k, self.dim // self.m)
        self._codebook = centroids.astype(np.float16)
        self._pq = None

    def encode(self, x: np.ndarray) -> np.ndarray:
        return self._faiss().compute_codes(np.ascontiguousarray(x, dtype=np.float32))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self._faiss().decode(np.ascontiguousarray(codes, dtype=np.uint8))

    def state(self) -> dict[str, np.ndarray]:
        return {} if self._codebook is None else {"pq_codebook": self._codebook}

    def config(self) -> dict[str, int]:
        return {"m": self.m, "nbits": self.nbits}


def _default_subspaces(dim: int) -> int:
    """About 8 dimensions per sub-space, the largest divisor of dim not above dim // 8 (at least 1)."""
    target = max(1, dim // 8)
    return next(m for m in range(target, 0, -1) if dim % m == 0)


PQ_BITS = (8, 6, 4, 2)  # bits per PQ sub-code, most precise first


def pq_bits_for_budget(dim: int, budget_bytes: int) -> int:
    """Bits per PQ sub-code: the most (8, 6, 4, 2) whose fp16 codebook takes at most half the budget."""
    for nbits in PQ_BITS:
        if (1 << nbits) * dim * 2 <= budget_bytes // 2:
            return nbits
    return 2


def make_codec(
    name: str, dim: int, config: dict[str, int] | None = None, state: dict[str, np.ndarray] | None = None
) -> Codec:
    """Build a codec by name; `config`/`state` restore a saved one."""
    if dim < 1:
        raise CodecError(f"embedding dimension must be >= 1, got {dim}")
    config, state = config or {}, state or {}
    if name == "fp16":
        return Fp16Codec(dim)
    if name in ("int8", "int4"):
        return ScaledIntCodec(dim, int(name[3:]))
    if name == "pq":
        return PQCodec(dim, int(config.get("m", 0)), int(config.get("nbits", 8)), state.get("pq_codebook"))
    raise CodecError(f"unknown codec {name!r}; choose one of {', '.join(CODEC_NAMES)} or auto")
