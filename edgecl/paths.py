"""Where edgecl keeps things by default: $EDGECL_HOME (default ~/.edgecl) and its models/ folder."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from edgecl.backbones import parse_backbone_id


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
