"""Fixed-length motion descriptor of a (hard) Attention Motion Flow, for similarity search.

Motions learnt at different latent frame counts F and patch grids (rows, cols) map to the same
space:

* displacements are converted from patch units into fractions of the frame size
  (dx / cols, dy / rows), so the resolution does not matter;
* for each time gap g, the displacement from frame i to frame i+g is divided by g (a velocity in
  frame fractions per latent step), so a steady motion looks the same for every gap and frame count;
  the gaps are fixed fractions of the clip: g = 1, ~1/4 and ~1/2 of the F-1 steps (at least 1 step;
  short clips repeat g = 1);
* the [F-g, rows, cols] field of start frames i = 0..F-1-g is area-resampled
  (``adaptive_avg_pool3d``) to ``TIME_BINS`` x ``SPACE_BINS`` x ``SPACE_BINS``.

Layout (float32, ``DESCRIPTOR_DIM`` = 3 * 4 * 4 * 4 * 2 + 3 * 4 * 2 = 408 values)::

    [0, 384)    local part, C-order [gap(3), time(4), row(4), col(4), (dx, dy)]
    [384, 408)  global part, C-order [gap(3), time(4), (dx, dy)]: the mean over all patches,
                times GLOBAL_WEIGHT (for a uniform translation it holds 1/5 of the energy)

The whole vector is L2-normalised (all-zero motion gives the zero vector), so the cosine similarity
is a dot product: similar motions score near 1, opposite directions negative, perpendicular ~0.
Bump ``DESCRIPTOR_VERSION`` whenever the layout or the computation changes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DESCRIPTOR_VERSION", "DESCRIPTOR_DIM", "GAP_FRACTIONS", "TIME_BINS", "SPACE_BINS",
           "motion_descriptor", "descriptor_gaps"]

DESCRIPTOR_VERSION = 1
GAP_FRACTIONS = (0.0, 0.25, 0.5)  # 0.0 means one latent step
TIME_BINS = 4
SPACE_BINS = 4
GLOBAL_WEIGHT = 2.0
LOCAL_DIM = len(GAP_FRACTIONS) * TIME_BINS * SPACE_BINS * SPACE_BINS * 2
GLOBAL_DIM = len(GAP_FRACTIONS) * TIME_BINS * 2
DESCRIPTOR_DIM = LOCAL_DIM + GLOBAL_DIM


def descriptor_gaps(num_frames: int) -> list[int]:
    """The frame gaps used for a clip of ``num_frames`` latent frames (empty when F < 2)."""
    steps = num_frames - 1
    if steps < 1:
        return []
    return [min(steps, max(1, int(np.floor(frac * steps + 0.5)))) for frac in GAP_FRACTIONS]


def motion_descriptor(amf, grid: tuple[int, int]) -> np.ndarray:
    """``float32 [DESCRIPTOR_DIM]`` unit vector describing the motion of ``amf`` ``[F, F, S, 2]``.

    ``amf`` (torch or numpy) is meant to be the hard (argmax) AMF of :func:`motionlib.amf.motion_flow`
    (a soft one works too); ``grid`` = (rows, cols) of the patch grid, rows*cols == S. NaNs count as
    zero. See the module docstring for the layout.
    """
    if isinstance(amf, torch.Tensor):
        a = amf.detach().to(device="cpu", dtype=torch.float32)
    else:
        a = torch.as_tensor(np.asarray(amf, dtype=np.float32))
    if a.ndim != 4 or a.shape[0] != a.shape[1] or a.shape[-1] != 2:
        raise ValueError(f"amf must be [F, F, S, 2], got {tuple(a.shape)}")
    rows, cols = int(grid[0]), int(grid[1])
    num_frames, s = a.shape[0], a.shape[2]
    if rows * cols != s:
        raise ValueError(f"grid {rows}x{cols} does not match S={s} patches")
    a = torch.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    out = torch.zeros(DESCRIPTOR_DIM, dtype=torch.float64)
    gaps = descriptor_gaps(num_frames)
    if not gaps:
        return out.float().numpy()
    scale = torch.tensor([1.0 / cols, 1.0 / rows], dtype=torch.float64)
    local, glob = [], []
    for g in gaps:
        i = torch.arange(num_frames - g)
        vel = a[i, i + g].double() * scale / g  # [F-g, S, 2] frame fractions per latent step
        field = vel.reshape(num_frames - g, rows, cols, 2).permute(3, 0, 1, 2)  # [2, T, r, c]
        pooled = F.adaptive_avg_pool3d(field.unsqueeze(0), (TIME_BINS, SPACE_BINS, SPACE_BINS))[0]
        local.append(pooled.permute(1, 2, 3, 0).reshape(-1))  # [time, row, col, xy]
        t_mean = F.adaptive_avg_pool1d(field.mean(dim=(2, 3)).unsqueeze(0), TIME_BINS)[0]  # [2, T]
        glob.append(t_mean.T.reshape(-1) * GLOBAL_WEIGHT)  # [time, xy]
    out = torch.cat(local + glob)
    norm = torch.linalg.vector_norm(out)
    if not torch.isfinite(norm) or norm <= 1e-12:
        return np.zeros(DESCRIPTOR_DIM, dtype=np.float32)
    return (out / norm).float().numpy()
