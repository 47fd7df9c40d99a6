"""Specs of the real CogVideoX-2B / -5B (loaded by ``motionlib.families.cogvideox``).

Loading needs the weights (tens of GB) and, in practice, a GPU; it cannot run in motionlib's CI.
It is kept deliberately thin: everything after loading is shared with the tiny presets.
"""

from __future__ import annotations

from typing import Any

from .spec import GuidanceDefaults, ModelSpec

_COMMON: dict[str, Any] = dict(num_frames=49, height=480, width=720, temporal_compression=4, spatial_compression=8,
               patch_size=2, text_len=226, head_dim=64, num_inference_steps=50, guidance_scale=6.0)

COGVIDEOX_5B = ModelSpec(
    name="cogvideox-5b", embedding="rope", source="THUDM/CogVideoX-5b", heads=48, num_layers=42,
    dtype="bfloat16", scheduler="dpm", use_dynamic_cfg=True,
    guidance=GuidanceDefaults(blocks=(20,)), description="CogVideoX-5B (3D RoPE)", **_COMMON)

COGVIDEOX_2B = ModelSpec(
    name="cogvideox-2b", embedding="posemb", source="THUDM/CogVideoX-2b", heads=30, num_layers=30,
    dtype="float16", scheduler="ddim", use_dynamic_cfg=False,
    guidance=GuidanceDefaults(blocks=(15,)), description="CogVideoX-2B (3D sin-cos)", **_COMMON)

# CogVideoX-5B-I2V: the 5B transformer with the first frame's latents concatenated on channels (32 input
# channels). Its patch embedding also adds *learnt* positional embeddings made for 49 frames at 480x720:
# diffusers refuses another resolution and silently falls back to sin-cos ones at another frame count,
# so motionlib refuses any other geometry (fixed_geometry). ρ is its 3D RoPE, as on CogVideoX-5B.
COGVIDEOX_5B_I2V = ModelSpec(
    name="cogvideox-5b-i2v", embedding="rope", source="THUDM/CogVideoX-5b-I2V", heads=48, num_layers=42,
    dtype="bfloat16", scheduler="dpm", use_dynamic_cfg=True, conditioning="i2v", fixed_geometry=True,
    guidance=GuidanceDefaults(blocks=(20,)),
    description="CogVideoX-5B-I2V (3D RoPE; image-to-video; learnt positional embeddings: 49 x 480x720 only; "
                "untested with real weights)", **_COMMON)
