"""Device memory: what a job needs under each offload / VAE-tiling setting, and the fastest that fits.

A setting is an offload level and VAE tiling on or off. Offload levels, fastest first:

- ``none``: every component lives on the device;
- ``text``: the same, but the text encoder visits the device only while it encodes prompts
  (``--offload none`` picks it when that is what makes the job fit);
- ``model``: one component at a time on the device (diffusers' model CPU offload);
- ``sequential``: the text encoder and VAE as in ``model``; the transformer's blocks stream to the
  device one at a time (``motionlib.offload``).

``choose`` takes the fastest candidate whose peak (weights included) fits the free memory. Peaks
come from the table measured on a GPU (``TABLE``, written by ``python -m benchmarks.gpu --memory``)
where it has the model, job and setting, otherwise from conservative estimates built from the
loaded components' parameter counts and the grid (``estimate``); a plan says which it used.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from .errors import MotionlibError, ParameterError

OFFLOAD_CHOICES = ("auto", "none", "model", "sequential")
TILING_CHOICES = ("auto", "on", "off")
LEVELS = ("none", "text", "model", "sequential")
JOBS = ("generate", "apply", "learn", "transfer", "search")
GB = 1e9
FIT = 0.9  # share of the free memory a peak may take (allocator fragmentation, CUDA context growth)
TABLE = Path(__file__).with_name("memory_table.json")  # measured peaks (committed; absent until measured)

# what each job runs, in order (phases: text encoder, VAE encode/decode, transformer passes)
PHASES = {
    "generate": ("text", "denoise", "decode"),
    "apply": ("text", "denoise", "decode"),
    "learn": ("encode", "text", "reference", "optimise", "denoise"),
    "transfer": ("encode", "text", "reference", "optimise", "denoise", "decode"),
    "search": ("encode", "text", "reference"),
}
# Activation estimates (bytes per unit below, times the model's element size). Calibrated to stay
# above what benchmarks/gpu_last.json measured on random-weight CogVideoX-5B/-2B (H200, 49 frames
# 480x720, weights excluded): generate 4.08 / 4.06 GB (VAE decode, tiled), learn 5.84 / 3.37 GB;
# a test checks they stay above. The untiled VAE is a guess (4x tiled) until measured.
VAE_TILED = 128  # per decoded pixel (frames x height x width)
VAE_UNTILED = 4 * VAE_TILED
DENOISE = 20  # per (batch x token x hidden width) of a no-grad transformer pass
TEXT = 0.05  # of the text encoder's weight bytes


@dataclass(frozen=True)
class Setting:
    """One way to place a model: an offload level (``LEVELS``) and VAE tiling."""

    offload: str
    vae_tiling: bool

    @property
    def key(self) -> str:
        return f"{self.offload}/{'tiled' if self.vae_tiling else 'untiled'}"

    @classmethod
    def from_key(cls, key: str) -> "Setting":
        level, tiling = key.split("/")
        return cls(level, tiling == "tiled")

    def describe(self) -> str:
        level = "none (text encoder freed after encoding)" if self.offload == "text" else self.offload
        return f"offload {level}, VAE tiling {'on' if self.vae_tiling else 'off'}"

    def option(self) -> str:
        """The command-line options that select this setting."""
        level = "none" if self.offload == "text" else self.offload
        return f"--offload {level} --vae-tiling {'on' if self.vae_tiling else 'off'}"


LADDER = tuple(Setting(level, tiled) for level in LEVELS for tiled in (False, True))  # fastest first


def check(offload, vae_tiling) -> None:
    """Raise ParameterError for an offload or VAE-tiling value that is not a choice."""
    if offload not in OFFLOAD_CHOICES and offload not in LEVELS:
        raise ParameterError(f"offload must be one of {', '.join(OFFLOAD_CHOICES)}, got {offload!r}")
    if vae_tiling not in TILING_CHOICES and not isinstance(vae_tiling, bool):
        raise ParameterError(f"vae_tiling must be one of {', '.join(TILING_CHOICES)}, got {vae_tiling!r}")


def candidates(offload: str = "auto", vae_tiling: str | bool = "auto") -> list[Setting]:
    """The settings an offload / VAE-tiling choice allows, fastest first (``none`` allows ``text``)."""
    check(offload, vae_tiling)
    levels = {"auto": LEVELS, "none": ("none", "text")}.get(offload, (offload,))
    tiled = {"auto": (False, True), "on": (True,), "off": (False,), True: (True,), False: (False,)}[vae_tiling]
    return [s for s in LADDER if s.offload in levels and s.vae_tiling in tiled]


# --- estimates -----------------------------------------------------------------------------------
def blocks_of(transformer) -> torch.nn.ModuleList | None:
    """The transformer's list of blocks (CogVideoX: transformer_blocks; Wan: blocks)."""
    for name in ("transformer_blocks", "blocks"):
        blocks = getattr(transformer, name, None)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
            return blocks
    return None


