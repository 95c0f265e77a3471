"""open_clip path: a tiny random config and a checkpoint saved by the test, exported and checked against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgecl.encoder import Encoder
from edgecl.export import ExportOptions, export_model
from edgecl.preprocess import preprocess_batch
from edgecl.vectors import row_cosines

PROMPTS = ["a photo of a cat.", "a photo of a rocket.", "a diagram.", "an astronaut on the moon", "coffee"]


def _torch_model(config: Path, checkpoint: Path | None = None) -> torch.nn.Module:
    import open_clip

    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model(config.stem, pretrained=str(checkpoint) if checkpoint else None)
    return model.eval()


def _torch_embeddings(model: torch.nn.Module, pixels: np.ndarray, prompts: list[str]) -> tuple[np.ndarray, ...]:
    import open_clip

    with torch.no_grad():
        img = model.encode_image(torch.from_numpy(pixels)).numpy()
        txt = model.encode_text(open_clip.get_tokenizer("ViT-B-32")(prompts)).numpy()
    return img, txt


def test_onnx_fp32_matches_torch_and_int8_matches_fp32(tiny_export: Path, tiny_config: Path, photos: list) -> None:
    fp32, int8 = Encoder(tiny_export, precision="fp32"), Encoder(tiny_export)
    pixels = preprocess_batch(photos, fp32.preprocess_spec)
    ref_img, ref_txt = _torch_embeddings(_torch_model(tiny_config), pixels, PROMPTS)
    assert row_cosines(fp32.encode_pixels(pixels), ref_img).min() >= 0.9999
    assert row_cosines(fp32.encode_texts(PROMPTS), ref_txt).min() >= 0.9999
    assert row_cosines(int8.encode_pixels(pixels), fp32.encode_pixels(pixels)).mean() >= 0.98
    assert row_cosines(int8.encode_texts(PROMPTS), fp32.encode_texts(PROMPTS)).mean() >= 0.98


def test_the_open_clip_text_tower_is_int8_too(tiny_export: Path) -> None:
    """The token-embedding table (49408 rows) is stored per-row INT8, as in the bundled text tower."""
    import onnx

    fp32 = {i.name: i for i in onnx.load(str(tiny_export / "text.fp32.onnx")).graph.initializer}
    int8 = {i.name: i for i in onnx.load(str(tiny_export / "text.int8.onnx")).graph.initializer}
    table = next(name for name, init in fp32.items() if init.dims[0] == 49408)
    assert table not in int8 and int8[f"{table}_i8"].data_type == onnx.TensorProto.INT8
    assert (tiny_export / "text.int8.onnx").stat().st_size < (tiny_export / "text.fp32.onnx").stat().st_size / 3


def test_local_checkpoint_is_loaded(tmp_path: Path, tiny_config: Path, photos: list) -> None:
    import open_clip

    open_clip.add_model_config(tiny_config)
    torch.manual_seed(1234)  # weights unlike the default random init, so loading them must show
    trained = open_clip.create_model(tiny_config.stem).eval()
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": trained.state_dict()}, ckpt)
    out = tmp_path / "from-ckpt"
    manifest = export_model(f"openclip:{tiny_config}:{ckpt}", out, ExportOptions(keep_fp32=True))
    assert manifest.data["weights"] == str(ckpt)
    enc = Encoder(out, precision="fp32")
    pixels = preprocess_batch(photos[:4], enc.preprocess_spec)
    ref_img, ref_txt = _torch_embeddings(trained, pixels, PROMPTS)
    assert row_cosines(enc.encode_pixels(pixels), ref_img).min() >= 0.9999
    assert row_cosines(enc.encode_texts(PROMPTS), ref_txt).min() >= 0.9999
    random_img, _ = _torch_embeddings(_torch_model(tiny_config), pixels, PROMPTS)
    assert row_cosines(enc.encode_pixels(pixels), random_img).mean() < 0.99


def test_missing_checkpoint_file_is_a_clear_error(tiny_config: Path, tmp_path: Path) -> None:
    from edgecl.errors import BackboneUnavailableError

    with pytest.raises(BackboneUnavailableError, match="checkpoint file not found"):
        export_model(f"openclip:{tiny_config}:{tmp_path / 'nope.pt'}", tmp_path / "out")
