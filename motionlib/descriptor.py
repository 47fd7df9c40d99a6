"""Fixed-length motion descriptor of a (hard) Attention Motion Flow, for similarity search.

What decides similarity is the direction of the motion and the shape of its trajectory over time;
the look of the clip (colour, object size, background, resolution), its length and its overall
speed should matter little. So the descriptor is built from the AMF like this:

* **confidence-weighted**: each displacement vector counts with its peak attention probability
  (``motion_flow(..., return_confidence=True)``); flat regions, where attention ties and the argmax
  points anywhere, weigh little. Without a confidence every vector counts the same.
* **normalised**: displacements are converted from patch units into fractions of the frame
  (dx / cols, dy / rows) and divided by the frame gap, so resolution and frame count drop out;
  every part below is L2-normalised on its own, so the overall speed drops out too.
* **multi-scale in time**: gaps of one latent step and ~1/4, ~1/2 and all of the clip's F-1 steps
  (``GAP_FRACTIONS``). A slow motion moves less than a patch per step (the hard AMF says 0) but
  shows over the long gaps; a fast or wiggly one shows over the short ones.

Per gap g, ``mean[i]`` is the confidence-weighted mean velocity from start frame i to i+g over all
patches. Layout (float32, ``DESCRIPTOR_DIM`` values, C-order)::

    trend   per gap: mean[i] resampled at ``TIME_BINS[g]`` evenly spaced times  -> (dx, dy) each
    wiggle  gaps 1 and ~1/4: mean |mean[i+1] - mean[i]| per axis over the mean speed (zigzags)
    bend    gap ~1/4: mean[i] minus the whole clip's net velocity, over its size, at ``BEND_BINS``
            times (an arc against the straight line between its ends)
    local   gap ~1/4: the confidence-weighted velocity on a ``SPACE_BINS`` x ``SPACE_BINS`` grid

Each gap's trend and the local part are scaled to unit norm (wiggle and bend are ratios already),
then weighted (``WEIGHTS``; chosen on a tuning set of ``motionlib.demo.robustness``, seed 1234), and
the whole vector is L2-normalised, so the cosine similarity is a dot product:
similar motions score near 1, opposite directions negative, perpendicular ~0. A clip without motion
gives the zero vector; :func:`motion_strength` says how much confident motion an AMF holds.

This module needs only numpy. ``DESCRIPTOR_VERSION`` is defined in motionlib.versions (the catalogue
reads it at start-up without numpy); bump it there whenever the layout or the computation here
changes: opening a library then re-describes the stored motions from the reference AMF in their assets.
"""

from __future__ import annotations

import numpy as np

from .errors import MotionlibError
from .versions import DESCRIPTOR_VERSION

__all__ = ["DESCRIPTOR_VERSION", "DESCRIPTOR_DIM", "GAP_FRACTIONS", "TIME_BINS", "SPACE_BINS", "MIN_MOTION",
           "NoMotionError", "motion_descriptor", "motion_strength", "descriptor_gaps", "described_motion"]

GAP_FRACTIONS = (0.0, 0.25, 0.5, 1.0)  # 0.0 means one latent step
TIME_BINS = (4, 4, 2, 1)  # trend samples per gap
WIGGLE_GAPS = (0, 1)  # indices into GAP_FRACTIONS
LOCAL_GAP = 1
SPACE_BINS = 2
BEND_GAP = 1
BEND_BINS = 4
WEIGHTS = {"trend": 1.0, "wiggle": 1.2, "bend": 0.5, "local": 0.5}
CONFIDENCE_POWER = 3.0  # weight = confidence ** this: a clear match counts far more than a near tie
#: below this confident motion (frame fractions per latent step, see motion_strength) a clip has no motion
#: (on ``shapes`` the robustness set's queries measure 0.0013-0.09, median 0.05; a still clip is caught
#: from its pixels before this, see motionlib.catalog.check_moving)
MIN_MOTION = 0.001
TREND_DIM = 2 * sum(TIME_BINS)
WIGGLE_DIM = 2 * len(WIGGLE_GAPS)
LOCAL_DIM = 2 * SPACE_BINS * SPACE_BINS
BEND_DIM = 2 * BEND_BINS
DESCRIPTOR_DIM = TREND_DIM + WIGGLE_DIM + BEND_DIM + LOCAL_DIM


def descriptor_gaps(num_frames: int) -> list[int]:
    """The frame gaps used for a clip of ``num_frames`` latent frames (empty when F < 2)."""
    steps = num_frames - 1
    if steps < 1:
        return []
    return [min(steps, max(1, int(np.floor(frac * steps + 0.5)))) for frac in GAP_FRACTIONS]


def _as_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    return np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _inputs(amf, grid, confidence) -> tuple[np.ndarray, np.ndarray, int, int]:
    a = _as_array(amf, "amf")
    if a.ndim != 4 or a.shape[0] != a.shape[1] or a.shape[-1] != 2:
        raise ValueError(f"amf must be [F, F, S, 2], got {tuple(a.shape)}")
    rows, cols = int(grid[0]), int(grid[1])
    if rows * cols != a.shape[2]:
        raise ValueError(f"grid {rows}x{cols} does not match S={a.shape[2]} patches")
    if confidence is None:
        w = np.ones(a.shape[:3])
    else:
        w = np.clip(_as_array(confidence, "confidence"), 0.0, None) ** CONFIDENCE_POWER
        if w.shape != a.shape[:3]:
            raise ValueError(f"confidence must be [F, F, S] = {tuple(a.shape[:3])}, got {tuple(w.shape)}")
    return a * np.array([1.0 / cols, 1.0 / rows]), w, rows, cols


