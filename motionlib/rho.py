"""ρ, the positional embedding DiTFlow optimises (paper §4.3, appendix A).

- "rope" family (CogVideoX-5B): the 3D RoPE cos/sin tables, with separate copies for queries and
  keys (as the official code optimises them): ``q_cos, q_sin, k_cos, k_sin`` of ``[F·S, head_dim]``.
- "posemb" family (CogVideoX-2B): the video part of the additive 3D sin-cos embedding: ``pos``
  of ``[F·S, hidden]``.

The base ρ is exactly what diffusers would use, so an unchanged ρ reproduces plain generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ROPE_NAMES = ("q_cos", "q_sin", "k_cos", "k_sin")
POSEMB_NAMES = ("pos",)


def names_for(family: str) -> tuple[str, ...]:
    return ROPE_NAMES if family == "rope" else POSEMB_NAMES


@dataclass
class Rho:
    family: str
    tensors: dict[str, torch.Tensor]

    def params(self) -> list[torch.Tensor]:
        return [self.tensors[n] for n in names_for(self.family)]

    def clone(self, requires_grad: bool = False, dtype: torch.dtype | None = None) -> "Rho":
        out = {}
        for n, t in self.tensors.items():
            c = t.detach().clone().to(dtype or t.dtype)
            out[n] = c.requires_grad_(requires_grad)
        return Rho(self.family, out)

    def delta(self, base: "Rho") -> dict[str, torch.Tensor]:
        return {n: (self.tensors[n].detach().float() - base.tensors[n].float()) for n in names_for(self.family)}

    @classmethod
    def from_delta(cls, base: "Rho", delta: dict[str, torch.Tensor], strength: float = 1.0) -> "Rho":
        """ρ = ρ_base + s·(ρ_t − ρ_base); s = 1 gives ρ_t, s = 0 gives the base exactly."""
        out = {}
        for n in names_for(base.family):
            b = base.tensors[n]
            d = delta[n].to(device=b.device, dtype=torch.float32)
            out[n] = b if strength == 0 else (b.float() + strength * d).to(b.dtype)
        return cls(base.family, out)

    def rope(self) -> tuple[torch.Tensor, ...]:
        """(q_cos, q_sin, k_cos, k_sin) for the attention processor."""
        return tuple(self.tensors[n] for n in ROPE_NAMES)


def base_rho(model) -> Rho:
    """The model's own ρ for its latent grid (what a plain generation uses)."""
    transformer, spec = model.transformer, model.spec
    cfg = transformer.config
    if getattr(cfg, "patch_size_t", None) is not None:
        raise ValueError("CogVideoX 1.5 checkpoints (temporal patches) are not supported")
    frames, rows, cols = spec.grid
    if spec.family == "rope":
        from diffusers.models.embeddings import get_3d_rotary_pos_embed
        from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

        p = cfg.patch_size
        crops = get_resize_crop_region_for_grid((rows, cols), cfg.sample_width // p, cfg.sample_height // p)
        cos, sin = get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=crops,
                                           grid_size=(rows, cols), temporal_size=frames,
                                           device=model.device)
        return Rho("rope", {"q_cos": cos, "q_sin": sin, "k_cos": cos, "k_sin": sin})
    pe = transformer.patch_embed
    h, w = rows * pe.patch_size, cols * pe.patch_size
    pixel_frames = (frames - 1) * pe.temporal_compression_ratio + 1
    # the same choice CogVideoXPatchEmbed.forward makes between its buffer and a recomputation
    if (pe.sample_height, pe.sample_width, pe.sample_frames) == (h, w, pixel_frames):
        joint = pe.pos_embedding
    else:
        joint = pe._get_positional_embeddings(h, w, pixel_frames, device=model.device)
    pos = joint[0, pe.max_text_seq_length:].to(device=model.device, dtype=model.dtype)
    return Rho("posemb", {"pos": pos})
