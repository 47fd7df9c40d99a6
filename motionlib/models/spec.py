"""What motionlib needs to know about a video DiT: its positional embedding, grid and guidance defaults.

Words: a model's *embedding* is the kind of positional embedding its ρ is made of ("rope", "posemb",
"wan"; stored as "family" in asset files and the catalogue, where the name stays); its *family* is the
adapter that runs it (motionlib.families: "cogvideox", "wan"); the table below maps one to the other."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

# Bounds on run parameters (issue 25): a value beyond them is refused before any model loads.
MAX_STEPS = 1000  # the schedulers' num_train_timesteps: no sampler here takes more denoising steps
MAX_OPT_STEPS = 1000  # Adam steps per guided step (the paper uses 5; shapes 20)
MAX_SAMPLES = 64  # generations learnt on at once
# Bounds on a geometry (what a motion file may hold, motionlib.asset; any --frames/--height/--width)
MAX_FRAMES = 1024  # pixel frames
MAX_SIZE = 8192  # pixels, each way
MAX_TOKENS = 1 << 20  # video tokens of one latent grid

Embedding = str  # one of EMBEDDINGS (stored in assets and the catalogue as "family")

# The one table of embeddings: embedding -> (its family's adapter module in motionlib/families/, ρ kind). The kind
# says what a ρ is made of: "rope" = cos/sin tables for queries and keys, "additive" = an embedding
# added to the video tokens (motionlib.rho). Adding a model family: its adapter module, its specs in
# motionlib/models/, and its row here.
_EMBEDDINGS: dict[str, tuple[str, str]] = {
    "rope": ("cogvideox", "rope"),  # CogVideoX-5B: 3D RoPE
    "posemb": ("cogvideox", "additive"),  # CogVideoX-2B: additive 3D sin-cos
    "wan": ("wan", "rope"),  # Wan 2.1: 3D RoPE on a t/h/w channel split of each head
}
EMBEDDINGS: tuple[str, ...] = tuple(_EMBEDDINGS)
# bytes an optimisation pass keeps per block for backward, per (token x hidden width x element size), by
# embedding (motionlib.checkpointing and motionlib.memory): measured 17.7 on CogVideoX-5B (RoPE, bf16) and
# 10.1 on -2B (sin-cos, fp16) on an H200 (benchmarks/gpu_phases.json), rounded up; Wan not measured:
# CogVideoX-5B's RoPE factor (its blocks keep similar activations)
ACTIVATION_FACTOR: dict[str, int] = {"rope": 20, "posemb": 12, "wan": 20}
RHO_KINDS: tuple[str, ...] = ("rope", "additive")
# what a generation is conditioned on besides the prompt: "t2v" (text only) or "i2v" (also a first frame,
# docs/i2v.md); a motion learnt on one cannot drive the other
CONDITIONINGS: tuple[str, ...] = ("t2v", "i2v")


def _entry(embedding: str) -> tuple[str, str]:
    try:
        return _EMBEDDINGS[embedding]
    except KeyError:
        from ..errors import ParameterError

        raise ParameterError(f"unknown positional embedding {embedding!r}: use one of {', '.join(EMBEDDINGS)}") \
            from None


def rho_kind(embedding: str) -> str:
    """"rope" or "additive": what the ρ tensors of models with this embedding are."""
    return _entry(embedding)[1]


def adapter_module(embedding: str) -> str:
    """The module of motionlib.families holding the adapter of models with this embedding."""
    return _entry(embedding)[0]


@dataclass(frozen=True)
class GuidanceDefaults:
    """DiTFlow hyper-parameters (paper §5.1): used by learn/transfer unless overridden."""

    blocks: tuple[int, ...] = (20,)  # transformer block(s) whose AMF is matched
    lr_start: float = 0.002  # Adam lr at the first guided step (table parametrisation) ...
    lr_end: float = 0.001  # ... decreasing linearly to this at the last one
    opt_steps: int = 5  # K_opt Adam steps per guided denoising step
    guided_fraction: float = 0.2  # T_opt: the first 20% of the denoising steps
    temperature: float = 2.0  # τ of eq. (3)
    inject_blocks: tuple[int, ...] = (0,)  # KV injection of the noised reference
    confidence: float = 0.0  # supervise only reference patches whose peak attention prob exceeds this
    latent_lr: tuple[float, float] | None = None  # (start, end) for z_t mode; None: lr_start/lr_end
    parametrisation: str = "table"  # what ρ mode optimises: "table" (paper), "shift" or "shared-shift" (motionlib.rho)
    # (start, end) lr for the shift parametrisations, in latent patches per Adam step (table values
    # are in [-1, 1], so their lr does not carry over); tuned on the shapes demo model only
    shift_lr: tuple[float, float] = (0.3, 0.1)
    # learn over several generations at once: one shared ρ_t against the reference AMF on `samples`
    # generations (seeds seed, seed+1, ...) in one batched forward, loss averaged over them
    samples: int = 1
    # regularisers of the shift parametrisation (motionlib.rho.Parametrised): a coarse grid of
    # shift_grid x shift_grid cells per frame upsampled to the tokens instead of a free per-token
    # shift (0: per token); a shift shared by all tokens of a frame added on top; a penalty weight on
    # the squared difference of neighbouring tokens' shifts
    shift_grid: int = 0
    frame_shift: bool = False
    smoothness: float = 0.0


STORED = {"embedding": "family"}  # Python field -> its key in asset files (the stored name stays)
FIELD = {v: k for k, v in STORED.items()}


@dataclass(frozen=True)
class ModelSpec:
    """A model motionlib can load: identity, geometry and defaults.

    ``num_frames``/``height``/``width`` are pixel sizes; the latent grid follows from the codec's
    compression and the transformer's patch size.
    """

    name: str
    embedding: Embedding  # "rope": 3D RoPE (CogVideoX-5B); "posemb": additive 3D sin-cos (CogVideoX-2B); "wan"
    source: str  # hub id, local folder or "builtin:<preset>"
    num_frames: int
    height: int
    width: int
    temporal_compression: int
    spatial_compression: int
    patch_size: int
    text_len: int
    heads: int
    head_dim: int
    num_layers: int
    dtype: str  # dtype on CUDA; CPU always runs fp32
    scheduler: Literal["ddim", "dpm", "unipc"]
    num_inference_steps: int = 50
    guidance_scale: float = 6.0  # classifier-free guidance
    use_dynamic_cfg: bool = False
    fps: int = 8
    guidance: GuidanceDefaults = field(default_factory=GuidanceDefaults)
    description: str = ""
    conditioning: str = "t2v"  # "t2v" or "i2v" (CONDITIONINGS): "i2v" models take a first frame
    # True for a model with learnt positional embeddings at one size (CogVideoX-5B-I2V): no other frame
    # count or resolution (motionlib.models.geometry refuses them)
    fixed_geometry: bool = False

    @property
    def latent_frames(self) -> int:
        return (self.num_frames - 1) // self.temporal_compression + 1

    @property
    def grid(self) -> tuple[int, int, int]:
        """(frames, rows, cols) of the transformer's video tokens."""
        p, s = self.patch_size, self.spatial_compression
        return (self.latent_frames, self.height // s // p, self.width // s // p)

    def to_dict(self) -> dict:
        """The stored form: the embedding under its stored key "family", in the field order. The keys
        added for image-to-video are written only when they differ from their defaults, so a
        text-to-video spec stores the same bytes (and asset hashes) as before they existed."""
        return {STORED.get(k, k): v for k, v in dataclasses.asdict(self).items()
                if not (k in _OMITTED_AT_DEFAULT and v == _OMITTED_AT_DEFAULT[k])}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = {FIELD.get(k, k): v for k, v in d.items()}
        g = dict(d.pop("guidance", {}) or {})
        for k in ("blocks", "inject_blocks", "latent_lr", "shift_lr"):
            if g.get(k) is not None:
                g[k] = tuple(g[k])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(guidance=GuidanceDefaults(**g), **{k: v for k, v in d.items() if k in names})

    def config_hash(self) -> str:
        """Hash of what makes a ρ asset compatible: embedding, geometry and architecture (stored key names)."""
        keys = ("embedding", "num_frames", "height", "width", "temporal_compression",
                "spatial_compression", "patch_size", "text_len", "heads", "head_dim", "num_layers")
        values = {STORED.get(k, k): getattr(self, k) for k in keys}
        if self.conditioning != "t2v":  # text-to-video hashes stay what they were
            values["conditioning"] = self.conditioning
        blob = json.dumps(values, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# fields written by to_dict only when they differ from these defaults (the text-to-video values)
_OMITTED_AT_DEFAULT: dict[str, object] = {"conditioning": "t2v", "fixed_geometry": False}
