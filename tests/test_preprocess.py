"""Image loading copes with every common mode and refuses broken files with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecl.errors import ImageLoadError
from edgecl.preprocess import PreprocessSpec, load_image, preprocess, preprocess_batch

SPEC = PreprocessSpec(size=32)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).convert(mode)
    suffix = ".tiff" if mode in ("I;16", "I", "F", "CMYK") else ".png"
    path = tmp_path / f"x{suffix}"
    img.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (50, 40)
    out = preprocess(path, SPEC)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32 and np.isfinite(out).all()


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    r, g, b = load_image(tmp_path / "a.gif").getpixel((5, 5))
    assert r > 200 and b < 50


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert load_image(tmp_path / "t.png").getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize(
    "name,content",
    [("empty.jpg", b""), ("text.png", b"hello, not an image"), ("trunc.png", None)],
)
def test_broken_files_raise_image_load_error(tmp_path: Path, name: str, content: bytes | None) -> None:
    path = tmp_path / name
    if content is None:
        Image.new("RGB", (64, 64), "green").save(path)
        content = path.read_bytes()[:60]
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=name):
        load_image(path)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)  # 144 Mpx, tiny on disk
    with pytest.raises(ImageLoadError, match="bomb.png"):
        load_image(path)


def test_arrays_and_grey_digits(tmp_path: Path) -> None:
    digit = np.zeros((28, 28), np.uint8)
    digit[10:18, 12:16] = 255
    batch = preprocess_batch([digit, np.ones((30, 40, 3), np.float32)], SPEC)
    assert batch.shape == (2, 3, 32, 32)
    assert np.allclose(batch[0][0], batch[0][1], atol=0.2)  # grey stays grey across channels
