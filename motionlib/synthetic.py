"""Procedural clips with known motion, for tests and examples (deterministic; no downloads)."""

from __future__ import annotations

import numpy as np

from .errors import ParameterError


def texture(height: int, width: int, *, seed: int = 0, base: int = 90, contrast: int = 40) -> np.ndarray:
    """A seeded, smooth, low-contrast RGB texture (uint8 [H, W, 3]) so motion is visible yet not trivial."""
    rng = np.random.default_rng(seed)
    # Coarse noise upsampled with bilinear interpolation gives blobs, not salt-and-pepper (which codecs hate).
    ch, cw = max(2, height // 8 + 1), max(2, width // 8 + 1)
    coarse = rng.random((ch, cw, 3)).astype(np.float32)
    ys = np.linspace(0, ch - 1, height, dtype=np.float32)
    xs = np.linspace(0, cw - 1, width, dtype=np.float32)
    y0 = np.floor(ys).astype(int).clip(0, ch - 2)
    x0 = np.floor(xs).astype(int).clip(0, cw - 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    a = coarse[y0][:, x0]
    b = coarse[y0][:, x0 + 1]
    c = coarse[y0 + 1][:, x0]
    d = coarse[y0 + 1][:, x0 + 1]
    smooth = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
    img = base + contrast * (smooth - 0.5) * 2
    return np.clip(img, 0, 255).round().astype(np.uint8)


def moving_disc(
    num_frames: int = 16,
    height: int = 64,
    width: int = 96,
    *,
    velocity: tuple[float, float] = (2.0, 0.0),
    radius: float = 10,
    color: tuple[int, int, int] = (230, 40, 40),
    background: tuple[int, int, int] | str = (0, 0, 0),
    start: tuple[float, float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """A disc moving at constant ``velocity`` (dx, dy) px/frame; x points right, y points down.

    Returns uint8 [num_frames, height, width, 3]. ``background`` is an RGB colour or ``"texture"``
    (a static, seeded, low-contrast texture). ``start`` is the disc centre (x, y) in frame 0; by
    default it is chosen so the whole path is centred in the frame.
    """
    if num_frames < 1 or height < 1 or width < 1:
        raise ParameterError(f"num_frames, height and width must be >= 1, got {num_frames}, {height}, {width}")
    dx, dy = float(velocity[0]), float(velocity[1])
    if start is None:
        span = num_frames - 1
        start = ((width - 1) / 2 - dx * span / 2, (height - 1) / 2 - dy * span / 2)
    x0, y0 = float(start[0]), float(start[1])

    if isinstance(background, str):
        if background != "texture":
            raise ParameterError(f"background must be an RGB tuple or 'texture', got {background!r}")
        bg = texture(height, width, seed=seed)
    else:
        bg = np.empty((height, width, 3), np.uint8)
        bg[:] = np.asarray(background, np.uint8)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    col = np.asarray(color, np.float32)
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for k in range(num_frames):
        cx, cy = x0 + dx * k, y0 + dy * k
        dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        alpha = np.clip(radius + 0.5 - dist, 0.0, 1.0)[..., None]  # 1-px anti-aliased edge
        out[k] = (bg * (1 - alpha) + col * alpha).round().astype(np.uint8)
    return out
