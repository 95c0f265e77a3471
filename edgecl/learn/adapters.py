"""PEFT adapters over frozen embeddings: a zero-initialised residual head with LoRA (the `peft` library), saved
with `save_pretrained`, and merged into plain numpy arrays so that classification needs numpy only."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from edgecl.learn.configs import AdapterConfig
from edgecl.learn.merged import MergedHead

TARGET = "proj"


class ZeroLinear(nn.Linear):
    """A Linear whose weight and bias are zero and stay frozen: its output is zeros, produced without the (D, D)
    matrix product (which was about half of every training step). peft wraps it like any nn.Linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out) zeros, in autocast's dtype
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        return torch.zeros((*x.shape[:-1], self.out_features), dtype=dtype)


class ResidualHead(nn.Module):
    """z = normalize(e + proj(e)) with proj a frozen zero Linear: exactly the frozen embedding until LoRA learns."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = ZeroLinear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, e: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N, D) unit norm
        return nn.functional.normalize(e + self.proj(e), dim=-1)


def _peft() -> ModuleType:
    """peft, told that bitsandbytes is absent: peft imports bitsandbytes whenever it is installed (for 8- and 4-bit
    base layers, which a residual head over embeddings never has), and that import prints kernel warnings and takes
    seconds. The 8-bit optimizer (edgecl.learn.trainer.make_optimizer) imports bitsandbytes itself when a profile
    asks for it. A process that imported bitsandbytes before is left as it is."""
    if "peft" in sys.modules or "bitsandbytes" in sys.modules:
        import peft

        return peft
    sys.modules["bitsandbytes"] = None  # type: ignore[assignment]  # importlib's find_spec now answers None
    try:
        import peft
        from peft import import_utils

        for check in ("is_bnb_available", "is_bnb_4bit_available"):  # cached (lru_cache): False from here on
            getattr(import_utils, check, lambda: False)()  # a peft without them: bitsandbytes imported as before
    finally:
        del sys.modules["bitsandbytes"]
    return peft


def lora_head(dim: int, cfg: AdapterConfig, seed: int = 0) -> nn.Module:
    """A ResidualHead wrapped by peft.get_peft_model with LoRA on its projection (B = 0 at start)."""
    from edgecl.learn.trainer import torch_globals

    peft = _peft()
    config = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=[TARGET])
    with torch_globals(seed):  # the host process's torch RNG is left as it was
        return peft.get_peft_model(ResidualHead(dim), config)


def save_adapter(model: nn.Module, folder: Path) -> None:
    """peft's own format: adapter_config.json + adapter_model.safetensors."""
    model.save_pretrained(str(folder))  # type: ignore[operator]


def load_adapter(dim: int, folder: Path) -> nn.Module:
    return _peft().PeftModel.from_pretrained(ResidualHead(dim), str(folder))


@dataclass(frozen=True)
class LoraFactors:
    """What a lora_head's output is made of: z = normalize(e + scale * dropout(e) A^T B^T)."""

    a: torch.Tensor  # (r, D) peft's lora_A weight (a Parameter: gradients reach it)
    b: torch.Tensor  # (D, r) peft's lora_B weight
    scale: float
    dropout: nn.Module


def lora_factors(model: nn.Module) -> LoraFactors | None:
    """The LoRA factors of a lora_head (or one load_adapter gave); None for any other module."""
    layer = getattr(getattr(getattr(model, "base_model", None), "model", None), TARGET, None)
    if not isinstance(getattr(layer, "base_layer", None), ZeroLinear) or list(layer.lora_A) != ["default"]:
        return None
    return LoraFactors(layer.lora_A["default"].weight, layer.lora_B["default"].weight,
                       float(layer.scaling["default"]), layer.lora_dropout["default"])  # fmt: skip


def merge(model: nn.Module) -> MergedHead:
    """Fold LoRA's A, B and scaling into two arrays (the frozen base projection is zero)."""
    factors = lora_factors(model)
    assert factors is not None, "merge takes a lora_head"
    a, b = factors.a.detach().double(), factors.b.detach().double()  # (r, D), (D, r)
    return MergedHead(a.T.float().numpy().copy(), (b * factors.scale).T.float().numpy().copy())
