"""open_clip backbones: any open_clip architecture, with a hub tag, a local checkpoint, or random weights."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from edgecl.backbones.base import BuiltBackbone
from edgecl.backbones.ids import BackboneRef
from edgecl.errors import BackboneUnavailableError
from edgecl.preprocess import PreprocessSpec

HUB_HOST = "huggingface.co"
PROBE_TIMEOUT_S = 4.0
OFFLINE_HINT = "use `--backbone bundled` (works offline) or `--backbone openclip:<arch>:/path/to/checkpoint.pt`"
RANDOM_SEED = 0
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def _hub_offline() -> bool:
    """Hugging Face's own reading of its offline switches (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


class HubProbe:
    """A TCP connect to the model hub in a background thread, started early so it overlaps the slow imports."""

    def __init__(self, host: str = HUB_HOST, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._result: list[bool] = []
        self._offline = _hub_offline()
        self._thread = threading.Thread(target=self._probe, args=(host,), daemon=True)  # getaddrinfo ignores timeouts
        if not self._offline:
            self._thread.start()

    def _probe(self, host: str) -> None:
        try:
            with socket.create_connection((host, 443), timeout=self.timeout_s):
                self._result.append(True)
        except OSError:
            self._result.append(False)

    def reachable(self) -> bool:
        """True when the host answered within the timeout (counted from the start); honours Hugging Face's offline
        settings (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE)."""
        if self._offline:
            return False
        self._thread.join(self.timeout_s)
        return bool(self._result and self._result[0])


def hub_reachable(host: str = HUB_HOST, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when `host` answers a TCP connect within timeout_s; honours Hugging Face's offline settings."""
    return HubProbe(host, timeout_s).reachable()


def _cached_hub_file(cfg: dict[str, Any]) -> str | None:
    """The locally cached weights file for a pretrained config, if a previous download left one."""
    hub = cfg.get("hf_hub", "")
    if not hub:
        return None
    from huggingface_hub import try_to_load_from_cache

    model_id, filename = os.path.split(hub)
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    for name in names:
        found = try_to_load_from_cache(model_id, name)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _register_config_file(open_clip: Any, arch: str) -> str:
    """An architecture given as a path to an open_clip model-config JSON is registered under its file stem."""
    if not arch.endswith(".json"):
        return arch
    path = Path(arch)
    if not path.is_file():
        raise BackboneUnavailableError(f"model config file not found: {arch}")
    open_clip.add_model_config(path)
    return path.stem


def _is_hub_tag(weights: str) -> bool:
    return weights not in ("", "random") and os.sep not in weights and not weights.endswith(_CHECKPOINT_SUFFIXES)


def _any_cached_openclip_weights() -> bool:
    """Whether the Hugging Face cache holds any open_clip weights file (else a hub tag cannot load offline)."""
    from huggingface_hub import constants

    home = Path(constants.HF_HUB_CACHE)
    if not home.is_dir():
        return False
    return any(home.glob("models--*/snapshots/*/open_clip_*"))


def _resolve_weights(open_clip: Any, ref: BackboneRef, probe: HubProbe) -> str | None:
    """None for random weights, else a local path or a hub tag that can be fetched now. Random weights without an
    explicit `:random` are said loudly: an id without a tag is an easy slip for the real CLIP."""
    if ref.weights in ("", "random"):
        if ref.weights == "":
            logging.getLogger("edgecl").warning(
                "%s names no weights, so it exports RANDOM weights (useless for classifying); for CLIP "
                "give a tag, e.g. %s:laion2b_s34b_b79k, or say %s:random to mean it", ref.canonical,
                ref.canonical, ref.canonical)  # fmt: skip
        return None
    if not _is_hub_tag(ref.weights):
        if not Path(ref.weights).is_file():
            raise BackboneUnavailableError(f"checkpoint file not found: {ref.weights}")
        return ref.weights
    tags = open_clip.list_pretrained_tags_by_model(Path(ref.arch).stem)
    if ref.weights not in tags:
        raise BackboneUnavailableError(
            f"unknown pretrained tag {ref.weights!r} for {ref.arch}; known: {', '.join(tags) or 'none'}"
            " (or give a path to a local checkpoint)"
        )
    cached = _cached_hub_file(open_clip.get_pretrained_cfg(ref.arch, ref.weights))
    if cached:
        return cached
    if not probe.reachable():
        raise BackboneUnavailableError(
            f"cannot download {ref.canonical}: no network access to the model hub; {OFFLINE_HINT}"
        )
    return ref.weights


def _tokenizer_parts(open_clip: Any, arch: str, context_length: int) -> tuple[dict[str, Any], dict[str, Path]]:
    tokenizer = open_clip.get_tokenizer(arch)
    if type(tokenizer).__name__ != "SimpleTokenizer":
        raise BackboneUnavailableError(
            f"{arch} uses a {type(tokenizer).__name__}; edgecl exports only CLIP-BPE text towers so far "
            "(e.g. ViT-B-32, ViT-B-16, ViT-L-14)"
        )
    import open_clip.tokenizer as tok_module

    vocab = Path(tok_module.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    spec = {"kind": "clip_bpe", "file": vocab.name, "context_length": context_length}
    return spec, {vocab.name: vocab}


def _preprocess_spec(cfg: dict[str, Any]) -> PreprocessSpec:
    """The image preprocessing an open_clip model was trained with (its preprocess config)."""
    size = cfg["size"] if isinstance(cfg["size"], int) else int(cfg["size"][0])
    return PreprocessSpec(
        size=size,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode="squash" if cfg.get("resize_mode") == "squash" else "shortest",
    )


def build_openclip(ref: BackboneRef) -> BuiltBackbone:
    """Build the frozen towers of an open_clip model."""
    probe = HubProbe()  # runs while open_clip and torch import (several seconds)
    if _is_hub_tag(ref.weights) and not _any_cached_openclip_weights() and not probe.reachable():
        # nothing to load offline: fail before the slow imports (the tag is not validated on this path)
        raise BackboneUnavailableError(
            f"cannot download {ref.canonical}: no network access to the model hub; {OFFLINE_HINT}"
        )
    import open_clip
    import torch

    from edgecl.backbones.towers import OpenClipImageTower, OpenClipTextTower

    arch = _register_config_file(open_clip, ref.arch)
    if arch not in open_clip.list_models():
        known = ", ".join(m for m in open_clip.list_models() if m.startswith("ViT-B"))
        raise BackboneUnavailableError(f"unknown open_clip architecture {ref.arch!r}; e.g. {known}")
    weights = _resolve_weights(open_clip, ref, probe)
    torch.manual_seed(RANDOM_SEED)  # random-weight models are deterministic, so exports are too
    try:
        model = open_clip.create_model(arch, pretrained=weights, device="cpu")
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise BackboneUnavailableError(f"could not load {ref.canonical}: {exc}") from exc
    model.eval()
    spec = _preprocess_spec(open_clip.get_model_preprocess_cfg(model))
    tok_spec, tok_files = _tokenizer_parts(open_clip, arch, int(model.context_length))
    from edgecl.text_tokenizers import ClipBpeTokenizer

    tokenize = ClipBpeTokenizer(next(iter(tok_files.values())), int(model.context_length))
    return BuiltBackbone(
        backbone_id=ref.canonical,
        image_tower=OpenClipImageTower(model).eval(),
        text_tower=OpenClipTextTower(model).eval(),
        text_input_names=("input_ids",),
        tokenize=tokenize,
        preprocess=spec,
        tokenizer_spec=tok_spec,
        tokenizer_files=tok_files,
        embed_dim=int(model.visual.output_dim),
        image_arch="transformer" if type(model.visual).__name__ == "VisionTransformer" else "conv",
        notes={"weights": "random" if weights is None else ref.weights},
    )


def list_openclip_rows() -> list[dict[str, Any]]:
    """A few well-known open_clip entries for `edgecl backbones` (any open_clip architecture works)."""
    rows = []
    for arch, tag in (
        ("ViT-B-32", "laion2b_s34b_b79k"),
        ("ViT-B-16", "laion2b_s34b_b88k"),
        ("ViT-L-14", "openai"),
    ):
        rows.append(
            {
                "id": f"openclip:{arch}:{tag}",
                "description": f"open_clip {arch}, pretrained weights '{tag}'",
                "needs_download": True,
                "available": None,
                "note": "downloads weights on first export; offline, pass a local checkpoint path instead",
            }
        )
    rows.append(
        {
            "id": "openclip:<arch>:/path/to/checkpoint.pt",
            "description": "any open_clip architecture with a local checkpoint (offline)",
            "needs_download": False,
            "available": None,
            "note": "",
        }
    )
    return rows


AUTO_NOTICE = ("no CLIP weights cached here and the model hub is unreachable: learning with the bundled offline "
               "backbone (far weaker zero-shot than CLIP); for CLIP, go online once or pass "
               "--backbone openclip:<arch>:/path/to/checkpoint.pt")  # fmt: skip


def clip_obtainable(ref: BackboneRef) -> bool:
    """Whether `ref`'s weights can be had now: a local checkpoint or random weights, cached hub weights of this very
    model (another model's cached weights do not count), or a hub that answers a short probe (HF_HUB_OFFLINE=1
    counts as no answer)."""
    if not _is_hub_tag(ref.weights):
        return True
    return _cached_weights_of(ref) or hub_reachable()


def _cached_weights_of(ref: BackboneRef) -> bool:
    """Whether the Hugging Face cache holds open_clip weights of `ref`'s (arch, tag). The cheap look at any cached
    weights comes first: only then is open_clip imported to map the tag to its hub repository."""
    if not _any_cached_openclip_weights():
        return False
    import open_clip

    return _cached_hub_file(open_clip.get_pretrained_cfg(ref.arch, ref.weights)) is not None
