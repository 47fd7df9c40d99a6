"""The controllable forward pass of a video DiT: what every model family's pass shares.

The pass itself is the family adapter's (``model.family.forward``, motionlib.families): it follows
its diffusers transformer's ``forward`` step for step (tests check the outputs match bit for bit)
and adds what DiTFlow needs, all switched by a `Controls` object:

- ρ: RoPE tables (separate for queries and keys) or the additive positional embedding;
- capture of the post-RoPE video queries/keys at the guidance block(s) (for the AMF);
- recording and injection of video keys/values (KV injection, see ``motionlib.injection``);
- truncation: stop as soon as the last block needed has produced what is asked of it;
- activation checkpointing of the blocks while gradients are needed (``run_blocks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.checkpoint import checkpoint

from .rho import Rho


class StopForward(Exception):
    """Raised inside a block once everything asked of the forward pass is captured."""


@dataclass
class Controls:
    rho: Rho
    capture: tuple[int, ...] = ()  # blocks whose video q/k (post-RoPE) are kept
    record_kv: tuple[int, ...] = ()  # blocks whose video k/v are kept, for injection
    inject: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    stop_at: int | None = None  # truncate inside this block, after its captures
    # "local" gradient (GuidanceParams.gradient): when set, only these blocks run with gradients, each
    # on a detached input, so a gradient reaches ρ only through these blocks' own RoPE
    grad_blocks: tuple[int, ...] | None = None
    # with grad_blocks: a cache of the input to the first of them. Empty, the pass fills it; filled,
    # the pass starts there and skips the blocks before (GuidanceParams.reuse: once per guided step).
    # It is not keyed: one dict serves passes of the same latents, timestep and batch only (Guidance
    # makes a fresh one for each guided step)
    prefix: dict | None = None
    captured: dict = field(default_factory=dict)  # ("qk", i) -> (q [B, H, N, D], k); ("kv", i) -> family's (k, v)


def tile_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Injected [n, ...] reference keys/values for a batch of `batch` (a multiple of n: the CFG
    branches of n generations, see ``motionlib.injection``); a view when n == 1."""
    return x.expand(batch, -1, -1, -1) if x.shape[0] == 1 else x.repeat(batch // x.shape[0], 1, 1, 1)


def install_processors(blocks, processor_cls) -> None:
    """Give every block's self-attention (attn1) a `processor_cls(index)` (idempotent)."""
    for i, block in enumerate(blocks):
        proc = block.attn1.processor
        if not (isinstance(proc, processor_cls) and proc.index == i):
            block.attn1.set_processor(processor_cls(i))


def register_hook(module: torch.nn.Module, hook, name: str):
    """Register a diffusers ModelHook on `module` (HookRegistry, so it composes with diffusers' offloading
    and cache hooks); returns a function removing it (idempotent) that never clobbers a forward wrapper
    installed over the module's since: HookRegistry.remove_hook of its last hook restores the forward it
    saved, so when another wrapper sits outside, the hook stays (its owner makes it pass through)."""
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(module)
    base, n = name, 1
    while registry.get_hook(name) is not None:  # one left in place (passing through) by an earlier removal
        n += 1
        name = f"{base}.{n}"
    registry.register_hook(hook, name)
    installed = module.forward

    def remove() -> None:
        if registry.get_hook(name) is None:
            return
        if registry._hook_order[-1] != name or module.forward is installed:
            registry.remove_hook(name, recurse=False)

    return remove


def record_kv_and_stop(controls: Controls, index: int, key: torch.Tensor, value: torch.Tensor):
    """End of a pass truncated inside block `index` for KV injection: keep its video keys/values."""
    if index in controls.record_kv:
        controls.captured[("kv", index)] = (key.detach(), value.detach())
    raise StopForward


def run_blocks(blocks, carry: tuple, extra: tuple, controls: Controls, checkpointing: bool = True) -> tuple | None:
    """Run ``carry = block(*carry, *extra)`` through `blocks`; None when `controls.stop_at` truncated.

    While gradients are enabled and `checkpointing` is on, each block but the truncated one keeps
    only its inputs and recomputes its activations in backward. With ``controls.grad_blocks``, the
    other blocks run without gradients and every block's input is detached; with ``controls.prefix``
    too, the input to the first of them is cached there, or taken from there (skipping the blocks
    before it) when the cache is already filled.
    """
    grad = torch.is_grad_enabled() and checkpointing
    grad_blocks = controls.grad_blocks  # None: every block carries gradients
    first = min(grad_blocks) if grad_blocks and controls.prefix is not None else None
    start = 0
    if first is not None and controls.prefix:
        carry, start = controls.prefix["carry"], first
    try:
        for i, block in enumerate(blocks):
            if i < start:
                continue
            if grad_blocks is not None:
                carry = tuple(c.detach() if isinstance(c, torch.Tensor) else c for c in carry)
            if i == first and controls.prefix is not None and not controls.prefix:
                controls.prefix["carry"] = carry
            if grad_blocks is not None and i not in grad_blocks:
                with torch.no_grad():
                    out = block(*carry, *extra)
            elif grad and controls.stop_at != i:
                out = checkpoint(block, *carry, *extra, use_reentrant=False)
            else:
                out = block(*carry, *extra)
            carry = out if isinstance(out, tuple) else (out,)
    except StopForward:
        return None
    return carry
