"""AMF guidance (paper §4.3, Algorithm 1): the schedules and the per-step optimisation.

At each of the first ``guided_fraction`` of the denoising steps, ρ_t (or z_t) is optimised with
Adam for ``opt_steps`` steps so that the soft AMF of the generation at the guidance block(s)
matches the reference's hard AMF. ρ_t is warm-started from ρ_{t-1}; a new Adam is made per step.
A non-finite loss, ρ_t (or a ρ_t that would overflow the asset's float16) or z_t stops the run
with ``Diverged`` naming the step.

Cheaper optimisation passes (issue #13; each trades something, see docs/learning-options.md):
``gradient="local"`` runs the blocks before each guidance block without gradients under the current
ρ, so ρ gets its gradient only through the guidance block's own RoPE (RoPE families only), and
with ``reuse`` those blocks run once per guided step (under its starting ρ) instead of once per
Adam step, so an Adam step costs the guidance block alone; ``amf_window`` matches only frame
pairs at most that many latent frames apart (FastVMT's windowed AMF); ``opt_steps_end`` ramps the Adam steps linearly from ``opt_steps`` at the first guided step
to it at the last; ``opt_tol`` ends a guided step's Adam loop once the loss falls by less than that
fraction in one step. The reference's noised KV pass is computed once per guided step, not per
Adam step.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields, replace

import torch

from .amf import amf_loss, motion_flow, window_mask
from .errors import MotionlibError, ParameterError
from .injection import reference_kv
from .models.spec import MAX_OPT_STEPS, MAX_SAMPLES
from .models.spec import GuidanceDefaults
from .progress import OptimiseStep, ProgressFn
from .rho import Parametrised, check_parametrisation, is_shift
from .transformer import Controls

_TUPLES = ("blocks", "inject_blocks", "latent_lr", "shift_lr")


class Diverged(MotionlibError, RuntimeError):
    """The optimisation produced a non-finite loss or variable; its message names the step."""


SHIFT_ONLY = ("shift_grid", "frame_shift", "smoothness")  # options of the shift parametrisations only


@dataclass(frozen=True)
class GuidanceParams(GuidanceDefaults):
    """Every knob of a learn/transfer run: the model spec's GuidanceDefaults (the paper's), plus
    what only a run decides. An asset records it (``MotionAsset.guidance`` reads it back)."""

    inject: bool = True  # KV injection of the noised reference at inject_blocks
    gradient: str = "full"  # "full" (paper) or "local": ρ's gradient only through the guidance block's RoPE
    reuse: bool = False  # with "local": run the blocks before the guidance block once per guided step, not per Adam step
    amf_window: int | None = None  # match only frame pairs |i - j| <= amf_window (None: all, the paper)
    opt_steps_end: int | None = None  # Adam steps at the last guided step, linear from opt_steps (None: same)
    opt_tol: float = 0.0  # end a guided step's Adam loop when the loss falls by < opt_tol x itself (0: never)

    @classmethod
    def from_spec(cls, spec, **overrides) -> "GuidanceParams":
        g = spec.guidance
        base = cls(**{f.name: getattr(g, f.name) for f in fields(g)})
        overrides = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise ParameterError(f"unknown guidance parameter(s): {', '.join(unknown)}")
        for k in _TUPLES:
            if k in overrides:
                overrides[k] = tuple(overrides[k])
        for k in ("blocks", "inject_blocks"):
            if k in overrides:
                overrides[k] = tuple(int(b) for b in overrides[k])
        params = replace(base, **overrides)
        if not is_shift(params.parametrisation):
            # the spec's shift-only defaults (e.g. shapes' frame_shift) do not follow a run to 'table';
            # asked for explicitly, they still fail validation below with a clear message
            params = replace(params, **{k: getattr(GuidanceDefaults, k) for k in SHIFT_ONLY if k not in overrides})
        if is_shift(params.parametrisation) and "lr_start" not in overrides and "lr_end" not in overrides:
            params = replace(params, lr_start=g.shift_lr[0], lr_end=g.shift_lr[1])
        params.validate(spec)
        return params

    @classmethod
    def from_dict(cls, record: dict) -> "GuidanceParams":
        """The typed value of what an asset records: other keys (prompt, seed, ...) are ignored, keys
        an older asset lacks take this class's defaults (one definition of them)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        for k in _TUPLES:
            if values.get(k) is not None:
                values[k] = tuple(values[k])
        return cls(**values)

    def validate(self, spec) -> None:
        if not self.blocks:
            raise ParameterError("at least one guidance block is needed")
        for b in (*self.blocks, *self.inject_blocks):
            if not 0 <= b < spec.num_layers:
                raise ParameterError(f"block {b} is outside the model's 0..{spec.num_layers - 1}")
        numbers = {"lr_start": self.lr_start, "lr_end": self.lr_end, "temperature": self.temperature,
                   "confidence": self.confidence, "smoothness": self.smoothness, "opt_tol": self.opt_tol,
                   "guided_fraction": self.guided_fraction,
                   **{f"latent_lr[{i}]": v for i, v in enumerate(self.latent_lr or ())},
                   **{f"shift_lr[{i}]": v for i, v in enumerate(self.shift_lr)}}
        for k, v in numbers.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParameterError(f"{k} must be a finite number, got {v!r}")
        for k in ("lr_start", "lr_end", *(k for k in numbers if k.endswith("]"))):
            if numbers[k] <= 0:
                raise ParameterError(f"{k} (a learning rate) must be > 0, got {numbers[k]}")
        if not 0 < self.guided_fraction <= 1:
            raise ParameterError(f"guided_fraction must be in (0, 1], got {self.guided_fraction}")
        if not 1 <= self.opt_steps <= MAX_OPT_STEPS:
            raise ParameterError(f"opt_steps must be between 1 and {MAX_OPT_STEPS}, got {self.opt_steps}")
        if self.temperature <= 0:
            raise ParameterError(f"temperature must be > 0, got {self.temperature}")
        check_parametrisation(self.parametrisation)
        if not (isinstance(self.samples, int) and 1 <= self.samples <= MAX_SAMPLES):
            raise ParameterError(f"samples must be an integer from 1 to {MAX_SAMPLES}, got {self.samples!r}")
        if not (isinstance(self.shift_grid, int) and self.shift_grid >= 0):
            raise ParameterError(f"shift_grid must be an integer >= 0 (0: a shift per token), got {self.shift_grid!r}")
        if self.smoothness < 0:
            raise ParameterError(f"smoothness must be >= 0, got {self.smoothness}")
        if not is_shift(self.parametrisation):
            used = [k for k in SHIFT_ONLY if getattr(self, k)]
            if used:
                raise ParameterError(f"{', '.join(used)} need parametrisation='shift' or 'shared-shift' "
                                     f"(got {self.parametrisation!r})")
        if self.gradient not in GRADIENTS:
            raise ParameterError(f"gradient must be one of {', '.join(GRADIENTS)}, got {self.gradient!r}")
        if self.gradient == "local":
            from .models.spec import rho_kind

            if rho_kind(spec.embedding) != "rope":
                raise ParameterError(
                    f"gradient='local' does not apply to {spec.name}: its ρ is an additive position embedding "
                    "added to the input tokens, so no gradient would reach ρ at the guidance block; use 'full'")
        if not isinstance(self.reuse, bool):
            raise ParameterError(f"reuse must be true or false, got {self.reuse!r}")
        if self.reuse and self.gradient != "local":
            raise ParameterError("reuse needs gradient='local': with the full gradient every Adam step must run "
                                 "the blocks before the guidance block under its own ρ")
        if self.amf_window is not None and self.amf_window < 1:
            raise ParameterError(f"amf_window must be >= 1 latent frame (or None for all pairs), got {self.amf_window}")
        if self.opt_steps_end is not None and not 1 <= self.opt_steps_end <= MAX_OPT_STEPS:
            raise ParameterError(f"opt_steps_end must be between 1 and {MAX_OPT_STEPS}, got {self.opt_steps_end}")
        if not 0 <= self.opt_tol < 1:
            raise ParameterError(f"opt_tol must be in [0, 1), got {self.opt_tol}")

    def to_dict(self) -> dict:
        return asdict(self)


