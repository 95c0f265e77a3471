"""What an export learned about this CPU kind: the quantisation recipe each tower chose, per backbone and `int8_isa`.

Kept under $EDGECL_HOME/cache/recipes so that the next export of the same backbone on this kind of CPU (a re-export,
another state's model folder) tries that recipe first. Only recipes that met every target are remembered; a missing
or damaged file just means the built-in order (export.quantize.ISA_FIRST).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecl.atomic import atomic_write_bytes
from edgecl.model_dir import cpu_int8_isa
from edgecl.paths import default_model_dir, measurements_dir


def _path(backbone_id: str) -> Path:
    return measurements_dir("recipes") / f"{default_model_dir(backbone_id).name}-{cpu_int8_isa()}.json"


def learned(backbone_id: str) -> dict[str, str]:
    """Tower name -> the recipe an earlier export of this backbone chose on this CPU kind (empty when none)."""
    try:
        saved = json.loads(_path(backbone_id).read_text())
        return {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {}
    except (OSError, ValueError):
        return {}


def remember(backbone_id: str, reports: dict[str, dict[str, Any]]) -> None:
    """Record each tower's chosen recipe (`reports`: tower name -> its quantization report) when it met every
    target; a cache that cannot be written (read-only home) is skipped: it only saves time."""
    met = {name: r["chosen"] for name, r in reports.items()
           if r.get("meets_target") and r.get("meets_agreement_target", True)}  # fmt: skip
    if not met:
        return
    path = _path(backbone_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(learned(backbone_id) | met, indent=2, sort_keys=True).encode())
    except OSError:
        pass
