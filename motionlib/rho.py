"""ρ, the positional embedding DiTFlow optimises (paper §4.3, appendix A).

- "rope" kind (CogVideoX-5B, Wan): the 3D RoPE cos/sin tables, with separate copies for queries
  and keys (the paper writes one ρ; its official code optimises a query and a key copy):
  ``q_cos, q_sin, k_cos, k_sin`` of ``[F·S, head_dim]``.
- "additive" kind (CogVideoX-2B): the video part of the additive 3D sin-cos embedding: ``pos``
  of ``[F·S, hidden]``.

Which kind a model family uses is ``motionlib.families.rho_kind``; its base values come from the
family's adapter (``base_rho``).

The base ρ is exactly what diffusers would use, so an unchanged ρ reproduces plain generation.

Three parametrisations of what is optimised (``GuidanceParams.parametrisation``):

- ``"table"``: every entry of ρ is free, as in the paper and its official code. An asset stores
  ρ_t − ρ_base per guided step (for CogVideoX-5B at 49 frames, 4 × 17550 × 64 numbers per step).
- ``"shift"``: each video token gets a learnt 3D position offset δ (t, y, x in latent frames /
  patches) and ρ is the embedding of the shifted position p + δ, computed from the base tables by
  angle addition (a zero shift gives the base bit for bit). RoPE: one offset for the token's query
  and one for its key, so the logit q_i·k_j depends on (p_i + δq_i) − (p_j + δk_j): moving a
  token's key position moves where other frames look for it, which is what an AMF describes.
  Sin-cos: one offset per token. 2 × 17550 × 3 numbers per step for CogVideoX-5B instead of
  4 × 17550 × 64, and a geometric prior that does not depend on the prompt or the noise.
- ``"shared-shift"``: one offset per token for its query and its key alike, i.e. the token itself
  moves, as with the paper's single ρ. Half of ``"shift"``'s numbers for RoPE (the same as
  ``"shift"`` for sin-cos, which has one offset per token anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .errors import ParameterError
from .models.spec import rho_kind

ROPE_NAMES = ("q_cos", "q_sin", "k_cos", "k_sin")
POSEMB_NAMES = ("pos",)
SHIFT_NAMES = ("q_shift", "k_shift")
SHARED_SHIFT_NAMES = ("shift",)
POSEMB_SHIFT_NAMES = ("pos_shift",)
SHIFTS = ("shift", "shared-shift")  # the parametrisations that learn position offsets
PARAMETRISATIONS = ("table", *SHIFTS)


def is_shift(parametrisation: str) -> bool:
    """Whether `parametrisation` learns per-token position offsets (its assets store [N, 3] shifts)."""
    return parametrisation in SHIFTS


def names_for(embedding: str, parametrisation: str = "table") -> tuple[str, ...]:
    """The tensors an asset stores per guided step."""
    rope = rho_kind(embedding) == "rope"
    if parametrisation == "shift":
        return SHIFT_NAMES if rope else POSEMB_SHIFT_NAMES
    if parametrisation == "shared-shift":
        return SHARED_SHIFT_NAMES if rope else POSEMB_SHIFT_NAMES
    return ROPE_NAMES if rope else POSEMB_NAMES


def rope_sides(embedding: str, parametrisation: str, shifts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The shift arguments of ``shifted`` from what an asset stores: (q, k) for RoPE (one tensor
    twice under 'shared-shift'), (pos,) for sin-cos."""
    values = tuple(shifts[n] for n in names_for(embedding, parametrisation))
    return values * 2 if rho_kind(embedding) == "rope" and len(values) == 1 else values


def rho_width(spec) -> int:
    """Entries per video token of one ρ table: a head's RoPE table, or the additive embedding's width."""
    return spec.head_dim if rho_kind(spec.embedding) == "rope" else spec.heads * spec.head_dim


def check_parametrisation(parametrisation: str) -> None:
    if parametrisation not in PARAMETRISATIONS:
        raise ParameterError(f"parametrisation must be one of {', '.join(PARAMETRISATIONS)}, got {parametrisation!r}")


