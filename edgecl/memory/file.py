"""The memory file: the rows and codec state as safetensors tensors, everything else in one JSON metadata key, with a
checksum over both. Format 2 (format 1, JSON strings inside JSON, is still read). Never unpickles."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from edgecl.errors import EdgeclError, check_file_format

MEMORY_FORMAT = "edgecl-memory"
# 2: the metadata is one compact JSON object (1, still read: a JSON object of JSON strings, 100-200 bytes longer)
MEMORY_FORMAT_VERSION = 2
_META_KEY = "edgecl"


class MemoryFileError(EdgeclError):
    """A memory file is corrupted, truncated or not a memory file."""


def encode_file(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """The file's bytes: `tensors` and `meta` with its checksum added."""
    from safetensors.numpy import save

    meta = meta | {"checksum": _checksum(meta, tensors)}
    # One metadata key: safetensors writes a map's keys in arbitrary order, one key keeps files reproducible.
    return save(
        {k: np.ascontiguousarray(v) for k, v in tensors.items()},
        metadata={_META_KEY: json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False)},
    )


def header_growth(n_tensors: int, budget_bytes: int) -> int:
    """Bound on how much the safetensors header of a file within `budget_bytes` outgrows the estimate made with
    empty row arrays: each tensor's shape and two offsets (3 numbers, none above the budget) plus the 8-byte
    alignment padding."""
    return n_tensors * 3 * len(str(budget_bytes)) + 8


_V1_JSON_FIELDS = ("codec_config", "config", "classes", "domains", "recon", "supplied")


def _from_v1(meta: dict[str, Any]) -> dict[str, Any]:
    """Format 1 metadata (every value a string, the structured ones JSON inside JSON) in format 2's types."""
    native = {k: json.loads(v) if k in _V1_JSON_FIELDS else v for k, v in meta.items()}
    return native | {"format_version": int(meta["format_version"]), "dim": int(meta["dim"]),
                     "next_id": int(meta["next_id"])}  # fmt: skip


def _checksum(meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def decode_file(data: bytes, source: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a memory file's tensors and metadata, verifying format and checksum; never unpickles."""
    from safetensors.numpy import load

    fix = "the file is damaged: restore it from a backup or start a new memory"
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(json.loads(data[8 : 8 + header_len])["__metadata__"][_META_KEY])
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise MemoryFileError(f"{source}: not a readable memory file ({type(exc).__name__}); {fix}") from exc
    check_file_format(meta, MEMORY_FORMAT, MEMORY_FORMAT_VERSION, source, MemoryFileError)
    if meta.get("checksum") != _checksum(meta, tensors):
        raise MemoryFileError(f"{source}: checksum mismatch; {fix}")
    try:
        return tensors, _from_v1(meta) if int(meta["format_version"]) == 1 else meta
    except (KeyError, ValueError, TypeError) as exc:
        raise MemoryFileError(f"{source}: memory file is inconsistent ({exc})") from exc
