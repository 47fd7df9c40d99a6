"""MF-LK: Motion Fidelity (paper §5.1) with OpenCV pyramidal Lucas-Kanade tracklets instead of
CoTracker ones (needs ``opencv-python-headless``, the ``eval`` extra)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import to_uint8


def have_cv2() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def lk_tracks(video, *, grid_step: int = 2, upscale: int = 4, win: int = 15, levels: int = 3) -> np.ndarray:
    """Tracklets [N, F, 2] (x, y in px) of grid points of frame 0, with OpenCV's pyramidal LK.

    Frames are the max over colour channels (every disc colour is bright there), upscaled
    `upscale` x (bilinear) so the pyramid has room; points are chained frame to frame and dropped
    once LK loses them or they leave the frame. Needs ``opencv-python-headless``."""
    import cv2

    v = to_uint8(video)
    f, _, h, w = v.shape
    gray = [cv2.resize(np.ascontiguousarray(v[k].max(axis=0)), (w * upscale, h * upscale),
                       interpolation=cv2.INTER_LINEAR) for k in range(f)]
    xs, ys = np.meshgrid(np.arange(grid_step / 2, w, grid_step), np.arange(grid_step / 2, h, grid_step))
    p = ((np.stack([xs.ravel(), ys.ravel()], 1) + 0.5) * upscale - 0.5).astype(np.float32).reshape(-1, 1, 2)
    alive = np.ones(len(p), bool)
    tracks = [p.reshape(-1, 2).copy()]
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    lucas_kanade: Any = cv2.calcOpticalFlowPyrLK  # untyped: OpenCV's stubs change between versions (None is a valid nextPts)
    for k in range(1, f):
        nxt, st, _ = lucas_kanade(gray[k - 1], gray[k], p, None, winSize=(win, win), maxLevel=levels, criteria=crit)
        nxt = np.asarray(nxt, np.float32).reshape(-1, 2)
        inside = (nxt[:, 0] >= 0) & (nxt[:, 0] <= w * upscale - 1) & (nxt[:, 1] >= 0) & (nxt[:, 1] <= h * upscale - 1)
        alive &= (st.ravel() == 1) & inside & np.isfinite(nxt).all(1)
        tracks.append(nxt.copy())
        p = nxt.reshape(-1, 1, 2).astype(np.float32)
    t = (np.stack(tracks, 1) + 0.5) / upscale - 0.5
    return t[alive]


def moving_tracks(tracks: np.ndarray, min_travel: float = 1.0) -> np.ndarray:
    """Tracklets that get at least `min_travel` px away from their start at some frame."""
    if len(tracks) == 0:
        return tracks
    travel = np.linalg.norm(tracks - tracks[:, :1], axis=-1).max(axis=1)
    return tracks[travel >= min_travel]


def track_correlation(a: np.ndarray, b: np.ndarray, still: float = 0.2) -> np.ndarray:
    """[Na, Nb] mean over time of the cosine of per-step displacements of tracklets a and b.

    Per step: both move (>= `still` px) -> their cosine; exactly one moves -> 0; neither moves ->
    skipped (nothing to compare). All steps skipped -> 0."""
    va, vb = np.diff(a, axis=1)[:, None], np.diff(b, axis=1)[None]  # [Na, 1, T, 2], [1, Nb, T, 2]
    na, nb = np.linalg.norm(va, axis=-1), np.linalg.norm(vb, axis=-1)
    ma, mb = na >= still, nb >= still
    cos = (va * vb).sum(-1) / np.maximum(na * nb, 1e-12)
    val = np.where(ma & mb, cos, 0.0)
    used = (ma | mb).astype(np.float64)
    return (val * used).sum(-1) / np.maximum(used.sum(-1), 1)


def mf_from_tracks(gen: np.ndarray, ref: np.ndarray) -> float:
    """Mean over generated tracklets of the best correlation with any reference tracklet.

    Only moving tracklets count: NaN when the reference has none, 0 when the render has none."""
    gen, ref = moving_tracks(gen), moving_tracks(ref)
    if len(ref) == 0:
        return float("nan")
    if len(gen) == 0:
        return 0.0
    return float(track_correlation(gen, ref).max(axis=1).mean())


def mf_lk(video, reference, **lk) -> float:
    """MF-LK: Motion Fidelity (paper §5.1) with LK tracklets instead of CoTracker ones."""
    return mf_from_tracks(lk_tracks(video, **lk), lk_tracks(reference, **lk))
