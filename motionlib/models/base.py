"""`Model`: the components of a CogVideoX-style text-to-video DiT, passed around together.

Like a diffusers pipeline without a ``__call__``: motionlib's sampling loop (``motionlib.sampling``)
drives the components. The codec and text encoder only need ``encode``/``decode``-style methods,
so non-VAE codecs and non-T5 encoders can stand behind the same interface.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from .spec import ModelSpec


@dataclass
class Model:
    spec: ModelSpec
    tokenizer: Any
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    transformer: torch.nn.Module
    scheduler: Any
    device: torch.device
    dtype: torch.dtype
    offload: bool = False  # keep components on the CPU and move each to `device` only while used

    # --- placement -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def on_device(self, module: torch.nn.Module):
        """Move `module` to the compute device for the duration of a block (model CPU offload)."""
        first = next(module.parameters(), None)
        here = first is not None and first.device.type == self.device.type and (
            self.device.index is None or first.device.index == self.device.index)
        if not self.offload or first is None or here:
            yield module  # nothing to move, or an outer block already moved it
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # --- text ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """T5 embeddings padded to the model's text length: [B, text_len, D]."""
        ids = self.tokenizer(
            list(prompts), padding="max_length", max_length=self.spec.text_len,
            truncation=True, add_special_tokens=True, return_tensors="pt",
        ).input_ids
        with self.on_device(self.text_encoder) as enc:
            emb = enc(ids.to(self.device))[0]
        return emb.to(self.dtype)

    # --- video <-> latent ----------------------------------------------------------------------
    @property
    def scaling_factor(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 1.0))

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """[F, 3, H, W] in [-1, 1] -> scaled latent [1, F', C, h, w] (posterior mode: deterministic)."""
        x = video.permute(1, 0, 2, 3).unsqueeze(0).to(self.device, self.vae.dtype)
        with self.on_device(self.vae) as vae:
            z = vae.encode(x).latent_dist.mode()
        return (z * self.scaling_factor).permute(0, 2, 1, 3, 4).to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latent [1, F', C, h, w] -> video [F, 3, H, W] in [0, 1] (float32, CPU)."""
        z = latents.permute(0, 2, 1, 3, 4) / self.scaling_factor
        with self.on_device(self.vae) as vae:
            x = vae.decode(z.to(self.device, vae.dtype)).sample
        return ((x[0].permute(1, 0, 2, 3).float().cpu() + 1) / 2).clamp(0, 1)

    def latent_shape(self) -> tuple[int, int, int, int, int]:
        s = self.spec
        c = self.transformer.config.in_channels
        return (1, s.latent_frames, c, s.height // s.spatial_compression, s.width // s.spatial_compression)

    def new_scheduler(self):
        """A fresh scheduler of the model's kind (schedulers carry per-run state)."""
        return type(self.scheduler).from_config(self.scheduler.config)
