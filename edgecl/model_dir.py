"""The exported model directory: manifest.json format, file hashing and verification, and getting a usable one
(reuse a complete export, or export on first use: the one call into export/)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecl.atomic import restore_interrupted_swap
from edgecl.errors import ModelFileError, check_file_format

MANIFEST_NAME = "manifest.json"
MODEL_FORMAT = "edgecl-model"
MODEL_FORMAT_VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelManifest:
    """The parsed manifest.json of a model directory."""

    root: Path
    data: dict[str, Any]

    @property
    def backbone(self) -> str:
        return str(self.data["backbone"])

    @property
    def embed_dim(self) -> int:
        return int(self.data["embed_dim"])

    def tower(self, name: str) -> dict[str, Any]:
        return dict(self.data["towers"][name])

    def tower_file(self, name: str, precision: str) -> Path:
        """Path of the ONNX file of tower `name` ("image" or "text") at `precision` ("int8" or "fp32")."""
        files = self.data["towers"][name]["files"]
        if precision not in files:
            raise ModelFileError(
                f"{self.root}: no {precision} {name} tower (have {', '.join(sorted(files))}); "
                "re-export with `edgecl export --keep-fp32` for fp32 towers"
            )
        return self.root / files[precision]

    def verify_file(self, path: Path) -> Path:
        """Check that a file listed in the manifest exists and matches its sha256; return it."""
        name = path.relative_to(self.root).as_posix()
        expected = self.data["files"].get(name)
        if expected is None:
            raise ModelFileError(f"{path}: not listed in {self.root / MANIFEST_NAME}; re-run `edgecl export`")
        if not path.is_file():
            raise ModelFileError(f"{path}: model file missing; re-run `edgecl export --force`")
        if sha256_file(path) != expected:
            raise ModelFileError(
                f"{path}: sha256 does not match the manifest (file corrupted or changed after export); "
                "re-run `edgecl export --force`"
            )
        return path


def read_manifest(model_dir: str | Path) -> ModelManifest:
    """Parse and sanity-check manifest.json; a missing or malformed one is a ModelFileError."""
    root = Path(model_dir)
    path = root / MANIFEST_NAME
    restore_interrupted_swap(root)  # a re-export that crashed between its two renames
    if not root.is_dir():
        raise ModelFileError(f"{root}: no such model directory; create one with `edgecl export --backbone bundled`")
    if not path.is_file():
        raise ModelFileError(f"{path}: missing, so {root} is not a complete export; re-run `edgecl export`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc}); re-run `edgecl export --force`") from exc
    check_file_format(data, MODEL_FORMAT, MODEL_FORMAT_VERSION, str(path), ModelFileError)
    for key in ("backbone", "embed_dim", "towers", "files", "preprocess", "tokenizer"):
        if key not in data:
            raise ModelFileError(f"{path}: field {key!r} missing; re-run `edgecl export --force`")
    return ModelManifest(root, data)


def write_json(path: Path, data: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indent) so identical exports are byte-identical."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


INT8_ISA_FLAGS = (("amx_int8", "amx"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"),
                  ("avx512bw", "avx512"), ("avx2", "avx2"), ("asimddp", "arm-dotprod"))  # fmt: skip


def cpu_int8_isa() -> str:
    """The best int8 instruction set this CPU offers onnxruntime's kernels (best first in INT8_ISA_FLAGS), from
    /proc/cpuinfo; 'unknown' elsewhere. Exports record it: u8 x s8 kernels saturate without VNNI/AMX/dot-product,
    so a recipe measured on one CPU may differ on another."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return next((name for flag, name in INT8_ISA_FLAGS if flag in flags), "unknown")


def ensure_model(
    backbone_id: str, model_dir: str | Path | None = None, progress: Callable[[str], None] = lambda m: None
) -> ModelManifest:
    """The manifest of `model_dir` (default: the backbone's folder under $EDGECL_HOME), exporting it if absent."""
    from edgecl.paths import default_model_dir

    target = Path(model_dir) if model_dir else default_model_dir(backbone_id)
    if (target / MANIFEST_NAME).is_file():
        return read_manifest(target)
    from edgecl.export import export_model

    return export_model(backbone_id, target, progress=progress)
