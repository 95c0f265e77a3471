"""What a backbone builder hands to export: frozen torch towers plus everything the runtime needs beside them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.preprocess import PreprocessSpec


@dataclass
class BuiltBackbone:
    """Frozen torch towers of one backbone. Towers return unit-norm embeddings."""

    backbone_id: str
    image_tower: Any  # torch.nn.Module: (N, 3, S, S) f32 -> (N, D) f32 unit norm
    text_tower: Any  # torch.nn.Module: token inputs -> (N, Dt) f32 unit norm
    text_input_names: tuple[str, ...]
    tokenize: Callable[[Sequence[str]], dict[str, np.ndarray]]  # numpy token inputs for the text tower
    preprocess: PreprocessSpec
    tokenizer_spec: dict[str, Any]  # written to the manifest; "file" names a file in tokenizer_files
    tokenizer_files: dict[str, Path]  # name in the model dir -> source file to copy
    embed_dim: int
    image_arch: str  # "conv" or "transformer": selects the quantisation candidates
    bridge: np.ndarray | None = None  # (Dt, D) f32: text embedding = normalize(text_tower(x) @ bridge)
    notes: dict[str, Any] = field(default_factory=dict)
