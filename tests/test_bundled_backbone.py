"""The bundled offline backbone: INT8 towers agree with fp32 on >= 500 real Fashion-MNIST test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecl.datasets import FASHION_MNIST_CLASSES, fashion_mnist
from edgecl.encoder import Encoder
from edgecl.vectors import row_cosines

N_IMAGES = 500


@pytest.fixture(scope="module")
def fashion_test() -> tuple[np.ndarray, np.ndarray]:
    images, labels = fashion_mnist("test")  # missing offline data fails the suite (`make install` installs it)
    pick = np.random.default_rng(0).choice(len(images), N_IMAGES, replace=False)
    return images[pick], labels[pick]


def test_int8_agrees_with_fp32_on_fashion_mnist(bundled_export: Path, fashion_test: tuple) -> None:
    images, labels = fashion_test
    fp32, int8 = Encoder(bundled_export, precision="fp32"), Encoder(bundled_export)
    img32, img8 = fp32.encode_images(list(images)), int8.encode_images(list(images))
    assert row_cosines(img32, img8).mean() >= 0.99
    txt32, txt8 = (
        fp32.encode_labels(list(FASHION_MNIST_CLASSES)),
        int8.encode_labels(list(FASHION_MNIST_CLASSES)),
    )
    pred32, pred8 = (img32 @ txt32.T).argmax(1), (img8 @ txt8.T).argmax(1)
    agreement = float((pred32 == pred8).mean())
    assert agreement >= 0.97, f"zero-shot top-1 agreement {agreement:.3f}"
    assert (pred32 == labels).mean() > 0.15  # weak but far above chance (10%): the bridge carries meaning


def test_manifest_records_measured_agreement(bundled_export: Path) -> None:
    enc = Encoder(bundled_export)
    data = enc.manifest.data
    assert data["backbone"] == "bundled" and data["embed_dim"] == 1280
    assert data["bridge"]["shape"] == [384, 1280] and data["tokenizer"]["kind"] == "hf_json"
    for tower in ("image", "text"):
        quant = data["towers"][tower]["quantization"]
        assert quant["meets_target"] and quant["cosine_target"] >= 0.99
        assert quant["meets_agreement_target"] and quant["agreement"] >= quant["agreement_target"] >= 0.97


def test_the_text_tower_stores_its_weights_in_int8(bundled_export: Path) -> None:
    """The word-embedding table and every projection are 8-bit on every CPU (docs/quantisation.md): the
    text tower and the side files take < 26 MB of the model directory (they took 82 MB with an fp32 table); the
    image tower's share depends on the recipe this CPU needs (3.8-8.4 MB)."""
    import onnx

    text = onnx.load(str(bundled_export / "text.int8.onnx"))
    large_fp32 = [i.name for i in text.graph.initializer if i.data_type == onnx.TensorProto.FLOAT
                  and int(np.prod(i.dims)) >= 256 * 384]  # fmt: skip
    assert not large_fp32
    side = sum((bundled_export / name).stat().st_size for name in ("text.int8.onnx", "bridge.npy", "tokenizer.json"))
    assert side < 26e6, side


def test_a_model_dir_under_home_may_be_written_with_a_tilde(bundled_export: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The README's Python API example: Encoder("~/.edgecl/models/bundled")."""
    (tmp_path / ".edgecl" / "models").mkdir(parents=True)
    (tmp_path / ".edgecl" / "models" / "bundled").symlink_to(bundled_export, target_is_directory=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    enc = Encoder("~/.edgecl/models/bundled")
    assert enc.embed_dim == 1280 and enc.encode_labels(["cat"]).shape == (1, 1280)


def test_prompts_embedded_by_length_equal_one_padded_batch() -> None:
    """The bridge's prompts go through the text tower one batch per token count: the same embeddings as one batch
    padded to the longest (the padding is masked), to float rounding."""
    import torch

    from edgecl.backbones.bundled import (
        BRIDGE_PROMPT,
        MINILM_MAX_LENGTH,
        _build_text_tower,
        embed_by_length,
        imagenet_class_names,
        minilm_dir,
    )
    from edgecl.text_tokenizers import HfJsonTokenizer

    folder = minilm_dir()
    tokens = HfJsonTokenizer(folder / "tokenizer.json", MINILM_MAX_LENGTH)(
        [BRIDGE_PROMPT.format(name) for name in imagenet_class_names()[::25]]
    )  # 40 prompts of several lengths
    assert len(set(tokens["attention_mask"].sum(axis=1))) > 3
    tower = _build_text_tower(folder)
    with torch.no_grad():
        padded = tower(**{k: torch.from_numpy(v) for k, v in tokens.items()}).numpy()
    np.testing.assert_allclose(embed_by_length(tower, tokens), padded, atol=1e-5)
