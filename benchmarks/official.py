"""An official-DiTFlow-style baseline built from motionlib pieces.

What the official code does differently from ``motionlib.learn`` (and nothing else is changed):

* per-head attention maps: the AMF logits are built per head, ``[heads, F*S, F*S]``, and then
  averaged over heads (``per_head_flow``), instead of one matmul over concatenated heads in chunks;
* no truncation: every optimisation forward (and the reference pass) runs through all blocks;
* all steps are rendered to the end (``stop_after_guided=False``) and the result is decoded.

Shared with motionlib, to keep the comparison about those three points: the sampling loop,
`Guidance` (Adam on ρ_t, warm start, lr schedule, KV injection), the loss (eq. 8) and the block
activation checkpointing of ``motionlib.transformer.forward`` (so the baseline's memory is, if
anything, lower than the official code's).
"""

from __future__ import annotations

import functools
import math
from unittest import mock

import torch

import motionlib.guidance as guidance_mod
from motionlib.amf import amf_loss, patch_coords
from motionlib.guidance import Guidance, GuidanceParams, reference_mask
from motionlib.learn import ReferenceMotion, _check_video
from motionlib.rho import base_rho
from motionlib.sampling import prepare, sample
from motionlib.transformer import Controls, forward


def learn_without_checkpointing(model, video: torch.Tensor, **kw):
    """What-if: ``motionlib.learn`` with the block activation checkpointing of its optimisation passes off."""
    from motionlib.learn import learn

    with mock.patch.object(guidance_mod, "forward", functools.partial(forward, checkpointing=False)):
        return learn(model, video, **kw)


def per_head_flow(query: torch.Tensor, key: torch.Tensor, *, num_frames: int, height: int, width: int,
                  temperature: float = 2.0, hard: bool = False):
    """AMF [F, F, S, 2] the naive way: per-head logits [H, F*S, F*S], head mean, softmax per key frame.

    Same maths as ``motionlib.amf.motion_flow`` (tests: benchmarks check they agree); with `hard`
    returns (flow, confidence) like ``motion_flow(..., hard=True, return_confidence=True)``.
    """
    heads, n, d = query.shape
    s = height * width
    dt = torch.promote_types(query.dtype, torch.float32)
    per_head = torch.matmul(query.to(dt), key.to(dt).transpose(1, 2)) * (temperature / math.sqrt(d))
    logits = per_head.mean(dim=0).view(num_frames, s, num_frames, s)  # [F_i, S, F_j, S]
    coords = patch_coords(height, width, device=query.device, dtype=dt)
    if hard:
        with torch.no_grad():
            conf = logits.softmax(dim=-1).amax(dim=-1).permute(0, 2, 1)
            idx = logits.argmax(dim=-1)
            flow = coords[idx].permute(0, 2, 1, 3) - coords.view(1, 1, s, 2)
        return flow, conf
    target = logits.softmax(dim=-1) @ coords  # [F_i, S, F_j, 2]
    return target.permute(0, 2, 1, 3) - coords.view(1, 1, s, 2)


@torch.no_grad()
def official_reference(model, video: torch.Tensor, *, blocks, temperature: float) -> ReferenceMotion:
    """Reference AMF as the official code gets it: the whole forward at t=0, per-head hard AMF."""
    _check_video(model, video)
    latent = model.encode_video(video)
    embeds = model.encode_prompt([""])
    controls = Controls(rho=base_rho(model), capture=tuple(blocks), stop_at=None)
    t0 = torch.zeros(1, dtype=torch.long, device=model.device)
    with model.on_device(model.transformer) as tr:
        forward(tr, latent, embeds, t0, controls)
    frames, rows, cols = model.spec.grid
    amf, conf = {}, {}
    for b in blocks:
        q, k = controls.captured[("qk", b)]
        amf[b], conf[b] = per_head_flow(q[0], k[0], num_frames=frames, height=rows, width=cols,
                                        temperature=temperature, hard=True)
    return ReferenceMotion(latent, amf, conf)


def official_loss(run, latents, t, controls_kw: dict, reference, params: GuidanceParams,
                  checkpointing: bool = True) -> torch.Tensor:
    """``motionlib.guidance.guidance_loss`` without truncation and with per-head maps."""
    frames, rows, cols = run.model.spec.grid
    controls = Controls(capture=params.blocks, stop_at=None, **controls_kw)
    x = run.scheduler.scale_model_input(latents, t)
    forward(run.model.transformer, x, run.cond_embeds, t.expand(1), controls, checkpointing=checkpointing)
    losses = []
    for b in params.blocks:
        q, k = controls.captured[("qk", b)]
        flow = per_head_flow(q[0], k[0], num_frames=frames, height=rows, width=cols,
                             temperature=params.temperature)
        mask = reference_mask(reference.confidence.get(b), params.confidence)
        losses.append(amf_loss(flow, reference.amf[b].to(flow.device), mask))
    return torch.stack(losses).mean()


def official_learn(model, video: torch.Tensor, *, prompt: str = "", seed: int = 0, steps: int | None = None,
                   checkpointing: bool = True, **overrides) -> torch.Tensor:
    """Official-style DiTFlow run: guided steps, then every remaining step, then decode. Returns the video."""
    params = GuidanceParams.from_spec(model.spec, **overrides)
    ref = official_reference(model, video, blocks=params.blocks, temperature=params.temperature)
    run = prepare(model, prompt, seed=seed, steps=steps)
    guide = Guidance(ref, params, mode="rho", stop_after_guided=False)
    loss = functools.partial(official_loss, checkpointing=checkpointing)
    with mock.patch.object(guidance_mod, "guidance_loss", loss):
        latents = sample(run, [guide])
    return model.decode(latents)
