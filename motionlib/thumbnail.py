"""Pictures of a learnt motion: reference frames above their Attention Motion Flow (paper Fig. 8).

Displacements are drawn with the Middlebury optical-flow colour code (Baker et al., "A Database and
Evaluation Methodology for Optical Flow"): hue = direction, saturation = magnitude, zero = white.
Convention: x points right (column), y points down (row), exactly as in :mod:`motionlib.amf`.
With the standard wheel a rightward flow is red, leftward cyan-blue, upward violet, downward yellow.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from .fsutil import atomic_write

__all__ = ["flow_to_rgb", "wheel_legend", "amf_thumbnail", "amf_animation", "save_thumbnails",
           "thumbnail_layout"]

# Segment lengths of the standard 55-colour wheel: red-yellow, yellow-green, green-cyan,
# cyan-blue, blue-magenta, magenta-red.
RY, YG, GC, CB, BM, MR = 15, 6, 4, 11, 13, 6

BACKGROUND = (245, 245, 245)
TEXT = (40, 40, 40)
MARGIN = 6
LABEL_H = 14
MAX_CELL_SIDE = 256


def _make_colorwheel() -> np.ndarray:
    """[55, 3] float wheel in 0..255, built segment by segment as in the published code."""
    ncols = RY + YG + GC + CB + BM + MR
    wheel = np.zeros((ncols, 3), dtype=np.float64)
    col = 0
    ramp = lambda n: np.floor(255 * np.arange(n) / n)  # noqa: E731
    wheel[col:col + RY, 0] = 255
    wheel[col:col + RY, 1] = ramp(RY)
    col += RY
    wheel[col:col + YG, 0] = 255 - ramp(YG)
    wheel[col:col + YG, 1] = 255
    col += YG
    wheel[col:col + GC, 1] = 255
    wheel[col:col + GC, 2] = ramp(GC)
    col += GC
    wheel[col:col + CB, 1] = 255 - ramp(CB)
    wheel[col:col + CB, 2] = 255
    col += CB
    wheel[col:col + BM, 2] = 255
    wheel[col:col + BM, 0] = ramp(BM)
    col += BM
    wheel[col:col + MR, 2] = 255 - ramp(MR)
    wheel[col:col + MR, 0] = 255
    return wheel


COLORWHEEL = _make_colorwheel()


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code displacements ``[..., 2]`` (dx right, dy down) as ``uint8 [..., 3]``.

    Magnitudes are divided by ``max_magnitude`` (default: the largest magnitude in ``flow``), so a
    vector of that length is fully saturated; longer vectors (only possible with an explicit
    ``max_magnitude``) are darkened to 75 % as in the reference code. Zero flow is white; NaN counts
    as zero.
    """
    flow = np.nan_to_num(np.asarray(flow, dtype=np.float64))
    if flow.shape[-1] != 2:
        raise ValueError(f"flow must end in a (dx, dy) axis, got shape {flow.shape}")
    u, v = flow[..., 0], flow[..., 1]
    rad = np.sqrt(u * u + v * v)
    if max_magnitude is None:
        max_magnitude = float(rad.max()) if rad.size else 0.0
    if max_magnitude <= 0:
        max_magnitude = 1.0  # all-zero flow: everything white
    rad = rad / max_magnitude
    ncols = COLORWHEEL.shape[0]
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = np.clip(np.floor(fk).astype(np.int64), 0, ncols - 1)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = (1 - f) * COLORWHEEL[k0] / 255.0 + f * COLORWHEEL[k1] / 255.0
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    return np.floor(255 * np.clip(col, 0, 1)).astype(np.uint8)


def wheel_legend(size: int, background: tuple[int, int, int] = BACKGROUND) -> np.ndarray:
    """``uint8 [size, size, 3]`` disc: the pixel at offset (x, y) from the centre shows the colour
    of flow (x, y), white in the middle, fully saturated at the rim; ``background`` outside."""
    size = int(size)
    if size <= 0:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    radius = max(c, 0.5)
    flow = np.stack([(xs - c) / radius, (ys - c) / radius], axis=-1)
    img = flow_to_rgb(flow, max_magnitude=1.0)
    outside = np.hypot(flow[..., 0], flow[..., 1]) > 1
    img[outside] = background
    return img


# ----------------------------------------------------------------------------------------------
# helpers


