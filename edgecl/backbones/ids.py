"""Backbone ids: "openclip:<arch>[:<pretrained tag | checkpoint path>]" and "bundled", parsed without building."""

from __future__ import annotations

from dataclasses import dataclass

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
            raise BackboneUnavailableError(f"backbone 'openclip:' needs an architecture and weights, e.g. "
                                           f"{DEFAULT_ONLINE_BACKBONE}")  # fmt: skip
        return BackboneRef("openclip", arch, weights)
    raise BackboneUnavailableError(
        f"unknown backbone {backbone_id!r}; use 'bundled' (offline) or "
        f"'openclip:<arch>[:<pretrained tag | checkpoint path>]', e.g. {DEFAULT_ONLINE_BACKBONE}"
    )
