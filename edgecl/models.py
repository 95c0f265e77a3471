"""Getting a usable model directory: reuse a complete export, or export on first use (the one call into export/)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgecl.model_dir import MANIFEST_NAME, ModelManifest, read_manifest
from edgecl.paths import default_model_dir


def ensure_model(
    backbone_id: str, model_dir: str | Path | None = None, progress: Callable[[str], None] = lambda m: None
) -> ModelManifest:
    """The manifest of `model_dir` (default: the backbone's folder under $EDGECL_HOME), exporting it if absent."""
    target = Path(model_dir) if model_dir else default_model_dir(backbone_id)
    if (target / MANIFEST_NAME).is_file():
        return read_manifest(target)
    from edgecl.export import export_model

    return export_model(backbone_id, target, progress=progress)