def _to_numpy_amf(amf) -> np.ndarray:
    if hasattr(amf, "detach"):
        amf = amf.detach().float().cpu().numpy()
    amf = np.asarray(amf, dtype=np.float32)
    if amf.ndim != 4 or amf.shape[0] != amf.shape[1] or amf.shape[-1] != 2:
        raise ValueError(f"amf must be [F, F, S, 2], got {amf.shape}")
    return amf


def _to_uint8_frames(frames) -> np.ndarray:
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    if frames.dtype != np.uint8:
        f = frames.astype(np.float32)
        if f.size and f.max() <= 1.0:
            f = f * 255
        frames = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    return frames


def _frame_indices(num_video_frames: int, num_latent: int) -> np.ndarray:
    """One picture frame per latent frame, spread evenly over the video."""
    return np.rint(np.linspace(0, num_video_frames - 1, num_latent)).astype(np.int64)


def _column_indices(num_latent: int, max_columns: int) -> list[int]:
    if num_latent <= max_columns:
        return list(range(num_latent))
    idx = np.rint(np.linspace(0, num_latent - 1, max(max_columns, 1))).astype(np.int64)
    return sorted(set(int(i) for i in idx))


def _cell_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(height, width) <= max_side:
        return height, width
    s = max_side / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def _resize(img: np.ndarray, height: int, width: int, resample=Image.Resampling.BILINEAR) -> np.ndarray:
    if img.shape[:2] == (height, width):
        return img
    return np.asarray(Image.fromarray(img).resize((width, height), resample))


def _upsample_nearest(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour upsampling of [rows, cols, C]: each patch becomes a uniform block."""
    rows, cols = img.shape[:2]
    ri = np.minimum((np.arange(height) * rows) // height, rows - 1)
    ci = np.minimum((np.arange(width) * cols) // width, cols - 1)
    return img[ri][:, ci]


def _flow_maps(amf: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[F-1, rows, cols, 2]: displacement from latent frame i to i+1."""
    rows, cols = int(grid[0]), int(grid[1])
    f, _, s, _ = amf.shape
    if rows * cols != s:
        raise ValueError(f"grid {rows}x{cols} does not match S={s} patches")
    if f < 2:
        return np.zeros((0, rows, cols, 2), dtype=np.float32)
    i = np.arange(f - 1)
    return amf[i, i + 1].reshape(f - 1, rows, cols, 2)


def _shared_max(maps: np.ndarray) -> float:
    if maps.size == 0:
        return 1.0
    m = float(np.sqrt((maps.astype(np.float64) ** 2).sum(-1)).max())
    return m if m > 0 else 1.0


def thumbnail_layout(num_columns: int, cell_height: int, cell_width: int) -> dict:
    """Pixel boxes ``(left, top, right, bottom)`` of the thumbnail: ``frames[c]`` / ``flows[c]`` for
    column c (the flow slot of the last column holds the legend), and the total ``size`` (w, h)."""
    w = MARGIN + num_columns * (cell_width + MARGIN)
    h = MARGIN + 2 * (LABEL_H + cell_height + MARGIN)
    frames, flows = [], []
    for c in range(num_columns):
        x = MARGIN + c * (cell_width + MARGIN)
        y0 = MARGIN + LABEL_H
        y1 = y0 + cell_height + MARGIN + LABEL_H
        frames.append((x, y0, x + cell_width, y0 + cell_height))
        flows.append((x, y1, x + cell_width, y1 + cell_height))
    return {"size": (w, h), "frames": frames, "flows": flows}


def _legend_cell(height: int, width: int) -> np.ndarray:
    cell = np.empty((height, width, 3), dtype=np.uint8)
    cell[:] = BACKGROUND
    side = min(height, width)
    y, x = (height - side) // 2, (width - side) // 2
    cell[y:y + side, x:x + side] = wheel_legend(side)
    return cell


# ----------------------------------------------------------------------------------------------
# public pictures


def amf_thumbnail(frames, amf, grid: tuple[int, int], *, max_columns: int = 8,
                  max_cell_side: int | None = MAX_CELL_SIDE) -> Image.Image:
    """Reference frames (top row) above the AMF from latent frame i to i+1 (bottom row).

    ``frames``: ``uint8 [T, H, W, 3]``; one frame per latent frame is picked evenly from the T.
    ``amf``: ``[F, F, S, 2]`` (torch or numpy), ``grid`` = (rows, cols) with rows*cols == S.
    Every flow map uses one shared max magnitude (the largest consecutive displacement shown in the
    image) and is nearest-upsampled to the displayed frame size, so each patch is a flat block. The
    last column has no i -> i+1 flow and shows the colour-wheel legend instead. With more than
    ``max_columns`` latent frames, columns are subsampled evenly (first and last kept). Frames whose
    longer side exceeds ``max_cell_side`` are scaled down first (None: keep the frame size).
    The boxes of every cell are in ``image.info["layout"]`` (see :func:`thumbnail_layout`).
    """
    frames = _to_uint8_frames(frames)
    amf = _to_numpy_amf(amf)
    num_latent = amf.shape[0]
    maps = _flow_maps(amf, grid)
    columns = _column_indices(num_latent, max_columns)
    vmax = _shared_max(maps[[c for c in columns if c < num_latent - 1]]) if len(maps) else 1.0
    pick = _frame_indices(frames.shape[0], num_latent)
    ch, cw = _cell_size(frames.shape[1], frames.shape[2], max_cell_side)
    layout = thumbnail_layout(len(columns), ch, cw)
    canvas = Image.new("RGB", layout["size"], BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for c, i in enumerate(columns):
        fx, fy = layout["frames"][c][:2]
        canvas.paste(Image.fromarray(_resize(frames[pick[i]], ch, cw)), (fx, fy))
        draw.text((fx, fy - LABEL_H + 1), f"frame {i}", fill=TEXT)
        gx, gy = layout["flows"][c][:2]
        if i < num_latent - 1:
            cell = _upsample_nearest(flow_to_rgb(maps[i], vmax), ch, cw)
            label = f"{i}->{i + 1}"
        else:
            cell = _legend_cell(ch, cw)
            label = f"max {vmax:.3g} patch"
        canvas.paste(Image.fromarray(cell), (gx, gy))
        draw.text((gx, gy - LABEL_H + 1), label, fill=TEXT)
    canvas.info["layout"] = layout
    canvas.info["max_magnitude"] = vmax
    return canvas


def _atomic_save(image: Image.Image, path, **kwargs) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, **kwargs))


