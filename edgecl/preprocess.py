"""Image loading and the preprocessing spec (resize, crop, normalise): numpy and PIL only, shared with export."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from edgecl.errors import ImageLoadError

ImageLike = str | Path | np.ndarray | Image.Image

# Images above this many pixels are refused before decoding (decompression-bomb guard, ~9.5k x 9.5k).
MAX_IMAGE_PIXELS = 89_478_485
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS_THREADS = 4  # at most; never more than the cores this process may use
PARALLEL_FROM = 8  # images per thread below which one thread does it all (one photo to classify: no pool)
_INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class PreprocessSpec:
    """How an RGB image becomes the tower's (3, size, size) float32 input."""

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"  # shortest side to `size`, then centre crop; "squash" resizes both sides
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"PreprocessSpec.size must be >= 8, got {self.size}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"PreprocessSpec.interpolation must be one of {sorted(_INTERPOLATIONS)}")
        if self.resize_mode not in ("shortest", "squash"):
            raise ValueError("PreprocessSpec.resize_mode must be 'shortest' or 'squash'")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("PreprocessSpec.mean and .std need 3 values each, std > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        return cls(
            size=int(data["size"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            interpolation=str(data.get("interpolation", "bicubic")),
            resize_mode=str(data.get("resize_mode", "shortest")),
            extra=dict(data.get("extra", {})),
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (palette, alpha, CMYK, 16-bit, float, 1-bit) to 8-bit RGB; alpha is composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGB" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_regular(path: Path) -> Any:
    """A binary file object, for regular files only (links to them too). Opened non-blocking and checked on the open
    descriptor, so a FIFO, socket or device can neither block the read nor slip in after a check."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise ImageLoadError(f"{path}: {kind}, not an image file; skipped (only regular files are read)")
    return os.fdopen(fd, "rb")


_HEIF = {"registered": False}


def _heif_opener() -> bool:
    """Teach Pillow HEIC/HEIF (pillow-heif; AVIF Pillow reads itself), once per process; True when this call did."""
    if _HEIF["registered"]:
        return False
    _HEIF["registered"] = True
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def load_image(path: str | Path) -> Image.Image:
    """Open, fully decode and orient an image file as RGB; any failure is an ImageLoadError naming the file. HEIC
    is read by its suffix, or when Pillow alone cannot tell the file (a HEIC photo named .jpg, an upload)."""
    path = Path(path)
    if path.suffix.lower() in (".heic", ".heif"):
        _heif_opener()
    try:
        try:
            return _decoded(path)
        except Image.UnidentifiedImageError:
            if not _heif_opener():
                raise
            return _decoded(path)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's own, at twice our limit
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "its size"
        raise ImageLoadError(f"{path}: refused as a decompression bomb ({size}, above the {MAX_IMAGE_PIXELS:,}-pixel "
                             "safety limit); downscale it first") from exc  # fmt: skip
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{path}: no such file") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path}: not a readable image (not a format edgecl reads, or damaged)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


def _decoded(path: Path) -> Image.Image:
    # The pixel limit is checked here, before decoding, rather than by turning Pillow's DecompressionBombWarning
    # into an error: warnings.catch_warnings swaps process-wide filters, which threads decoding at once would undo.
    with open_regular(path) as handle, Image.open(handle) as img:
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise ImageLoadError(
                f"{path}: refused as a decompression bomb ({img.width}x{img.height} pixels, above the "
                f"{MAX_IMAGE_PIXELS:,}-pixel safety limit); downscale it first"
            )
        img.draft("RGB", (1024, 1024))  # JPEG: decode at reduced size when huge
        img.seek(0)  # first frame of GIF / multi-page TIFF
        img.load()
        oriented = ImageOps.exif_transpose(img)
        return to_rgb(oriented if oriented is not None else img)


def _as_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_pil(image)
    return load_image(image)


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    """(H, W), (H, W, 1|3|4) uint8, or float in [0, 1], to an RGB image."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageLoadError(f"image array must be (H, W) or (H, W, 3|4), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return to_rgb(Image.fromarray(arr))


def _resize_and_crop(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    resample = _INTERPOLATIONS[spec.interpolation]
    if spec.resize_mode == "squash":
        return image.resize((spec.size, spec.size), resample)
    w, h = image.size
    scale = spec.size / min(w, h)
    new_w, new_h = max(spec.size, round(w * scale)), max(spec.size, round(h * scale))
    image = image.resize((new_w, new_h), resample)
    left, top = (new_w - spec.size) // 2, (new_h - spec.size) // 2
    return image.crop((left, top, left + spec.size, top + spec.size))


def preprocess(image: ImageLike, spec: PreprocessSpec) -> np.ndarray:
    """One image to the tower's input. Returns (3, size, size) float32."""
    rgb = _resize_and_crop(_as_pil(image), spec)
    arr = np.asarray(rgb, dtype=np.float32) / 255.0  # (H, W, 3) in [0, 1]
    arr = (arr - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def preprocess_batch(images: Sequence[ImageLike], spec: PreprocessSpec) -> np.ndarray:
    """Returns (N, 3, size, size) float32. Decoding and resizing run on up to PREPROCESS_THREADS threads (Pillow
    and numpy release the GIL for both); the first image that fails raises, as one at a time would."""
    out = np.empty((len(images), 3, spec.size, spec.size), np.float32)

    def fill(index: int) -> None:
        out[index] = preprocess(images[index], spec)

    threads = min(PREPROCESS_THREADS, _usable_cores(), len(images) // PARALLEL_FROM)
    if threads < 2:
        for index in range(len(images)):
            fill(index)
        return out
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads, thread_name_prefix="edgecl-preprocess")
    try:
        list(pool.map(fill, range(len(images))))
    finally:  # a failed image or Ctrl-C: the queued images are dropped, not decoded first
        pool.shutdown(wait=True, cancel_futures=True)
    return out
