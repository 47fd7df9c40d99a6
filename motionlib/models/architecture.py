"""Real architectures (CogVideoX-5B / -2B, Wan2.1-T2V-1.3B / -14B) with seeded random weights,
built from configs in code by each family's adapter (``ModelFamily.build_architecture``).

Weights change neither speed nor memory, so the GPU benchmarks (``benchmarks/gpu.py``) measure
these instead of downloading tens of GB. The tokenizer is motionlib's character-level one
(``motionlib.families.base.build_tokenizer``) and the scheduler the same as the tiny presets'. The text encoder has
the real one's width and vocabulary (T5-XXL, UMT5-XXL); ``text_layers`` of its 24 layers (24: its
real size, for memory; fewer where only the denoising work is timed). Modules diffusers keeps in
float32 (Wan's RoPE tables, time embedder, norms) stay so, as from_pretrained keeps them.
"""

from __future__ import annotations

import torch

from .base import Model

T5_XXL_LAYERS = 24  # T5-XXL's and UMT5-XXL's encoder depth


def cast_keeping_fp32(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast to `dtype` except the modules / parameters a diffusers model lists in
    ``_keep_in_fp32_modules``, as from_pretrained does."""
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or ())
    for name, sub in module.named_modules():
        if keep & set(name.split(".")):
            continue
        for key, p in sub.named_parameters(recurse=False):
            if key not in keep and p.is_floating_point():
                p.data = p.data.to(dtype)
        for key, b in sub.named_buffers(recurse=False):
            if b is not None and b.is_floating_point():
                sub._buffers[key] = b.to(dtype)


def architecture_model(name: str, device="cuda", dtype: torch.dtype | None = None, *, seed: int = 0,
                       text_layers: int = 2, offload: str = "none", vae_tiling: bool = True) -> Model:
    """A Model of a real architecture with seeded random weights.

    ``device="meta"`` builds it without allocating (tests count its parameters on a CPU). The
    components are made on `device`; with an `offload` level other than "none" they are then moved
    where that level keeps them (``motionlib.offload.place``)."""
    from ..families import adapter
    from . import known_models

    spec = known_models()[name]
    dtype = dtype or getattr(torch, spec.dtype)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        tokenizer, text_encoder, vae, transformer, scheduler = adapter(spec.embedding).build_architecture(
            spec, text_layers=text_layers)
    for m in (text_encoder, vae, transformer):
        cast_keeping_fp32(m.requires_grad_(False).eval(), dtype)
    model = Model(spec, tokenizer, text_encoder, vae, transformer, scheduler, torch.device(device), dtype, offload)
    if device != "meta":
        from ..offload import place

        if offload != "none":
            for m in (text_encoder, vae, transformer):
                m.to("cpu")
        place(model, vae_tiling)
    return model