GRADIENTS = ("full", "local")
RHO_ONLY = ("gradient", "reuse")  # options of ρ learning only: z_t mode (transfer) takes neither


def guided_step_count(steps: int, fraction: float) -> int:
    """Number of leading denoising steps that are guided: 10 of 50 at the paper's 20%."""
    return min(steps, max(1, round(steps * fraction)))


def learning_rate(i: int, n: int, lr_start: float, lr_end: float) -> float:
    """Linear decay from lr_start at guided step 0 to lr_end at guided step n-1."""
    if n <= 1:
        return lr_start
    return lr_start + (lr_end - lr_start) * i / (n - 1)


def adam_step_count(i: int, n: int, start: int, end: int | None) -> int:
    """Adam steps at guided step i of n: linear from `start` to `end` (rounded; `end` None: constant)."""
    if end is None or n <= 1:
        return start
    return max(1, round(start + (end - start) * i / (n - 1)))


def plateaued(losses: list[float], tol: float) -> bool:
    """The last Adam step lowered the loss by less than `tol` times the loss before it."""
    return tol > 0 and len(losses) >= 2 and losses[-2] - losses[-1] < tol * abs(losses[-2])


def reference_mask(confidence: torch.Tensor | None, threshold: float) -> torch.Tensor | None:
    """Supervise only reference vectors whose peak attention probability exceeds `threshold`."""
    if confidence is None or threshold <= 0:
        return None
    return confidence > threshold


