"""Learning a motion (ρ mode, zero-shot reusable) and one-shot transfer (z_t mode).

learn:    reference AMF -> a generation whose first guided steps optimise ρ_t -> MotionAsset.
          The loop stops right after the last guided step: nothing is denoised further or decoded.
transfer: the paper's default mode: the same loop optimising z_t instead, rendered to the end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from . import checkpointing as ckpt
from .amf import motion_flow
from .asset import MotionAsset
from .errors import ParameterError
from .guidance import Guidance, GuidanceParams
from .image import first_frame
from .progress import ProgressFn, ReferenceExtracted
from .rho import base_rho
from .sampling import prepare, sample
from .transformer import Controls
from .weights import fingerprint


@dataclass
class ReferenceMotion:
    latent: torch.Tensor  # z_ref = E(x_ref), [1, F', C, h, w]
    amf: dict[int, torch.Tensor]  # block -> hard AMF [F, F, S, 2]
    confidence: dict[int, torch.Tensor]  # block -> peak attention probability [F, F, S]


def _check_video(model, video: torch.Tensor) -> None:
    s = model.spec
    want = (s.num_frames, 3, s.height, s.width)
    if tuple(video.shape) != want:
        raise ParameterError(f"video tensor is {list(video.shape)}; {s.name} needs {list(want)} "
                         f"(read it with motionlib.video.read_video)")


@torch.no_grad()
def reference_motion(model, video: torch.Tensor, *, blocks: tuple[int, ...], temperature: float,
                     flow_fn=motion_flow, truncate: bool = True) -> ReferenceMotion:
    """Eq. (2)-(4): encode the clip, one pass at t=0 with the empty prompt, hard AMF per block. An
    image-to-video model's pass is conditioned on the clip's own first frame (deterministically)."""
    _check_video(model, video)
    latent = model.encode_video(video)
    embeds = model.encode_prompt([""])
    image = model.image_condition(first_frame(video), [None]) if model.spec.conditioning == "i2v" else None
    controls = Controls(rho=base_rho(model), capture=tuple(blocks), stop_at=max(blocks) if truncate else None)
    t0 = torch.zeros(1, dtype=torch.long, device=model.device)
    with model.on_device(model.transformer) as tr:
        model.family.forward(tr, latent, embeds, t0, controls, image=image)
    frames, rows, cols = model.spec.grid
    amf, conf = {}, {}
    for b in blocks:
        q, k = controls.captured[("qk", b)]
        amf[b], conf[b] = flow_fn(q[0], k[0], num_frames=frames, height=rows, width=cols,
                                  temperature=temperature, hard=True, return_confidence=True)
    return ReferenceMotion(latent, amf, conf)


def _params(model, params: GuidanceParams | None, overrides: dict) -> GuidanceParams:
    if params is None:
        return GuidanceParams.from_spec(model.spec, **overrides)
    given = sorted(k for k, v in overrides.items() if v is not None)
    if given:
        raise TypeError(f"pass either params or keyword overrides, not both (got {', '.join(given)})")
    params.validate(model.spec)
    return params


@dataclass
class LearnResult:
    """What `learn` returns: the motion asset, and the learn generation rendered to the end
    (video [F, 3, H, W] in [0, 1], generation 0: seed `seed`) when asked for with ``preview=True``."""

    asset: MotionAsset
    preview: torch.Tensor | None = None


def learn(model, video: torch.Tensor, *, prompt: str = "", seed: int = 0, steps: int | None = None,
          params: GuidanceParams | None = None, negative_prompt: str = "", source: dict | None = None,
          progress: ProgressFn | None = None, preview: bool = False, checkpointing: bool | str = "auto",
          prompts: list[str] | None = None, image=None, **overrides) -> LearnResult:
    """Learn a reusable motion from `video` ([F, 3, H, W] in [-1, 1]) by optimising ρ_t.

    Keyword overrides (blocks, lr_start, opt_steps, samples, shift_grid, ...) replace the model's
    guidance defaults. With ``samples=N`` one shared ρ_t is optimised on N generations at once (noise
    seeds seed, seed+1, ...; prompts cycled from `prompts` when given, else `prompt`), their AMF
    losses averaged; the N generations go through the transformer as one batch, so a step costs one
    batched forward (time and activation memory grow about linearly in N).
    `checkpointing` ("auto", "on", "off") trades optimisation time for memory
    (``motionlib.checkpointing``); it does not change the result.
    Returns a LearnResult; its preview (``preview=True``) renders generation 0 to the end.
    On an image-to-video model the learn generations start from `image` (a PIL image), by default the
    reference clip's own first frame; the asset records that it is an image-to-video motion.
    """
    params = _params(model, params, overrides)
    image = _first_frame_for(model, video, image)
    if prompts is not None:
        prompts = [str(p) for p in prompts]
    ref = reference_motion(model, video, blocks=params.blocks, temperature=params.temperature)
    if progress:
        progress(ReferenceExtracted())
    run = prepare(model, prompt, negative_prompt=negative_prompt, seed=seed, steps=steps, samples=params.samples,
                  prompts=prompts, image=image)
    guide = Guidance(ref, params, mode="rho", stop_after_guided=not preview, progress=progress,
                     checkpointing=ckpt.resolve(checkpointing, model, params.blocks, batch=params.samples))
    latents = sample(run, [guide], progress=progress)
    asset = MotionAsset(
        spec=model.spec, timesteps=guide.timesteps,
        rho_delta={t: guide.rho_per_t[t] for t in guide.timesteps},
        ref_latent=ref.latent.detach().float().cpu(),
        ref_amf={b: a.cpu() for b, a in ref.amf.items()},
        ref_confidence={b: c.cpu() for b, c in ref.confidence.items()},
        params={**params.to_dict(), "prompt": prompt, "negative_prompt": negative_prompt, "seed": seed,
                "prompts": run.prompts, "seeds": [seed + i for i in range(run.batch)],
                "steps": run.steps, "guidance_scale": run.guidance_scale, "use_dynamic_cfg": run.use_dynamic_cfg},
        steps=run.steps,
        scheduler=scheduler_record(run.scheduler),
        losses=guide.losses, source=dict(source or {}), weights=fingerprint(model.transformer),
    )
    if not preview:
        return LearnResult(asset, None)
    assert latents is not None  # with a preview, guidance does not stop the loop early
    return LearnResult(asset, model.decode(latents[:1]))


def scheduler_record(scheduler) -> dict:
    """The scheduler as an asset stores it: class name and config, the same bytes in every process
    (diffusers lists the config keys left at their defaults in set order, which varies with Python's
    string-hash seed: sorted here)."""
    config = dict(scheduler.config)
    if isinstance(config.get("_use_default_values"), list):
        config["_use_default_values"] = sorted(config["_use_default_values"])
    return {"name": type(scheduler).__name__, "config": config}


def _first_frame_for(model, video: torch.Tensor, image):
    """The first frame a learn or transfer on `model` starts from: `image`, or on an image-to-video model
    without one the reference clip's first frame (a text-to-video model given one: ParameterError)."""
    from .sampling import check_image

    if image is None and model.spec.conditioning == "i2v":
        _check_video(model, video)
        return first_frame(video)
    check_image(model, image)
    return image


