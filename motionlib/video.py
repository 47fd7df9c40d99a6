"""Read reference clips into model-ready tensors and write results to .mp4/.gif.

Reading uses decord (fast random access) and falls back to PyAV when decord is missing, cannot
open the file (e.g. GIFs) or returns something malformed. Every problem a user can cause is
reported as a one-line :class:`VideoError` that names the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import MotionlibError
from .fsutil import atomic_write

__all__ = ["VideoError", "VideoInfo", "probe", "read_video", "write_video", "to_uint8"]

SAMPLINGS = ("spread", "start")
WRITE_SUFFIXES = (".mp4", ".gif")
# Demuxers that open a single still image (a PNG/JPEG renamed .mp4 opens as "png_pipe"/"jpeg_pipe").
_IMAGE_FORMATS = ("image2", "image2pipe", "tty")
_RESIZE_CHUNK = 8  # frames resized at once: bounds peak memory for long/high-res clips


class VideoError(MotionlibError, ValueError):
    """A user-facing problem with a video file or a video argument (one-line message)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a clip is: its path, frame rate, number of frames and frame size in pixels."""

    path: str
    fps: float
    frame_count: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Length in seconds (0.0 when the frame rate is unknown)."""
        return self.frame_count / self.fps if self.fps > 0 else 0.0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _check_file(path: str | os.PathLike) -> Path:
    """Fail early, with a clear message, on paths that cannot be a video file."""
    p = Path(path)
    if not p.exists():
        raise VideoError(f"no such file: {p}")
    if p.is_dir():
        raise VideoError(f"{p} is a directory, not a video file")
    if not p.is_file():
        raise VideoError(f"{p} is not a regular file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p} is empty (0 bytes)")
    return p


def _count_packets(container, stream) -> int:
    """Count frames by demuxing (no decoding) for containers without a frame count (mkv, webm)."""
    return sum(1 for pkt in container.demux(stream) if pkt.size)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Return a clip's fps, frame count and size without decoding it (PyAV metadata)."""
    import av

    p = _check_file(path)
    try:
        container = av.open(str(p))
    except av.error.InvalidDataError:
        raise VideoError(f"{p} is not a video file (FFmpeg cannot recognise its contents)") from None
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"cannot open {p}: {_one_line(e)}") from None
    with container:
        fmt = container.format.name
        if not container.streams.video:
            raise VideoError(f"{p} is not a video (it has no video stream; format '{fmt}')")
        stream = container.streams.video[0]
        if fmt.endswith("_pipe") or fmt in _IMAGE_FORMATS:
            raise VideoError(f"{p} is a still image ({stream.codec_context.name}), not a video")
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoError(f"{p} has a video stream without a frame size; is the file damaged?")
        frames = int(stream.frames or 0) or _count_packets(container, stream)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
    return VideoInfo(path=str(p), fps=fps, frame_count=frames, width=int(width), height=int(height))


def _frame_indices(n: int, num_frames: int, sampling: str, path: Path | None) -> np.ndarray:
    if n < num_frames:
        raise VideoError(f"{path} has {n} frames; the model needs at least {num_frames}")
    if sampling == "spread":
        return np.linspace(0, n - 1, num_frames).round().astype(np.int64)
    return np.arange(num_frames, dtype=np.int64)


def _read_frames_decord(path: Path, pick: Callable[[int], np.ndarray], info: VideoInfo):
    """Decode the picked frames with decord; return (uint8 [F,H,W,3], frames in clip) or None to fall back."""
    try:
        import decord
    except Exception:  # not installed (non-x86_64) or a broken native library
        return None
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
        n = len(vr)
    except Exception:  # decord cannot open some inputs PyAV can (e.g. GIFs: "broken metadata")
        return None
    idx = pick(n)  # may raise "too few frames": that is the clip's fault, not decord's
    try:
        batch = vr.get_batch(idx.tolist())
        arr = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch.cpu() if torch.is_tensor(batch) else batch)
    except Exception:
        return None
    finally:
        del vr
    # decord quirk: for some small frame sizes it returns 4-channel frames or fails a size check.
    if arr.shape != (len(idx), info.height, info.width, 3) or arr.dtype != np.uint8:
        return None
    return arr, n


def _read_frames_pyav(path: Path, pick: Callable[[int], np.ndarray], info: VideoInfo):
    """Decode the picked frames sequentially with PyAV; return (uint8 [F,H,W,3], frames in clip)."""
    import av

    def decode(idx: np.ndarray, stop_early: bool):
        """Decode in order, keeping the frames at ``idx``; return (frames, frames seen, stopped early)."""
        wanted: dict[int, list[int]] = {}
        for slot, i in enumerate(idx.tolist()):
            wanted.setdefault(i, []).append(slot)
        out: list[np.ndarray | None] = [None] * len(idx)
        last, count = int(idx.max()), 0
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for k, frame in enumerate(container.decode(stream)):
                    count = k + 1
                    if k in wanted:
                        rgb = frame.to_ndarray(format="rgb24")
                        for slot in wanted[k]:
                            out[slot] = rgb
                    if stop_early and k >= last:
                        return out, count, True
        except av.error.FFmpegError as e:
            raise VideoError(f"cannot decode {path}: {_one_line(e)}") from None
        return out, count, False

    n = info.frame_count
    idx = pick(n)
    out, count, stopped = decode(idx, stop_early=np.array_equal(idx, np.arange(len(idx))))
    if not stopped and count != n:
        # The container's frame count was wrong: pick again from the frames that really decode.
        n = count
        new_idx = pick(n)
        if not np.array_equal(new_idx, idx) or any(f is None for f in out):
            out, _, _ = decode(new_idx, stop_early=False)
    if any(f is None for f in out):
        raise VideoError(f"cannot decode {path}: frames went missing while decoding")
    return np.stack(out), n


