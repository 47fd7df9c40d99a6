"""A controllable forward pass of diffusers' CogVideoXTransformer3DModel.

It follows `CogVideoXTransformer3DModel.forward` step for step (a test checks the outputs match
bit for bit) and adds what DiTFlow needs, all switched by a `Controls` object:

- ρ: RoPE tables (separate for queries and keys) or the additive positional embedding;
- capture of the post-RoPE video queries/keys at the guidance block(s) (for the AMF);
- recording and injection of video keys/values (KV injection, see ``motionlib.injection``);
- truncation: stop as soon as the last block needed has produced what is asked of it;
- activation checkpointing of the blocks while gradients are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .errors import ModelError
from .rho import Rho


class _StopForward(Exception):
    """Raised inside a block once everything asked of the forward pass is captured."""


@dataclass
class Controls:
    rho: Rho
    capture: tuple[int, ...] = ()  # blocks whose video q/k (post-RoPE) are kept
    record_kv: tuple[int, ...] = ()  # blocks whose video k/v are kept, for injection
    inject: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    stop_at: int | None = None  # truncate inside this block, after its captures
    captured: dict = field(default_factory=dict)  # ("qk", i) -> (q, k); ("kv", i) -> (k, v)


def _heads(x: torch.Tensor, attn, norm=None) -> torch.Tensor:
    """[B, N, H*D] -> [B, H, N, D], with the block's per-head norm when it has one."""
    x = x.view(x.shape[0], -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)
    return x if norm is None else norm(x)


def _rope_tables(image_rotary_emb: tuple) -> tuple[tuple, tuple]:
    """(query tables, key tables): ρ may give keys their own (cos, sin), else they share the queries'."""
    rope_q = image_rotary_emb[:2]
    return rope_q, (image_rotary_emb[2:] if len(image_rotary_emb) == 4 else rope_q)


class MotionAttnProcessor:
    """CogVideoXAttnProcessor2_0 plus ρ, capture, injection and truncation hooks."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None,
                 image_rotary_emb=None, controls: Controls | None = None):
        from diffusers.models.embeddings import apply_rotary_emb

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
            query = torch.cat([query[:, :, :text_len], apply_rotary_emb(query[:, :, text_len:], rope_q)], dim=2)
            if not attn.is_cross_attention:
                key = torch.cat([key[:, :, :text_len], apply_rotary_emb(key[:, :, text_len:], rope_k)], dim=2)

        if controls is not None:
            i = self.index
            if i in controls.record_kv:
                controls.captured[("kv", i)] = (key[:, :, text_len:].detach(), value[:, :, text_len:].detach())
            if i in controls.capture:
                controls.captured[("qk", i)] = (query[:, :, text_len:], key[:, :, text_len:])
            if controls.stop_at == i:
                raise _StopForward
            if i in controls.inject:
                k_ref, v_ref = controls.inject[i]
                key = torch.cat([key[:, :, :text_len], k_ref.to(key.dtype).expand(batch, -1, -1, -1)], dim=2)
                value = torch.cat([value[:, :, :text_len], v_ref.to(value.dtype).expand(batch, -1, -1, -1)], dim=2)

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
        from diffusers.models.embeddings import apply_rotary_emb

        key = _heads(attn.to_k(video), attn, attn.norm_k)
        value = _heads(attn.to_v(video), attn)
        if image_rotary_emb is not None and not attn.is_cross_attention:
            key = apply_rotary_emb(key, _rope_tables(image_rotary_emb)[1])
        if self.index in controls.record_kv:
            controls.captured[("kv", self.index)] = (key.detach(), value.detach())
        raise _StopForward


def install_processors(transformer) -> None:
    """Give every block's self-attention a MotionAttnProcessor (idempotent)."""
    for i, block in enumerate(transformer.transformer_blocks):
        proc = block.attn1.processor
        if not (isinstance(proc, MotionAttnProcessor) and proc.index == i):
            block.attn1.set_processor(MotionAttnProcessor(i))


def forward(transformer, latents: torch.Tensor, text_embeds: torch.Tensor, timestep: torch.Tensor,
            controls: Controls, checkpointing: bool = True) -> torch.Tensor | None:
    """Model output for `latents` [B, F, C, H, W]; None when `controls.stop_at` truncated the pass."""
    install_processors(transformer)
    if getattr(transformer, "ofs_embedding", None) is not None:
        raise ModelError("image-to-video CogVideoX variants (ofs embedding) are not supported")
    batch, frames, _, height, width = latents.shape
    emb = transformer.time_embedding(transformer.time_proj(timestep).to(latents.dtype), None)

    rho = controls.rho
    pe = transformer.patch_embed
    if rho.family == "posemb":
        saved = pe.use_positional_embeddings
        pe.use_positional_embeddings = False  # ρ is added below instead of the module's own table
        try:
            tokens = pe(text_embeds, latents)
        finally:
            pe.use_positional_embeddings = saved
        text_len = text_embeds.shape[1]
        pos = rho.tensors["pos"].to(tokens.dtype)
        tokens = torch.cat([tokens[:, :text_len], tokens[:, text_len:] + pos], dim=1)
        rope = None
    else:
        tokens = pe(text_embeds, latents)
        rope = rho.rope()
    tokens = transformer.embedding_dropout(tokens)
    text_len = text_embeds.shape[1]
    encoder_hidden_states, hidden_states = tokens[:, :text_len], tokens[:, text_len:]

    kwargs = {"controls": controls}
    grad = torch.is_grad_enabled() and checkpointing
    try:
        for i, block in enumerate(transformer.transformer_blocks):
            if grad and controls.stop_at != i:
                hidden_states, encoder_hidden_states = checkpoint(
                    block, hidden_states, encoder_hidden_states, emb, rope, kwargs, use_reentrant=False)
            else:
                hidden_states, encoder_hidden_states = block(
                    hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                    temb=emb, image_rotary_emb=rope, attention_kwargs=kwargs)
    except _StopForward:
        return None

    hidden_states = transformer.norm_final(hidden_states)
    hidden_states = transformer.norm_out(hidden_states, temb=emb)
    hidden_states = transformer.proj_out(hidden_states)
    p = transformer.config.patch_size
    out = hidden_states.reshape(batch, frames, height // p, width // p, -1, p, p)
    return out.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
