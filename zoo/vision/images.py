"""Turn image files and bytes into RGB pixel arrays, the same way everywhere.

Fine-tuning, `zoo predict` and the server all decode through here, so a model sees
the same pixels in training and in serving: Pillow decodes JPEG, PNG, BMP, GIF and
WebP; EXIF orientation is applied; grey, palette and RGBA images become RGB; the
result is resized to the model's input size. Pillow releases the GIL while decoding,
so callers can decode in threads.

Only those five formats are ever decoded (`Image.open(..., formats=...)`): Pillow knows
dozens more, each one more parser for hostile bytes to reach, and its EPS plugin runs
Ghostscript. TIFF, PPM, EPS and the rest are refused with a message naming the formats
that are accepted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.errors import InvalidInputError
from zoo.vision import DECODE_BYTES_PER_PIXEL, DEFAULT_MAX_PIXELS, MAX_DECODE_BYTES_PER_PIXEL

# The one list of accepted formats: Pillow's format name -> file suffixes.
FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg"),
    "PNG": (".png",),
    "BMP": (".bmp",),
    "GIF": (".gif",),
    "WEBP": (".webp",),
}
IMAGE_SUFFIXES = {suffix for suffixes in FORMATS.values() for suffix in suffixes}
FORMAT_NAMES = "JPEG, PNG, BMP, GIF or WebP"


def _open(source: str | Path | bytes | BinaryIO, max_pixels: int) -> Image.Image:
    name = source if isinstance(source, (str, Path)) else "image"
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source,
                           formats=tuple(FORMATS))
    except FileNotFoundError:
        raise InvalidInputError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise InvalidInputError(
            f"{name}: not a readable image: not {FORMAT_NAMES} (other formats, such as TIFF, "
            "PPM or EPS, are not accepted); convert it to one of those"
        ) from None
    except OSError as e:
        raise InvalidInputError(
            f"{name}: not a readable image ({FORMAT_NAMES} expected): {e}"
        ) from None
    except Image.DecompressionBombError as e:  # Pillow's own limit, checked from the header
        raise InvalidInputError(
            f"{name}: too many pixels, over the limit of {max_pixels:,} ({e}); resize it first"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}; resize it first"
        )
    return image


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, before any pixel is decoded."""

    width: int
    height: int
    alpha: bool  # decoding composites it on white: twice the memory

    @property
    def decode_bytes(self) -> int:
        """About the peak memory `decode` takes for it (zoo.vision's measured bytes a pixel)."""
        per_pixel = MAX_DECODE_BYTES_PER_PIXEL if self.alpha else DECODE_BYTES_PER_PIXEL
        return self.width * self.height * per_pixel


def read_header(source: str | Path | bytes | BinaryIO, *,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """The image's size from its header, with the format and pixel limits checked, and
    nothing decoded: what a server needs to budget memory before it decodes."""
    image = _open(source, max_pixels)
    try:
        alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        return ImageHeader(image.width, image.height, alpha)
    finally:
        image.close()


def decode(
    source: str | Path | bytes | BinaryIO,
    size: tuple[int, int] | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array, resized to `size` = (height, width) when given."""
    image = _open(source, max_pixels)
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                # Composite on white rather than dropping alpha into black backgrounds.
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, rgba)
            image = image.convert("RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        name = source if isinstance(source, (str, Path)) else "image"
        raise InvalidInputError(f"{name}: the image data is corrupt or truncated: {e}") from None


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
