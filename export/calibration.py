"""Calibration and evaluation inputs for quantisation: real images and prompts, split so they never overlap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecl import datasets
from edgecl.preprocess import ImageLike, PreprocessSpec, preprocess_batch
from edgecl.tasks import list_images

N_DIGIT_LIKE = 48
EVAL_PROMPT_NAMES = (
    "cat", "dog", "coffee mug", "rocket", "car", "tree", "flower", "building", "person", "shoe",
    "T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip


def _default_images() -> tuple[list[ImageLike], list[ImageLike]]:
    """Calibration and evaluation image lists from the offline photos and Fashion-MNIST / MNIST."""
    photos: list[ImageLike] = list(datasets.sample_photo_paths())
    calib, evaluate = photos[0::2], photos[1::2]
    for loader in (datasets.fashion_mnist, datasets.mnist):
        try:
            train, _ = loader("train")
            test, _ = loader("test")
        except datasets.DatasetUnavailableError:
            continue
        calib += list(train[:N_DIGIT_LIKE])
        evaluate += list(test[:N_DIGIT_LIKE])
    if not calib:
        rng = np.random.default_rng(0)  # last resort: smooth random images, documented in the manifest
        calib = [rng.random((64, 64, 3)).astype(np.float32) for _ in range(16)]
        evaluate = [rng.random((64, 64, 3)).astype(np.float32) for _ in range(16)]
    return calib, evaluate


def calibration_sets(spec: PreprocessSpec, calibration_dir: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration pixels, evaluation pixels, description). A user folder replaces the default calibration set."""
    calib, evaluate = _default_images()
    source = "offline sample photos + Fashion-MNIST/MNIST train (calibration), disjoint test images (evaluation)"
    if calibration_dir is not None:
        user = list_images(calibration_dir)
        calib = list(user[0::2]) or calib
        evaluate = list(user[1::2]) or evaluate
        source = f"user folder {calibration_dir} (even files calibrate, odd files evaluate)"
    return preprocess_batch(calib, spec), preprocess_batch(evaluate, spec), source


def evaluation_prompts(templates: Sequence[str] = ("a photo of a {}.",)) -> list[str]:
    return [t.format(name) for name in EVAL_PROMPT_NAMES for t in templates]