def amf_animation(frames, amf, grid: tuple[int, int], path, fps: float = 4, *,
                  max_cell_side: int | None = MAX_CELL_SIDE) -> str:
    """Animated GIF: for each latent frame i < F-1, the frame beside its flow map to frame i+1 and
    the legend (shared max magnitude). F-1 GIF frames (one still frame when F == 1). Written with
    ``fsutil.atomic_write``; returns the path."""
    frames = _to_uint8_frames(frames)
    amf = _to_numpy_amf(amf)
    num_latent = amf.shape[0]
    maps = _flow_maps(amf, grid)
    vmax = _shared_max(maps)
    pick = _frame_indices(frames.shape[0], num_latent)
    ch, cw = _cell_size(frames.shape[1], frames.shape[2], max_cell_side)
    legend = _legend_cell(ch, cw)
    layout = thumbnail_layout(3, ch, cw)
    width, _ = layout["size"]
    height = MARGIN + LABEL_H + ch + MARGIN
    steps = range(max(num_latent - 1, 1))
    pictures = []
    for i in steps:
        canvas = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        y = MARGIN + LABEL_H
        cells = [_resize(frames[pick[i]], ch, cw),
                 _upsample_nearest(flow_to_rgb(maps[i], vmax), ch, cw) if i < len(maps) else np.full_like(legend, 255),
                 legend]
        labels = [f"frame {i}", f"{i}->{i + 1}" if i < len(maps) else "no flow", f"max {vmax:.3g} patch"]
        for c, (cell, label) in enumerate(zip(cells, labels)):
            x = layout["frames"][c][0]
            canvas.paste(Image.fromarray(np.ascontiguousarray(cell, dtype=np.uint8)), (x, y))
            draw.text((x, y - LABEL_H + 1), label, fill=TEXT)
        pictures.append(canvas)
    duration = int(round(1000 / max(float(fps), 1e-3)))
    _atomic_save(pictures[0], path, format="GIF", save_all=True, append_images=pictures[1:],
                 duration=duration, loop=0, disposal=1)
    return os.fspath(path)


def save_thumbnails(frames, amf, grid: tuple[int, int], png_path, gif_path, *,
                    max_columns: int = 8, fps: float = 4) -> tuple[str, str]:
    """Write the PNG thumbnail and the GIF animation (both atomically); returns both paths."""
    image = amf_thumbnail(frames, amf, grid, max_columns=max_columns)
    _atomic_save(image, png_path, format="PNG")
    amf_animation(frames, amf, grid, gif_path, fps=fps)
    return os.fspath(png_path), os.fspath(gif_path)
