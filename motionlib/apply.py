"""Zero-shot apply: a plain generation whose first guided steps use a stored ρ_t (no optimisation).

Each guided step takes the stored ρ_t whose timestep is nearest in value, so an asset learnt with
50 steps drives a 20-step render. ``strength`` scales the learnt change: ρ = ρ_base + s·(ρ_t − ρ_base).
KV injection of the stored reference latent can be switched off. A model at another frame count or
size than the motion's (``load_model(..., num_frames=, height=, width=)``) gets the motion retargeted to
its geometry first (motionlib.retarget: shift motions only).
"""

from __future__ import annotations

import math
import warnings

import torch

from .errors import ParameterError
from .guidance import guided_step_count
from .injection import reference_kv
from .progress import ProgressFn
from .retarget import geometry_changed, retarget
from .rho import from_stored
from .sampling import prepare, sample
from .transformer import Controls
from .weights import OtherWeights, fingerprint, mismatch


def nearest_timestep(stored: list[int], t: float) -> int:
    return min(stored, key=lambda s: (abs(s - t), s))


class AssetHook:
    """StepHook feeding a MotionAsset's ρ_t (and injection) into a render.

    ``step_controls`` is the one rule for which steps are guided and what they get: ``apply`` runs it
    in motionlib's loop (``__call__``), ``motionlib.attach`` inside a diffusers pipeline's own loop."""

    def __init__(self, asset, strength: float = 1.0, inject: bool = True):
        self.asset, self.strength, self.inject = asset, strength, inject
        self.guidance = asset.guidance  # the typed parameters it was learnt with
        self.used: list[tuple[int, int]] = []  # (render timestep, stored timestep)

    @property
    def injects(self) -> bool:
        """Whether guided steps inject the stored reference's keys/values."""
        return bool(self.inject and self.guidance.inject and self.guidance.inject_blocks)

    def step_controls(self, run, index: int, t: torch.Tensor) -> Controls | None:
        """The Controls of denoising step `index` (timestep `t`) of `run`: the stored ρ_t nearest in
        timestep (scaled by `strength`) and the reference's keys/values, or None for an unguided step.

        `run` needs ``steps`` and ``base``, and with injection what ``reference_kv`` reads (``model``,
        ``scheduler``, ``init_noise``, ``cond_embeds``)."""
        a, g = self.asset, self.guidance
        n = guided_step_count(run.steps, g.guided_fraction)
        if index >= n or not a.timesteps:
            return None
        t_val = int(t)
        stored = nearest_timestep(a.timesteps, t_val)
        controls = Controls(rho=from_stored(run.base, a.rho_delta[stored], a.parametrisation, self.strength))
        if self.injects:
            controls.inject = reference_kv(run, a.ref_latent, t, g.inject_blocks)
        self.used.append((t_val, stored))
        return controls

    def __call__(self, state) -> bool:
        controls = self.step_controls(state.run, state.index, state.t)
        if controls is not None:
            state.controls.rho, state.controls.inject = controls.rho, controls.inject
        return True


def check_strength(strength) -> None:
    if not (isinstance(strength, (int, float)) and math.isfinite(strength) and strength >= 0):
        raise ParameterError(f"strength must be a finite number >= 0, got {strength!r}")


def warn_other_weights(model, asset, name: str | None = None, stacklevel: int = 3) -> None:
    """Warn (``OtherWeights``) when `asset` was learnt with weights other than `model`'s (the warning
    points `stacklevel` frames up: apply's caller by default)."""
    if asset.weights is None:
        return
    msg = mismatch(asset.weights, fingerprint(model.transformer), model.spec.name, asset.source.get("name"), name)
    if msg:
        warnings.warn(msg, OtherWeights, stacklevel=stacklevel)


def apply(model, asset, prompt: str, *, seed: int = 0, steps: int | None = None, strength: float = 1.0,
          inject: bool = True, negative_prompt: str = "", guidance_scale: float | None = None,
          progress: ProgressFn | None = None, output: str = "video", name: str | None = None,
          image=None) -> torch.Tensor:
    """Render `prompt` moving like `asset`: video [F, 3, H, W] in [0, 1] (or latents).

    A motion learnt with other transformer weights than `model`'s (a retrained or fine-tuned model of
    the same architecture) still renders, with an ``OtherWeights`` warning that says how to learn it
    again (`name`, the motion's catalogue name, goes into that command). An image-to-video motion renders
    from any first frame `image` (a PIL image), zero-shot. A model at another frame count or size renders
    the motion retargeted to it (``motionlib.retarget``; a ``table`` motion is refused)."""
    if geometry_changed(asset, model.spec):
        s = model.spec
        asset = retarget(asset, s.num_frames, s.height, s.width)
    asset.check_compatible(model.spec)
    warn_other_weights(model, asset, name)
    check_strength(strength)
    run = prepare(model, prompt, negative_prompt=negative_prompt, seed=seed, steps=steps,
                  guidance_scale=guidance_scale, image=image)
    latents = sample(run, [AssetHook(asset, strength, inject)], progress=progress)
    assert latents is not None  # AssetHook never ends the loop early
    return latents if output == "latent" else model.decode(latents)
