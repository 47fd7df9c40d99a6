"""The CogVideoX family (2B: additive 3D sin-cos ρ, embedding "posemb"; 5B: 3D RoPE, embedding "rope").

Everything motionlib needs to know about CogVideoX lives here: the base ρ and how it enters the
transformer, a forward pass that follows ``CogVideoXTransformer3DModel.forward`` step for step
(a test checks bit-exactness) plus ρ / capture / injection / truncation hooks, the binding of the same
processors into a user's pipeline (``bind``, for motionlib.attach), the latent noise, T5 text encoding
and the VAE, the paper's schedulers (DDIM / DPM, dynamic CFG), and loading of the real weights, local
folders and the tiny presets; CogVideoX-5B-I2V's image latents on channels (``image_condition``).

One file on purpose (over 400 lines): a model family is one adapter module (docs/architecture.md), so
adding a family stays one file plus its specs.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F

from ..errors import ModelError
from ..rho import Rho, rope_rates, sincos_layout
from ..transformer import (Controls, StopForward, install_processors, record_kv_and_stop, register_hook, run_blocks,
                           tile_batch)
from .base import ModelFamily, image_processor, repeat_batch


def _heads(x: torch.Tensor, attn, norm=None) -> torch.Tensor:
    """[B, N, H*D] -> [B, H, N, D], with the block's per-head norm when it has one."""
    x = x.view(x.shape[0], -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)
    return x if norm is None else norm(x)


def _rope_tables(image_rotary_emb: tuple) -> tuple[tuple, tuple]:
    """(query tables, key tables): ρ may give keys their own (cos, sin), else they share the queries'."""
    rope_q = image_rotary_emb[:2]
    return rope_q, (image_rotary_emb[2:] if len(image_rotary_emb) == 4 else rope_q)


def _rotary(x: torch.Tensor, tables: tuple) -> torch.Tensor:
    """diffusers' apply_rotary_emb (annotated as returning a pair; with tables it returns the rotated x)."""
    from diffusers.models.embeddings import apply_rotary_emb

    return cast(torch.Tensor, apply_rotary_emb(x, tables))


def dynamic_cfg_scale(guidance_scale: float, t: float, num_steps: int) -> float:
    """CogVideoX's dynamic CFG as diffusers/the official code compute it (from the timestep *value*)."""
    return 1 + guidance_scale * ((1 - math.cos(math.pi * ((num_steps - t) / num_steps) ** 5.0)) / 2)


