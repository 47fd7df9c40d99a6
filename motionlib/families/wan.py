"""The Wan 2.1 family (text-to-video 1.3B / 14B; ρ family "wan").

Everything motionlib needs to know about Wan lives here:

- ρ: Wan's 3D RoPE (``WanRotaryPosEmbed``), one table per video token whose head dimensions are
  split t | h | w (head_dim − 4·(head_dim//6), 2·(head_dim//6), 2·(head_dim//6)), each pair of
  dimensions rotated by position × θ^(−2j/dim) with unit steps. A ρ gives queries and keys their
  own cos/sin tables; ``rates`` lets the ``shift`` parametrisation move positions by angle addition.
- the forward pass follows ``WanTransformer3DModel.forward`` step for step (a test checks it bit
  for bit against ``WanPipeline``); the self-attention (attn1, video tokens only: Wan's text
  enters by cross-attention) gets ρ, captures its q/k after RMS norm and RoPE, records or
  injects video keys/values, and stops the pass inside the guidance block;
- latents: WanPipeline draws float32 noise ``[B, C, F', h, w]``; motionlib keeps
  ``[B, F', C, h, w]`` (a permuted view, the same numbers), and the VAE latents are normalised
  with the VAE's ``latents_mean`` / ``latents_std``;
- UMT5 text embeddings trimmed to the prompt and zero-padded, as WanPipeline does;
- WanPipeline's own scheduler (UniPC flow matching) and CFG (two passes, cond then uncond);
- Wan 2.1 image-to-video (WanImageToVideoPipeline): CLIP tokens of the first frame before the text
  tokens of the cross-attention, and a frame mask plus the first frame's latents on channels.

One file on purpose (over 400 lines): a model family is one adapter module (docs/architecture.md), so
adding a family stays one file plus its specs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ParameterError
from ..rho import Rho
from ..transformer import Controls, StopForward, install_processors, record_kv_and_stop, run_blocks, tile_batch
from .base import ModelFamily, image_processor, repeat_batch


@dataclass
class _Rope:
    """What Wan's blocks pass to attn1 as ``rotary_emb``: ρ's tables and the pass's Controls."""

    q_cos: torch.Tensor  # [N, head_dim]
    q_sin: torch.Tensor
    k_cos: torch.Tensor
    k_sin: torch.Tensor
    controls: Controls | None


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotation of x [B, N, H, D] by tables [N, D] (pairs interleaved), out of place."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c = cos[None, :, None, 0::2]
    s = sin[None, :, None, 1::2]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2).type_as(x)


