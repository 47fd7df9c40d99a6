"""The "shapes" demo model: spec and builder.

A 6-block CogVideoXTransformer3DModel (4 heads x 32, 3D RoPE: the "rope" family of CogVideoX-5B)
over a lossless pixel-unshuffle codec (8 frames of 32x32 RGB -> 8 x 12 x 16 x 16 latents; patch 2 ->
8 x 8 = 64 tokens per frame, 512 video tokens) and a learned word-embedding text encoder (12 tokens),
sampled with CogVideoX's zero-terminal-SNR v-prediction DDIM schedule. Trained by
``motionlib.demo.train`` on ``motionlib.demo.data`` clips; weights ship as
``motionlib/demo/weights/shapes.safetensors`` (safetensors only).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ModelError, WeightsMissing
from ..models.spec import ModelSpec
from .codec import PixelShuffleCodec
from .spec import DEFAULT_WEIGHTS, SHAPES_GUIDANCE, SHAPES_SPEC, shapes_spec  # noqa: F401  (re-exported)
from .text import VOCAB, WordEmbeddingEncoder, build_tokenizer

TEXT_DIM = 64
TIME_EMBED_DIM = 128


def build_scheduler():
    from diffusers import CogVideoXDDIMScheduler

    # snr_shift_scale=1: no extra SNR shift (CogVideoX's default 3.0 is meant for 480p latents).
    return CogVideoXDDIMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, clip_sample=False,
        set_alpha_to_one=True, steps_offset=0, timestep_spacing="trailing", snr_shift_scale=1.0,
    )


def build_transformer(spec: ModelSpec = SHAPES_SPEC):
    from diffusers import CogVideoXTransformer3DModel

    latent_h = spec.height // spec.spatial_compression
    latent_w = spec.width // spec.spatial_compression
    channels = 3 * spec.spatial_compression ** 2
    return CogVideoXTransformer3DModel(
        num_attention_heads=spec.heads, attention_head_dim=spec.head_dim,
        # image-to-video (shapes-i2v): the first frame's latents concatenated on channels, as CogVideoX-I2V
        in_channels=channels * (2 if spec.conditioning == "i2v" else 1), out_channels=channels,
        time_embed_dim=TIME_EMBED_DIM, text_embed_dim=TEXT_DIM, num_layers=spec.num_layers,
        sample_width=latent_w, sample_height=latent_h,
        # pixel frames before temporal compression: (latent_frames - 1) * ratio + 1 = 8 with ratio 1
        sample_frames=spec.num_frames, temporal_compression_ratio=spec.temporal_compression,
        patch_size=spec.patch_size, max_text_seq_length=spec.text_len,
        use_rotary_positional_embeddings=spec.embedding == "rope",
    )


def adaln_zero_init(transformer) -> None:
    """DiT's adaLN-Zero: zero the modulation (shift/scale/gate) layers and the output projection,
    so every block starts as the identity and the model starts by predicting 0 (faster training)."""
    mods = [b.norm1.linear for b in transformer.transformer_blocks]
    mods += [b.norm2.linear for b in transformer.transformer_blocks]
    mods += [transformer.norm_out.linear, transformer.proj_out]
    for m in mods:
        torch.nn.init.zeros_(m.weight)
        if m.bias is not None:
            torch.nn.init.zeros_(m.bias)


def rotary_embedding(transformer, spec: ModelSpec = SHAPES_SPEC, device=None):
    """The (cos, sin) 3D RoPE tables for the spec's grid: the CogVideoX adapter's own (as base_rho makes them)."""
    from ..families.cogvideox import rope_tables

    cos, sin, _ = rope_tables(transformer, spec.grid, device)
    return cos, sin


def weights_metadata(spec: ModelSpec = SHAPES_SPEC, **extra) -> dict[str, str]:
    meta = {"format": "pt", "model": spec.name, "spec": json.dumps(spec.to_dict()), "vocab": json.dumps(VOCAB)}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


def load_weights(text_encoder, transformer, path: str | Path) -> dict[str, str]:
    """Load a shapes.safetensors (keys ``transformer.*`` and ``text_encoder.*``) in place; returns its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    vocab = json.loads(meta.get("vocab", "null") or "null")
    if vocab is not None and vocab != VOCAB:
        raise ModelError(f"{path}: trained with another vocabulary than motionlib.demo.text.VOCAB")
    state = load_file(str(path))
    for prefix, module in (("transformer.", transformer), ("text_encoder.", text_encoder)):
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        own = module.state_dict()
        part = {k: v.to(own[k].dtype) if k in own else v for k, v in part.items()}
        module.load_state_dict(part, strict=True)
    return meta


def build_shapes(weights: str | Path | None = None, seed: int = 0, *, pretrained: bool = True):
    """(tokenizer, text_encoder, codec, transformer, scheduler) of the shapes model.

    `weights`: a shapes.safetensors to load; None loads ``DEFAULT_WEIGHTS`` when that file exists.
    With `pretrained=False`, or without any weights file, the weights are seeded random
    (adaLN-Zero initialisation: what training starts from).
    """
    spec = SHAPES_SPEC
    tokenizer = build_tokenizer(spec.text_len)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = WordEmbeddingEncoder(len(VOCAB), TEXT_DIM, spec.text_len)
        transformer = build_transformer(spec)
        adaln_zero_init(transformer)
    codec = PixelShuffleCodec(spec.spatial_compression)
    if pretrained:
        if weights is not None and not Path(weights).is_file():
            raise WeightsMissing(f"shapes weights not found: {weights}")
        path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        if path.is_file():
            load_weights(text_encoder, transformer, path)
    text_encoder.eval()
    transformer.eval()
    codec.eval()
    return tokenizer, text_encoder, codec, transformer, build_scheduler()


def ready_model(spec, parts, device: str | torch.device = "cpu"):
    """A ``motionlib.models.Model`` (fp32, frozen, in eval mode, on `device`) of `spec` from the built
    (tokenizer, text_encoder, codec, transformer, scheduler) `parts`."""
    from ..models.base import Model

    tok, enc, codec, tr, sched = parts
    device = torch.device(device)
    for m in (enc, codec, tr):
        m.requires_grad_(False).eval().to(device)
    return Model(spec, tok, enc, codec, tr, sched, device, torch.float32)


def shapes_model(weights: str | Path | None = None, device: str | torch.device = "cpu", seed: int = 0,
                 pretrained: bool = True):
    """A ready ``motionlib.models.Model`` (fp32) for the shapes demo, without the registry."""
    return ready_model(SHAPES_SPEC, build_shapes(weights, seed, pretrained=pretrained), device)