def guidance_loss(run, latents, t, controls_kw: dict, reference, params: GuidanceParams, *,
                  flow_fn=motion_flow, truncate: bool = True, checkpointing: bool = True) -> torch.Tensor:
    """Eq. (8) averaged over the guidance blocks and the batch's generations, for one forward pass.

    `latents` holds the run's generations ([N, ...], ``run.cond_embeds`` one prompt each), which go
    through the transformer as one batch. The pass stops inside the last guidance block
    (`truncate`) and checkpoints block activations; `flow_fn` computes the soft AMF (benchmarks swap
    in a naive per-head one). ``params.gradient`` "local" runs the other blocks without gradients;
    ``params.amf_window`` limits the frame pairs.
    """
    model = run.model
    frames, rows, cols = model.spec.grid
    local = params.blocks if params.gradient == "local" else None
    controls = Controls(capture=params.blocks, stop_at=max(params.blocks) if truncate else None,
                        grad_blocks=local, **controls_kw)
    window = {} if params.amf_window is None else {"window": params.amf_window}
    x = run.scheduler.scale_model_input(latents, t)
    model.family.forward(model.transformer, x, run.cond_embeds, t.expand(x.shape[0]), controls,
                         checkpointing=checkpointing, image=getattr(run, "image", None))
    losses = []
    for b in params.blocks:
        q, k = controls.captured[("qk", b)]
        mask = reference_mask(reference.confidence.get(b), params.confidence)
        if params.amf_window is not None:
            pairs = window_mask(frames, params.amf_window, device=q.device)[..., None]  # [F, F, 1]
            mask = pairs if mask is None else mask & pairs.to(mask.device)
        for i in range(q.shape[0]):
            flow = flow_fn(q[i], k[i], num_frames=frames, height=rows, width=cols, temperature=params.temperature,
                           **window)
            losses.append(amf_loss(flow, reference.amf[b].to(flow.device), mask))
    return torch.stack(losses).mean()