class WanMotionProcessor:
    """WanAttnProcessor for attn1 (self-attention) plus ρ, capture, injection and truncation hooks."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        if getattr(attn, "fused_projections", False) or attn.add_k_proj is not None:
            raise ParameterError("fused projections and image-conditioned Wan variants are not supported")
        rope = rotary_emb
        if rope is not None and not isinstance(rope, _Rope):  # diffusers' own forward: ([1, N, 1, D],) * 2
            cos, sin = (r[0, :, 0] for r in rope)
            rope = _Rope(cos, sin, cos, sin, controls=None)
        controls = rope.controls if rope is not None else None
        i = self.index
        if controls is not None and controls.stop_at == i and i not in controls.capture:
            self._record_kv_and_stop(attn, hidden_states, rope, controls)

        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if rope is not None:
            query = apply_rope(query, rope.q_cos, rope.q_sin)
            key = apply_rope(key, rope.k_cos, rope.k_sin)

        if controls is not None:
            if i in controls.record_kv:
                controls.captured[("kv", i)] = (key.detach(), value.detach())
            if i in controls.capture:  # [B, H, N, D], as motionlib.amf takes them
                controls.captured[("qk", i)] = (query.transpose(1, 2), key.transpose(1, 2))
            if controls.stop_at == i:
                raise StopForward
            if i in controls.inject:  # attn1 sees video tokens only: replace them all
                k_ref, v_ref = controls.inject[i]
                batch = query.shape[0]
                key = tile_batch(k_ref.to(key.dtype), batch)
                value = tile_batch(v_ref.to(value.dtype), batch)

        out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                    is_causal=False, backend=None, parallel_config=None)
        out = out.flatten(2, 3).type_as(query)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)

    def _record_kv_and_stop(self, attn, hidden_states, rope, controls: Controls):
        """A pass that stops here without capturing q/k (KV injection): keys/values only."""
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        key = apply_rope(key, rope.k_cos, rope.k_sin)
        record_kv_and_stop(controls, self.index, key, value)


class BoundWanProcessor(WanMotionProcessor):
    """attn1's processor while a motion is attached to a WanPipeline (``Wan.bind``): a pass of motionlib's
    ``forward`` (a `_Rope` carrying Controls) runs as WanMotionProcessor; a pass of diffusers' own
    forward asks ``source()`` and, given None, runs the processor it replaced (unchanged), else
    WanMotionProcessor with those Controls and ρ's tables in place of the pipeline's RoPE."""

    motionlib_bound = True

    def __init__(self, index: int, source, original):
        super().__init__(index)
        self.source, self.original = source, original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if not isinstance(rotary_emb, _Rope):
            controls = self.source()
            if controls is None:
                return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
            rotary_emb = _Rope(*controls.rho.rope(), controls=controls)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


def bind(transformer, source):
    """``ModelFamily.bind`` for Wan: bound processors on every block's attn1 (ρ enters only there; an
    image-to-video transformer's image tokens enter attn2, which keeps diffusers' processor)."""
    attns = [block.attn1 for block in transformer.blocks]
    bound = [BoundWanProcessor(i, source, attn.processor) for i, attn in enumerate(attns)]
    for attn, proc in zip(attns, bound):
        attn.set_processor(proc)

    def undo() -> None:
        for attn, proc in zip(attns, bound):
            if attn.processor is proc:
                attn.set_processor(proc.original)

    return undo


def forward(transformer, latents: torch.Tensor, text_embeds: torch.Tensor, timestep: torch.Tensor,
            controls: Controls, checkpointing: bool = True, image: dict | None = None) -> torch.Tensor | None:
    """Model output for `latents` [B, F, C, H, W]; None when `controls.stop_at` truncated the pass.

    With `image` (Wan 2.1 I2V: ``image_condition``'s frame mask + first-frame latents and CLIP tokens) the
    condition is concatenated to the latents on channels and the CLIP tokens go before the text tokens
    of the cross-attention, as WanImageToVideoPipeline and WanTransformer3DModel do."""
    install_processors(transformer.blocks, WanMotionProcessor)  # attn2 keeps diffusers' processor
    if (transformer.condition_embedder.image_embedder is not None) != (image is not None):
        raise ParameterError("this Wan transformer needs an image (image-to-video)" if image is None
                             else "this Wan transformer takes no image (text-to-video)")
    # WanTransformer3DModel takes [B, C, F, H, W] in its own dtype (float32 latents, e.g. the noised
    # reference of KV injection, are cast as WanPipeline casts its latents)
    x = latents.permute(0, 2, 1, 3, 4)
    if image is not None:
        x = torch.cat([x, repeat_batch(image["condition"], x.shape[0]).to(x.device)], dim=1)
    x = x.to(transformer.patch_embedding.weight.dtype).contiguous()
    batch, _, frames, height, width = x.shape
    p_t, p_h, p_w = transformer.config.patch_size
    rope = _Rope(*controls.rho.rope(), controls=controls)

    hidden_states = transformer.patch_embedding(x).flatten(2).transpose(1, 2).contiguous()
    if timestep.ndim != 1:
        raise ParameterError("per-token timesteps (Wan 2.2 TI2V) are not supported")
    clip = None if image is None else repeat_batch(image["clip"], x.shape[0]).to(x.dtype)
    temb, timestep_proj, encoder_hidden_states, clip_states = transformer.condition_embedder(
        timestep, text_embeds, clip, timestep_seq_len=None)
    timestep_proj = timestep_proj.unflatten(1, (6, -1))
    if clip_states is not None:
        encoder_hidden_states = torch.concat([clip_states, encoder_hidden_states], dim=1)

    out = run_blocks(transformer.blocks, (hidden_states,), (encoder_hidden_states, timestep_proj, rope),
                     controls, checkpointing)
    if out is None:
        return None
    hidden_states = out[0]
    shift, scale = (transformer.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
    shift, scale = shift.to(hidden_states.device), scale.to(hidden_states.device)
    hidden_states = (transformer.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
    hidden_states = transformer.proj_out(hidden_states)
    hidden_states = hidden_states.reshape(batch, frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1)
    hidden_states = hidden_states.permute(0, 7, 1, 4, 2, 5, 3, 6)
    output = hidden_states.flatten(6, 7).flatten(4, 5).flatten(2, 3)
    return output.permute(0, 2, 1, 3, 4)


def rope_rates(rope_module) -> torch.Tensor:
    """[3, head_dim]: angle per unit step along t, y, x for each head dimension of WanRotaryPosEmbed.

    Mirrors diffusers' get_1d_rotary_pos_embed per axis (positions 0, 1, 2, ...; frequencies
    θ^(−2j/dim) repeated for each (cos, sin) pair), concatenated t | h | w.
    """
    dims = (rope_module.t_dim, rope_module.h_dim, rope_module.w_dim)
    rates = torch.zeros(3, sum(dims), dtype=torch.float64)
    start = 0
    for axis, dim in enumerate(dims):
        freqs = 1.0 / 10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim)
        rates[axis, start:start + dim] = freqs.repeat_interleave(2)
        start += dim
    return rates.float()


def base_rho(model) -> Rho:
    """Wan's own RoPE tables for the model's latent grid (WanRotaryPosEmbed's output)."""
    tr = model.transformer
    frames, rows, cols = model.spec.grid
    p_t, p_h, p_w = tr.config.patch_size
    shape_only = torch.empty((1, 0, frames * p_t, rows * p_h, cols * p_w), device="meta")
    cos, sin = tr.rope(shape_only)  # [1, N, 1, head_dim] each, on the buffers' device
    cos, sin = cos[0, :, 0].to(model.device), sin[0, :, 0].to(model.device)
    return Rho("wan", {"q_cos": cos, "q_sin": sin, "k_cos": cos, "k_sin": sin}, rope_rates(tr.rope).to(cos.device))


def make_scheduler(config: dict | None = None):
    """WanPipeline's scheduler: UniPC on flow-matching sigmas (the Wan-AI repos' config when given)."""
    from diffusers import UniPCMultistepScheduler

    with torch.device("cpu"):  # its tables go through numpy (also under a meta-device build)
        if config is not None:
            return UniPCMultistepScheduler.from_config(config)
        return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                       num_train_timesteps=1000, solver_order=2, predict_x0=True,
                                       solver_type="bh2", lower_order_final=True, final_sigmas_type="zero")


