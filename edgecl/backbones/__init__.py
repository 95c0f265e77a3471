"""Backbone registry: "openclip:<arch>[:<pretrained tag | checkpoint path>]" and "bundled"."""

from __future__ import annotations

from typing import Any

from edgecl.backbones.ids import BUNDLED, BackboneRef, parse_backbone_id

__all__ = ["BUNDLED", "BackboneRef", "build_backbone", "list_backbones", "parse_backbone_id"]


def build_backbone(backbone_id: str) -> Any:
    """Build the frozen torch towers (a BuiltBackbone). Imports torch."""
    ref = parse_backbone_id(backbone_id)
    if ref.family == BUNDLED:
        from edgecl.backbones.bundled import build_bundled

        return build_bundled()
    from edgecl.backbones.openclip import build_openclip

    return build_openclip(ref)


def list_backbones() -> list[dict[str, Any]]:
    """Rows for `edgecl backbones`: id, what it is, whether it needs a download, whether usable here now."""
    from edgecl.backbones.bundled import bundled_available
    from edgecl.backbones.openclip import list_openclip_rows

    ok, why = bundled_available()
    rows = [
        {
            "id": BUNDLED,
            "description": "EfficientNet-Lite0 image tower + MiniLM-L6 text tower + ridge bridge (offline)",
            "needs_download": False,
            "available": ok,
            "note": why,
        }
    ]
    return rows + list_openclip_rows()
