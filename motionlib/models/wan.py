"""Specs of Wan 2.1 text-to-video (1.3B, 14B), loaded by ``motionlib.families.wan``.

Defaults are WanPipeline's: 81 frames (4k+1), 480x832, 50 steps of its UniPC flow scheduler,
CFG 5, 16 fps. Guidance defaults come from the literature and are **untested with real weights**
(no machine motionlib is built on can download them): block 14 of 30 for 1.3B as in FastVMT
(the same relative depth, block 19 of 40, for 14B), and DiTFlow's lr / Adam steps / guided
fraction (lr 0.002 -> 0.001, 5 steps at each of the first 20% of 50 steps, KV injection at block 0).
"""

from __future__ import annotations

from typing import Any

from .spec import GuidanceDefaults, ModelSpec

UNTESTED = "guidance defaults from the literature, untested with real weights"

_COMMON: dict[str, Any] = dict(embedding="wan", num_frames=81, height=480, width=832, temporal_compression=4,
               spatial_compression=8, patch_size=2, text_len=512, head_dim=128, dtype="bfloat16",
               scheduler="unipc", num_inference_steps=50, guidance_scale=5.0, use_dynamic_cfg=False, fps=16)

WAN21_T2V_1_3B = ModelSpec(
    name="wan2.1-t2v-1.3b", source="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", heads=12, num_layers=30,
    guidance=GuidanceDefaults(blocks=(14,)), description=f"Wan2.1-T2V-1.3B (3D RoPE; {UNTESTED})", **_COMMON)

WAN21_T2V_14B = ModelSpec(
    name="wan2.1-t2v-14b", source="Wan-AI/Wan2.1-T2V-14B-Diffusers", heads=40, num_layers=40,
    guidance=GuidanceDefaults(blocks=(19,)), description=f"Wan2.1-T2V-14B (3D RoPE; {UNTESTED})", **_COMMON)

# Wan 2.1 image-to-video 14B (WanImageToVideoPipeline): the 14B transformer with a CLIP image encoder's
# tokens in its cross-attention and the first frame's latents plus a frame mask concatenated on channels
# (36 input channels). One transformer serves 480p and 720p; the repos differ in their default size.
_I2V = f"image-to-video; {UNTESTED}"
WAN21_I2V_14B_480P = ModelSpec(
    name="wan2.1-i2v-14b-480p", source="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", heads=40, num_layers=40,
    conditioning="i2v", guidance=GuidanceDefaults(blocks=(19,)),
    description=f"Wan2.1-I2V-14B-480P (3D RoPE; {_I2V})", **_COMMON)

WAN21_I2V_14B_720P = ModelSpec(
    name="wan2.1-i2v-14b-720p", source="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", heads=40, num_layers=40,
    conditioning="i2v", guidance=GuidanceDefaults(blocks=(19,)),
    description=f"Wan2.1-I2V-14B-720P (3D RoPE; {_I2V})", **{**_COMMON, "height": 720, "width": 1280})
