"""An official-DiTFlow-style baseline built from motionlib pieces.

What the official code does differently from ``motionlib.learn`` (and nothing else is changed):

* per-head attention maps: the AMF logits are built per head, ``[heads, F*S, F*S]``, and then
  averaged over heads (``per_head_flow``), instead of one matmul over concatenated heads in chunks;
* no truncation: every optimisation forward (and the reference pass) runs through all blocks;
* all steps are rendered to the end (``stop_after_guided=False``) and the result is decoded.

Shared with motionlib, to keep the comparison about those three points: the sampling loop,
`Guidance` (Adam on ρ_t, warm start, lr schedule, KV injection), the loss (eq. 8) and the block
activation checkpointing policy (``motionlib.checkpointing``: where the activations do not fit,
the baseline checkpoints too, so its memory is, if anything, lower than the official code's).
"""

from __future__ import annotations

import functools
import math
from unittest import mock

import torch

import motionlib.checkpointing as checkpointing_mod
import motionlib.guidance as guidance_mod
from motionlib.amf import patch_coords
from motionlib.guidance import Guidance, GuidanceParams, guidance_loss
from motionlib.learn import reference_motion
from motionlib.sampling import prepare, sample


def per_head_flow(query: torch.Tensor, key: torch.Tensor, *, num_frames: int, height: int, width: int,
                  temperature: float = 2.0, hard: bool = False, return_confidence: bool = False):
    """AMF [F, F, S, 2] the naive way: per-head logits [H, F*S, F*S], head mean, softmax per key frame.

    Same maths as ``motionlib.amf.motion_flow`` (tests: benchmarks check they agree); with `hard`
    returns (flow, confidence) like ``motion_flow(..., hard=True, return_confidence=True)``.
    """
    heads, n, d = query.shape
    s = height * width
    dt = torch.promote_types(query.dtype, torch.float32)
    # the maps in the inputs' dtype (bf16 for the real models), as the official code keeps them
    per_head = torch.matmul(query, key.transpose(1, 2)) * (temperature / math.sqrt(d))
    logits = per_head.mean(dim=0, dtype=dt).view(num_frames, s, num_frames, s)  # [F_i, S, F_j, S]
    coords = patch_coords(height, width, device=query.device, dtype=dt)
    if hard:
        with torch.no_grad():
            conf = logits.softmax(dim=-1).amax(dim=-1).permute(0, 2, 1)
            idx = logits.argmax(dim=-1)
            flow = coords[idx].permute(0, 2, 1, 3) - coords.view(1, 1, s, 2)
        return (flow, conf) if return_confidence else flow
    target = logits.softmax(dim=-1) @ coords  # [F_i, S, F_j, 2]
    return target.permute(0, 2, 1, 3) - coords.view(1, 1, s, 2)


# The official way, through the very functions motionlib uses: per-head maps, no truncation.
official_reference = functools.partial(reference_motion, flow_fn=per_head_flow, truncate=False)
official_loss = functools.partial(guidance_loss, flow_fn=per_head_flow, truncate=False)


def official_learn(model, video: torch.Tensor, *, prompt: str = "", seed: int = 0, steps: int | None = None,
                   checkpointing: bool | str = "auto", **overrides) -> torch.Tensor:
    """Official-style DiTFlow run: guided steps, then every remaining step, then decode. Returns the video.

    `checkpointing` as in ``motionlib.learn``; "auto" sizes the activations of every block, since
    without truncation all of them are kept for backward.
    """
    params = GuidanceParams.from_spec(model.spec, **overrides)
    ref = official_reference(model, video, blocks=params.blocks, temperature=params.temperature)
    run = prepare(model, prompt, seed=seed, steps=steps)
    with model.on_device(model.transformer):
        ckpt = checkpointing_mod.resolve(checkpointing, model, params.blocks, truncate=False)
    guide = Guidance(ref, params, mode="rho", stop_after_guided=False, checkpointing=ckpt)
    with mock.patch.object(guidance_mod, "guidance_loss", official_loss):
        latents = sample(run, [guide])
    return model.decode(latents)