def _velocities(a: np.ndarray, w: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
    """[F-g, S, 2] velocities (frame fractions per step) from frame i to i+g, and their [F-g, S] weights."""
    i = np.arange(a.shape[0] - g)
    return a[i, i + g] / g, w[i, i + g]


def _wmean(v: np.ndarray, w: np.ndarray, axis) -> np.ndarray:
    total = w.sum(axis=axis)
    return (v * w[..., None]).sum(axis=axis) / np.maximum(total, 1e-12)[..., None]


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x)
    return x / n if n > 1e-9 else np.zeros_like(x)


def _resample(series: np.ndarray, bins: int) -> np.ndarray:
    """[T, 2] series sampled at ``bins`` evenly spaced times (linear interpolation) -> [bins * 2]."""
    t = np.linspace(0.0, 1.0, len(series)) if len(series) > 1 else np.zeros(1)
    at = (np.arange(bins) + 0.5) / bins
    return np.stack([np.interp(at, t, series[:, k]) for k in range(2)], 1).reshape(-1)


def motion_strength(amf, grid: tuple[int, int], confidence=None) -> float:
    """Confident motion in an AMF: the largest confidence-weighted mean speed of all its vectors
    (frame fractions per latent step) over the gaps. 0 for a static clip or F < 2."""
    a, w, _, _ = _inputs(amf, grid, confidence)
    best = 0.0
    for g in descriptor_gaps(a.shape[0]):
        v, wg = _velocities(a, w, g)
        speed = np.linalg.norm(v, axis=-1)
        best = max(best, float((speed * wg).sum() / max(wg.sum(), 1e-12)))
    return best


def motion_descriptor(amf, grid: tuple[int, int], confidence=None) -> np.ndarray:
    """``float32 [DESCRIPTOR_DIM]`` unit vector describing the motion of ``amf`` ``[F, F, S, 2]``.

    ``amf`` (numpy or torch) is meant to be the hard (argmax) AMF of :func:`motionlib.amf.motion_flow`
    and ``confidence`` its peak attention probability ``[F, F, S]`` (None: all vectors weigh the
    same); ``grid`` = (rows, cols) of the patch grid, rows*cols == S. NaNs count as zero. See the
    module docstring for the layout.
    """
    a, w, rows, cols = _inputs(amf, grid, confidence)
    gaps = descriptor_gaps(a.shape[0])
    if not gaps:
        return np.zeros(DESCRIPTOR_DIM, dtype=np.float32)
    trend, wiggle, local, means = [], [], np.zeros(LOCAL_DIM), []
    for j, (g, bins) in enumerate(zip(gaps, TIME_BINS)):
        v, wg = _velocities(a, w, g)
        mean = _wmean(v, wg, axis=1)  # [F-g, 2]
        means.append(mean)
        trend.append(_unit(_resample(mean, bins)))
        if j in WIGGLE_GAPS:
            d = np.abs(np.diff(mean, axis=0)).mean(axis=0) if len(mean) > 1 else np.zeros(2)
            speed = np.linalg.norm(mean, axis=1).mean()  # per axis, relative to the speed: no units
            wiggle.append(np.minimum(d / speed, 2.0) if speed > 1e-9 else np.zeros(2))
        if j == LOCAL_GAP:
            field = v.reshape(len(v), rows, cols, 2)
            fw = wg.reshape(len(v), rows, cols)
            rb = np.minimum(np.arange(rows) * SPACE_BINS // rows, SPACE_BINS - 1)
            cb = np.minimum(np.arange(cols) * SPACE_BINS // cols, SPACE_BINS - 1)
            cells = []
            for r in range(SPACE_BINS):
                for c in range(SPACE_BINS):
                    sel = (rb[:, None] == r) & (cb[None, :] == c)
                    cells.append(_wmean(field[:, sel].reshape(-1, 2), fw[:, sel].reshape(-1), axis=0))
            local = _unit(np.concatenate(cells))
    chord = means[-1].mean(axis=0)  # the net velocity over the whole clip
    speed = np.linalg.norm(chord)
    bend = np.clip(_resample(means[BEND_GAP] - chord, BEND_BINS) / speed, -2.0, 2.0) if speed > 1e-9 \
        else np.zeros(2 * BEND_BINS)
    out = np.concatenate([WEIGHTS["trend"] * np.concatenate(trend), WEIGHTS["wiggle"] * np.concatenate(wiggle),
                          WEIGHTS["bend"] * bend,
                          WEIGHTS["local"] * local])
    n = np.linalg.norm(out)
    if not np.isfinite(n) or n <= 1e-12 or not any(np.any(t) for t in trend):
        return np.zeros(DESCRIPTOR_DIM, dtype=np.float32)
    return (out / n).astype(np.float32)


class NoMotionError(MotionlibError):
    """A model finds no motion in a clip (static, or too short); the message says which and why."""


def described_motion(amf, grid: tuple[int, int], confidence=None, *, what: str = "the clip") -> np.ndarray:
    """:func:`motion_descriptor`, or NoMotionError("no motion found in WHAT (why)") when there is none."""
    a = _as_array(amf, "amf")
    if a.ndim == 4 and a.shape[0] < 2:
        raise NoMotionError(f"no motion found in {what} (too short: the model reads {a.shape[0]} latent frame; "
                            "motion needs at least 2)")
    strength = motion_strength(a, grid, confidence)
    if strength < MIN_MOTION:
        raise NoMotionError(f"no motion found in {what} (the model sees it move {strength:.3%} of the frame per "
                            f"latent step, below the {MIN_MOTION:.1%} a motion needs)")
    return motion_descriptor(a, grid, confidence)