CLIP_WIDTH = 16  # the tiny presets' CLIP vision width


def tiny_clip() -> dict:
    """A tiny CLIP vision encoder (32x32 inputs, patches of 8: 17 tokens of width 16) and its processor,
    from transformers' classes (seeded by the caller)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    try:  # transformers' Pillow backend (its default one needs torchvision, which motionlib does not install)
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor  # type: ignore[assignment]

    encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=CLIP_WIDTH, intermediate_size=32, num_hidden_layers=2,
                                               num_attention_heads=2, image_size=32, patch_size=8)).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return {"image_encoder": encoder, "image_processor": processor}


FFN_DIM = {1536: 8960, 5120: 13824}  # feed-forward width by hidden width: Wan2.1 1.3B, 14B


class Wan(ModelFamily):
    name = "wan"
    pipelines = ("WanPipeline", "WanImageToVideoPipeline")
    i2v_pipelines = ("WanImageToVideoPipeline",)

    def base_rho(self, model) -> Rho:
        return base_rho(model)

    def forward(self, transformer, latents, text_embeds, timestep, controls, checkpointing=True, image=None):
        return forward(transformer, latents, text_embeds, timestep, controls, checkpointing, image)

    @torch.no_grad()
    def image_condition(self, model, image, generators):
        """WanImageToVideoPipeline's conditioning: CLIP tokens of the image (the encoder's penultimate
        hidden states) and, on channels, a first-frame mask plus the normalised latents of the first frame
        (resized to the model's size) followed by black frames: ``{"clip": [N, L, D], "condition":
        [N, T + C, F', h, w]}`` (diffusers' layout). Nothing random: the generators are only counted."""
        if model.spec.conditioning != "i2v":
            return super().image_condition(model, image, generators)
        s, n = model.spec, len(generators)
        encoder = model.image_encoder
        home = next(encoder.parameters()).device
        try:  # the image encoder visits the device for its one pass (motionlib.offload leaves it on the CPU)
            encoder.to(model.device)
            inputs = model.image_processor(images=image, return_tensors="pt").to(model.device)
            clip = encoder(**inputs, output_hidden_states=True).hidden_states[-2].to(model.device)
        finally:
            encoder.to(home)
        clip = clip.repeat(n, 1, 1).to(model.dtype)

        pixels = image_processor(s).preprocess(image, height=s.height, width=s.width).to(model.device, torch.float32)
        _, frames, _, h, w = self.latent_shape(model)
        video = torch.cat([pixels.unsqueeze(2), pixels.new_zeros(1, 3, s.num_frames - 1, s.height, s.width)], dim=2)
        with model.on_device(model.vae) as vae:
            z = vae.encode(video.to(model.device, vae.dtype)).latent_dist.mode()
            mean, std = self._norm(vae, z.new_empty(0, dtype=torch.float32))
        z = z.repeat(n, 1, 1, 1, 1).to(model.device, torch.float32)
        z = (z - mean) * (1.0 / std)
        t = s.temporal_compression
        mask = torch.ones(n, 1, s.num_frames, h, w)
        mask[:, :, 1:] = 0
        mask = torch.concat([torch.repeat_interleave(mask[:, :, 0:1], dim=2, repeats=t), mask[:, :, 1:]], dim=2)
        mask = mask.view(n, -1, t, h, w).transpose(1, 2).to(z.device)
        return {"clip": clip, "condition": torch.concat([mask, z], dim=1)}

    def bind(self, transformer, source):
        return bind(transformer, source)

    def pipeline_noise(self, latents):
        """WanPipeline draws [B, C, F', h, w]; motionlib keeps latent frames first (a permuted view)."""
        return latents.permute(0, 2, 1, 3, 4)

    def pipeline_image(self, condition, image_tokens):
        """WanImageToVideoPipeline's mask + image latents and its CLIP tokens (``encode_image``'s output)."""
        if image_tokens is None:
            return None
        return {"condition": condition, "clip": image_tokens.to(condition.device)}

    def initial_noise(self, model, generator):
        from diffusers.utils.torch_utils import randn_tensor

        b, f, c, h, w = self.latent_shape(model)
        noise = randn_tensor((b, c, f, h, w), generator=generator, device=model.device, dtype=torch.float32)
        return noise.permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def encode_prompt(self, model, prompts):
        """UMT5 embeddings of the prompt's tokens, zero-padded to text_len (WanPipeline's)."""
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        n = model.spec.text_len
        tok = model.tokenizer([prompt_clean(p) for p in prompts], padding="max_length", max_length=n,
                              truncation=True, add_special_tokens=True, return_attention_mask=True,
                              return_tensors="pt")
        lengths = tok.attention_mask.gt(0).sum(dim=1)
        with model.on_device(model.text_encoder) as enc:
            emb = enc(tok.input_ids.to(model.device), tok.attention_mask.to(model.device)).last_hidden_state
        emb = emb.to(device=model.device, dtype=model.dtype)
        return torch.stack([torch.cat([u[:v], u.new_zeros(n - int(v), u.size(1))]) for u, v in zip(emb, lengths)])

    @staticmethod
    def _norm(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(like.device, like.dtype)
        std = torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(like.device, like.dtype)
        return mean, std

    @torch.no_grad()
    def encode_video(self, model, video):
        x = video.permute(1, 0, 2, 3).unsqueeze(0).to(model.device, model.vae.dtype)
        with model.on_device(model.vae) as vae:
            z = vae.encode(x).latent_dist.mode()
            mean, std = self._norm(vae, z)
        return ((z - mean) * (1.0 / std)).permute(0, 2, 1, 3, 4).to(model.dtype)

    @torch.no_grad()
    def decode(self, model, latents):
        with model.on_device(model.vae) as vae:
            z = latents.permute(0, 2, 1, 3, 4).to(model.device, vae.dtype)
            mean, std = self._norm(vae, z)
            x = vae.decode(z / (1.0 / std) + mean, return_dict=False)[0]
        return ((x[0].permute(1, 0, 2, 3).float().cpu() + 1) / 2).clamp(0, 1)

    def new_scheduler(self, model, steps):
        sched = type(model.scheduler).from_config(model.scheduler.config)
        sched.set_timesteps(steps, device=model.device)
        sched.set_begin_index(0)
        return sched

    def predict(self, run, latents, t, controls):
        """Cond pass, then uncond pass, combined in the transformer's dtype (WanPipeline's CFG)."""
        model = run.model
        x = latents.to(model.dtype)
        ts = t.expand(x.shape[0])
        with torch.no_grad(), model.on_device(model.transformer) as tr:
            out = forward(tr, x, run.embeds[-1:], ts, controls, image=run.image)
            if run.do_cfg:
                uncond = forward(tr, x, run.embeds[:1], ts, controls, image=run.image)
                out = uncond + run.guidance_scale * (out - uncond)
        return out

    def step(self, run, index, t, output, latents):
        return run.scheduler.step(output, t, latents, return_dict=False)[0]

    def load_components(self, spec, source, dtype):
        """WanPipeline.from_pretrained (a Wan-AI diffusers repo or a local folder), its scheduler kept."""
        from diffusers import WanImageToVideoPipeline, WanPipeline

        i2v = spec.conditioning == "i2v"
        pipe = (WanImageToVideoPipeline if i2v else WanPipeline).from_pretrained(source, dtype=dtype)
        if getattr(pipe, "transformer_2", None) is not None:
            raise ParameterError(f"{source}: two-expert Wan 2.2 pipelines are not supported")
        parts = (pipe.tokenizer, pipe.text_encoder, pipe.vae, pipe.transformer, pipe.scheduler)
        if not i2v:
            return parts
        if getattr(pipe, "image_encoder", None) is None or pipe.transformer.config.image_dim is None:
            raise ParameterError(f"{source}: only Wan 2.1 image-to-video pipelines (a CLIP image encoder) are "
                                 "supported")
        return parts + ({"image_encoder": pipe.image_encoder, "image_processor": pipe.image_processor},)

    def build_tiny(self, spec, seed=0):
        """Tiny Wan components: WanTransformer3DModel, AutoencoderKLWan, UMT5, UniPC."""
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        from transformers import UMT5Config, UMT5EncoderModel

        from .base import build_tokenizer

        tokenizer = build_tokenizer(spec.text_len)
        d_text, z = 32, 4
        i2v = spec.conditioning == "i2v"
        downsamples = {1: [], 2: [True], 4: [True, True]}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=d_text, d_kv=8, d_ff=64,
                                                       num_layers=2, num_heads=4, dropout_rate=0.0)).eval()
            levels = {4: 2, 8: 3}[spec.spatial_compression]
            temporal = downsamples[spec.temporal_compression]
            vae = AutoencoderKLWan(base_dim=8, z_dim=z, dim_mult=[1] + [2] * levels, num_res_blocks=1,
                                   temperal_downsample=[False] * (levels - len(temporal)) + temporal,
                                   latents_mean=[0.1 * k for k in range(z)],
                                   latents_std=[1.0 + 0.5 * k for k in range(z)],
                                   scale_factor_temporal=spec.temporal_compression,
                                   scale_factor_spatial=spec.spatial_compression).eval()
            # Wan 2.1 I2V: mask (one channel per frame of a temporal group) + image latents on channels, and a
            # CLIP image encoder whose tokens its cross-attention reads through added key/value projections
            image = {"image_dim": CLIP_WIDTH, "added_kv_proj_dim": spec.heads * spec.head_dim} if i2v else {}
            transformer = WanTransformer3DModel(
                patch_size=(1, spec.patch_size, spec.patch_size), num_attention_heads=spec.heads,
                attention_head_dim=spec.head_dim, in_channels=2 * z + spec.temporal_compression if i2v else z,
                out_channels=z, text_dim=d_text, freq_dim=32, ffn_dim=64, num_layers=spec.num_layers,
                rope_max_seq_len=64, **image).eval()
            parts = (tokenizer, text_encoder, vae, transformer, make_scheduler())
            if i2v:
                parts += (tiny_clip(),)
        return parts

    def build_architecture(self, spec, text_layers=2):
        """Wan2.1-T2V-1.3B / -14B at full size: the Wan-AI diffusers repos' transformer and VAE configs."""
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        from transformers import UMT5Config, UMT5EncoderModel

        from .base import build_tokenizer

        tokenizer = build_tokenizer(spec.text_len)
        text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240,  # UMT5-XXL
                                                   num_layers=text_layers, num_heads=64, dropout_rate=0.0,
                                                   feed_forward_proj="gated-gelu"))
        vae = AutoencoderKLWan()  # its defaults are Wan 2.1's VAE config
        transformer = WanTransformer3DModel(
            patch_size=(1, spec.patch_size, spec.patch_size), num_attention_heads=spec.heads,
            attention_head_dim=spec.head_dim, in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
            ffn_dim=FFN_DIM[spec.heads * spec.head_dim], num_layers=spec.num_layers, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
        return tokenizer, text_encoder, vae, transformer, make_scheduler()

    def default_scheduler(self, spec):
        return make_scheduler()

    def spec_from_folder(self, path, configs):
        """Spec of a local Wan folder, read from its transformer and VAE configs (geometry: WanPipeline's)."""
        from dataclasses import replace

        from ..models.wan import WAN21_I2V_14B_480P, WAN21_T2V_1_3B

        tr, vae = configs["transformer"], configs["vae"]
        patch = tr.get("patch_size", [1, 2, 2])
        if patch[0] != 1:
            raise ParameterError(f"{path}: temporal patches ({patch}) are not supported")
        layers = int(tr["num_layers"])
        i2v = tr.get("image_dim") is not None
        if not i2v and int(tr.get("in_channels", 16)) != int(tr.get("out_channels", 16)):
            raise ParameterError(f"{path}: a Wan transformer with {tr.get('in_channels')} input channels and no "
                                 "image encoder (Wan 2.2 image-to-video) is not supported")
        base = WAN21_I2V_14B_480P if i2v else WAN21_T2V_1_3B
        block = min(layers - 1, round(base.guidance.blocks[0] * layers / base.num_layers))
        return replace(base, name=path.name, source=str(path), heads=int(tr["num_attention_heads"]),
                       head_dim=int(tr["attention_head_dim"]), num_layers=layers, patch_size=int(patch[1]),
                       temporal_compression=int(vae.get("scale_factor_temporal", 4)),
                       spatial_compression=int(vae.get("scale_factor_spatial", 8)),
                       guidance=replace(base.guidance, blocks=(block,)),
                       description=f"local Wan folder (3D RoPE; {base.conditioning}; guidance defaults untested "
                                   "with real weights)")


FAMILY = Wan()