@dataclass
class Rho:
    embedding: str  # the model's positional embedding (motionlib.models.spec.EMBEDDINGS)
    tensors: dict[str, torch.Tensor]
    # angle per unit of (t, y, x) for each embedding dimension: [3, head_dim] (rope) or [3, hidden]
    rates: torch.Tensor | None = None
    # posemb: the dimension holding the other half of each (sin, cos) pair, and +1 on sin / -1 on cos
    partner: torch.Tensor | None = None
    sign: torch.Tensor | None = None

    def params(self) -> list[torch.Tensor]:
        return [self.tensors[n] for n in names_for(self.embedding)]

    def clone(self, requires_grad: bool = False, dtype: torch.dtype | None = None) -> "Rho":
        out = {}
        for n, t in self.tensors.items():
            c = t.detach().clone().to(dtype or t.dtype)
            out[n] = c.requires_grad_(requires_grad)
        return replace(self, tensors=out)

    def delta(self, base: "Rho") -> dict[str, torch.Tensor]:
        return {n: (self.tensors[n].detach().float() - base.tensors[n].float()) for n in names_for(self.embedding)}

    @classmethod
    def from_delta(cls, base: "Rho", delta: dict[str, torch.Tensor], strength: float = 1.0) -> "Rho":
        """ρ = ρ_base + s·(ρ_t − ρ_base); s = 1 gives ρ_t, s = 0 gives the base exactly."""
        out = {}
        for n in names_for(base.embedding):
            b = base.tensors[n]
            d = delta[n].to(device=b.device, dtype=torch.float32)
            out[n] = b if strength == 0 else (b.float() + strength * d).to(b.dtype)
        return replace(base, tensors=out)

    def cast_like(self, base: "Rho") -> "Rho":
        """These values, detached, in `base`'s dtypes (what a denoising step takes)."""
        return replace(base, tensors={n: v.detach().to(base.tensors[n].dtype) for n, v in self.tensors.items()})

    def rope(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q_cos, q_sin, k_cos, k_sin) for the attention processor."""
        q_cos, q_sin, k_cos, k_sin = (self.tensors[n] for n in ROPE_NAMES)
        return q_cos, q_sin, k_cos, k_sin


def _rotate(first: torch.Tensor, second: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Angle addition: (cos a, sin a) -> (cos(a + φ), sin(a + φ)), in float32."""
    c, s = torch.cos(phi), torch.sin(phi)
    first, second = first.float(), second.float()
    return first * c - second * s, second * c + first * s


def shifted(base: Rho, *shifts: torch.Tensor) -> Rho:
    """ρ of the positions p + δ, differentiable in the [N, 3] shifts δ (t, y, x units).

    RoPE takes (q_shift, k_shift), sin-cos one shift. φ = δ · rates per dimension, then angle
    addition on each (cos, sin) pair, so a zero shift returns the base values exactly.
    """
    if base.rates is None:
        raise ValueError("shifted positions need a base ρ made by base_rho (with its rates)")
    rates = base.rates.float()
    if rho_kind(base.embedding) == "rope":
        q_shift, k_shift = shifts
        out = {}
        for side, delta in (("q", q_shift), ("k", k_shift)):
            phi = delta.float() @ rates.to(delta.device)
            out[f"{side}_cos"], out[f"{side}_sin"] = _rotate(base.tensors[f"{side}_cos"],
                                                             base.tensors[f"{side}_sin"], phi)
        return replace(base, tensors=out)
    (delta,) = shifts
    pos = base.tensors["pos"].float()
    assert base.sign is not None and base.partner is not None, "a sin-cos ρ carries its partner and sign"
    phi = delta.float() @ rates.to(delta.device)
    # sin dims: sin(a+φ) = sin a·cos φ + cos a·sin φ; cos dims: cos(a+φ) = cos a·cos φ − sin a·sin φ
    moved = pos * torch.cos(phi) + base.sign.to(pos.device) * pos[:, base.partner.to(pos.device)] * torch.sin(phi)
    return replace(base, tensors={"pos": moved})


