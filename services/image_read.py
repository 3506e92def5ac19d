"""Reading a still image with Pillow (any mode, EXIF orientation applied, HEIC where pillow-heif is installed) as
H×W×3 uint8 RGB; a damaged one, or one too large to decode, is refused."""

from __future__ import annotations

import math
import os
from pathlib import Path

import av
import numpy as np
from PIL import Image

from services.checks import NOT_REGULAR
from services.cli import UserError

PathLike = str | os.PathLike

MAX_IMAGE_PIXELS = 1 << 30  # the largest image read: 1,074 MP (3 GiB as RGB), 5× a 200 MP phone photo
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")  # ftyp brands of HEIF stills


class VideoError(UserError, ValueError):
    """A video (or image) that cannot be read or written; the message names the file and the problem."""


class ImageError(VideoError):
    """A file that is not a readable image."""


class DamagedImageError(ImageError):
    """A file that is an image, but cut off or corrupt, too large to decode, or one FFmpeg would read only in part:
    refused, never concealed."""


def not_a_file(p: Path) -> str | None:
    """Why `p` is no regular file to read (None: it is one)."""
    if p.is_file():
        return None
    if p.is_dir():
        return "is a directory, not a file"
    return NOT_REGULAR if p.exists() else "no such file"


def read_image(path: PathLike, max_pixels: int | None = None) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB, whatever its extension says (format sniffed from the bytes); one of more
    than `max_pixels` shrunk by a whole factor to at most that many as it is read (a JPEG decoded small: 1/2 … 1/8)."""
    from PIL import ImageOps, UnidentifiedImageError

    p = Path(path)
    if why := not_a_file(p):
        raise ImageError(f"{p}: {why}")
    Image.MAX_IMAGE_PIXELS = None  # checked here: PIL's 179 MP refused a 200 MP phone photo, and warned from 89 MP
    heif_plugin = _register_heif()
    try:
        img = Image.open(p)  # reads the header only
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if not heif_plugin and _tiled_heif(p):  # FFmpeg, read_source's fallback, decodes its first tile alone
            raise DamagedImageError(f"{p}: a HEIC/HEIF photo in tiles (as phones save them), which only pillow-heif "
                                    "reads whole: `pip install pillow-heif`, or convert it to JPEG or PNG") from None
        raise ImageError(f"{p}: not a readable image ({e})") from e
    if img.width * img.height > MAX_IMAGE_PIXELS:  # a few bytes that would decode to gigabytes
        img.close()
        raise DamagedImageError(f"{p}: image refused: {img.width}×{img.height} is {img.width * img.height / 1e6:,.0f} "
                                f"MP, above the {MAX_IMAGE_PIXELS / 1e6:,.0f} MP a source image may have (a "
                                "decompression bomb?)")
    sixteen_bit = img.mode.startswith("I;16")
    try:  # the format is known from here on: a failure is a damaged image (a truncated JPEG, …)
        with img:
            if max_pixels and img.width * img.height > max_pixels:  # before the turn, which copies the image whole
                factor = _factor(img, max_pixels)
                img.draft(img.mode, (img.width // factor, img.height // factor))
                img.load()
                if img.width * img.height > max_pixels:  # in a mode reduce takes, and not palette indices
                    img = img.convert(REDUCE_IN.get(img.mode, img.mode)).reduce(_factor(img, max_pixels))
            img = ImageOps.exif_transpose(img)  # the EXIF orientation (info kept by reduce)
            img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise DamagedImageError(f"{p}: damaged {img.format or ''} image ({e})".replace("  ", " ")) from e
    return _to_rgb8(img, p, sixteen_bit)


# modes Image.reduce refuses ("image has wrong mode"), or whose palette indices it would average: reduced as these
REDUCE_IN = {"1": "L", "P": "RGBA", "PA": "RGBA", "I;16": "I", "I;16B": "I", "I;16L": "I"}


def _factor(img, max_pixels: int) -> int:  # noqa: ANN001 - a PIL image
    """The whole factor that brings `img` to at most `max_pixels`."""
    return math.ceil(math.sqrt(img.width * img.height / max_pixels))


def _register_heif() -> bool:
    """Pillow opens HEIC/HEIF photos (iPhones' default) where pillow-heif is installed; whether it is."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()  # once: it checks itself
    return True


def _tiled_heif(path: Path) -> bool:
    """A HEIF file whose image FFmpeg sees as several streams: the tiles of a grid, which it does not join."""
    with path.open("rb") as f:
        head = f.read(32)
    if head[4:8] != b"ftyp" or not any(brand in head[8:32] for brand in HEIF_BRANDS):
        return False
    try:
        with av.open(f"file:{path}") as container:
            return len(container.streams.video) > 1
    except av.FFmpegError:
        return False


def _to_rgb8(img, path: Path, sixteen_bit: bool = False) -> np.ndarray:  # noqa: ANN001 - a PIL image
    """`sixteen_bit`: the file's pixels were 16-bit (white is 65535), whatever mode they were reduced in."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # high bit depth greyscale: scale, don't clip
        a = np.asarray(img, dtype=np.float64)
        if not np.isfinite(a).all():  # a float image: would cast to arbitrary grey levels
            raise DamagedImageError(f"{path}: {int((~np.isfinite(a)).sum())} of its {a.size} pixels are NaN or inf")
        if img.mode == "F" and a.max() <= 1.0:  # white: 1.0 in a float image of [0, 1]
            top = 1.0
        else:  # else the largest value of its depth
            top = 65535.0 if sixteen_bit or img.mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if img.mode in ("P", "PA", "LA", "La", "RGBa") or "A" in img.mode or "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":  # composite on white so transparent areas do not show arbitrary hidden colours
        a = np.asarray(img, dtype=np.float32)
        alpha = a[..., 3:4] / 255.0
        return (a[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.asarray(img.convert("RGB"))  # H×W×3 whatever the mode
