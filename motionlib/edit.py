"""Motion editing without optimisation: mirror, reverse and blend a stored motion (issue 28).

Each edit returns a new ``MotionAsset`` (the input is left untouched) and transforms everything the
asset holds consistently: the per-token ρ shifts of every guided timestep, the reference latent used
for KV injection, the reference AMF with its confidence, and the preview frames. Only the ``shift``
and ``shared-shift`` parametrisations can be edited: their ρ is a per-token 3D position offset
(t, y, x) in frame/patch units, a geometric quantity; a ``table`` ρ (free RoPE or sin-cos entries)
cannot, and is refused (``UneditableMotion``).

Layouts: shifts are ``[N, 3]`` over tokens in (frame, row, column) order with components (t, y, x);
the AMF is ``[F, F, S, 2]`` with (dx, dy) per source patch in row-major order; the confidence is
``[F, F, S]``; the latent ``[1, F', C, h, w]``; the previews ``[F', h, w, 3]``.

What is exact and what is not:

- the shifts, the AMF and its confidence, and the previews are permuted and negated: exact, and
  applying an edit twice (mirror, reverse) gives the original bit for bit;
- mirroring the latent flips its spatial axis. A pixel-unshuffle latent (the ``shapes`` codec: 3·f²
  channels at spatial compression f and no temporal compression) also gets its f×f sub-pixel
  channels swapped, which is exact; any other latent (a VAE's) is flipped as it is, which is only
  approximate: VAEs are not mirror-symmetric;
- reversing the latent flips its frames: exact without temporal compression (``shapes``),
  approximate for temporally compressed latents (CogVideoX, Wan: a latent frame stands for several
  pixel frames, whose order inside it is not reversed, and the first stands for one frame);
- a blend is a weighted sum of the parents' shifts per guided timestep (the weights are used as
  given, not normalised). By default (``part="global"``) each parent contributes only its global
  part (``global_shift``: per frame, the mean offset over the frame's tokens, i.e. a rigid
  translation of each frame's positions, which carries most of a shapes motion); ``part="full"``
  sums the whole per-token fields, whose local parts interfere (on ``shapes``, blend(left, up) moved
  up-left with cosine 0.81 from the global parts and 0.45 from the full fields; BENCHMARKS.md
  section 16). Its AMF is the weighted sum of the parents' displacements (rounded, as
  stored), its confidence the |weight|-weighted mean. KV injection is turned off for a blend of more
  than one parent (``params["inject"] = False``): injecting one parent's reference would pull the
  render towards that parent's motion, and a cross-fade of references is no reference at all. The
  file still holds the latent of the first parent with a non-zero weight (the format needs one).

The model itself is not exactly mirror- or time-equivariant, so an edited motion renders the edited
movement only approximately; ``python -m benchmarks --only edit`` measures how well on ``shapes``.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Callable, Sequence, cast

import torch

from .errors import UneditableMotion
from .rho import is_shift

if TYPE_CHECKING:  # MotionAsset's edit methods import this module: no import back at run time
    from .asset import MotionAsset

__all__ = ["mirror", "reverse", "blend", "global_shift", "BLEND_PARTS", "mirror_shift", "reverse_shift", "mirror_amf", "reverse_amf",
           "mirror_latent", "AXES", "UneditableMotion"]

AXES = ("x", "y")
_COMPONENT = {"x": 2, "y": 1}  # index of the axis in a (t, y, x) shift
_AMF_COMPONENT = {"x": 0, "y": 1}  # index of the axis in a (dx, dy) AMF displacement
MAX_PARENTS = 16
BLEND_PARTS = ("global", "full")  # what of each parent's shift a blend sums: its global part, or all of it


def check_editable(asset: MotionAsset, what: str = "this motion") -> None:
    if not is_shift(asset.parametrisation):
        raise UneditableMotion(
            f"{what} uses the '{asset.parametrisation}' parametrisation, whose ρ tables cannot be transformed; "
            "only motions learnt with --parametrisation shift (or shared-shift) can be edited: learn it again "
            "with --parametrisation shift")


def check_axis(axis: str) -> None:
    if axis not in AXES:
        raise UneditableMotion(f"mirror axis must be 'x' or 'y', got {axis!r}")


def mirror_shift(shift: torch.Tensor, grid: tuple[int, int, int], axis: str) -> torch.Tensor:
    """Per-token (t, y, x) shifts [N, 3] of the mirrored clip: tokens flipped along `axis`, that component negated."""
    frames, rows, cols = grid
    field = shift.reshape(frames, rows, cols, 3).flip(2 if axis == "x" else 1).clone()
    field[..., _COMPONENT[axis]] = -field[..., _COMPONENT[axis]]
    return field.reshape(shift.shape)


def global_shift(shift: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """The global part of a [N, 3] shift: each frame's mean offset over its tokens, given to every token of
    the frame (a rigid translation per frame; what is left is the motion's local part)."""
    frames, rows, cols = grid
    per_frame = shift.reshape(frames, rows * cols, 3).mean(1, keepdim=True)
    return per_frame.expand(frames, rows * cols, 3).reshape(shift.shape).clone()


def reverse_shift(shift: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Per-token shifts [N, 3] of the reversed clip: frames in reverse order, the t component negated."""
    frames, rows, cols = grid
    field = shift.reshape(frames, rows * cols, 3).flip(0).clone()
    field[..., 0] = -field[..., 0]
    return field.reshape(shift.shape)


def mirror_amf(amf: torch.Tensor, conf: torch.Tensor, grid: tuple[int, int, int], axis: str
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """AMF [F, F, S, 2] (dx, dy) and confidence [F, F, S] of the mirrored clip: source patches flipped along
    `axis`, that displacement component negated."""
    frames, rows, cols = grid
    dim = 3 if axis == "x" else 2
    flow = amf.reshape(frames, frames, rows, cols, 2).flip(dim).clone()
    flow[..., _AMF_COMPONENT[axis]] = -flow[..., _AMF_COMPONENT[axis]]
    return flow.reshape(amf.shape), conf.reshape(frames, frames, rows, cols).flip(dim).reshape(conf.shape)


def reverse_amf(amf: torch.Tensor, conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AMF and confidence of the reversed clip: the pair (i → j) becomes (F−1−i → F−1−j), displacements unchanged."""
    return amf.flip(0, 1), conf.flip(0, 1)


def _subpixel_factor(latent: torch.Tensor, spec) -> int | None:
    """f when the latent is a pixel-unshuffle one (3·f² channels at spatial compression f, no temporal
    compression: the shapes codec), else None."""
    f = spec.spatial_compression
    return f if spec.temporal_compression == 1 and latent.shape[2] == 3 * f * f else None


def mirror_latent(latent: torch.Tensor, spec, axis: str) -> torch.Tensor:
    """The latent [1, F', C, h, w] flipped along `axis`; a pixel-unshuffle latent's f×f sub-pixel channels
    (channel c·f² + i·f + j holds sub-pixel row i, column j of colour c) are swapped with it (exact).
    Any other latent is approximate (see the module doc)."""
    out = latent.flip(4 if axis == "x" else 3)
    f = _subpixel_factor(latent, spec)
    if f is None:
        return out
    b, frames, c, h, w = out.shape
    sub = out.reshape(b, frames, 3, f, f, h, w).flip(4 if axis == "x" else 3)
    return sub.reshape(b, frames, c, h, w)


def _parent(asset: MotionAsset) -> dict:
    """What a pure edit records of a parent (the catalogue names it when it stores the result)."""
    return {"created_at": asset.created_at, **({"source": asset.source["name"]} if asset.source.get("name") else {})}


def _made_now(asset: MotionAsset) -> str:
    """When an edit makes a motion, by the rule of a learn (motionlib.asset.now: $SOURCE_DATE_EPOCH fixes it),
    read from MotionAsset's ``created_at`` default so that this module does not import motionlib.asset back."""
    factory = {f.name: f for f in fields(asset)}["created_at"].default_factory
    return cast(Callable[[], str], factory)()


def _derived(asset: MotionAsset, operation: dict, parents: list[dict], **changes) -> MotionAsset:
    return replace(asset, created_at=_made_now(asset), losses=[], lineage={"operations": [operation], "parents": parents},
                   **changes)


def mirror(asset: MotionAsset, axis: str) -> MotionAsset:
    """The motion of the clip mirrored left–right (axis ``"x"``) or top–bottom (``"y"``); a new asset."""
    check_axis(axis)
    check_editable(asset)
    grid = asset.spec.grid
    rho = {t: {n: mirror_shift(v, grid, axis) for n, v in d.items()} for t, d in asset.rho_delta.items()}
    amf, conf = {}, {}
    for b in asset.blocks:
        amf[b], conf[b] = mirror_amf(asset.ref_amf[b], asset.ref_confidence[b], grid, axis)
    frames = None if asset.ref_frames is None else asset.ref_frames.flip(2 if axis == "x" else 1).contiguous()
    return _derived(asset, {"op": "mirror", "axis": axis}, [_parent(asset)], rho_delta=rho, ref_amf=amf,
                    ref_confidence=conf, ref_latent=mirror_latent(asset.ref_latent, asset.spec, axis),
                    ref_frames=frames)


def reverse(asset: MotionAsset) -> MotionAsset:
    """The motion of the clip played backwards; a new asset (the denoising-step axis is not touched)."""
    check_editable(asset)
    grid = asset.spec.grid
    rho = {t: {n: reverse_shift(v, grid) for n, v in d.items()} for t, d in asset.rho_delta.items()}
    amf, conf = {}, {}
    for b in asset.blocks:
        amf[b], conf[b] = reverse_amf(asset.ref_amf[b], asset.ref_confidence[b])
    frames = None if asset.ref_frames is None else asset.ref_frames.flip(0).contiguous()
    return _derived(asset, {"op": "reverse"}, [_parent(asset)], rho_delta=rho, ref_amf=amf, ref_confidence=conf,
                    ref_latent=asset.ref_latent.flip(1), ref_frames=frames)


def check_weights(weights: Sequence[float], count: int) -> list[float]:
    """The blend weights as floats: one per motion, finite, within ±10, not all zero (UneditableMotion)."""
    w = list(weights)
    if len(w) != count:
        raise UneditableMotion(f"give one weight per motion: {count} motions, {len(w)} weights")
    for v in w:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > 10:
            raise UneditableMotion(f"blend weights must be finite numbers from -10 to 10, got {v!r}")
    if not any(w):
        raise UneditableMotion("blend weights are all zero")
    return [float(v) for v in w]


def check_blendable(assets: Sequence[MotionAsset], names: Sequence[str] | None = None) -> None:
    """Refuse motions that cannot be blended, naming them: another model, geometry or parametrisation,
    other guided timesteps or guidance blocks, or a table parametrisation."""
    if not 2 <= len(assets) <= MAX_PARENTS:
        raise UneditableMotion(f"blend takes 2 to {MAX_PARENTS} motions, got {len(assets)}")
    label = list(names) if names is not None else [f"motion {i + 1}" for i in range(len(assets))]
    first = assets[0]
    for a, name in zip(assets, label):
        check_editable(a, f"'{name}'" if names is not None else name)
    for a, name in zip(assets[1:], label[1:]):
        why = None
        if a.spec.name != first.spec.name or a.spec.config_hash() != first.spec.config_hash():
            why = f"was learnt with {a.spec.name} {a.spec.grid}, '{label[0]}' with {first.spec.name} {first.spec.grid}"
        elif a.parametrisation != first.parametrisation:
            why = f"uses the '{a.parametrisation}' parametrisation, '{label[0]}' '{first.parametrisation}'"
        elif a.timesteps != first.timesteps:
            why = (f"was learnt at other guided timesteps than '{label[0]}' ({len(a.timesteps)} vs "
                   f"{len(first.timesteps)}: other --steps or --guided-fraction)")
        elif a.blocks != first.blocks:
            why = f"was learnt at guidance blocks {a.blocks}, '{label[0]}' at {first.blocks}"
        if why:
            raise UneditableMotion(f"cannot blend '{name}' with '{label[0]}': it {why}")


def _weighted(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Σ w·x over the non-zero weights, in float32 (a weight of 1 with the rest 0 returns x bit for bit)."""
    total: torch.Tensor | None = None
    for x, w in zip(tensors, weights):
        if w:
            part = x.float() * w
            total = part if total is None else total + part
    assert total is not None
    return total


def check_part(part: str) -> None:
    if part not in BLEND_PARTS:
        raise UneditableMotion(f"a blend sums the parents' 'global' or 'full' shifts, got {part!r}")


def blend(assets: Sequence[MotionAsset], weights: Sequence[float] | None = None, *, part: str = "global",
          names: Sequence[str] | None = None) -> MotionAsset:
    """A motion whose shifts are the weighted sum of the parents' per guided timestep; a new asset.

    ``weights`` default to equal ones summing to 1; they are used as given. ``part`` is what of each
    parent's shifts is summed: ``"global"`` (default), each frame's mean offset (``global_shift``), or
    ``"full"``, the whole per-token field (then weights 1, 0 give the first motion itself). ``names``
    label the parents in error messages. KV injection is off unless one parent carries every non-zero
    weight."""
    assets = list(assets)
    check_part(part)
    check_blendable(assets, names)
    w = check_weights(weights if weights is not None else [1 / len(assets)] * len(assets), len(assets))
    live = [i for i, v in enumerate(w) if v]
    first = assets[live[0]]
    grid = first.spec.grid

    def field(a: MotionAsset, t: int, n: str) -> torch.Tensor:
        return a.rho_delta[t][n] if part == "full" else global_shift(a.rho_delta[t][n], grid)

    rho = {t: {n: _weighted([field(a, t, n) for a in assets], w) for n in first.rho_delta[t]}
           for t in first.timesteps}
    _, rows, cols = first.spec.grid
    reach = max(rows, cols) - 1
    mass = sum(abs(v) for v in w)
    share = [abs(v) / mass for v in w]
    amf, conf = {}, {}
    for b in first.blocks:
        amf[b] = _weighted([a.ref_amf[b] for a in assets], w).round().clamp(-reach, reach)
        conf[b] = _weighted([a.ref_confidence[b] for a in assets], share).clamp(0, 1)
    frames = None
    if all(a.ref_frames is not None for a in assets):
        frames = _weighted([a.ref_frames for a in assets], share).round().clamp(0, 255).to(torch.uint8)  # type: ignore[misc]
    params = dict(first.params)
    if len(live) > 1:
        params["inject"] = False
    fingerprints = {a.weights for a in assets}
    parents = [{**_parent(a), "weight": v} for a, v in zip(assets, w)]
    return _derived(first, {"op": "blend", "weights": w, "part": part}, parents, rho_delta=rho, ref_amf=amf, ref_confidence=conf,
                    ref_frames=frames, params=params, weights=fingerprints.pop() if len(fingerprints) == 1 else None)
