"""Attention Motion Flow (paper §4.1-4.3): where each patch of frame i goes in frame j.

``motion_flow`` turns the queries/keys of one transformer block into displacements:
eq. (3) cross-frame attention, eq. (4) hard (argmax) or eq. (7) soft (expected) displacement.
``amf_loss`` is eq. (8). Memory: the head-mean of q·k is one matmul over concatenated heads, and
the softmax is evaluated a few query frames at a time under activation checkpointing, so per-head
[F·S, F·S] maps never exist and backward recomputes each chunk instead of storing it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["motion_flow", "amf_loss", "patch_coords", "chunk_frames", "window_mask"]

# Elements of one chunk's [chunk, S, F*S] logits; bounds the transient memory of the soft AMF.
DEFAULT_CHUNK_ELEMENTS = 2**25


def patch_coords(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[S, 2] (x, y) of each patch in row-major token order; x = column, y = row."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


def chunk_frames(num_frames: int, tokens_per_frame: int, max_elements: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    """Query frames per chunk so that a chunk's logits stay under `max_elements`."""
    per_frame = tokens_per_frame * num_frames * tokens_per_frame
    return max(1, min(num_frames, max_elements // max(per_frame, 1)))


def window_mask(num_frames: int, window: int | None, device=None) -> torch.Tensor:
    """[F, F] bool: frame pairs (i, j) with |i - j| <= window (all pairs when window is None)."""
    idx = torch.arange(num_frames, device=device)
    if window is None:
        return torch.ones(num_frames, num_frames, dtype=torch.bool, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= window


def _flatten_heads(x: torch.Tensor) -> torch.Tensor:
    # [H, N, d] -> [N, H*d]: (1/H) Σ_h q_h·k_h == (q_cat · k_cat) / H
    h, n, d = x.shape
    return x.permute(1, 0, 2).reshape(n, h * d)


def _soft_chunk(q: torch.Tensor, k: torch.Tensor, coords: torch.Tensor, scale: float,
                num_frames: int) -> torch.Tensor:
    # q: [c, S, H*d], k: [F*S, H*d] -> expected target position [c, F, S, 2]
    c, s, _ = q.shape
    dt = torch.promote_types(q.dtype, torch.float32)  # bf16/fp16 attention maths in fp32
    logits = (q.to(dt) @ k.to(dt).T) * scale  # [c, S, F*S]
    attn = logits.view(c, s, num_frames, s).softmax(dim=-1)  # softmax over frame j's patches
    target = attn @ coords.to(dt)  # [c, S, F, 2]
    return target.permute(0, 2, 1, 3)


def _hard_chunk(q, k, coords, scale, num_frames):
    c, s, _ = q.shape
    dt = torch.promote_types(q.dtype, torch.float32)
    logits = ((q.to(dt) @ k.to(dt).T) * scale).view(c, s, num_frames, s)
    probs_max = logits.softmax(dim=-1).amax(dim=-1)  # [c, S, F] peak attention probability
    idx = logits.argmax(dim=-1)  # [c, S, F]; ties resolve to the first (top-left) patch
    return coords[idx].permute(0, 2, 1, 3).to(dt), probs_max.permute(0, 2, 1)


def motion_flow(query: torch.Tensor, key: torch.Tensor, *, num_frames: int, height: int, width: int,
                temperature: float = 2.0, hard: bool = False, return_confidence: bool = False,
                max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, window: int | None = None):
    """AMF of one sample: ``[F, F, S, 2]`` displacements (dx, dy) in patch units from frame i to j.

    query/key: ``[heads, F*S, head_dim]`` video tokens at the guidance block (after RoPE).
    Logits are averaged over heads, scaled by ``temperature / sqrt(head_dim)`` and soft-maxed over
    the patches of key frame j. ``hard=True`` gives the argmax displacement of eq. (4) (no gradient);
    otherwise the expectation of eq. (7), differentiable. With ``return_confidence`` (hard only) the
    peak attention probability ``[F, F, S]`` is returned too.

    ``window`` (FastVMT's windowed AMF): only frame pairs with |i - j| <= window are computed (each
    pair's softmax runs over frame j alone, so they are the same numbers); the others are 0, with
    confidence 0. A chunk of query frames then reads only the key frames within the window.
    """
    heads, n, d = query.shape
    s = height * width
    if key.shape != query.shape:
        raise ValueError(f"query {tuple(query.shape)} and key {tuple(key.shape)} differ")
    if n != num_frames * s:
        raise ValueError(f"{n} tokens is not num_frames*height*width = {num_frames}*{height}*{width}")
    scale = temperature / (math.sqrt(d) * heads)
    q = _flatten_heads(query).view(num_frames, s, heads * d)
    k = _flatten_heads(key)
    coords = patch_coords(height, width, device=query.device)
    step = chunk_frames(num_frames, s, max_chunk_elements)
    if window is not None:  # a chunk of c query frames reads at most c + 2·window key frames
        while step < num_frames and (step + 1) * min(num_frames, step + 1 + 2 * window) * s * s <= max_chunk_elements:
            step += 1
    flows, confs = [], []
    for i0 in range(0, num_frames, step):
        qi = q[i0:i0 + step]
        # key frames j0..j1-1: all, or those within the window of some query frame of the chunk
        j0, j1 = (0, num_frames) if window is None else (max(0, i0 - window), min(num_frames, i0 + step + window))
        kj = k[j0 * s:j1 * s]
        if hard:
            with torch.no_grad():
                target, conf = _hard_chunk(qi, kj, coords, scale, j1 - j0)
            confs.append(conf)
        elif torch.is_grad_enabled() and (qi.requires_grad or kj.requires_grad):
            target = checkpoint(_soft_chunk, qi, kj, coords, scale, j1 - j0, use_reentrant=False)
        else:
            target = _soft_chunk(qi, kj, coords, scale, j1 - j0)
        flow = target - coords.view(1, 1, s, 2).to(target.dtype)
        if window is not None:  # back to all F key frames; pairs outside the window are 0
            keep = window_mask(num_frames, window, flow.device)[i0:i0 + qi.shape[0], j0:j1]
            flow = F.pad(flow * keep[..., None, None], (0, 0, 0, 0, j0, num_frames - j1))
            if hard:
                confs[-1] = F.pad(conf * keep[..., None], (0, 0, j0, num_frames - j1))
        flows.append(flow)
    flow = torch.cat(flows)
    if return_confidence:
        if not hard:
            raise ValueError("return_confidence needs hard=True")
        return flow, torch.cat(confs)
    return flow


def amf_loss(flow: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (8) as the official code evaluates it: MSE over the supervised displacement vectors.

    Supervised vectors are those whose reference is non-zero (a patch that stays put, e.g. i == j,
    says nothing about motion), further restricted by `mask` ([F, F, S] bool) when given; the mean
    runs over both components of every supervised vector.
    """
    sel = (reference != 0).any(dim=-1)
    if mask is not None:
        sel = sel & mask
    if not bool(sel.any()):
        return flow.sum() * 0.0
    diff = (flow - reference.to(flow.dtype))[sel]
    return diff.pow(2).mean()
