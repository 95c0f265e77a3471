"""Calibration and evaluation inputs for quantisation: real images and prompts, split so they never overlap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecl import datasets
from edgecl.preprocess import ImageLike, PreprocessSpec, preprocess_batch
from edgecl.prompts import DEFAULT_PROMPT
from edgecl.tasks import list_images

N_DIGIT_LIKE = 48
N_EVALUATE = {1: 500, 2: N_DIGIT_LIKE}  # evaluation images per data set; Fashion-MNIST's also measure agreement
AGREEMENT_SOURCE, AGREEMENT_CLASSES = 1, slice(10, 20)  # Fashion-MNIST rows, scored against its class prompts
EVAL_PROMPT_NAMES = (
    "cat", "dog", "coffee mug", "rocket", "car", "tree", "flower", "building", "person", "shoe",
    "T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip


def _default_images() -> tuple[list[ImageLike], list[ImageLike], list[int]]:
    """Calibration and evaluation image lists from the offline photos and Fashion-MNIST / MNIST, and the source
    (0 photos, 1, 2, ...: each data set) of every evaluation image."""
    photos: list[ImageLike] = list(datasets.sample_photo_paths())
    calib, evaluate = photos[0::2], photos[1::2]
    sources = [0] * len(evaluate)
    for source, loader in enumerate((datasets.fashion_mnist, datasets.mnist), 1):
        try:
            train, _ = loader("train")
            test, _ = loader("test")
        except datasets.DatasetUnavailableError:
            continue
        calib += list(train[:N_DIGIT_LIKE])
        evaluate += list(test[: N_EVALUATE[source]])
        sources += [source] * len(test[: N_EVALUATE[source]])
    if not calib:
        rng = np.random.default_rng(0)  # last resort: smooth random images, documented in the manifest
        calib = [rng.random((64, 64, 3)).astype(np.float32) for _ in range(16)]
        evaluate = [rng.random((64, 64, 3)).astype(np.float32) for _ in range(16)]
        sources = [0] * 16
    return calib, evaluate, sources


def calibration_sets(
    spec: PreprocessSpec, calibration_dir: Path | None
) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
    """(calibration pixels, evaluation pixels, description, (N,) source of each evaluation image). A user folder
    replaces the default sets."""
    calib, evaluate, sources = _default_images()
    source = "offline sample photos + Fashion-MNIST/MNIST train (calibration), disjoint test images (evaluation)"
    if calibration_dir is not None:
        user = list_images(calibration_dir)
        calib = list(user[0::2]) or calib
        sources = [0] * len(user[1::2]) if user[1::2] else sources
        evaluate = list(user[1::2]) or evaluate
        source = f"user folder {calibration_dir} (even files calibrate, odd files evaluate)"
    return preprocess_batch(calib, spec), preprocess_batch(evaluate, spec), source, np.array(sources)


def evaluation_prompts(templates: Sequence[str] = (DEFAULT_PROMPT,)) -> list[str]:
    return [t.format(name) for name in EVAL_PROMPT_NAMES for t in templates]
