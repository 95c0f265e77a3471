"""Backbone registry: "openclip:<arch>[:<pretrained tag | checkpoint path>]" and "bundled"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgecl.errors import BackboneUnavailableError

BUNDLED = "bundled"
OPENCLIP_PREFIX = "openclip:"
DEFAULT_ONLINE_BACKBONE = "openclip:ViT-B-32:laion2b_s34b_b79k"


@dataclass(frozen=True)
class BackboneRef:
    """A parsed backbone id: family "bundled" or "openclip", with arch and weights for open_clip."""

    family: str
    arch: str = ""
    weights: str = ""  # pretrained tag, checkpoint path, or "" for random weights

    @property
    def canonical(self) -> str:
        if self.family == BUNDLED:
            return BUNDLED
        return OPENCLIP_PREFIX + self.arch + (f":{self.weights}" if self.weights else "")


def parse_backbone_id(backbone_id: str) -> BackboneRef:
    """Parse without building; an unknown family names the valid forms."""
    text = backbone_id.strip()
    if text == BUNDLED:
        return BackboneRef(BUNDLED)
    if text.startswith(OPENCLIP_PREFIX):
        rest = text[len(OPENCLIP_PREFIX) :]
        arch, _, weights = rest.partition(":")
        if not arch:
            raise BackboneUnavailableError("backbone 'openclip:' needs an architecture, e.g. openclip:ViT-B-32")
        return BackboneRef("openclip", arch, weights)
    raise BackboneUnavailableError(
        f"unknown backbone {backbone_id!r}; use 'bundled' (offline) or "
        f"'openclip:<arch>[:<pretrained tag | checkpoint path>]', e.g. {DEFAULT_ONLINE_BACKBONE}"
    )


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
