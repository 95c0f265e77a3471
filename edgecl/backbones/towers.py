"""Torch modules wrapping each backbone's towers so that ONNX export sees one input -> unit-norm embedding."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class OpenClipImageTower(nn.Module):
    """(N, 3, S, S) f32 -> (N, D) f32 unit norm."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(pixels), dim=-1)


class OpenClipTextTower(nn.Module):
    """(N, L) int64 token ids -> (N, D) f32 unit norm."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_text(input_ids), dim=-1)


class PooledConvImageTower(nn.Module):
    """A conv net's final feature map, average-pooled: (N, 3, S, S) f32 -> (N, C) f32 unit norm."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.extract_features(pixels).mean(dim=(2, 3)), dim=-1)


class MeanPooledTextTower(nn.Module):
    """A BERT-style encoder, masked mean pooling: ids, mask (N, L) int64 -> (N, H) f32 unit norm."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (N, L, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)
