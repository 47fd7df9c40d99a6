"""Tiny same-architecture models with seeded random weights, built from configs in code.

Each family's adapter builds them from the very classes the real models use (for CogVideoX:
CogVideoXTransformer3DModel, AutoencoderKLCogVideoX, T5EncoderModel, a CogVideoX scheduler; for
Wan: WanTransformer3DModel, AutoencoderKLWan, UMT5EncoderModel, UniPC), so every code path runs
on a CPU in seconds, offline.
Their output is noise: they exist to exercise code, not to make videos.
"""

from __future__ import annotations


from dataclasses import replace

from .spec import GuidanceDefaults, ModelSpec

TINY_GUIDANCE = GuidanceDefaults(blocks=(2,), lr_start=0.05, lr_end=0.02, opt_steps=3,
                                 guided_fraction=0.5, temperature=2.0, inject_blocks=(0,))


def tiny_spec(embedding: str, conditioning: str = "t2v") -> ModelSpec:
    rope = embedding == "rope"
    if conditioning == "i2v":  # CogVideoX-5B-I2V at a tiny size: learnt positional embeddings, one geometry
        return replace(tiny_spec("rope"), name="tiny-5b-i2v", source="builtin:tiny-5b-i2v", conditioning="i2v",
                       fixed_geometry=True, description="random-weight CogVideoX-5B-I2V architecture for tests "
                       "(renders noise; learnt positional embeddings: one geometry)")
    return ModelSpec(
        name="tiny-5b" if rope else "tiny-2b",
        embedding="rope" if rope else "posemb",
        source="builtin:tiny-5b" if rope else "builtin:tiny-2b",
        num_frames=9, height=64, width=96,
        temporal_compression=4, spatial_compression=4, patch_size=2,
        text_len=16, heads=2, head_dim=16, num_layers=4,
        dtype="float32", scheduler="dpm" if rope else "ddim",
        num_inference_steps=6, guidance_scale=6.0, use_dynamic_cfg=rope,
        guidance=TINY_GUIDANCE,
        description=f"random-weight CogVideoX-{'5B' if rope else '2B'} architecture for tests (renders noise)",
    )


def tiny_wan_spec(conditioning: str = "t2v") -> ModelSpec:
    """Wan 2.1 architecture at a tiny size (4 blocks, 2 heads x 24: t/h/w RoPE split 8/8/8).

    The image-to-video one has a tiny CLIP image encoder and a text length of 512: diffusers' Wan
    cross-attention takes the last 512 context tokens as text and the ones before as the image's."""
    if conditioning == "i2v":
        return replace(tiny_wan_spec(), name="tiny-wan-i2v", source="builtin:tiny-wan-i2v", conditioning="i2v",
                       text_len=512, description="random-weight Wan2.1-I2V architecture for tests (renders noise)")
    return ModelSpec(
        name="tiny-wan", embedding="wan", source="builtin:tiny-wan", num_frames=9, height=64, width=96,
        temporal_compression=4, spatial_compression=4, patch_size=2, text_len=16, heads=2, head_dim=24,
        num_layers=4, dtype="float32", scheduler="unipc", num_inference_steps=6, guidance_scale=5.0,
        use_dynamic_cfg=False, fps=16, guidance=TINY_GUIDANCE,
        description="random-weight Wan2.1 architecture for tests (renders noise)",
    )


def build_tiny(spec: ModelSpec, seed: int = 0):
    """(tokenizer, text_encoder, vae, transformer, scheduler) for a tiny preset, from its family's adapter."""
    from ..families import adapter

    return adapter(spec.embedding).build_tiny(spec, seed)
