"""A lossless pixel-(un)shuffle "VAE" for the shapes demo model.

It stands behind the part of the AutoencoderKLCogVideoX interface that ``motionlib.models.Model``
uses: ``encode(x).latent_dist.mode()``, ``decode(z).sample``, ``config.scaling_factor``, ``dtype``,
``enable_tiling()``/``enable_slicing()``. Each 2x2 pixel block of each frame becomes 4 channels
(12 = 3 x 4), frames are kept as they are (no temporal compression), so decode(encode(x)) == x.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F


@dataclass
class _DiracPosterior:
    """The posterior of a deterministic codec: mode() and sample() are the latent itself."""

    latent: torch.Tensor

    def mode(self) -> torch.Tensor:
        return self.latent

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.latent

    @property
    def mean(self) -> torch.Tensor:
        return self.latent


class PixelShuffleCodec(torch.nn.Module):
    """[B, 3, F, H, W] in [-1, 1] <-> [B, 3*f*f, F, H/f, W/f] (f = `factor`), exactly invertible."""

    def __init__(self, factor: int = 2, in_channels: int = 3, scaling_factor: float = 1.0):
        super().__init__()
        self.factor = factor
        self.config = SimpleNamespace(
            scaling_factor=float(scaling_factor), in_channels=in_channels,
            latent_channels=in_channels * factor * factor, temporal_compression_ratio=1,
            spatial_compression_ratio=factor, block_out_channels=(0,) * (factor.bit_length()),
        )
        # Model uses next(module.parameters()) for device/dtype checks: one frozen dummy parameter.
        self._anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def enable_tiling(self, *args, **kwargs) -> None:  # nothing to tile: the codec is pointwise
        pass

    def enable_slicing(self, *args, **kwargs) -> None:
        pass

    def disable_tiling(self) -> None:
        pass

    def disable_slicing(self) -> None:
        pass

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        b, c, f, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        z = F.pixel_unshuffle(frames, self.factor)
        z = z.reshape(b, f, *z.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()
        post = _DiracPosterior(z)
        return SimpleNamespace(latent_dist=post) if return_dict else (post,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        b, c, f, h, w = z.shape
        frames = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        x = F.pixel_shuffle(frames, self.factor)
        x = x.reshape(b, f, *x.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()
        return SimpleNamespace(sample=x) if return_dict else (x,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).latent_dist.mode()).sample