def _resize_cover_crop(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 [F,H,W,3] -> float32 [F,3,height,width] in [-1, 1]: scale to cover, then center-crop."""
    _, h, w, _ = frames.shape
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    top, left = (nh - height) // 2, (nw - width) // 2
    out = torch.empty((frames.shape[0], 3, height, width), dtype=torch.float32)
    for s in range(0, frames.shape[0], _RESIZE_CHUNK):
        x = torch.from_numpy(frames[s : s + _RESIZE_CHUNK]).permute(0, 3, 1, 2).float()
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        out[s : s + _RESIZE_CHUNK] = x[:, :, top : top + height, left : left + width]
    return out.div_(127.5).sub_(1.0).clamp_(-1.0, 1.0)


def read_video(
    path: str | os.PathLike,
    num_frames: int,
    height: int,
    width: int,
    *,
    sampling: str = "spread",
) -> tuple[torch.Tensor, VideoInfo]:
    """Load ``num_frames`` frames as float32 [num_frames, 3, height, width] in [-1, 1].

    ``sampling="spread"`` spaces the frames evenly over the whole clip (first and last included);
    ``"start"`` takes the first ``num_frames`` consecutive frames. Frames are resized keeping the
    aspect ratio so they cover height x width, then center-cropped (nothing is stretched).
    The returned :class:`VideoInfo` describes the source clip.
    """
    for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise VideoError(f"{name} must be a positive integer, got {value!r} (reading {path})")
    if sampling not in SAMPLINGS:
        raise VideoError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r} (reading {path})")
    info = probe(path)
    p = Path(info.path)

    def pick(n: int) -> np.ndarray:
        return _frame_indices(n, int(num_frames), sampling, p)

    pick(info.frame_count)  # fail fast on short clips, before decoding anything
    frames, n = _read_frames_decord(p, pick, info) or _read_frames_pyav(p, pick, info)
    if n != info.frame_count:
        info = replace(info, frame_count=n)
    return _resize_cover_crop(frames, int(height), int(width)), info


def to_uint8(frames) -> np.ndarray:
    """Frames -> uint8 numpy [F, H, W, 3].

    Accepts a torch tensor [F, 3, H, W] (float in [0, 1], or uint8) or a numpy array
    [F, H, W, 3] (uint8, or float in [0, 1]). Floats are clamped to [0, 1] and rounded.
    """
    if torch.is_tensor(frames):
        t = frames.detach().cpu()
        if t.ndim != 4 or t.shape[1] != 3:
            raise VideoError(f"expected a tensor of shape [F, 3, H, W], got {list(t.shape)}")
        if t.is_floating_point():
            t = (t.float().clamp(0, 1) * 255).round()
        return t.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise VideoError(f"expected an array of shape [F, H, W, 3], got {list(a.shape)}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.floating):
        return (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8)
    raise VideoError(f"unsupported frame dtype {a.dtype}")


def _write_mp4(frames: np.ndarray, path: Path, fps: float, threads: int | None = 1) -> None:
    """H.264/yuv420p (plays everywhere); odd sizes are edge-padded to even because yuv420p needs it.
    `threads`: x264 encoder threads (None: x264's own choice; benchmarks.video_write compares)."""
    import av

    _, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = w + pw, h + ph
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "medium"}
        # One encoder thread: x264's frame threads made equal frames encode to different bytes from run to
        # run (issue 25); the cost at 49x480x720 is in docs/errors.md
        # ("The same inputs write the same bytes").
        if threads is not None:
            stream.codec_context.thread_count = threads
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_gif(frames: np.ndarray, path: Path, fps: float) -> None:
    """Looping GIF. GIF delays are in 1/100 s (and < 20 ms is slowed down by browsers), so fps is approximate.

    Pillow merges identical consecutive frames (summing their delays): use .mp4 for exact frame counts.
    """
    from PIL import Image

    delay_ms = max(20, round(100 / fps) * 10)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=delay_ms, loop=0)


def write_video(frames, path: str | os.PathLike, fps: float = 8) -> Path:
    """Write frames to ``path`` (.mp4 as H.264, .gif looping) atomically; return the path.

    ``frames`` is a float tensor [F, 3, H, W] in [0, 1] or a uint8 array [F, H, W, 3]. The file is
    written with ``fsutil.atomic_write``, so a crash never leaves a half-written video and a full disk
    raises ``NoSpaceLeft``. Parent folders are created.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise VideoError(f"cannot write {p}: unsupported suffix '{p.suffix}' (use {' or '.join(WRITE_SUFFIXES)})")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise VideoError(f"cannot write {p}: fps must be a positive number, got {fps!r}")
    if p.is_dir():
        raise VideoError(f"cannot write {p}: it is a directory")
    try:
        arr = to_uint8(frames)
    except VideoError as e:
        raise VideoError(f"cannot write {p}: {e}") from None
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise VideoError(f"cannot write {p}: no frames (shape {list(arr.shape)})")

    writer = _write_mp4 if suffix == ".mp4" else _write_gif
    try:
        atomic_write(p, lambda tmp: writer(arr, tmp, float(fps)))
    except Exception as e:
        if isinstance(e, MotionlibError):
            raise
        raise VideoError(f"cannot write {p}: {_one_line(e)}") from e
    return p
