"""Image loading copes with every common mode and refuses broken files with a clear error."""

from __future__ import annotations

import re
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
    """One message with the product's limit, below and above twice it (where Pillow refuses by itself)."""
    for side, size in ((12000, "12000x12000 pixels"), (20000, "400,000,000 pixels")):  # 144 / 400 Mpx, tiny on disk
        path = tmp_path / f"bomb{side}.png"
        Image.new("1", (side, side)).save(path)
        expected = f"{path.name}: refused as a decompression bomb ({size}, above the 89,478,485-pixel safety limit)"
        with pytest.raises(ImageLoadError, match=re.escape(expected)):
            load_image(path)


def test_arrays_and_grey_digits(tmp_path: Path) -> None:
    digit = np.zeros((28, 28), np.uint8)
    digit[10:18, 12:16] = 255
    batch = preprocess_batch([digit, np.ones((30, 40, 3), np.float32)], SPEC)
    assert batch.shape == (2, 3, 32, 32)
    assert np.allclose(batch[0][0], batch[0][1], atol=0.2)  # grey stays grey across channels


@pytest.mark.parametrize("suffix", [".heic", ".HEIF", ".avif"])
def test_phone_formats_are_read(tmp_path: Path, suffix: str) -> None:
    """HEIC/HEIF (the iPhone default, through pillow-heif) and AVIF (Pillow itself) read like any photo."""
    from pillow_heif import register_heif_opener

    from edgecl.tasks import is_image_name

    register_heif_opener()  # to write the file; edgecl registers it itself when it reads one
    path = tmp_path / f"photo{suffix}"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path, format="HEIF" if "hei" in suffix.lower() else "AVIF")
    image = load_image(path)
    assert is_image_name(path) and image.size == (64, 48) and image.mode == "RGB"
    red, green, _ = image.getpixel((32, 24))
    assert red > 150 and green < 80
    if "hei" in suffix.lower():  # a HEIC photo under another name (an upload, a phone's export) reads too
        renamed = path.rename(tmp_path / "photo.jpg")
        assert load_image(renamed).size == (64, 48)


def test_an_exif_rotated_jpeg_is_read_upright(tmp_path: Path) -> None:
    """A phone stores a portrait photo landscape with EXIF Orientation 6 (rotate 90° clockwise to view)."""
    stored = Image.new("RGB", (60, 40), (0, 0, 0))
    stored.paste((255, 255, 255), (0, 0, 30, 40))  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "p.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "p.jpg")
    assert upright.size == (40, 60)  # portrait
    top, bottom = upright.getpixel((20, 5)), upright.getpixel((20, 55))
    assert top[0] > 200 and bottom[0] < 50  # the stored left half is on top once turned upright


def test_a_batch_on_threads_equals_one_image_at_a_time_and_the_first_broken_file_raises(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(40):  # enough images for the thread pool (PARALLEL_FROM per thread), of several sizes
        path = tmp_path / f"{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (20 + i, 30 + 2 * i, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    batch = preprocess_batch(paths, SPEC)
    assert np.array_equal(batch, np.stack([preprocess(p, SPEC) for p in paths]))
    (tmp_path / "20.png").write_bytes(b"not an image")
    (tmp_path / "30.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="20.png"):  # the first in order, as one at a time would say
        preprocess_batch(paths, SPEC)