@dataclass(frozen=True)
class Weights:
    """Bytes of each component's weights at the model's dtype."""

    text_encoder: int
    vae: int
    transformer: int
    blocks: int = 0  # the transformer's blocks, all together (sequential offload streams them) ...
    block: int = 0  # ... the largest one

    @classmethod
    def of(cls, model) -> "Weights":
        size = model.dtype.itemsize
        count = lambda m: sum(t.numel() for t in [*m.parameters(), *m.buffers()]) * size  # noqa: E731
        blocks = [count(b) for b in blocks_of(model.transformer) or ()]
        return cls(count(model.text_encoder), count(model.vae), count(model.transformer),
                   sum(blocks), max(blocks, default=0))


def activations(spec, itemsize: int, phase: str, vae_tiling: bool, *, batch: int = 1) -> int:
    """Estimated bytes one phase allocates above the weights (see the constants above)."""
    frames, rows, cols = spec.grid
    tokens = frames * rows * cols + spec.text_len
    hidden = spec.heads * spec.head_dim
    if phase in ("encode", "decode"):
        return (VAE_TILED if vae_tiling else VAE_UNTILED) * spec.num_frames * spec.height * spec.width * itemsize
    if phase == "denoise":
        return DENOISE * batch * tokens * hidden * itemsize
    if phase == "reference":
        return DENOISE * tokens * hidden * itemsize
    if phase == "optimise":  # checkpointing on (auto turns it on when the rest does not fit)
        from .models.spec import ACTIVATION_FACTOR

        factor = ACTIVATION_FACTOR[spec.embedding]
        kept = max(spec.guidance.blocks) + 1
        return (2 * factor + kept) * tokens * hidden * itemsize  # one block recomputed + one tensor per block
    raise ValueError(f"unknown phase {phase!r}")


def resident(w: Weights, level: str, phase: str) -> int:
    """Weight bytes on the device during `phase` at an offload level."""
    part = {"text": "text_encoder", "encode": "vae", "decode": "vae"}.get(phase, "transformer")
    if level == "none":
        return w.text_encoder + w.vae + w.transformer
    if level == "text":
        return w.vae + w.transformer + (w.text_encoder if part == "text_encoder" else 0)
    if level == "model":
        return getattr(w, part)
    if level == "sequential":  # the transformer's other weights stay; two blocks in flight
        rest = w.transformer - w.blocks
        return rest + (2 * w.block if part == "transformer" else getattr(w, part))
    raise ValueError(f"unknown offload level {level!r}")


def estimate(spec, weights: Weights, itemsize: int, job: str, setting: Setting) -> int:
    """Estimated peak device bytes of `job`, weights included, under `setting`."""
    if job not in PHASES:
        raise ParameterError(f"job must be one of {', '.join(PHASES)}, got {job!r}")
    peak = 0
    for phase in PHASES[job]:
        if phase == "text":
            act = int(TEXT * weights.text_encoder)
        else:
            act = activations(spec, itemsize, phase, setting.vae_tiling, batch=2 if spec.guidance_scale > 1 else 1)
        peak = max(peak, resident(weights, setting.offload, phase) + act)
    return peak


def measured_table(path: Path = TABLE) -> dict:
    """The measured table: {"meta": {...}, "models": {model: {job: {setting key: {"peak": bytes (weights
    included), "seconds": s} | {"failed": why}}}}}; empty until a GPU session has measured it."""
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


# --- the choice ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """The setting chosen for a job, and what it is expected to need."""

    model: str
    job: str
    device: str
    setting: Setting
    free: int | None  # free bytes of the device when the plan was made
    peaks: dict[Setting, int] = field(default_factory=dict)  # every allowed setting's peak
    measured: frozenset[Setting] = frozenset()  # settings whose peak was measured, not estimated

    @property
    def peak(self) -> int | None:
        return self.peaks.get(self.setting)

    @property
    def fits(self) -> bool:
        return self.free is None or self.peak is None or self.peak <= FIT * self.free

    def source(self, setting: Setting | None = None) -> str:
        s = setting or self.setting
        return "measured" if s in self.measured else "estimated from parameter counts, not yet measured on a GPU"

    def line(self) -> str:
        """The one dim line the CLI prints."""
        if self.device.split(":")[0] != "cuda":
            return f"memory: {self.device}, {self.setting.describe()}"
        need = f"needs ~{self.peak / GB:.1f} GB ({self.source()})" if self.peak is not None else "needs ? GB"
        free = f"{self.free / GB:.1f} GB free" if self.free is not None else "free memory unknown"
        warn = "" if self.fits else "; no setting fits, this is the smallest"
        return f"memory: {self.setting.describe()} — {self.model} {self.job} {need}, {free} on {self.device}{warn}"

    def smaller(self) -> Setting | None:
        """The fastest setting (any, not only the allowed ones) expected to fit, other than this one."""
        fitting = [s for s, p in self.peaks.items() if s != self.setting and self.free is not None
                   and p <= FIT * self.free and (self.peak is None or p < self.peak)]
        return fitting[0] if fitting else None


