"""Metrics of the shapes demo evaluation: numpy only, unit-tested on synthetic tracks and clips.

Direction agreement of tracks (paper appendix D's (cos+1)/2 scale), disc-like blobs and their
centroid tracks, generation quality (colour, disc, smoothness), the AMF's direction agreement with a
known motion, and search top-1 accuracy. MF-LK lives in ``motionlib.demo.mflk``.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

from . import data

BRIGHT = 120  # a pixel whose max channel exceeds this is not background (as data.centroid_track)
STILL_PX = 0.25  # displacements shorter than this (px per frame) count as "not moving"
MIN_STEPS = 3  # a render's direction agreement needs this many comparable steps (else it scores 0)


def cos_to_unit(c):
    """Map a cosine in [-1, 1] to [0, 1] as appendix D reports it: (cos + 1) / 2."""
    return (np.asarray(c, dtype=np.float64) + 1.0) / 2.0


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of [..., 2] vectors; 0 where either vector is zero."""
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    dot = (a * b).sum(-1)
    out = np.zeros(dot.shape)
    ok = (na > 0) & (nb > 0)
    out[ok] = dot[ok] / (na[ok] * nb[ok])
    return np.clip(out, -1.0, 1.0)


def step_cosines(track, reference, still: float = STILL_PX) -> np.ndarray:
    """[F-1] cosine of each step's displacement with the reference's; NaN where either track is unknown
    or moves less than `still` px (the quick-start goal: every step >= 0.5)."""
    a = np.diff(np.asarray(track, dtype=np.float64), axis=0)
    b = np.diff(np.asarray(reference, dtype=np.float64), axis=0)
    if a.shape != b.shape:
        raise ValueError(f"tracks differ in shape: {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    use = np.isfinite(na) & np.isfinite(nb) & (na >= still) & (nb >= still)
    out = np.full(len(a), np.nan)
    out[use] = _cosines(a[use], b[use])
    return out


def direction_agreement(track, reference, still: float = STILL_PX) -> tuple[float, int]:
    """Mean cosine of per-step displacement vectors of two [F, 2] tracks, and the steps used.

    Steps where either track moves less than `still` px (or is unknown, NaN) are skipped; NaN when
    no step is left (e.g. a static render of a moving reference)."""
    cos = step_cosines(track, reference, still)
    use = np.isfinite(cos)
    if not use.any():
        return float("nan"), 0
    return float(cos[use].mean()), int(use.sum())


def segment_direction(track, reference, segments, still: float = STILL_PX) -> float:
    """Mean over the reference's straight segments of the cosine between the two tracks' displacements
    across each segment (issue 24): every segment weighs the same, however few steps it has.

    `segments` are (first, last) frame pairs (``data.segments``). Within a segment the first and last
    frames where the track is known stand in for its ends (the reference is compared over the same
    frames); a segment with fewer than two known frames, or where the track moves less than `still` px
    per frame, scores 0. Renders with no track at all score 0."""
    tr = np.asarray(track, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if tr.shape != ref.shape:
        raise ValueError(f"tracks differ in shape: {tr.shape} vs {ref.shape}")
    if not segments:
        raise ValueError("no segments to score")
    known = [bool(np.isfinite(tr[k]).all()) for k in range(len(tr))]
    scores = []
    for a, b in segments:
        idx = [k for k in range(a, b + 1) if known[k]]
        if len(idx) < 2:
            scores.append(0.0)
            continue
        a2, b2 = idx[0], idx[-1]
        d_tr, d_ref = tr[b2] - tr[a2], ref[b2] - ref[a2]
        if np.linalg.norm(d_tr) < still * (b2 - a2) or np.linalg.norm(d_ref) == 0:
            scores.append(0.0)
            continue
        scores.append(float(_cosines(d_tr, d_ref)))
    return float(np.mean(scores))


def _rotations(reference: np.ndarray, angles: int = 72):
    """The reference track rotated about its first frame by `angles` equal steps, and mirrored."""
    ref = np.asarray(reference, dtype=np.float64)
    rel = ref - ref[0]
    for mirror in (1.0, -1.0):
        r = rel * np.array([mirror, 1.0])
        for k in range(angles):
            a = 2 * math.pi * k / angles
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            yield ref[0] + r @ rot.T


def shape_agreement(track, reference, segments, still: float = STILL_PX) -> float:
    """The best ``segment_direction`` over rotations and mirror images of the reference: how well a
    track draws the reference's *kind* of motion (its turns at the same frames) in any direction.
    For plain renders this is the model's prior for a family (issue 24's diagnosis (i))."""
    return max(segment_direction(track, r, segments, still) for r in _rotations(reference))


def max_jump(track, size: int = data.SIZE) -> float:
    """The largest frame-to-frame move of a centroid track as a fraction of the frame size (pairs of
    consecutive frames that both have a position); NaN when no such pair exists."""
    steps = np.linalg.norm(np.diff(np.asarray(track, dtype=np.float64), axis=0), axis=-1)
    steps = steps[np.isfinite(steps)]
    return float(steps.max() / size) if len(steps) else float("nan")


def quadratic_residual(track) -> np.ndarray:
    """rms residual (px) of a least-squares quadratic in time fitted to each axis: [2] (x, y).

    Frames with an unknown (NaN) position are left out; NaN when fewer than 4 are known."""
    tr = np.asarray(track, dtype=np.float64)
    t = np.arange(len(tr), dtype=np.float64)
    ok = np.isfinite(tr).all(axis=1)
    if ok.sum() < 4:
        return np.full(2, np.nan)
    out = []
    for axis in range(2):
        coef = np.polyfit(t[ok], tr[ok, axis], 2)
        res = tr[ok, axis] - np.polyval(coef, t[ok])
        out.append(math.sqrt(float(np.mean(res ** 2))))
    return np.array(out)


def to_uint8(video) -> np.ndarray:
    """[F, 3, H, W] in [0, 1] (torch or numpy float) or uint8 -> uint8 numpy [F, 3, H, W]: motionlib.video's
    conversion, kept channels-first for the metrics."""
    from ..video import to_uint8 as frames_uint8

    t = video if isinstance(video, torch.Tensor) else torch.as_tensor(np.asarray(video))
    return np.ascontiguousarray(frames_uint8(t).transpose(0, 3, 1, 2))


def bright_mask(frames) -> np.ndarray:
    """[F, H, W] bool: non-background pixels (max channel > BRIGHT)."""
    return to_uint8(frames).max(axis=1) > BRIGHT


def components(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of a 2-D bool mask, largest first: each an [n, 2] array of (y, x)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    comps = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        q, pix = deque([(y0, x0)]), []
        while q:
            y, x = q.popleft()
            pix.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        q.append((yy, xx))
        comps.append(np.array(pix))
    comps.sort(key=len, reverse=True)
    return comps


def is_disc_like(pixels: np.ndarray | None, radius: float = data.RADIUS) -> bool:
    """Area between 0.5x and 1.6x that of the training disc, near-square bbox, round enough."""
    if pixels is None or len(pixels) == 0:
        return False
    area = len(pixels)
    target = math.pi * radius ** 2
    h = pixels[:, 0].max() - pixels[:, 0].min() + 1
    w = pixels[:, 1].max() - pixels[:, 1].min() + 1
    fill = area / (math.pi * (max(h, w) / 2) ** 2)  # 1 for a disc, ~0.64 for a square's worst case
    return 0.5 * target <= area <= 1.6 * target and max(h, w) <= 1.5 * min(h, w) and fill >= 0.6


def dominant_colour(frame) -> str | None:
    """Name of the data.COLORS entry nearest (RGB) to most non-background pixels of [3, H, W]."""
    f = to_uint8(frame[None])[0].astype(np.float32)
    px = f[:, f.max(axis=0) > BRIGHT].T  # [n, 3]
    if len(px) == 0:
        return None
    names = list(data.COLORS)
    ref = np.array([data.COLORS[n] for n in names], np.float32)
    nearest = np.argmin(((px[:, None] - ref[None]) ** 2).sum(-1), axis=1)
    return names[int(np.bincount(nearest, minlength=len(names)).argmax())]


def blob_track(video, disc_only: bool = True) -> np.ndarray:
    """[F, 2] (x, y) centroid of the largest non-background component per frame; NaN where there is
    none or (`disc_only`) where it is not disc-like, so noise blobs never make a track."""
    mask = bright_mask(video)
    out = np.full((mask.shape[0], 2), np.nan)
    for k, m in enumerate(mask):
        comps = components(m)
        if comps and (not disc_only or is_disc_like(comps[0])):
            out[k] = comps[0][:, 1].mean(), comps[0][:, 0].mean()
    return out


def render_direction(video, reference_track) -> tuple[float, int]:
    """Direction agreement of a render's disc track with a reference track (and the steps used);
    NaN when fewer than MIN_STEPS steps have a disc-like blob in both frames and motion in both."""
    d, used = direction_agreement(blob_track(video), reference_track)
    return (d if used >= MIN_STEPS else float("nan")), used


def blob_direction(video, reference_track) -> float:
    """Direction agreement of the largest blob of any shape with a reference track (NaN if none):
    the diagnostic that stays defined for ragged renders."""
    return direction_agreement(blob_track(to_uint8(video), disc_only=False), reference_track)[0]


def generation_quality(video, colour: str) -> dict:
    """Per-video generation metrics: share of good frames, disc share, colour share, smoothness."""
    v = to_uint8(video)
    mask = bright_mask(v)
    disc: list[bool] = []
    col: list[bool] = []
    track = np.full((v.shape[0], 2), np.nan)
    for k in range(v.shape[0]):
        comps = components(mask[k])
        largest = comps[0] if comps else None
        disc.append(is_disc_like(largest))
        col.append(dominant_colour(v[k]) == colour)
        if disc[-1]:  # the smoothness track uses disc-like frames only
            assert largest is not None  # a disc-like component exists
            track[k] = largest[:, 1].mean(), largest[:, 0].mean()
    disc_a, col_a = np.array(disc), np.array(col)
    return {"ok_frac": float((disc_a & col_a).mean()), "disc_frac": float(disc_a.mean()),
            "colour_frac": float(col_a.mean()), "smooth_rms_px": quadratic_residual(track).tolist(),
            "track": track}


def patch_coverage(frames, patch: int) -> np.ndarray:
    """[F, S] share of each patch's pixels that are non-background (row-major patches)."""
    m = bright_mask(frames).astype(np.float64)
    f, h, w = m.shape
    return m.reshape(f, h // patch, patch, w // patch, patch).mean(axis=(2, 4)).reshape(f, -1)


def amf_direction_cosines(amf, track, coverage, *, patch: int, min_shift: float = 1.0,
                          min_cover: float = 0.5) -> np.ndarray:
    """Appendix-D cosines between hard-AMF vectors and the true displacement.

    amf: [F, F, S, 2] (dx, dy) in patch units; track: true [F, 2] positions in px; coverage: [F, S]
    (``patch_coverage``). For every pair i < j whose true shift is >= `min_shift` patches, every
    patch of frame i with coverage >= `min_cover` gives one cosine (0 for a zero AMF vector)."""
    a = amf.detach().float().cpu().numpy() if isinstance(amf, torch.Tensor) else np.asarray(amf, np.float64)
    tr = np.asarray(track, np.float64) / patch
    nf = a.shape[0]
    out = []
    for i in range(nf):
        cov = np.asarray(coverage[i]) >= min_cover
        if not cov.any():
            continue
        for j in range(i + 1, nf):
            d = tr[j] - tr[i]
            if np.linalg.norm(d) < min_shift:
                continue
            out.append(_cosines(a[i, j][cov], np.broadcast_to(d, (int(cov.sum()), 2))))
    return np.concatenate(out) if out else np.zeros(0)


# --- search ----------------------------------------------------------------------------------
def top1_accuracy(ref_desc: np.ndarray, query_desc: np.ndarray, ref_labels, query_labels) -> tuple[float, np.ndarray]:
    """Top-1 accuracy of cosine search (descriptors are unit vectors) and the [Q, R] similarities."""
    sim = np.asarray(query_desc, np.float64) @ np.asarray(ref_desc, np.float64).T
    best = sim.argmax(axis=1)
    hits = [ref_labels[b] == q for b, q in zip(best, query_labels)]
    return float(np.mean(hits)), sim


def psnr(a, b, peak: float = 255.0, cap: float = 100.0) -> float:
    """Peak signal-to-noise ratio (dB) of two uint8 images or frames of one shape: 10 log10(peak² / MSE),
    ``cap`` when they are equal (MSE 0)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"psnr of arrays of shapes {x.shape} and {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    return cap if mse == 0 else min(cap, 10.0 * math.log10(peak * peak / mse))
