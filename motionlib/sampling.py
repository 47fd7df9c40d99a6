"""The denoising loop shared by generate, apply, learn and transfer (one readable loop).

It reproduces the model family's diffusers pipeline (CogVideoXPipeline: CFG batch, dynamic CFG,
DDIM or DPM steps; WanPipeline: two CFG passes, UniPC) through the family's adapter
(``motionlib.families``): its noise, ``predict`` (forward + CFG) and scheduler ``step``.
A ``StepHook`` may change the latents (z_t optimisation) and the per-step `Controls` (ρ_t, KV
injection) before each denoising step, or end the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import torch

from .errors import ParameterError
from .models.spec import MAX_STEPS
from .progress import DenoiseStep, ProgressFn, Stopped
from .rho import Rho, base_rho
from .transformer import Controls

if TYPE_CHECKING:
    from .models.base import Model



@dataclass
class StepState:
    """What a hook sees at denoising step `index` (timestep value `t`)."""

    index: int
    t: torch.Tensor
    latents: torch.Tensor
    controls: Controls
    run: "Run"


class StepHook(Protocol):
    def __call__(self, state: StepState) -> bool:
        """Adjust ``state.latents``/``state.controls`` in place; return False to end the loop now."""


@dataclass
class Run:
    """One sampling run: its inputs and the state the hooks share."""

    model: Model
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 50
    guidance_scale: float = 6.0
    use_dynamic_cfg: bool = False
    # set by ``prepare``:
    generator: torch.Generator = field(init=False)
    embeds: torch.Tensor = field(init=False)  # [2, L, D] (uncond, cond) with CFG, else [1, L, D]
    timesteps: torch.Tensor = field(init=False)
    scheduler: Any = field(init=False)  # a diffusers scheduler (their common base declares no step/timesteps)
    init_noise: torch.Tensor = field(init=False)
    base: Rho = field(init=False)
    extras: dict = field(default_factory=dict)
    batch: int = 1  # generations denoised together (learn --samples): seeds seed, seed+1, ...
    prompts: list = field(default_factory=list)  # the prompt of each generation of the batch
    # image-to-video: the family's first-frame conditioning ([batch, ...] tensors; ``image_condition``), else None
    image: dict | None = None

    @property
    def cond_embeds(self) -> torch.Tensor:
        return self.embeds[-self.batch:]

    @property
    def do_cfg(self) -> bool:
        return self.guidance_scale > 1.0


def check_image(model, image) -> None:
    """A ParameterError when `image` does not fit the model's conditioning: an image-to-video model
    needs one, a text-to-video model takes none (both named)."""
    s = model.spec
    if s.conditioning == "i2v" and image is None:
        raise ParameterError(f"{s.name} is an image-to-video model: give it a first frame (image=..., --image)")
    if s.conditioning != "i2v" and image is not None:
        raise ParameterError(f"{s.name} is a text-to-video model and takes no image (--image is for image-to-video "
                             "models such as tiny-5b-i2v, cogvideox-5b-i2v, wan2.1-i2v-14b-480p)")


def prepare(model, prompt: str, *, negative_prompt: str = "", seed: int = 0, steps: int | None = None,
            guidance_scale: float | None = None, use_dynamic_cfg: bool | None = None, samples: int = 1,
            prompts: list[str] | None = None, image=None) -> Run:
    """A run of `samples` generations denoised as one batch: generation i has the noise of seed
    ``seed + i`` and the prompt ``prompts[i % len(prompts)]`` (`prompt` when no list is given), so
    generation 0 is exactly the one-sample run. An image-to-video model takes its first frame `image`
    (a PIL image: ``motionlib.image``); each generation's conditioning is drawn before its noise, as the
    family's image-to-video pipeline does."""
    check_image(model, image)
    spec = model.spec
    run = Run(model, prompt, negative_prompt, seed,
              spec.num_inference_steps if steps is None else steps,
              spec.guidance_scale if guidance_scale is None else guidance_scale,
              spec.use_dynamic_cfg if use_dynamic_cfg is None else use_dynamic_cfg)
    if not 1 <= run.steps <= MAX_STEPS:
        raise ParameterError(f"steps must be between 1 and {MAX_STEPS}, got {run.steps}")
    if samples < 1:
        raise ParameterError(f"samples must be >= 1, got {samples}")
    if prompts is not None and not prompts:
        raise ParameterError("prompts is an empty list; give at least one prompt or None")
    run.batch = samples
    run.prompts = [prompts[i % len(prompts)] for i in range(samples)] if prompts else [prompt] * samples
    run.generator = torch.Generator(device="cpu").manual_seed(seed)
    texts = ([negative_prompt] * samples + run.prompts) if run.do_cfg else run.prompts
    run.embeds = model.encode_prompt(texts)
    run.scheduler = model.new_scheduler(run.steps)
    run.timesteps = run.scheduler.timesteps
    generators = [run.generator] + [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(1, samples)]
    if image is not None:
        run.image = model.image_condition(image, generators)
    run.init_noise = torch.cat([model.family.initial_noise(model, g) for g in generators])
    run.base = base_rho(model)
    return run


def predict(run: Run, latents: torch.Tensor, t: torch.Tensor, controls: Controls) -> torch.Tensor:
    """CFG-combined model output for one denoising step (no gradients), as the family's pipeline does."""
    return run.model.family.predict(run, latents, t, controls)


def sample(run: Run, hooks: Sequence[StepHook] = (), progress: ProgressFn | None = None) -> torch.Tensor | None:
    """Denoise from the run's initial noise; returns z_0, or None when a hook ended the loop early."""
    sched = run.scheduler
    latents = run.init_noise * sched.init_noise_sigma
    for i, t in enumerate(run.timesteps):
        state = StepState(i, t, latents, Controls(rho=run.base), run)
        for hook in hooks:
            if hook(state) is False:
                if progress:
                    progress(Stopped(step=i, total=len(run.timesteps),
                                     reason=getattr(hook, "stop_reason", None) or "a step hook ended the loop"))
                return None
        latents = state.latents.detach()
        noise_pred = predict(run, latents, t, state.controls)
        latents = run.model.family.step(run, i, t, noise_pred, latents)
        if progress:
            progress(DenoiseStep(step=i + 1, total=len(run.timesteps)))
    return latents


def generate(model, prompt: str, *, seed: int = 0, steps: int | None = None, negative_prompt: str = "",
             guidance_scale: float | None = None, progress: ProgressFn | None = None,
             output: str = "video", image=None) -> torch.Tensor:
    """Plain generation: video [F, 3, H, W] in [0, 1] (or the latents with output="latent"); an
    image-to-video model starts from `image` (a PIL image)."""
    run = prepare(model, prompt, negative_prompt=negative_prompt, seed=seed, steps=steps,
                  guidance_scale=guidance_scale, image=image)
    latents = sample(run, progress=progress)
    assert latents is not None  # without hooks the loop runs to the end
    return latents if output == "latent" else model.decode(latents)
