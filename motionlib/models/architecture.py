"""The real CogVideoX-5B / -2B architectures with seeded random weights, built from configs in code.

Weights change neither speed nor memory, so the GPU benchmarks (``benchmarks/gpu.py``) measure
these instead of downloading tens of GB. The tokenizer is motionlib's character-level one
(``tiny.build_tokenizer``) and the scheduler the same as the tiny presets' (``tiny.build_scheduler``).
The text encoder has T5-XXL's width; ``text_layers`` of its 24 layers (24: its real size, for
memory; fewer where only the denoising work is timed).
"""

from __future__ import annotations

import torch

from .base import Model
from .tiny import build_scheduler, build_tokenizer

T5_XXL_LAYERS = 24
T5_VOCAB = 32128  # T5-XXL's (the character tokenizer uses its first ids)


def architecture_model(name: str, device="cuda", dtype: torch.dtype | None = None, *, seed: int = 0,
                       text_layers: int = 2, offload: str = "none", vae_tiling: bool = True) -> Model:
    """A Model of the real CogVideoX-5B / -2B architecture with seeded random weights.

    ``device="meta"`` builds it without allocating (tests count its parameters on a CPU). The
    components are made on `device`; with an `offload` level other than "none" they are then moved
    where that level keeps them (``motionlib.offload.place``)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from . import known_models

    spec = known_models()[name]
    dtype = dtype or getattr(torch, spec.dtype)
    rope = spec.family == "rope"
    tokenizer = build_tokenizer(spec.text_len)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(T5Config(vocab_size=T5_VOCAB, d_model=4096, d_kv=64, d_ff=10240,
                                               num_layers=text_layers, num_heads=64, dropout_rate=0.0,
                                               feed_forward_proj="gated-gelu"))
        vae = AutoencoderKLCogVideoX(scaling_factor=0.7 if rope else 1.15258426)  # the real configs otherwise
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=spec.heads, attention_head_dim=spec.head_dim, in_channels=16, out_channels=16,
            time_embed_dim=512, text_embed_dim=4096, num_layers=spec.num_layers,
            sample_width=spec.width // spec.spatial_compression, sample_height=spec.height // spec.spatial_compression,
            sample_frames=spec.num_frames, patch_size=spec.patch_size, max_text_seq_length=spec.text_len,
            use_rotary_positional_embeddings=rope)
    for m in (text_encoder, vae, transformer):
        m.requires_grad_(False).eval().to(dtype=dtype)
    model = Model(spec, tokenizer, text_encoder, vae, transformer, build_scheduler(spec), torch.device(device),
                  dtype, offload)
    if device != "meta":
        from ..offload import place

        if offload != "none":
            for m in (text_encoder, vae, transformer):
                m.to("cpu")
        place(model, vae_tiling)
    return model