def choose(peaks: dict[Setting, int], free: int | None, allowed: list[Setting],
           seconds: dict[Setting, float] | None = None) -> Setting:
    """The fastest allowed setting whose peak fits `free` (FIT of it); the smallest when none fits.

    Fastest: by measured seconds where every allowed setting has them, else the ``LADDER`` order."""
    order = list(allowed)
    if seconds and all(s in seconds for s in order):
        order.sort(key=lambda s: seconds[s])
    if free is None:
        return order[0]
    for s in order:
        if s not in peaks or peaks[s] <= FIT * free:
            return s
    return min(order, key=lambda s: peaks[s])


def free_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device; None elsewhere (offloading to the CPU from the CPU is moot)."""
    if device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]


def plan(model, job: str, offload="auto", vae_tiling="auto", *, free: int | None | Literal["query"] = "query",
         table: dict | None = None, device: torch.device | None = None) -> Plan:
    """Choose a setting for running `job` with `model` (its components not yet on the device).

    `free` defaults to the device's free memory now (None: unknown, take the fastest allowed);
    `table` to the measured one; `device` to the model's. On a CPU, ``auto`` means no offload and
    no tiling."""
    allowed = candidates(offload, vae_tiling)
    spec, device = model.spec, torch.device(device or model.device)
    if free == "query":
        free = free_bytes(device)
    rows = (measured_table() if table is None else table).get("models", {}).get(spec.name, {}).get(job, {})
    weights, itemsize = Weights.of(model), model.dtype.itemsize
    peaks, seconds, measured = {}, {}, set()
    for s in LADDER:
        row = rows.get(s.key)
        if row and "peak" in row:
            peaks[s], seconds[s] = int(row["peak"]), float(row.get("seconds", 0.0))
            measured.add(s)
        elif row and "failed" in row:
            peaks[s] = 1 << 62  # ran out of memory on the measuring card: never "fits" a smaller one
            measured.add(s)
        else:
            peaks[s] = estimate(spec, weights, itemsize, job, s)
    if device.type != "cuda" and offload == "auto":
        allowed = [s for s in allowed if s.offload == "none"]
    if device.type != "cuda" and vae_tiling == "auto":
        allowed = [s for s in allowed if not s.vae_tiling] or allowed
    chosen = choose(peaks, free, allowed, seconds)
    return Plan(spec.name, job, str(device), chosen, free, peaks, frozenset(measured))


# --- out of memory -------------------------------------------------------------------------------
class OutOfMemory(MotionlibError):
    """The device ran out of memory; the message names what would fit."""


def out_of_memory_message(p: Plan) -> str:
    need = f"it needs about {p.peak / GB:.1f} GB ({p.source()})" if p.peak is not None else "its peak is unknown"
    free = f"{p.free / GB:.1f} GB was free" if p.free is not None else "the free memory is unknown"
    better = p.smaller()
    hint = (f"{better.option()} would fit (about {p.peaks[better] / GB:.1f} GB, {p.source(better)})"
            if better else "no setting is expected to fit: try fewer frames or a smaller --height/--width")
    return (f"out of memory on {p.device} running {p.job} with {p.model} ({p.setting.describe()}): "
            f"{need} and {free}; {hint}")


@contextlib.contextmanager
def out_of_memory(model, job: str = "generate"):
    """Turn a device out-of-memory error inside the block into an OutOfMemory naming what would fit."""
    try:
        yield
    except torch.OutOfMemoryError:
        pass
    else:
        return
    # outside the except clause, so the failed pass's tensors are freed before we look
    p = model.plan
    if p is None or p.job != job:
        free = None
        if torch.device(model.device).type == "cuda":
            torch.cuda.empty_cache()
            free = free_bytes(torch.device(model.device))
        p = plan(model, job, model.offload, bool(getattr(model.vae, "use_tiling", False)), free=free)
    raise OutOfMemory(out_of_memory_message(p))
