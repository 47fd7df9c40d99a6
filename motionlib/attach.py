"""Use a stored motion inside your own diffusers pipeline: ``motionlib.attach(pipe, motion)``.

    with motionlib.attach(pipe, motion, strength=1.0, inject=True) as handle:
        video = pipe(prompt="a robot squatting", generator=torch.Generator().manual_seed(0)).frames[0]

The pipeline runs its own loop, CFG, scheduler and VAE; attaching changes only what ``apply`` changes:
ρ (and KV injection) on the guided steps. The mechanics are apply's, not a copy (docs/architecture.md):

- which steps are guided and what they get is ``AssetHook.step_controls`` (motionlib.apply): a step is
  guided iff it falls in the asset's guided fraction of this call's schedule, and takes the stored ρ_t
  nearest in timestep, scaled by `strength`, plus the reference's keys/values noised with this call's
  own initial noise (``motionlib.injection.reference_kv``);
- the maths is the family's motion attention processors (and, for the additive sin-cos ρ, the same
  patch-embedding code), bound into diffusers' own forward by the family adapter (``model.family.bind``):
  each attn1 gets a processor that runs the one it replaced, untouched, on unguided passes, and
  motionlib's with the step's Controls on guided ones. The posemb hook is a diffusers ``ModelHook`` in the
  patch embedding's ``HookRegistry``, so it composes with group offloading and the cache hooks.
- the pipeline's own ``encode_prompt`` and ``prepare_latents`` are wrapped on the instance while
  attached: they give this call's conditional text embeddings and initial noise (Wan's is float32 even
  under bf16) and start the call's record (``handle.used``); on the image-to-video pipelines
  ``prepare_latents`` also gives the call's image conditioning (and ``encode_image``, wrapped too, Wan's
  CLIP tokens), which the KV-injection reference pass takes as apply's does. Each pass learns its step from the
  pipeline's ``_current_timestep``.

Nothing wraps the transformer's own ``forward``: model CPU offload re-applies its accelerate hooks
after every call (which would strip such a wrapper) and ``HookRegistry.remove_hook`` restores the
forward it saved (which would drop offload's). Removal (``handle.remove()``, idempotent) restores the
processors and the pipeline methods, leaving alone anything installed over them since.

One file on purpose (over 400 lines): the compatibility checks, the binding and the per-call state are one
lifecycle (check, bind, serve each call, remove) whose pieces read and undo each other; the family-specific
parts live in the adapters (``bind``, ``pipeline_noise``).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .apply import AssetHook, check_strength, warn_other_weights
from .asset import MotionAsset
from .errors import ParameterError
from .models.base import Model
from .rho import Rho, base_rho
from .sampling import Run
from .transformer import Controls

__all__ = ["attach", "Attachment", "AttachError", "Approximate", "noise_schedule"]


class AttachError(ParameterError):
    """A pipeline, call or setting a motion cannot drive (the message names the value and the fix)."""


class Approximate(UserWarning):
    """An attach that renders, but not exactly as ``apply`` would (e.g. a cache that skips attention)."""


# diffusers hooks (their HookRegistry names) that reuse attention outputs from earlier steps, so a
# step's injected reference keys/values (or its ρ) do not reach every attention computation
ATTENTION_SKIPPING = {
    "pyramid_attention_broadcast": "pyramid attention broadcast",
    "faster_cache_denoiser": "FasterCache",
    "faster_cache_block": "FasterCache",
    "taylorseer_cache": "TaylorSeer cache",
}
_BETAS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "rescale_betas_zero_snr",
          "snr_shift_scale", "prediction_type")
_BETA_DEFAULTS = {"trained_betas": None, "rescale_betas_zero_snr": False, "snr_shift_scale": 1.0}


def _plain(value: Any) -> Any:
    """A config value as its JSON form (tuples and lists alike), as an asset file stores it."""
    return json.loads(json.dumps(value, default=str))


def noise_schedule(name: str, config: dict) -> dict[str, Any]:
    """What fixes a scheduler's noise levels per timestep (not its solver, step count or spacing):
    betas and prediction type, or for flow matching the shift of its sigmas."""
    c = {k: _plain(v) for k, v in dict(config).items()}
    if c.get("use_flow_sigmas") or name.startswith("FlowMatch"):
        shift = c.get("flow_shift", 1.0) if c.get("use_flow_sigmas") else c.get("shift", 1.0)
        return {"flow matching": True, "num_train_timesteps": c.get("num_train_timesteps"),
                "flow shift": float(shift), "use_dynamic_shifting": bool(c.get("use_dynamic_shifting", False))}
    return {"flow matching": False, **{k: c.get(k, _BETA_DEFAULTS.get(k)) for k in _BETAS}}


def _schedule_difference(learnt: dict, scheduler) -> str | None:
    """The first noise-schedule setting where `scheduler` differs from the learn's `learnt` (None: same)."""
    if not learnt.get("config"):
        return None  # not recorded: nothing to compare
    a = noise_schedule(learnt.get("name", ""), learnt["config"])
    b = noise_schedule(type(scheduler).__name__, scheduler.config)
    for key in [*a, *(k for k in b if k not in a)]:
        if a.get(key) != b.get(key):
            return f"{key} {a.get(key)!r} (this pipeline's scheduler: {b.get(key)!r})"
    return None