def from_stored(base: Rho, stored: dict[str, torch.Tensor], parametrisation: str = "table",
                strength: float = 1.0) -> Rho:
    """ρ_t from what an asset stores for one step; `strength` scales the change (0: the base)."""
    if parametrisation == "table":
        return Rho.from_delta(base, stored, strength)
    if strength == 0:
        return base
    dev = next(iter(base.tensors.values())).device
    scaled = {n: strength * stored[n].to(dev, torch.float32) for n in names_for(base.embedding, parametrisation)}
    rho = shifted(base, *rope_sides(base.embedding, parametrisation, scaled))
    return rho.cast_like(base)


class Parametrised:
    """What guidance optimises: the free ρ tables or the per-token shifts (see the module doc).

    Shift options (regularisers of what ρ can do; they need the token `grid` (frames, rows, cols)):
    ``shift_grid`` > 0 replaces the free per-token shift by a coarse field of shift_grid x
    shift_grid cells per frame, bilinearly upsampled to the tokens (spatially smooth by
    construction); ``frame_shift`` adds one shift shared by all tokens of a frame. What is stored
    and applied is always the resulting per-token shift, so assets and apply do not change.
    """

    def __init__(self, base: Rho, parametrisation: str = "table", *, grid: tuple[int, int, int] | None = None,
                 shift_grid: int = 0, frame_shift: bool = False):
        check_parametrisation(parametrisation)
        self.base, self.parametrisation = base, parametrisation
        self.grid = grid
        if parametrisation == "table":
            self.table = base.clone(requires_grad=True, dtype=torch.float32)
            return
        first = next(iter(base.tensors.values()))
        n_tok, dev = first.shape[0], first.device
        names = names_for(base.embedding, parametrisation)

        def zeros(*shape: int) -> dict[str, torch.Tensor]:
            return {k: torch.zeros(*shape, 3, device=dev, requires_grad=True) for k in names}

        self.cells: tuple[int, int] | None = None
        self.frame: dict[str, torch.Tensor] | None = None
        if not (shift_grid or frame_shift):
            self.shift = zeros(n_tok)
            return
        if grid is None or grid[0] * grid[1] * grid[2] != n_tok:
            raise ValueError(f"shift_grid/frame_shift need the token grid (frames, rows, cols) of the "
                             f"{n_tok} tokens, got {grid}")
        self.cells = None if not shift_grid else (min(shift_grid, grid[1]), min(shift_grid, grid[2]))
        self.shift = zeros(grid[0], *self.cells) if self.cells else zeros(n_tok)
        self.frame = zeros(grid[0]) if frame_shift else None

    def _grid(self) -> tuple[int, int, int]:
        """The token grid (frames, rows, cols), which the shift options and roughness need."""
        if self.grid is None:
            raise ValueError("this needs the token grid (frames, rows, cols); pass grid=")
        return self.grid

    def params(self) -> list[torch.Tensor]:
        if self.parametrisation == "table":
            return self.table.params()
        return list(self.shift.values()) + (list(self.frame.values()) if self.frame else [])

    def token_shifts(self) -> dict[str, torch.Tensor]:
        """The per-token shifts [N, 3] the parameters give (differentiable)."""
        out = {}
        for k, v in self.shift.items():
            if self.cells:
                frames, rows, cols = self._grid()
                up = torch.nn.functional.interpolate(v.permute(0, 3, 1, 2), size=(rows, cols), mode="bilinear",
                                                     align_corners=True)
                v = up.permute(0, 2, 3, 1).reshape(-1, 3)
            if self.frame:
                frames, rows, cols = self._grid()
                v = v + self.frame[k].repeat_interleave(rows * cols, dim=0)
            out[k] = v
        return out

    def roughness(self) -> torch.Tensor:
        """Mean squared difference of horizontally and vertically neighbouring tokens' shifts
        within each frame, summed over the shifts (0 for a field constant per frame)."""
        frames, rows, cols = self._grid()
        total: torch.Tensor | float = 0.0
        for v in self.token_shifts().values():
            f = v.view(frames, rows, cols, 3)
            if cols > 1:
                total = total + (f[:, :, 1:] - f[:, :, :-1]).pow(2).mean()
            if rows > 1:
                total = total + (f[:, 1:] - f[:, :-1]).pow(2).mean()
        return torch.as_tensor(total)

    def rho(self) -> Rho:
        """ρ as the forward pass needs it (differentiable in the parameters)."""
        if self.parametrisation == "table":
            return self.table
        return shifted(self.base, *rope_sides(self.base.embedding, self.parametrisation, self.token_shifts()))

    def stored(self) -> dict[str, torch.Tensor]:
        """What an asset keeps for this step: ρ_t − ρ_base, or the per-token shifts."""
        if self.parametrisation == "table":
            return self.table.delta(self.base)
        return {k: v.detach().float().clone() for k, v in self.token_shifts().items()}

    def detached(self) -> Rho:
        """ρ_t for the denoising step itself, in the base's dtypes."""
        with torch.no_grad():
            rho = self.rho()
        return rho.cast_like(self.base)