class MotionAttnProcessor:
    """CogVideoXAttnProcessor2_0 plus ρ, capture, injection and truncation hooks."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None,
                 image_rotary_emb=None, controls: Controls | None = None):
        if controls is not None and controls.stop_at == self.index and self.index not in controls.capture:
            self._record_kv_and_stop(attn, hidden_states, image_rotary_emb, controls)  # video tokens only

        text_len = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch, seq_len, _ = hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])

        query = _heads(attn.to_q(hidden_states), attn, attn.norm_q)
        key = _heads(attn.to_k(hidden_states), attn, attn.norm_k)
        value = _heads(attn.to_v(hidden_states), attn)
        head_dim = key.shape[-1]

        if image_rotary_emb is not None:
            rope_q, rope_k = _rope_tables(image_rotary_emb)
            # out of place (diffusers writes in place), so gradients can reach trainable tables
            query = torch.cat([query[:, :, :text_len], _rotary(query[:, :, text_len:], rope_q)], dim=2)
            if not attn.is_cross_attention:
                key = torch.cat([key[:, :, :text_len], _rotary(key[:, :, text_len:], rope_k)], dim=2)

        if controls is not None:
            i = self.index
            if i in controls.record_kv:
                controls.captured[("kv", i)] = (key[:, :, text_len:].detach(), value[:, :, text_len:].detach())
            if i in controls.capture:
                controls.captured[("qk", i)] = (query[:, :, text_len:], key[:, :, text_len:])
            if controls.stop_at == i:
                raise StopForward
            if i in controls.inject:
                k_ref, v_ref = controls.inject[i]
                key = torch.cat([key[:, :, :text_len], tile_batch(k_ref.to(key.dtype), batch)], dim=2)
                value = torch.cat([value[:, :, :text_len], tile_batch(v_ref.to(value.dtype), batch)], dim=2)

        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                       dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_len, hidden_states.size(1) - text_len], dim=1)
        return hidden_states, encoder_hidden_states

    def _record_kv_and_stop(self, attn, video, image_rotary_emb, controls: Controls):
        """A pass that stops here without capturing q/k (KV injection): video keys/values only."""
        key = _heads(attn.to_k(video), attn, attn.norm_k)
        value = _heads(attn.to_v(video), attn)
        if image_rotary_emb is not None and not attn.is_cross_attention:
            key = _rotary(key, _rope_tables(image_rotary_emb)[1])
        record_kv_and_stop(controls, self.index, key, value)


def forward(transformer, latents: torch.Tensor, text_embeds: torch.Tensor, timestep: torch.Tensor,
            controls: Controls, checkpointing: bool = True, image: dict | None = None) -> torch.Tensor | None:
    """Model output for `latents` [B, F, C, H, W]; None when `controls.stop_at` truncated the pass.

    With `image` (CogVideoX-I2V: ``image_condition``'s first-frame latents) the image latents are
    concatenated to the latents on channels, as CogVideoXImageToVideoPipeline does."""
    install_processors(transformer.transformer_blocks, MotionAttnProcessor)
    if getattr(transformer, "ofs_embedding", None) is not None:
        raise ModelError("CogVideoX 1.5 image-to-video checkpoints (ofs embedding) are not supported")
    if image is not None:
        latents = torch.cat([latents, repeat_batch(image["latents"], latents.shape[0])], dim=2)
    batch, frames, _, height, width = latents.shape
    emb = transformer.time_embedding(transformer.time_proj(timestep).to(latents.dtype), None)

    rho = controls.rho
    pe = transformer.patch_embed
    if rho.embedding == "posemb":
        tokens = embed_with_rho(pe, pe, text_embeds, latents, rho)
        rope = None
    else:
        tokens = pe(text_embeds, latents)
        rope = rho.rope()
    tokens = transformer.embedding_dropout(tokens)
    text_len = text_embeds.shape[1]
    encoder_hidden_states, hidden_states = tokens[:, :text_len], tokens[:, text_len:]

    out = run_blocks(transformer.transformer_blocks, (hidden_states, encoder_hidden_states),
                     (emb, rope, {"controls": controls}), controls, checkpointing)
    if out is None:
        return None
    hidden_states = transformer.norm_final(out[0])
    hidden_states = transformer.norm_out(hidden_states, temb=emb)
    hidden_states = transformer.proj_out(hidden_states)
    p = transformer.config.patch_size
    out = hidden_states.reshape(batch, frames, height // p, width // p, -1, p, p)
    return out.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)


def embed_with_rho(pe, call, text_embeds: torch.Tensor, latents: torch.Tensor, rho: Rho) -> torch.Tensor:
    """CogVideoXPatchEmbed's tokens with ρ (posemb) as the video tokens' additive embedding in place of
    the module's own table; `call` runs the patch embedding (`pe` itself, or its forward under hooks)."""
    saved = pe.use_positional_embeddings
    pe.use_positional_embeddings = False  # ρ is added below instead of the module's own table
    try:
        tokens = call(text_embeds, latents)
    finally:
        pe.use_positional_embeddings = saved
    text_len = text_embeds.shape[1]
    pos = rho.tensors["pos"].to(tokens.dtype)
    return torch.cat([tokens[:, :text_len], tokens[:, text_len:] + pos], dim=1)


class BoundMotionProcessor(MotionAttnProcessor):
    """attn1's processor while a motion is attached to a diffusers pipeline (``CogVideoX.bind``): a pass
    with explicit Controls (motionlib's ``forward``) runs as MotionAttnProcessor; a pass of diffusers'
    own forward asks ``source()`` and, given None, runs the processor it replaced (unchanged), else
    MotionAttnProcessor with those Controls (ρ's RoPE tables in place of the pipeline's)."""

    motionlib_bound = True

    def __init__(self, index: int, source, original):
        super().__init__(index)
        self.source, self.original = source, original

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None,
                 image_rotary_emb=None, controls: Controls | None = None):
        if controls is None:
            controls = self.source()
            if controls is None:
                return self.original(attn, hidden_states, encoder_hidden_states, attention_mask=attention_mask,
                                     image_rotary_emb=image_rotary_emb)
            if controls.rho.embedding == "rope":
                image_rotary_emb = controls.rho.rope()
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb,
                                controls)


