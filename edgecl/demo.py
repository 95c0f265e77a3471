"""`edgecl demo`: the embedded default job, offline (for now: zero-shot classification of real sample photos)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.datasets import sample_photo_paths
from edgecl.encoder import Encoder
from edgecl.errors import EdgeclError
from edgecl.models import ensure_model

DEMO_NOTE = (
    "Zero-shot labels from the bundled offline backbone (EfficientNet-Lite0 + MiniLM bridge) over the 1000 "
    "ImageNet class names. Real CLIP weights (--backbone openclip:ViT-B-32:laion2b_s34b_b79k) give far better "
    "zero-shot accuracy."
)


def top_k_predictions(scores: np.ndarray, labels: list[str], k: int) -> list[dict[str, Any]]:
    """One row of cosine scores (C,) -> the k best labels with their scores, best first."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [{"label": labels[i], "score": round(float(scores[i]), 4)} for i in order]


def run_demo(model_dir: Path | None, top_k: int, progress: Callable[[str], None]) -> dict[str, Any]:
    manifest = ensure_model("bundled", model_dir, progress)
    photos = sample_photo_paths()
    if not photos:
        raise EdgeclError("no sample photos found; install scikit-image (`make install` does)")
    from edgecl.backbones.bundled import imagenet_class_names

    labels = imagenet_class_names()
    encoder = Encoder(manifest.root)
    progress("encoding 1000 class names")
    text = encoder.encode_labels(labels)  # (1000, D)
    progress(f"encoding {len(photos)} photos")
    images = encoder.encode_images(photos)  # (N, D)
    scores = images @ text.T
    rows = [
        {"image": str(p), "predictions": top_k_predictions(s, labels, top_k)}
        for p, s in zip(photos, scores, strict=False)
    ]
    return {"model_dir": str(manifest.root), "backbone": manifest.backbone, "photos": rows, "note": DEMO_NOTE}