def rope_rates(head_dim: int, crops, grid_size: tuple[int, int], temporal_size: int,
               theta: float = 10000.0) -> torch.Tensor:
    """[3, head_dim]: RoPE angle per unit step along t, y, x for each head dimension.

    Mirrors diffusers' get_3d_rotary_pos_embed (linspace grid): head dimensions are split
    t | h | w as head_dim/4, 3·head_dim/8, 3·head_dim/8, each with frequencies
    theta^(-2j/dim) repeated for the (cos, sin) pair, and positions spaced by the crop's step.
    """
    (top, left), (bottom, right) = crops

    def spacing(start: float, stop: float, n: int) -> float:  # of linspace(start, stop·(n−1)/n, n)
        return (stop * (n - 1) / n - start) / (n - 1) if n > 1 else stop / n

    steps = (1.0, spacing(top, bottom, grid_size[0]), spacing(left, right, grid_size[1]))  # t: arange
    dims = (head_dim // 4, head_dim // 8 * 3, head_dim // 8 * 3)
    rates = torch.zeros(3, head_dim, dtype=torch.float64)
    start = 0
    for axis, (dim, step) in enumerate(zip(dims, steps)):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim)
        rates[axis, start:start + dim] = freqs.repeat_interleave(2) * step
        start += dim
    return rates.float()


def sincos_layout(hidden: int, spatial_scale: float = 1.0, temporal_scale: float = 1.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rates [3, hidden], partner [hidden], sign [hidden]) of CogVideoX's 3D sin-cos embedding.

    Mirrors diffusers' get_3d_sincos_pos_embed: hidden/4 temporal dimensions, then 3·hidden/8
    for x and 3·hidden/8 for y (the spatial grid is meshgrid'ed width first); each part is
    [sin(p·ω_k), cos(p·ω_k)] with ω_k = 10000^(−k/(dim/2)) and p = index / interpolation scale.
    """
    dt, ds = hidden // 4, 3 * hidden // 8
    rates = torch.zeros(3, hidden, dtype=torch.float64)
    partner = torch.arange(hidden)
    sign = torch.ones(hidden)
    for axis, start, dim, scale in ((0, 0, dt, temporal_scale), (2, dt, ds, spatial_scale),
                                    (1, dt + ds, ds, spatial_scale)):
        half = dim // 2
        omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half) / scale
        rates[axis, start:start + half] = omega
        rates[axis, start + half:start + dim] = omega
        sin_idx, cos_idx = torch.arange(start, start + half), torch.arange(start + half, start + dim)
        partner[sin_idx], partner[cos_idx] = cos_idx, sin_idx
        sign[cos_idx] = -1.0
    return rates.float(), partner, sign


def base_rho(model) -> Rho:
    """The model's own ρ for its latent grid (what a plain generation uses), from its family's adapter."""
    return model.family.base_rho(model)