POSEMB_HOOK = "motionlib_posemb"


def _posemb_hook(source):
    """A diffusers ModelHook for CogVideoXPatchEmbed: ρ (posemb) in place of its table when ``source()``
    gives Controls, the module's own forward otherwise."""
    from diffusers.hooks import ModelHook

    class PosembHook(ModelHook):
        def new_forward(self, module, text_embeds, image_embeds):
            controls = source()
            if controls is None or controls.rho.embedding != "posemb":
                return self.fn_ref.original_forward(text_embeds, image_embeds)
            return embed_with_rho(module, self.fn_ref.original_forward, text_embeds, image_embeds, controls.rho)

    return PosembHook()


def bind(transformer, source):
    """``ModelFamily.bind`` for CogVideoX: bound processors on every attn1, and for posemb a hook on the
    patch embedding (diffusers' HookRegistry, so it composes with offloading and cache hooks)."""
    if getattr(transformer, "ofs_embedding", None) is not None:
        raise ModelError("CogVideoX 1.5 image-to-video checkpoints (ofs embedding) are not supported")
    attns = [block.attn1 for block in transformer.transformer_blocks]
    bound = [BoundMotionProcessor(i, source, attn.processor) for i, attn in enumerate(attns)]
    for attn, proc in zip(attns, bound):
        attn.set_processor(proc)
    unhook = None
    if not transformer.config.use_rotary_positional_embeddings:
        unhook = register_hook(transformer.patch_embed, _posemb_hook(source), POSEMB_HOOK)

    def undo() -> None:
        for attn, proc in zip(attns, bound):
            if attn.processor is proc:
                attn.set_processor(proc.original)
        if unhook is not None:
            unhook()

    return undo


def rope_tables(transformer, grid: tuple[int, int, int], device=None) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """(cos, sin, crops): CogVideoX's 3D RoPE tables for a latent grid, as its pipeline makes them."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    cfg = transformer.config
    frames, rows, cols = grid
    p = cfg.patch_size
    crops = get_resize_crop_region_for_grid((rows, cols), cfg.sample_width // p, cfg.sample_height // p)
    cos, sin = get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=crops,
                                       grid_size=(rows, cols), temporal_size=frames, device=device)
    return cos, sin, crops


def base_rho(model) -> Rho:
    """The model's own ρ for its latent grid (what a plain generation uses)."""
    transformer, spec = model.transformer, model.spec
    cfg = transformer.config
    if getattr(cfg, "patch_size_t", None) is not None:
        raise ModelError("CogVideoX 1.5 checkpoints (temporal patches) are not supported")
    frames, rows, cols = spec.grid
    if spec.embedding == "rope":
        cos, sin, crops = rope_tables(transformer, spec.grid, model.device)
        rates = rope_rates(cfg.attention_head_dim, crops, (rows, cols), frames).to(cos.device)
        return Rho("rope", {"q_cos": cos, "q_sin": sin, "k_cos": cos, "k_sin": sin}, rates)
    pe = transformer.patch_embed
    h, w = rows * pe.patch_size, cols * pe.patch_size
    pixel_frames = (frames - 1) * pe.temporal_compression_ratio + 1
    # the same choice CogVideoXPatchEmbed.forward makes between its buffer and a recomputation
    if (pe.sample_height, pe.sample_width, pe.sample_frames) == (h, w, pixel_frames):
        joint = pe.pos_embedding
    else:
        joint = pe._get_positional_embeddings(h, w, pixel_frames, device=model.device)
    pos = joint[0, pe.max_text_seq_length:].to(device=model.device, dtype=model.dtype)
    rates, partner, sign = sincos_layout(pos.shape[-1], pe.spatial_interpolation_scale,
                                         pe.temporal_interpolation_scale)
    return Rho("posemb", {"pos": pos}, rates.to(pos.device), partner.to(pos.device), sign.to(pos.device))


