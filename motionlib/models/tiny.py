"""Tiny same-architecture CogVideoX models with seeded random weights, built from configs in code.

They use the very classes the real models use (CogVideoXTransformer3DModel, AutoencoderKLCogVideoX,
T5EncoderModel, a CogVideoX scheduler), so every code path runs on a CPU in seconds, offline.
Their output is noise: they exist to exercise code, not to make videos.
"""

from __future__ import annotations

import string

from .spec import GuidanceDefaults, ModelSpec

TINY_GUIDANCE = GuidanceDefaults(blocks=(2,), lr_start=0.05, lr_end=0.02, opt_steps=3,
                                 guided_fraction=0.5, temperature=2.0, inject_blocks=(0,))


def tiny_spec(family: str) -> ModelSpec:
    rope = family == "rope"
    return ModelSpec(
        name="tiny-5b" if rope else "tiny-2b",
        family="rope" if rope else "posemb",
        source="builtin:tiny-5b" if rope else "builtin:tiny-2b",
        num_frames=9, height=64, width=96,
        temporal_compression=4, spatial_compression=4, patch_size=2,
        text_len=16, heads=2, head_dim=16, num_layers=4,
        dtype="float32", scheduler="dpm" if rope else "ddim",
        num_inference_steps=6, guidance_scale=6.0, use_dynamic_cfg=rope,
        guidance=TINY_GUIDANCE,
        description=f"random-weight CogVideoX-{'5B' if rope else '2B'} architecture for tests (renders noise)",
    )


def build_tokenizer(text_len: int):
    """A character-level fast tokenizer made locally (no download): any prompt tokenizes."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(string.ascii_lowercase + string.digits + " .,;:!?'-")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    vocab.update({c: i + 3 for i, c in enumerate(chars)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    from tokenizers import normalizers, processors

    tok.normalizer = normalizers.Lowercase()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=text_len)


def build_tiny(spec: ModelSpec, seed: int = 0):
    """(tokenizer, text_encoder, vae, transformer, scheduler) for a tiny preset."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_tokenizer(spec.text_len)
    d_text = 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=d_text, d_kv=8,
                                               d_ff=64, num_layers=2, num_heads=4,
                                               dropout_rate=0.0)).eval()
        vae = AutoencoderKLCogVideoX(
            down_block_types=("CogVideoXDownBlock3D",) * 3, up_block_types=("CogVideoXUpBlock3D",) * 3,
            block_out_channels=(8, 16, 16), latent_channels=4, layers_per_block=1, norm_num_groups=4,
            temporal_compression_ratio=spec.temporal_compression,
            sample_height=spec.height, sample_width=spec.width,
        ).eval()
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=spec.heads, attention_head_dim=spec.head_dim, in_channels=4,
            out_channels=4, time_embed_dim=32, text_embed_dim=d_text, num_layers=spec.num_layers,
            sample_width=spec.width // spec.spatial_compression,
            sample_height=spec.height // spec.spatial_compression,
            sample_frames=spec.num_frames, patch_size=spec.patch_size,
            max_text_seq_length=spec.text_len,
            use_rotary_positional_embeddings=spec.family == "rope",
        ).eval()
    return tokenizer, text_encoder, vae, transformer, build_scheduler(spec)


def build_scheduler(spec: ModelSpec):
    """CogVideoX's scheduler for the spec's family, built from its config in code (DPM for 5B, DDIM for
    2B; v-prediction, zero-terminal-SNR, trailing spacing)."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    sched_cls = CogVideoXDPMScheduler if spec.scheduler == "dpm" else CogVideoXDDIMScheduler
    return sched_cls(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                     prediction_type="v_prediction", rescale_betas_zero_snr=True,
                     clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing",
                     snr_shift_scale=1.0 if spec.family == "rope" else 3.0)
