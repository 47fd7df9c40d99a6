"""First frames for image-to-video models: reading an image file safely, a clip's first frame as an
image, and what the model's pipeline does to an image of another size.

Images are user input: a file is checked (a regular file, at most ``MAX_IMAGE_BYTES``) and probed by
Pillow from its header before any pixel is decoded; only PNG, JPEG, WebP and BMP are read, at most
``MAX_IMAGE_PIXELS`` pixels (Pillow's own decompression-bomb limit is not relied on), and animated
files are refused. Anything else is one :class:`ImageError` line naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MotionlibError

__all__ = ["ImageError", "FirstFrame", "read_first_frame", "first_frame_from_bytes", "load_image", "image_from_bytes", "first_frame", "fit_note", "preview_png",
           "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "FORMATS"]

MAX_IMAGE_BYTES = 64 * 1024 * 1024  # the web app's upload limit for clips is of this order
MAX_IMAGE_PIXELS = 8192 * 8192
FORMATS = ("PNG", "JPEG", "WEBP", "BMP")


class ImageError(MotionlibError, ValueError):
    """An image motionlib cannot use as a first frame (names the file and why)."""


def _decode(source: Any, label: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source, formats=list(FORMATS)) as im:  # reads the header only
            if im.format not in FORMATS:
                raise ImageError(f"{label} is a {im.format} image; motionlib reads {', '.join(FORMATS)}")
            w, h = im.size
            if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
                raise ImageError(f"{label} is {w}x{h} pixels; motionlib reads images of at most "
                                 f"{MAX_IMAGE_PIXELS:,} pixels")
            frames = int(getattr(im, "n_frames", 1))
            if frames > 1:
                raise ImageError(f"{label} holds {frames} frames; give one still image")
            im.load()
            return im.convert("RGB")
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        why = (str(e).strip() or type(e).__name__).splitlines()[0]
        if isinstance(e, UnidentifiedImageError):
            why = f"not a {', '.join(FORMATS)} image"
        raise ImageError(f"{label} cannot be read as an image: {why}") from None


@dataclass(frozen=True)
class FirstFrame:
    """A first frame given by a user: the decoded RGB image and the sha256 of the bytes it came from."""

    image: Any  # PIL.Image.Image
    sha256: str

    def preview(self) -> bytes:
        return preview_png(self.image)


def read_first_frame(path: str | os.PathLike) -> FirstFrame:
    """``load_image`` plus the file's sha256 (what a render records of its image)."""
    import hashlib

    image = load_image(path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return FirstFrame(image, digest)


def first_frame_from_bytes(data: bytes, label: str = "the upload") -> FirstFrame:
    """``image_from_bytes`` plus the bytes' sha256 (an upload)."""
    import hashlib

    return FirstFrame(image_from_bytes(data, label), hashlib.sha256(data).hexdigest())


def load_image(path: str | os.PathLike):
    """The RGB PIL image in the file `path`, or an ImageError naming it."""
    p = Path(path)
    label = str(p)
    if not p.is_file():
        raise ImageError(f"{label} is not a file" if p.exists() else f"{label} does not exist")
    size = p.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"{label} is {size:,} bytes; images of at most {MAX_IMAGE_BYTES:,} bytes are read")
    with open(p, "rb") as f:
        return _decode(f, label)


def image_from_bytes(data: bytes, label: str = "the upload"):
    """The RGB PIL image held in `data` (an upload), or an ImageError."""
    import io

    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{label} is {len(data):,} bytes; images of at most {MAX_IMAGE_BYTES:,} bytes are read")
    return _decode(io.BytesIO(data), label)


def first_frame(video):
    """The first frame of a clip tensor [F, 3, H, W] in [-1, 1] (``read_video``'s) as an RGB PIL image."""
    import torch
    from PIL import Image

    frame = ((video[0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


PREVIEW_SIZE = 96  # pixels on the long side of a render's first-frame preview (the catalogue's record)


def preview_png(image, size: int = PREVIEW_SIZE) -> bytes:
    """A small PNG of `image` (a PIL image; at most `size` pixels on its long side), the same bytes for the
    same image: what a render's record keeps of its first frame."""
    import io

    from PIL import Image

    small = image.convert("RGB")
    small.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def fit_note(image, spec) -> str | None:
    """What the model's image-to-video pipeline does to `image` (a PIL image), in words, or None when it
    already has the model's size: the diffusers pipelines resize the first frame to height x width
    without keeping its aspect ratio (and Wan's CLIP encoder sees a centre crop of its own)."""
    w, h = image.size
    if (w, h) == (spec.width, spec.height):
        return None
    same_ratio = w * spec.height == h * spec.width
    how = "resized" if same_ratio else "stretched (aspect ratio not kept)"
    return (f"the image is {w}x{h}; {spec.name} takes {spec.width}x{spec.height}: it is {how} to that size, "
            f"as the model's diffusers pipeline does")