def transfer(model, video: torch.Tensor, prompt: str, *, seed: int = 0, steps: int | None = None,
             params: GuidanceParams | None = None, negative_prompt: str = "",
             progress: ProgressFn | None = None, output: str = "video", checkpointing: bool | str = "auto",
             image=None, **overrides):
    """One-shot motion transfer optimising z_t (paper default); returns (video, losses). An
    image-to-video model starts from `image`, by default the clip's first frame."""
    g = model.spec.guidance
    latent_lr = g.latent_lr or (g.lr_start, g.lr_end)
    if params is None and overrides.get("lr_start") is None and overrides.get("lr_end") is None:
        overrides = {**overrides, "lr_start": latent_lr[0], "lr_end": latent_lr[1]}
    overrides["samples"] = None  # one render: learn's samples (from the spec or the caller) do not apply
    params = _params(model, params, overrides)
    params = replace(params, samples=1)
    image = _first_frame_for(model, video, image)
    ref = reference_motion(model, video, blocks=params.blocks, temperature=params.temperature)
    run = prepare(model, prompt, negative_prompt=negative_prompt, seed=seed, steps=steps, image=image)
    guide = Guidance(ref, params, mode="latent", stop_after_guided=False, progress=progress,
                     checkpointing=ckpt.resolve(checkpointing, model, params.blocks))
    latents = sample(run, [guide], progress=progress)
    return (latents if output == "latent" else model.decode(latents)), guide.losses


def parse_prompts(value: str | None) -> list[str] | None:
    """Learn prompts from the command line: a text file with one prompt per line, else P1,P2,...
    (blank entries dropped); None for None. An option that names no prompt is a ParameterError."""
    if value is None:
        return None
    from pathlib import Path

    path = Path(value)
    items = path.read_text(encoding="utf-8").splitlines() if path.is_file() else value.split(",")
    prompts = [p.strip() for p in items if p.strip()]
    if not prompts:
        raise ParameterError(f"prompts {value!r} holds no prompt")
    return prompts