def make_scheduler(spec, config: dict | None = None):
    """The paper's scheduler for `spec` (DPM for 5B, DDIM for 2B; trailing timestep spacing)."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    cls = CogVideoXDPMScheduler if spec.scheduler == "dpm" else CogVideoXDDIMScheduler
    if config is not None:
        return cls.from_config(config, timestep_spacing="trailing")
    return cls(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
               prediction_type="v_prediction", rescale_betas_zero_snr=True, clip_sample=False,
               set_alpha_to_one=True, timestep_spacing="trailing",
               snr_shift_scale=1.0 if spec.embedding == "rope" else 3.0)


class CogVideoX(ModelFamily):
    name = "cogvideox"
    pipelines = ("CogVideoXPipeline", "CogVideoXImageToVideoPipeline")
    i2v_pipelines = ("CogVideoXImageToVideoPipeline",)

    def base_rho(self, model) -> Rho:
        return base_rho(model)

    def forward(self, transformer, latents, text_embeds, timestep, controls, checkpointing=True, image=None):
        return forward(transformer, latents, text_embeds, timestep, controls, checkpointing, image)

    @torch.no_grad()
    def image_condition(self, model, image, generators):
        """CogVideoXImageToVideoPipeline.prepare_latents' image latents: the first frame resized to the model's
        size, encoded by the VAE (a sample drawn from each generator, before its noise; the mode for
        None), scaled, then zero latent frames after it: ``{"latents": [N, F', C, h, w]}``."""
        if model.spec.conditioning != "i2v":
            return super().image_condition(model, image, generators)
        from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import retrieve_latents

        s = model.spec
        pixels = image_processor(s).preprocess(image, height=s.height, width=s.width).to(model.device, model.dtype)
        rows = []
        with model.on_device(model.vae) as vae:
            for g in generators:
                dist = vae.encode(pixels.unsqueeze(2).to(vae.dtype))
                z = retrieve_latents(dist, g) if g is not None else dist.latent_dist.mode()
                rows.append(z)
        latents = torch.cat(rows).to(model.dtype).permute(0, 2, 1, 3, 4)  # [N, 1, C, h, w]
        scaling = self._scaling(model)
        latents = (1 / scaling if getattr(model.vae.config, "invert_scale_latents", False) else scaling) * latents
        b, f, c, h, w = self.latent_shape(model)
        padding = torch.zeros((len(generators), f - 1, c, h, w), device=model.device, dtype=model.dtype)
        return {"latents": torch.cat([latents, padding], dim=1)}

    def bind(self, transformer, source):
        return bind(transformer, source)

    def fixed_geometry(self, model):
        """A learnt positional embedding (CogVideoX-5B-I2V's) exists for one geometry: diffusers refuses others."""
        if getattr(model.transformer.config, "use_learned_positional_embeddings", False):
            return "its positional embedding is learnt for that geometry (use_learned_positional_embeddings)"
        return None

    def initial_noise(self, model, generator):
        from diffusers.utils.torch_utils import randn_tensor

        return randn_tensor(self.latent_shape(model), generator=generator, device=model.device, dtype=model.dtype)

    @torch.no_grad()
    def encode_prompt(self, model, prompts):
        """T5 embeddings padded to the model's text length: [B, text_len, D]."""
        ids = model.tokenizer(
            list(prompts), padding="max_length", max_length=model.spec.text_len,
            truncation=True, add_special_tokens=True, return_tensors="pt",
        ).input_ids
        with model.on_device(model.text_encoder) as enc:
            emb = enc(ids.to(model.device))[0]
        return emb.to(model.dtype)

    @staticmethod
    def _scaling(model) -> float:
        return float(getattr(model.vae.config, "scaling_factor", 1.0))

    @torch.no_grad()
    def encode_video(self, model, video):
        x = video.permute(1, 0, 2, 3).unsqueeze(0).to(model.device, model.vae.dtype)
        with model.on_device(model.vae) as vae:
            z = vae.encode(x).latent_dist.mode()
        return (z * self._scaling(model)).permute(0, 2, 1, 3, 4).to(model.dtype)

    @torch.no_grad()
    def decode(self, model, latents):
        z = latents.permute(0, 2, 1, 3, 4) / self._scaling(model)
        with model.on_device(model.vae) as vae:
            x = vae.decode(z.to(model.device, vae.dtype)).sample
        return ((x[0].permute(1, 0, 2, 3).float().cpu() + 1) / 2).clamp(0, 1)

    def new_scheduler(self, model, steps):
        sched = type(model.scheduler).from_config(model.scheduler.config)
        sched.set_timesteps(steps, device=model.device)
        return sched

    def predict(self, run, latents, t, controls):
        """One batched pass over (uncond, cond), then (dynamic) CFG, as CogVideoXPipeline does."""
        model = run.model
        x = torch.cat([latents] * 2) if run.do_cfg else latents
        x = run.scheduler.scale_model_input(x, t)
        with torch.no_grad(), model.on_device(model.transformer) as tr:
            out = forward(tr, x, run.embeds, t.expand(x.shape[0]), controls, image=run.image).float()
        if run.do_cfg:
            scale = (dynamic_cfg_scale(run.guidance_scale, t.item(), run.steps) if run.use_dynamic_cfg
                     else run.guidance_scale)
            uncond, cond = out.chunk(2)
            out = uncond + scale * (cond - uncond)
        return out

    def step(self, run, index, t, output, latents):
        from diffusers import CogVideoXDPMScheduler

        sched = run.scheduler
        if isinstance(sched, CogVideoXDPMScheduler):
            prev_t = run.timesteps[index - 1] if index > 0 else None
            latents, run.extras["old_pred_original"] = sched.step(
                output, run.extras.get("old_pred_original"), t, prev_t, latents, eta=0.0,
                generator=run.generator, return_dict=False)
        else:
            latents = sched.step(output, t, latents, eta=0.0, generator=run.generator, return_dict=False)[0]
        return latents.to(run.model.dtype)

    def default_scheduler(self, spec):
        return make_scheduler(spec)

    def load_components(self, spec, source, dtype):
        """from_pretrained of every component; the scheduler swapped for the paper's (trailing spacing)."""
        from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline

        cls = CogVideoXImageToVideoPipeline if spec.conditioning == "i2v" else CogVideoXPipeline
        pipe = cls.from_pretrained(source, dtype=dtype)
        scheduler = make_scheduler(spec, pipe.scheduler.config)
        return pipe.tokenizer, pipe.text_encoder, pipe.vae, pipe.transformer, scheduler

    def build_tiny(self, spec, seed=0):
        """Tiny CogVideoX components (CogVideoXTransformer3DModel, AutoencoderKLCogVideoX, T5)."""
        from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
        from transformers import T5Config, T5EncoderModel

        from .base import build_tokenizer

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
                num_attention_heads=spec.heads, attention_head_dim=spec.head_dim,
                in_channels=8 if spec.conditioning == "i2v" else 4, out_channels=4, time_embed_dim=32,
                text_embed_dim=d_text, num_layers=spec.num_layers,
                sample_width=spec.width // spec.spatial_compression,
                sample_height=spec.height // spec.spatial_compression,
                sample_frames=spec.num_frames, patch_size=spec.patch_size,
                max_text_seq_length=spec.text_len,
                use_rotary_positional_embeddings=spec.embedding == "rope",
                # CogVideoX-5B-I2V: the image latents on channels (8 inputs), learnt positional embeddings
                use_learned_positional_embeddings=spec.conditioning == "i2v",
            ).eval()
            if spec.conditioning == "i2v":  # "learnt": not the sin-cos values they start from
                pe = transformer.patch_embed.pos_embedding
                pe.add_(0.1 * torch.randn_like(pe))
        return tokenizer, text_encoder, vae, transformer, make_scheduler(spec)

    def build_architecture(self, spec, text_layers=2):
        """CogVideoX-5B / -2B at full size (their real configs, scaling factors included)."""
        from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
        from transformers import T5Config, T5EncoderModel

        from .base import build_tokenizer

        rope = spec.embedding == "rope"
        i2v = spec.conditioning == "i2v"
        tokenizer = build_tokenizer(spec.text_len)
        text_encoder = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240,  # T5-XXL
                                               num_layers=text_layers, num_heads=64, dropout_rate=0.0,
                                               feed_forward_proj="gated-gelu"))
        vae = AutoencoderKLCogVideoX(scaling_factor=0.7 if rope else 1.15258426)  # the real configs otherwise
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=spec.heads, attention_head_dim=spec.head_dim, in_channels=32 if i2v else 16,
            out_channels=16, use_learned_positional_embeddings=i2v,
            time_embed_dim=512, text_embed_dim=4096, num_layers=spec.num_layers,
            sample_width=spec.width // spec.spatial_compression, sample_height=spec.height // spec.spatial_compression,
            sample_frames=spec.num_frames, patch_size=spec.patch_size, max_text_seq_length=spec.text_len,
            use_rotary_positional_embeddings=rope)
        return tokenizer, text_encoder, vae, transformer, make_scheduler(spec)

    def spec_from_folder(self, path, configs):
        """Spec of a local CogVideoX folder, read from its transformer and VAE configs."""
        from dataclasses import replace

        from ..models.cogvideox import COGVIDEOX_2B, COGVIDEOX_5B, COGVIDEOX_5B_I2V

        tr, vae = configs["transformer"], configs["vae"]
        base = COGVIDEOX_5B if tr.get("use_rotary_positional_embeddings") else COGVIDEOX_2B
        if int(tr.get("in_channels", 16)) != int(tr.get("out_channels", 16)):  # the image latents on channels
            if base is not COGVIDEOX_5B or tr.get("ofs_embed_dim") is not None or tr.get("patch_size_t") is not None:
                raise ModelError(f"{path}: only CogVideoX-5B-I2V-style image-to-video folders are supported "
                                 "(not CogVideoX 1.5 ones)")
            base = COGVIDEOX_5B_I2V
        spatial = 2 ** (len(vae.get("block_out_channels", (0, 0, 0, 0))) - 1)
        layers = int(tr["num_layers"])
        scale_block = lambda b: min(layers - 1, round(b * layers / base.num_layers))  # noqa: E731
        guidance = replace(base.guidance, blocks=tuple(scale_block(b) for b in base.guidance.blocks))
        return replace(base, name=path.name, source=str(path), heads=int(tr["num_attention_heads"]),
                       head_dim=int(tr["attention_head_dim"]), num_layers=layers,
                       patch_size=int(tr.get("patch_size", 2)), text_len=int(tr.get("max_text_seq_length", 226)),
                       num_frames=int(tr.get("sample_frames", 49)),
                       height=int(tr.get("sample_height", 60)) * spatial,
                       width=int(tr.get("sample_width", 90)) * spatial,
                       spatial_compression=spatial,
                       temporal_compression=int(vae.get("temporal_compression_ratio", 4)), guidance=guidance,
                       fixed_geometry=bool(tr.get("use_learned_positional_embeddings")),
                       description=f"local CogVideoX folder ({base.embedding}, {base.conditioning})")


FAMILY = CogVideoX()
