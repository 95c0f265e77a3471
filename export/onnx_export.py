"""Torch towers to fp32 ONNX graphs with a dynamic batch axis (and dynamic sequence axis for masked text)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from edgecl.backbones.base import BuiltBackbone
from edgecl.errors import ExportError

OPSET = 17
IMAGE_INPUT = "pixels"
OUTPUT = "embedding"


def _quiet_export(*args: object, **kwargs: object) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(*args, **kwargs)  # type: ignore[arg-type]
        except Exception as exc:  # the exporter raises many unrelated types
            raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc


def export_image_tower(backbone: BuiltBackbone, path: Path) -> None:
    size = backbone.preprocess.size
    dummy = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    _quiet_export(
        backbone.image_tower,
        (dummy,),
        str(path),
        input_names=[IMAGE_INPUT],
        output_names=[OUTPUT],
        dynamic_axes={IMAGE_INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def export_text_tower(backbone: BuiltBackbone, path: Path) -> None:
    feeds = backbone.tokenize(["a photo of a dog.", "a diagram of a very long and complicated thing."])
    inputs = tuple(torch.from_numpy(np.asarray(feeds[n])) for n in backbone.text_input_names)
    masked = "attention_mask" in backbone.text_input_names
    axes = {n: ({0: "batch", 1: "sequence"} if masked else {0: "batch"}) for n in backbone.text_input_names}
    _quiet_export(
        backbone.text_tower,
        inputs,
        str(path),
        input_names=list(backbone.text_input_names),
        output_names=[OUTPUT],
        dynamic_axes={**axes, OUTPUT: {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