def _strict_difference(learnt: dict, scheduler) -> str | None:
    if learnt.get("name") != type(scheduler).__name__:
        return f"scheduler {learnt.get('name')} (this pipeline's: {type(scheduler).__name__})"
    mine = {k: _plain(v) for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    theirs = {k: _plain(v) for k, v in learnt.get("config", {}).items() if not k.startswith("_")}
    for key in sorted(mine.keys() | theirs.keys()):
        if mine.get(key) != theirs.get(key):
            return f"scheduler setting {key}={theirs.get(key)!r} (this pipeline's: {mine.get(key)!r})"
    return None


def _resolve(motion, library) -> tuple[MotionAsset, str | None]:
    """(asset, catalogue name or None) from a MotionAsset, a motion file or a catalogue name."""
    if isinstance(motion, MotionAsset):
        return motion, None
    if not isinstance(motion, (str, os.PathLike)):
        raise AttachError(f"motion must be a MotionAsset, a motion file or a catalogue name, got "
                          f"{type(motion).__name__}")
    path = Path(motion).expanduser()
    if path.is_file():
        return MotionAsset.load(path), None
    if library is None:
        raise AttachError(f"{str(motion)!r} is not a motion file; for a motion in a catalogue pass "
                          "library= (a motionlib.store.Library or its folder)")
    from .render import resolve

    name = str(motion)
    if isinstance(library, (str, os.PathLike)):
        from .store import Library

        with Library(library) as lib:
            return resolve(lib, name).asset, name
    return resolve(library, name).asset, name


def _geometry(spec) -> str:
    return f"{spec.num_frames}×{spec.height}×{spec.width}"


def _shape(spec) -> str:
    return f"{spec.heads} heads × {spec.head_dim}, {spec.num_layers} layers, patch {spec.patch_size}"


def _attention_caches(transformer) -> list[str]:
    found: set[str] = set()
    for module in transformer.modules():
        registry = module.__dict__.get("_diffusers_hook")
        if registry is not None:
            found.update(ATTENTION_SKIPPING[n] for n in registry.hooks if n in ATTENTION_SKIPPING)
    return sorted(found)


def _fused(transformer) -> bool:
    """Whether attention runs on fused projections: a diffusers Fused* processor (CogVideoX's
    ``fuse_qkv_projections``), or a module whose processor follows its ``fused_projections`` flag
    (``AttentionModuleMixin`` modules such as Wan's; the older ``Attention`` keeps the flag set after
    ``unfuse_qkv_projections`` restores unfused processors)."""
    from diffusers.models.attention import AttentionModuleMixin

    for m in transformer.modules():
        proc = getattr(m, "processor", None)
        if proc is None:
            continue
        if "Fused" in type(proc).__name__ or "Fused" in type(getattr(proc, "original", None)).__name__:
            return True
        if isinstance(m, AttentionModuleMixin) and getattr(m, "fused_projections", False):
            return True
    return False


def _bound(transformer, live: bool = False) -> list:
    """The attention modules whose processor is a motionlib-bound one; `live`: of an attachment still on
    (diffusers may put back a removed one's, e.g. ``unfuse_qkv_projections``; those only pass through)."""
    out = []
    for m in transformer.modules():
        proc = getattr(m, "processor", None)
        if getattr(proc, "motionlib_bound", False):
            owner = getattr(getattr(proc, "source", None), "__self__", None)
            if not live or getattr(owner, "attached", False):
                out.append(m)
    return out


@dataclass
class _Call:
    """One pipeline call while attached: its run (what ``step_controls`` reads) and where it is."""

    run: Run
    hook: AssetHook
    index: int = -1
    t: Any = None  # the pipeline's timestep tensor of the step in progress
    controls: Controls | None = None


@dataclass(eq=False)
class Attachment:
    """A motion attached to a diffusers pipeline (what ``attach`` returns; a context manager).

    ``used``: the last call's (pipeline timestep, stored timestep) per guided step; ``calls``: that list
    for every call so far. ``remove()`` ends it (idempotent); after it the pipeline renders as before."""

    pipe: Any
    asset: MotionAsset
    strength: float = 1.0
    inject: bool = True
    strict: bool = False
    name: str | None = None
    calls: list[list[tuple[int, int]]] = field(default_factory=list)

    def __post_init__(self):
        self._active = False
        self._call: _Call | None = None
        self._busy = False  # computing a step's Controls (its reference pass must run unbound)
        self._embeds: torch.Tensor | None = None
        self._clip: torch.Tensor | None = None  # an image-to-video call's image-encoder tokens (Wan 2.1 I2V)
        self._bases: dict = {}
        self._warned = False
        self._source = self._controls  # one bound-method object, what the processors hold
        self.hook = AssetHook(self.asset, self.strength, self.inject)  # the settings; each call gets its own

    # --- public -----------------------------------------------------------------------------------
    @property
    def used(self) -> list[tuple[int, int]]:
        return self.calls[-1] if self.calls else []

    @property
    def attached(self) -> bool:
        return self._active

    def remove(self) -> None:
        """Detach: the pipeline's processors, hooks and methods as they were (idempotent)."""
        if not self._active:
            return
        self._active = False
        self._call, self._embeds, self._bases = None, None, {}
        self._undo()
        for name, wrapper in self._wrappers.items():
            if self.pipe.__dict__.get(name) is wrapper:  # else something wrapped ours since: ours passes through
                delattr(self.pipe, name)
        if self.pipe.__dict__.get("_motionlib_attachment") is self:
            delattr(self.pipe, "_motionlib_attachment")

    def __enter__(self) -> "Attachment":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "attached" if self._active else "removed"
        return (f"<motionlib attachment of {self.name or self.asset.source.get('name') or 'a motion'} to "
                f"{type(self.pipe).__name__} ({state}, strength {self.strength}, inject {self.inject})>")

    # --- attaching --------------------------------------------------------------------------------
    def _model(self, device: torch.device) -> Model:
        p = self.pipe
        tr = p.transformer
        return Model(self.asset.spec, p.tokenizer, p.text_encoder, p.vae, tr, p.scheduler, torch.device(device),
                     tr.dtype, "none")

    def _attach(self) -> None:
        p, a = self.pipe, self.asset
        check_strength(self.strength)
        existing = p.__dict__.get("_motionlib_attachment")
        if existing is not None and existing.attached:
            raise AttachError(f"this {type(p).__name__} already has a motion attached ({existing!r}); remove it "
                              "first (handle.remove(), or leave its with block)")
        tr = getattr(p, "transformer", None)
        if tr is None:
            raise AttachError(f"{type(p).__name__} has no transformer; motionlib attaches to CogVideoXPipeline, "
                              "WanPipeline and their image-to-video pipelines")
        if getattr(p, "transformer_2", None) is not None or getattr(p.config, "expand_timesteps", False):
            raise AttachError("two-expert and per-token-timestep Wan 2.2 pipelines are not supported; motionlib "
                              "attaches to Wan 2.1 and CogVideoX pipelines")
        model = self._model(torch.device("cpu"))
        family = model.family
        if not any(c.__name__ in family.pipelines for c in type(p).__mro__):
            wanted = family.pipelines_for(a.spec.conditioning)
            raise AttachError(f"this motion was learnt with {a.spec.name}, a {' / '.join(wanted)} model; "
                              f"a {type(p).__name__} cannot render it: attach it to a {wanted[0]}")
        vae_config = getattr(p.vae, "config", None) or {}
        vae_config = dict(vae_config) if isinstance(vae_config, Mapping) else vars(vae_config)
        here = family.spec_from_folder(Path(type(p).__name__), {"transformer": dict(tr.config), "vae": vae_config})
        if here.conditioning != a.spec.conditioning:
            words = {"t2v": "a text-to-video", "i2v": "an image-to-video"}
            raise AttachError(f"this is {words[a.spec.conditioning]} motion (learnt with {a.spec.name}); a "
                              f"{type(p).__name__} is {words[here.conditioning]} pipeline: attach it to a "
                              f"{a.spec.name}-like pipeline")
        if here.embedding != a.spec.embedding:
            raise AttachError(f"this motion was learnt with {a.spec.name} ({a.spec.embedding} ρ); this pipeline's "
                              f"transformer uses {here.embedding} ρ: attach it to a {a.spec.name}-like pipeline")
        if _shape(here) != _shape(a.spec):
            raise AttachError(f"this motion was learnt for a transformer of {_shape(a.spec)} ({a.spec.name}); this "
                              f"pipeline's has {_shape(here)}: use the model it was learnt with")
        if _bound(tr, live=True):
            raise AttachError("this pipeline's transformer already carries an attached motion (another pipeline "
                              "shares it); remove that attach first")
        self._check_pipeline(p.scheduler)
        warn_other_weights(model, a, self.name, stacklevel=4)  # the caller of attach
        self._transformer = tr
        self._undo = family.bind(tr, self._source)
        self._attns = _bound(tr)
        names = ("encode_prompt", "prepare_latents") + (("encode_image",) if hasattr(p, "encode_image") else ())
        self._wrappers = {name: self._wrap(name) for name in names}
        for name, wrapper in self._wrappers.items():
            setattr(p, name, wrapper)
        p._motionlib_attachment = self
        self._active = True

    def _wrap(self, name: str) -> Callable[..., Any]:
        original = getattr(self.pipe, name)  # the bound method (or whatever sits there now)
        handler = getattr(self, f"_{name}")

        def wrapper(*args, **kwargs):
            if not self._active:
                return original(*args, **kwargs)
            return handler(original, *args, **kwargs)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        wrapper.__doc__ = getattr(original, "__doc__", None)
        return wrapper

    # --- checks (at attach and at every call) ------------------------------------------------------
    def _check_pipeline(self, scheduler) -> None:
        tr = self.pipe.transformer
        if _fused(tr):
            raise AttachError("the transformer's attention projections are fused (pipe.fuse_qkv_projections()); "
                              "motionlib's processors need separate queries, keys and values: call "
                              "pipe.unfuse_qkv_projections() first")
        caches = _attention_caches(tr)
        if caches and self.hook.injects:
            raise AttachError(f"{' and '.join(caches)} skips attention computations, so the injected reference "
                              "keys/values would not reach every step: disable it (pipe.transformer.disable_cache()) "
                              "or attach with inject=False (then the result is approximate)")
        if caches and not self._warned:
            self._warned = True
            warnings.warn(f"{' and '.join(caches)} reuses attention outputs across steps, so ρ does not reach every "
                          "attention computation: the result approximates apply's", Approximate, stacklevel=5)
        name = self.asset.scheduler.get("name", "?")
        diff = _schedule_difference(self.asset.scheduler, scheduler)
        if diff:
            raise AttachError(f"this motion was learnt on another noise schedule: {diff}; give the pipeline the "
                              f"learn's: pipe.scheduler = diffusers.{name}.from_config(motion.scheduler['config'])")
        if self.strict:
            diff = _strict_difference(self.asset.scheduler, scheduler)
            if diff:
                raise AttachError(f"strict: this motion was learnt with {diff}; use "
                                  f"pipe.scheduler = diffusers.{name}.from_config(motion.scheduler['config']), "
                                  "or attach with strict=False to map its timesteps")

    def _check_call(self, args: dict) -> None:
        p, spec = self.pipe, self.asset.spec
        if p.transformer is not self._transformer:
            raise AttachError("pipe.transformer was replaced after attach; remove the attach and attach again")
        if any(getattr(m.processor, "source", None) is not self._source for m in self._attns):
            raise AttachError("the transformer's attention processors were replaced after attach "
                              "(set_attn_processor, fuse_qkv_projections, ...); remove the attach and attach again")
        self._check_pipeline(p.scheduler)
        frames, height, width = (args.get(k) for k in ("num_frames", "height", "width"))
        if (frames, height, width) != (spec.num_frames, spec.height, spec.width):
            raise AttachError(f"this motion was learnt for {_geometry(spec)} (frames×height×width); this call renders "
                              f"{frames}×{height}×{width}: pass num_frames={spec.num_frames}, height={spec.height}, "
                              f"width={spec.width}")
        steps = len(p.scheduler.timesteps)
        if self.strict and steps != self.asset.steps:
            raise AttachError(f"strict: this motion was learnt with {self.asset.steps} steps; this call runs {steps}: "
                              f"pass num_inference_steps={self.asset.steps}, or attach with strict=False to map them")
        scale, learnt = getattr(p, "_guidance_scale", None), self.asset.params.get("guidance_scale")
        if self.strict and scale is not None and learnt is not None and float(scale) != float(learnt):
            raise AttachError(f"strict: this motion was learnt with guidance scale {learnt}; this call uses {scale}: "
                              f"pass guidance_scale={learnt}, or attach with strict=False")

    # --- the wrapped pipeline methods --------------------------------------------------------------
    def _encode_prompt(self, original, *args, **kwargs):
        out = original(*args, **kwargs)
        cond = out[0]
        n = self.asset.spec.text_len
        if cond.shape[1] != n:
            raise AttachError(f"this motion was learnt with text length {n}; this call encodes {cond.shape[1]} "
                              f"tokens: pass max_sequence_length={n}")
        self._embeds = cond
        return out

    def _prepare_latents(self, original, *args, **kwargs):
        args_by_name = inspect.signature(original).bind(*args, **kwargs).arguments
        self._check_call(args_by_name)
        if self._embeds is None:
            raise AttachError(f"{type(self.pipe).__name__} prepared latents without encoding a prompt through "
                              "encode_prompt; motionlib needs its text embeddings for KV injection")
        out = original(*args, **kwargs)
        # image-to-video pipelines return (noise latents, the image conditioning)
        latents, condition = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
        sigma = float(getattr(self.pipe.scheduler, "init_noise_sigma", 1.0))
        self._start(latents if sigma == 1.0 else latents / sigma, condition)
        return out

    def _encode_image(self, original, *args, **kwargs):
        self._clip = original(*args, **kwargs)
        return self._clip

    def _start(self, noise: torch.Tensor, condition: torch.Tensor | None = None) -> None:
        """A new call: its run (the part of a motionlib Run that step_controls reads) and its record; an
        image-to-video call's conditioning (what the pipeline concatenates on channels, plus Wan's image
        tokens) becomes the run's image, which the KV-injection reference pass takes as apply's does."""
        model = self._model(noise.device)
        sched = self.pipe.scheduler
        run = Run(model, "", steps=len(sched.timesteps))
        run.scheduler, run.timesteps = sched, sched.timesteps
        run.init_noise = model.family.pipeline_noise(noise)
        assert self._embeds is not None
        run.embeds, run.batch = self._embeds.to(model.dtype), self._embeds.shape[0]
        run.base = self._base(model)
        if condition is not None:
            run.image = model.family.pipeline_image(condition, self._clip)
            if run.image is None and self.hook.injects:
                raise AttachError(f"{type(self.pipe).__name__} was given image_embeds, so motionlib did not see "
                                  "the image tokens its KV injection needs: pass the image only, or attach with "
                                  "inject=False")
        self._embeds, self._clip = None, None
        hook = AssetHook(self.asset, self.strength, self.inject)
        self._call = _Call(run, hook)
        self.calls.append(hook.used)

    def _base(self, model: Model) -> Rho:
        key = (str(model.device), model.dtype)
        if key not in self._bases:
            self._bases[key] = base_rho(model)
        return self._bases[key]

    # --- the source of each pass's Controls (asked by the bound processors and hooks) ---------------
    def _controls(self) -> Controls | None:
        call = self._call
        if call is None or self._busy:
            return None
        t = getattr(self.pipe, "_current_timestep", None)
        if t is None:
            return None
        if t is not call.t:  # the first pass of a new denoising step
            call.t, call.index, call.controls = t, call.index + 1, None
            self._busy = True
            try:
                call.controls = call.hook.step_controls(call.run, call.index, t)
            finally:
                self._busy = False
        return call.controls


def attach(pipe, motion, *, strength: float = 1.0, inject: bool = True, strict: bool = False,
           library=None) -> Attachment:
    """Make `pipe` (a diffusers CogVideoXPipeline or WanPipeline, or for an image-to-video motion a
    CogVideoXImageToVideoPipeline or WanImageToVideoPipeline) render with a stored motion until the
    returned handle is removed (``with attach(...) as handle:`` removes it on exit).

    `motion`: a MotionAsset, a motion file, or a catalogue name with ``library=`` (a
    ``motionlib.store.Library`` or its folder). `strength` scales the learnt change of ρ (0: none),
    `inject` switches KV injection of the stored reference. Steps are mapped as ``apply`` maps them:
    another step count or solver on the same noise schedule takes the stored ρ_t nearest in timestep;
    another noise schedule is refused, and ``strict=True`` refuses any difference from the learn's
    scheduler and step count. Raises ``AttachError`` (one line: the value and the fix) for a pipeline,
    transformer, geometry, text length or setting the motion cannot drive."""
    asset, name = _resolve(motion, library)
    handle = Attachment(pipe, asset, strength, inject, strict, name)
    handle._attach()
    return handle


class _CallableModule(types.ModuleType):
    """This module, callable as ``attach``: the package exposes ``motionlib.attach`` as the function, but
    once the submodule is imported Python binds the package attribute to the module itself, so both
    ``motionlib.attach(pipe, motion)`` and ``motionlib.attach.Attachment`` must work."""

    def __call__(self, *args, **kwargs) -> Attachment:
        return attach(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