class Guidance:
    """StepHook running DiTFlow's optimisation on ρ_t (mode "rho") or z_t (mode "latent")."""

    def __init__(self, reference, params: GuidanceParams, *, mode: str = "rho",
                 stop_after_guided: bool = True, progress: ProgressFn | None = None, checkpointing: bool = True):
        if mode not in ("rho", "latent"):
            raise ParameterError(f"mode must be 'rho' or 'latent', got {mode!r}")
        if mode == "latent" and params.gradient == "local":
            raise ParameterError("gradient='local' applies to ρ learning only: z_t enters at the input, so its "
                                 "gradient must pass through every block before the guidance block")
        if not isinstance(checkpointing, bool):
            raise TypeError(f"checkpointing must be a bool (motionlib.checkpointing.resolve), got {checkpointing!r}")
        self.reference, self.params, self.mode = reference, params, mode
        self.checkpointing = checkpointing  # turned on for good after an out-of-memory without it
        self.stop_after_guided = stop_after_guided
        self.progress = progress
        self.rho: Parametrised | None = None  # the ρ being optimised (a rho.Parametrised), warm-started across guided steps
        self.rho_per_t: dict[int, dict] = {}  # t -> what the asset stores (rho.Parametrised.stored)
        self.timesteps: list[int] = []
        self.losses: list[list[float]] = []
        self.stop_reason: str | None = None  # why the hook ended the loop early (for progress)

    def __call__(self, state) -> bool:
        run, p = state.run, self.params
        n = guided_step_count(run.steps, p.guided_fraction)
        if state.index >= n:
            return not self.stop_after_guided
        t = state.t
        kv = reference_kv(run, self.reference.latent, t, p.inject_blocks) if p.inject else {}
        lr = learning_rate(state.index, n, p.lr_start, p.lr_end)
        model = run.model
        with model.on_device(model.transformer):
            if self.mode == "rho":
                if self.rho is None:
                    self.rho = Parametrised(run.base, p.parametrisation, grid=model.spec.grid,
                                            shift_grid=p.shift_grid, frame_shift=p.frame_shift)
                rho = self.rho
                variables = rho.params()
                latents = state.latents
                # reuse: the blocks before the guidance block run once, under this step's starting ρ
                prefix: dict | None = {} if p.reuse else None
                kw = lambda: {"rho": rho.rho(), "inject": kv, "prefix": prefix}  # noqa: E731
                penalty = (lambda: p.smoothness * rho.roughness()) if p.smoothness else None
            else:
                latents = state.latents.detach().float().requires_grad_(True)
                variables = [latents]
                kw = lambda: {"rho": run.base, "inject": kv}  # noqa: E731
                penalty = None
            opt = torch.optim.Adam(variables, lr=lr)
            # fp16 (CogVideoX-2B): scale the loss so small gradients survive the half-precision
            # backward, unscale before Adam, and skip a step whose gradients overflowed
            scale = 2.0 ** 12 if model.dtype == torch.float16 else 1.0
            step_losses = []
            opt_steps = adam_step_count(state.index, n, p.opt_steps, p.opt_steps_end)
            for k in range(opt_steps):
                loss = self._loss_and_backward(run, latents, t, kw, opt, scale, penalty)
                grads = [v.grad for v in variables if v.grad is not None]
                if scale != 1.0:
                    for g in grads:
                        g.div_(scale)
                if all(bool(torch.isfinite(g).all()) for g in grads):
                    opt.step()
                step_losses.append(float(loss.detach()))
                if not math.isfinite(step_losses[-1]):
                    raise self._diverged(state.index, n, t, f"Adam step {k + 1}/{opt_steps}: the AMF loss is "
                                                            f"{step_losses[-1]}")
                if self.progress:
                    self.progress(OptimiseStep(step=state.index + 1, total=n, k=k + 1,
                                               opt_steps=max(p.opt_steps, p.opt_steps_end or 1),
                                               loss=step_losses[-1], lr=lr))
                if plateaued(step_losses, p.opt_tol):
                    break
        self.losses.append(step_losses)
        self.timesteps.append(int(t))
        state.controls.inject = kv
        if self.mode == "rho":
            assert self.rho is not None  # made by the optimisation above
            stored = self.rho.stored()
            if not all(bool(torch.isfinite(v.detach().half()).all()) for v in stored.values()):
                raise self._diverged(state.index, n, t, "ρ is not finite in float16 (NaN, or beyond ±65504)")
            self.rho_per_t[int(t)] = stored
            state.controls.rho = self.rho.detached()
        else:
            if not bool(torch.isfinite(latents.detach()).all()):
                raise self._diverged(state.index, n, t, "the latent z_t is not finite")
            state.latents = latents.detach().to(state.latents.dtype)  # the family's latent dtype
        if self.stop_after_guided and state.index == n - 1:
            self.stop_reason = (f"ρ learnt at all {n} guided steps; the remaining "
                                f"{run.steps - state.index} denoising steps are not needed")
            return False
        return True

    def _diverged(self, index: int, n: int, t, what: str) -> Diverged:
        stored = "; nothing was stored" if self.mode == "rho" else ""
        what_var = "ρ" if self.mode == "rho" else "z_t"
        return Diverged(f"the {what_var} optimisation diverged at guided step {index + 1}/{n} "
                        f"(timestep {int(t)}), {what}{stored}; try a lower learning rate (--lr)")

    def _loss_and_backward(self, run, latents, t, kw, opt, scale: float, penalty=None) -> torch.Tensor:
        """Eq. (8) and its gradients for one Adam step (plus the `penalty` regulariser's, when given;
        the AMF loss alone is returned). Without checkpointing, a CUDA out-of-memory turns
        checkpointing on for the rest of the run and redoes the pass (once)."""
        while True:
            opt.zero_grad(set_to_none=True)
            try:
                with torch.enable_grad():
                    loss = guidance_loss(run, latents.to(run.model.dtype), t, kw(), self.reference, self.params,
                                         checkpointing=self.checkpointing)
                    total = loss if penalty is None else loss + penalty()
                    (total * scale).backward()
                return loss
            except torch.OutOfMemoryError:
                if self.checkpointing:
                    raise
            # outside the except clause, so the failed pass's tensors are already freed
            warnings.warn("out of GPU memory without activation checkpointing; continuing with it on",
                          RuntimeWarning, stacklevel=2)
            self.checkpointing = True
            torch.cuda.empty_cache()
