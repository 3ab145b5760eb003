"""Image decoding: every format, EXIF orientation, colour modes, decompression bombs, and
the formats that are refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from zoo.errors import InvalidInputError
from zoo.vision.images import FORMATS, IMAGE_SUFFIXES, decode

PHOTO = data.chelsea()  # a real photograph, 300 x 451


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "WEBP"])
def test_every_supported_format_decodes_to_rgb(fmt: str) -> None:
    pixels = decode(encoded(Image.fromarray(PHOTO), fmt), (64, 80))
    assert pixels.shape == (64, 80, 3) and pixels.dtype == np.uint8
    reference = np.asarray(Image.fromarray(PHOTO).resize((80, 64)), dtype=np.float32)
    assert np.abs(pixels.astype(np.float32) - reference).mean() < 25  # lossy formats differ a bit


def test_exif_orientation_is_applied() -> None:
    tall = Image.fromarray(PHOTO[:, :200])  # 300 high, 200 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    pixels = decode(encoded(tall, "JPEG", exif=exif.tobytes()))
    assert pixels.shape[:2] == (200, 300)


def test_grey_palette_and_alpha_become_rgb(tmp_path: Path) -> None:
    grey = decode(encoded(Image.fromarray(PHOTO).convert("L"), "PNG"))
    assert grey.shape == (300, 451, 3) and (grey[..., 0] == grey[..., 1]).all()
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)  # fully transparent
    assert (decode(encoded(Image.fromarray(rgba), "PNG")) == 255).all()  # on white, not black
    palette = Image.fromarray(PHOTO).convert("P")
    assert decode(encoded(palette, "GIF")).shape == (300, 451, 3)


@pytest.mark.parametrize("fmt", ["TIFF", "PPM", "EPS", "ICO", "TGA", "PCX", "SGI", "DDS"])
def test_formats_outside_the_documented_five_are_refused(fmt: str, tmp_path: Path,
                                                          monkeypatch) -> None:
    from PIL import EpsImagePlugin

    def ghostscript(*args, **kwargs):
        raise AssertionError("Pillow reached Ghostscript")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    data_ = encoded(Image.fromarray(PHOTO[:32, :32]), fmt)
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(data_)
    for source in (data_, path, io.BytesIO(data_)):
        with pytest.raises(InvalidInputError, match="not a readable image.*TIFF, PPM or EPS"):
            decode(source)


def test_one_list_of_formats() -> None:
    assert set(FORMATS) == {"JPEG", "PNG", "BMP", "GIF", "WEBP"}
    assert IMAGE_SUFFIXES == {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def test_bad_inputs_are_invalid_input(tmp_path: Path) -> None:
    jpeg = encoded(Image.fromarray(PHOTO), "JPEG")
    with pytest.raises(InvalidInputError, match="no such file"):
        decode(tmp_path / "missing.jpg")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        decode(b"")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        decode(b"GIF89a but not really")
    with pytest.raises(InvalidInputError, match="corrupt or truncated"):
        decode(jpeg[: len(jpeg) // 3])


def test_decompression_bomb_is_refused_from_the_header() -> None:
    # A 20000 x 20000 PNG of one colour compresses to a few hundred KB.
    bomb = encoded(Image.new("L", (20000, 20000)), "PNG")
    assert len(bomb) < 2_000_000
    with pytest.raises(InvalidInputError, match="over the limit"):
        decode(bomb)
    assert decode(encoded(Image.new("RGB", (50, 40)), "PNG"), max_pixels=2000).shape == (40, 50, 3)
