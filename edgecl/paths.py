"""Where edgecl keeps things, the one home of paths and caches: $EDGECL_HOME (default ~/.edgecl) with its models/
and cache/ (what was measured about this machine: INT8 checks, the recipes that met their targets), $EDGECL_CACHE
(default ~/.cache/edgecl: assets derived from installed packages, the benchmarks' embeddings); and how a path is
printed."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from edgecl.backbones import parse_backbone_id


def display(path: str | Path) -> str:
    """A path as printable UTF-8, whatever bytes the file system gave (undecodable bytes become U+FFFD)."""
    return os.fsencode(str(path)).decode("utf-8", errors="replace")


def edgecl_home() -> Path:
    return Path(os.environ.get("EDGECL_HOME", Path.home() / ".edgecl")).expanduser()


def default_model_dir(backbone_id: str) -> Path:
    """models/<readable slug> for a backbone id; checkpoint paths are shortened to a hash."""
    ref = parse_backbone_id(backbone_id)
    if ref.family == "bundled":
        return edgecl_home() / "models" / "bundled"
    weights = ref.weights
    if os.sep in weights or "." in weights:
        weights = "ckpt-" + hashlib.sha256(weights.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"openclip-{ref.arch}" + (f"-{weights}" if weights else "-random"))
    return edgecl_home() / "models" / slug


def measurements_dir(kind: str) -> Path:
    """$EDGECL_HOME/cache/<kind>: what was measured about this machine and its CPU kind (int8-checks, recipes)."""
    return edgecl_home() / "cache" / kind


def cache_dir() -> Path:
    """Where extracted assets live: $EDGECL_CACHE, else ~/.cache/edgecl."""
    return Path(os.environ.get("EDGECL_CACHE", Path.home() / ".cache" / "edgecl"))
