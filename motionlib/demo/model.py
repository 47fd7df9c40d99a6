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

from ..models.spec import GuidanceDefaults, ModelSpec
from .codec import PixelShuffleCodec
from .text import VOCAB, WordEmbeddingEncoder, build_tokenizer

DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "shapes.safetensors"
TEXT_DIM = 64
TIME_EMBED_DIM = 128

SHAPES_GUIDANCE = GuidanceDefaults(
    blocks=(3,),  # a middle block of 6 (the paper's block 20 of 42 for CogVideoX-5B)
    # Chosen with `python -m motionlib.demo.sweep` (first weights; 3 families x 2 held-out clips x 4
    # zero-shot renders; the largest-blob direction agreement, 1 = the reference's direction):
    # - parametrisation: 'table' 0.07 (lr 0.05 -> 0.02) vs 'shift' 0.32 (lr 0.3 -> 0.1);
    # - shift lr 0.05 / 0.15 / 0.3 / 0.6 (each decaying to about a third): 0.16 / 0.23 / 0.32 / 0.13;
    # - at lr 0.3: opt_steps 10 / 20 / 30: 0.32 / 0.41 / 0.34; guided fraction 0.6: 0.19 (vs 0.4);
    #   confidence mask off: 0.11 (vs 0.15).
    parametrisation="shift", shift_lr=(0.3, 0.1),  # (also the default elsewhere, from this sweep)
    lr_start=0.05, lr_end=0.02,  # for the table parametrisation: the paper's 0.002 barely moves ρ here
    opt_steps=20, guided_fraction=0.4, temperature=2.0,
    inject_blocks=(0,),
    # flat black backgrounds tie the attention; at block 3 the disc's peak probability has median
    # 0.37 and the background's 95th percentile is 0.05-0.11 (motionlib eval), so 0.15 separates them
    confidence=0.15,
    latent_lr=(0.01, 0.005),  # z_t mode: 0.05 saturates the latent of this model
)


def shapes_spec() -> ModelSpec:
    return ModelSpec(
        name="shapes", family="rope", source="builtin:shapes",
        num_frames=8, height=32, width=32,
        temporal_compression=1, spatial_compression=2, patch_size=2,
        text_len=12, heads=4, head_dim=32, num_layers=6,
        dtype="float32", scheduler="ddim",
        num_inference_steps=30, guidance_scale=4.0, use_dynamic_cfg=False, fps=8,
        guidance=SHAPES_GUIDANCE,
        description="demo DiT (CogVideoX architecture, 3D RoPE, ~2.5M params) trained on procedural "
                    "moving discs (red/green/blue/yellow on black or dim textured backgrounds), 8x32x32",
    )


SHAPES_SPEC = shapes_spec()


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
        in_channels=channels, out_channels=channels,
        time_embed_dim=TIME_EMBED_DIM, text_embed_dim=TEXT_DIM, num_layers=spec.num_layers,
        sample_width=latent_w, sample_height=latent_h,
        # pixel frames before temporal compression: (latent_frames - 1) * ratio + 1 = 8 with ratio 1
        sample_frames=spec.num_frames, temporal_compression_ratio=spec.temporal_compression,
        patch_size=spec.patch_size, max_text_seq_length=spec.text_len,
        use_rotary_positional_embeddings=spec.family == "rope",
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
    """The (cos, sin) 3D RoPE tables for the spec's grid, exactly as motionlib.rho.base_rho makes them."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    cfg = transformer.config
    frames, rows, cols = spec.grid
    p = cfg.patch_size
    crops = get_resize_crop_region_for_grid((rows, cols), cfg.sample_width // p, cfg.sample_height // p)
    return get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=crops,
                                   grid_size=(rows, cols), temporal_size=frames, device=device)


def weights_metadata(spec: ModelSpec = SHAPES_SPEC, **extra) -> dict[str, str]:
    meta = {"format": "pt", "model": "shapes", "spec": json.dumps(spec.to_dict()), "vocab": json.dumps(VOCAB)}
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
        raise ValueError(f"{path}: trained with another vocabulary than motionlib.demo.text.VOCAB")
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
            raise FileNotFoundError(f"shapes weights not found: {weights}")
        path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        if path.is_file():
            load_weights(text_encoder, transformer, path)
    text_encoder.eval()
    transformer.eval()
    codec.eval()
    return tokenizer, text_encoder, codec, transformer, build_scheduler()


def shapes_model(weights: str | Path | None = None, device: str | torch.device = "cpu", seed: int = 0,
                 pretrained: bool = True):
    """A ready ``motionlib.models.Model`` (fp32) for the shapes demo, without the registry."""
    from ..models.base import Model

    tok, enc, codec, tr, sched = build_shapes(weights, seed, pretrained=pretrained)
    device = torch.device(device)
    for m in (enc, codec, tr):
        m.requires_grad_(False).eval().to(device)
    return Model(SHAPES_SPEC, tok, enc, codec, tr, sched, device, torch.float32)
