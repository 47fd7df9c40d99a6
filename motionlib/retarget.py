"""Retargeting a stored motion to another frame count or frame size, with no optimisation (issue 28).

``retarget(asset, frames, height, width)`` returns a new ``MotionAsset`` (the input is untouched) whose
spec has the new geometry and whose every tensor fits the new latent grid:

- **ρ shifts** (``shift`` / ``shared-shift``: a (t, y, x) offset per token, in tokens of its own
  grid, per guided timestep) are resampled to the new token grid by separable linear interpolation
  (trilinear), then each component is scaled to the new grid's units: y by rows'/rows, x by
  cols'/cols, t by (frames'−1)/(frames−1). Trilinear, not nearest: a shift field is smooth where the
  motion is (``--frame-shift`` makes it constant per frame), and nearest would repeat tokens and whole
  frames, a blocky field and a stop-motion render at 1.5x. Downsampling takes point samples (no
  averaging): a shift that varies from token to token aliases. (On shapes at 48x48 nearest scored as
  well as trilinear, and unscaled offsets nearly as well as scaled ones: docs/retarget.md's ablation.)
- **Coordinates.** Space is box-scaled (the frame is resized as a picture: pixel centres map as
  ``(i + 0.5)·n/n' − 0.5``, PyTorch's ``align_corners=False``); time is end-aligned (the first and last
  frames of the new clip are those of the reference, ``align_corners=True``): a longer clip is the
  same motion played slower, a shorter one faster. The shifted position p + δ then maps to p' + δ'
  exactly for the affine maps above, which is why the offsets are scaled by the same factors.
- **The reference latent** for KV injection is resampled by the same maps at the latent grid. Where
  the frame count changes on a temporally compressed latent (CogVideoX's and Wan's causal VAEs: latent
  frame 0 encodes one frame, each later one four) resampling latent frames gives no latent of any
  clip, so injection is turned off (``params["inject"] = False``) with a ``RetargetNote`` warning;
  the resampled latent is kept only so the file stays self-consistent. For shapes (no temporal
  compression, a pixel-unshuffle codec) resampling the latent is resizing the reference clip to within
  a quarter pixel.
- **The reference AMF** (integer patch offsets per frame pair) and its confidence are resampled by
  nearest frame pair and nearest token, offsets scaled by the spatial factors, rounded and clamped so
  that every target stays inside the new grid; the preview frames by nearest frame, resized to the new
  aspect at their own height. Apply reads neither; search and thumbnails of a saved retargeted asset do.

The ``table`` parametrisation (every ρ entry free, the default of the real models) is tied to its
token grid and is refused (``CannotRetarget``, naming ``--parametrisation shift``). Frame counts and
sizes the model cannot render (Wan's and CogVideoX's 4k+1 frames, sizes not divisible by VAE factor x
patch size) are refused by ``motionlib.models.check_geometry``; a model whose positional embedding is
learnt for one geometry by ``with_geometry``. Retargeting to the same geometry returns an equal copy,
bit for bit. See docs/retarget.md.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from .errors import ParameterError
from .models.geometry import check_geometry
from .rho import is_shift, names_for

if TYPE_CHECKING:  # pragma: no cover
    from .asset import MotionAsset

__all__ = ["retarget", "CannotRetarget", "RetargetNote", "geometry_changed", "resample_shift", "resample_latent",
           "resample_amf", "resample_previews", "axis_positions", "axis_weights", "axis_scale", "nearest_indices"]


class CannotRetarget(ParameterError):
    """A motion that cannot be moved to another frame count or size (e.g. a ``table`` ρ)."""


class RetargetNote(UserWarning):
    """Something a retarget could not carry over, said once (e.g. KV injection turned off)."""


# --- the coordinate maps, per axis -------------------------------------------------------------
def axis_positions(n_old: int, n_new: int, ends: bool) -> torch.Tensor:
    """[n_new] float64: where each new index falls on the old axis, clamped to [0, n_old − 1].

    ``ends=True`` (time): the end-aligned map i·(n_old−1)/(n_new−1); ``ends=False`` (space): the box map
    (i + 0.5)·n_old/n_new − 0.5."""
    i = torch.arange(n_new, dtype=torch.float64)
    if ends:
        pos = i * ((n_old - 1) / (n_new - 1)) if n_new > 1 else torch.zeros(n_new, dtype=torch.float64)
    else:
        pos = (i + 0.5) * (n_old / n_new) - 0.5
    return pos.clamp(0, n_old - 1)


def axis_scale(n_old: int, n_new: int, ends: bool) -> float:
    """How much one unit of the old axis measures in new units (the map's slope, inverted)."""
    if ends:
        return (n_new - 1) / (n_old - 1) if n_old > 1 and n_new > 1 else 1.0
    return n_new / n_old


def axis_weights(n_old: int, n_new: int, ends: bool) -> torch.Tensor:
    """[n_new, n_old] float32 linear-interpolation matrix of the axis map (each row sums to 1)."""
    pos = axis_positions(n_old, n_new, ends)
    lo = pos.floor().long().clamp(max=n_old - 1)
    hi = (lo + 1).clamp(max=n_old - 1)
    frac = pos - lo.double()
    w = torch.zeros(n_new, n_old, dtype=torch.float64)
    rows = torch.arange(n_new)
    w[rows, lo] += 1 - frac
    w[rows, hi] += frac
    return w.float()


def nearest_indices(n_old: int, n_new: int, ends: bool) -> torch.Tensor:
    """[n_new] long: the old index nearest to each new one under the axis map (ties go up)."""
    return (axis_positions(n_old, n_new, ends) + 0.5).floor().long().clamp(0, n_old - 1)


def _resample(x: torch.Tensor, dims: tuple[int, int, int], old: tuple[int, int, int],
              new: tuple[int, int, int]) -> torch.Tensor:
    """`x` resampled along its (t, y, x) dimensions `dims` from sizes `old` to `new` (float32)."""
    out = x.float()
    for dim, ends, n_old, n_new in zip(dims, (True, False, False), old, new):
        if n_old != n_new:
            w = axis_weights(n_old, n_new, ends).to(out.device)
            out = torch.movedim(torch.tensordot(w, torch.movedim(out, dim, 0), dims=1), 0, dim)
    return out


# --- what an asset holds ------------------------------------------------------------------------
def resample_shift(shift: torch.Tensor, old: tuple[int, int, int], new: tuple[int, int, int]) -> torch.Tensor:
    """[N, 3] per-token (t, y, x) offsets on token grid `old` -> [N', 3] on `new`, in its units."""
    f, r, c = old
    field = _resample(shift.float().reshape(f, r, c, 3), (0, 1, 2), old, new)
    scale = torch.tensor([axis_scale(old[0], new[0], True), axis_scale(r, new[1], False),
                          axis_scale(c, new[2], False)], dtype=torch.float32)
    return (field * scale.to(field.device)).reshape(-1, 3)


def resample_latent(latent: torch.Tensor, new_size: tuple[int, int, int]) -> torch.Tensor:
    """[1, F', C, h, w] -> [1, *new_size[0], C, *new_size[1:]] by the same axis maps."""
    _, f, _, h, w = latent.shape
    return _resample(latent, (1, 3, 4), (f, h, w), new_size)


def resample_amf(amf: torch.Tensor, confidence: torch.Tensor, old: tuple[int, int, int],
                 new: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A hard AMF [F, F, S, 2] (dx, dy in patches) and its confidence [F, F, S] on the new grid:
    nearest frame pair and source token, offsets scaled by the spatial factors, rounded and clamped so
    that each target patch lies inside the new grid."""
    f, r, c = old
    f2, r2, c2 = new
    ti = nearest_indices(f, f2, True)
    yi, xi = nearest_indices(r, r2, False), nearest_indices(c, c2, False)
    src = (yi[:, None] * c + xi[None, :]).reshape(-1)  # [S'] old token of each new one
    a = amf.float()[ti][:, ti][:, :, src]  # [F', F', S', 2]
    conf = confidence.float()[ti][:, ti][:, :, src]
    scale = torch.tensor([axis_scale(c, c2, False), axis_scale(r, r2, False)], dtype=torch.float32)
    moved = torch.round(a * scale)
    ys, xs = torch.meshgrid(torch.arange(r2), torch.arange(c2), indexing="ij")
    here = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1).float()  # [S', 2] (x, y)
    top = torch.tensor([c2 - 1, r2 - 1], dtype=torch.float32)
    moved = torch.minimum(torch.maximum(moved, -here), top - here) + 0.0  # + 0.0: no negative zeros
    return moved, conf


def resample_previews(frames: torch.Tensor, latent_frames: int, height: int, width: int) -> torch.Tensor:
    """uint8 previews [F', ph, pw, 3] at `latent_frames` frames, at their own height and the new aspect."""
    f, ph, pw, _ = frames.shape
    out = frames[nearest_indices(f, latent_frames, True)]
    pw2 = max(1, round(width * ph / height))
    if pw2 != pw:
        x = out.permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(x, size=(ph, pw2), mode="bilinear", antialias=True, align_corners=False)
        out = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out.contiguous()


def retarget(asset: "MotionAsset", frames: int | None = None, height: int | None = None,
             width: int | None = None) -> "MotionAsset":
    """`asset` at `frames` x `height` x `width` pixels (None: keep that one): a new MotionAsset.

    Refuses (``CannotRetarget``) a ``table`` motion and (``ParameterError``, from check_geometry) a
    geometry its model cannot take. Warns (``RetargetNote``) when KV injection had to be turned off."""
    old_spec = asset.spec
    spec = check_geometry(old_spec, frames, height, width)
    if spec == old_spec:
        return copy.deepcopy(asset)  # equal, bit for bit, and sharing nothing mutable
    if not is_shift(asset.parametrisation):
        raise CannotRetarget(
            f"this motion was learnt with the '{asset.parametrisation}' parametrisation, whose ρ is tied to its "
            f"token grid {old_spec.grid} (frames, rows, cols) and cannot be moved to another frame count or size; "
            f"learn it again with --parametrisation shift to retarget it, or learn it at this geometry "
            f"(--frames {spec.num_frames} --height {spec.height} --width {spec.width})")
    old, new = old_spec.grid, spec.grid
    names = names_for(spec.embedding, asset.parametrisation)
    rho = {t: {n: resample_shift(asset.rho_delta[t][n], old, new) for n in names} for t in asset.timesteps}
    s = spec.spatial_compression
    latent = resample_latent(asset.ref_latent, (new[0], spec.height // s, spec.width // s))
    amf, conf = {}, {}
    for b in asset.blocks:
        amf[b], conf[b] = resample_amf(asset.ref_amf[b], asset.ref_confidence[b], old, new)
    params = copy.deepcopy(asset.params)
    guidance = asset.guidance
    if (new[0] != old[0] and spec.temporal_compression > 1 and guidance.inject and guidance.inject_blocks):
        params["inject"] = False
        warnings.warn(RetargetNote(
            f"KV injection is off at {spec.num_frames} frames: {spec.name}'s latent frames are not evenly spaced "
            f"in time (its VAE compresses {spec.temporal_compression} frames into one after the first), so the "
            f"reference latent cannot be retimed from {old_spec.num_frames} frames; the motion is carried by ρ "
            "alone"), stacklevel=2)
    frames_out = None
    if asset.ref_frames is not None:
        frames_out = resample_previews(asset.ref_frames, new[0], spec.height, spec.width)
    return replace(asset, spec=spec, timesteps=list(asset.timesteps), rho_delta=rho, ref_latent=latent,
                   ref_amf=amf, ref_confidence=conf, params=params, losses=copy.deepcopy(asset.losses),
                   source=copy.deepcopy(asset.source), ref_frames=frames_out,
                   scheduler=copy.deepcopy(asset.scheduler))


def geometry_changed(asset: "MotionAsset", spec) -> bool:
    """Whether model spec `spec` asks another frame count or size of `asset` with the same embedding."""
    a = asset.spec
    return a.embedding == spec.embedding and (a.num_frames, a.height, a.width) != \
        (spec.num_frames, spec.height, spec.width)

