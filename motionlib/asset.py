"""`MotionAsset`: a learnt motion in one safetensors file (never a pickle).

Tensors:
- ``rho.<t>.<name>``: for each guided timestep value t, float16, either ρ_t − ρ_base
  (``table`` parametrisation: ``q_cos``... or ``pos``) or the per-token position shifts
  (``shift``: ``q_shift``, ``k_shift`` of [tokens, 3]; ``shared-shift``: one ``shift``, sin-cos ``pos_shift``); see motionlib.rho. Storing a change
  keeps fp16 precise (it is small) and lets apply scale it by `strength`.
- ``ref.latent``: the reference latent for KV injection, float16.
- ``ref.amf.<block>``: the reference's hard AMF [F, F, S, 2] (integer patch offsets): int8 when
  the token grid is at most 128 patches each way (every offset fits), else int16 (version 2: int16).
- ``ref.conf.<block>``: its peak attention probabilities [F, F, S] in steps of 1/255, uint8
  (version 2: float16).
- ``ref.frames`` (optional): small uint8 previews [F, h, w, 3] of the reference at the latent
  frames, so thumbnails can be redrawn from the file alone (e.g. after import).

The JSON header metadata holds the format name and version, the model spec, the guided timesteps,
scheduler, every learn parameter, the loss history, ``weights`` (the fingerprint of the transformer
weights it was learnt with, motionlib.weights; absent in files from before it was recorded) and
(version 2) the SHA-256 of the tensor data and of the rest of the header (motionlib.integrity). `load` checks the header size, every tensor's
name, shape and dtype against that metadata before reading any tensor data, then both hashes, and
refuses NaN or Inf in any tensor. Version-1 files (no hash) load with an ``UnverifiedAsset`` warning;
version-2 files (16-bit AMF and confidence) load as they are.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from .fsutil import atomic_write
from .integrity import (FORMAT, READS, VERSION, AssetError, DamagedAsset, Header, UnverifiedAsset, read_header, seal,
                        verify)
from .guidance import GuidanceParams
from .lineage import check_lineage
from .models.spec import CONDITIONINGS, EMBEDDINGS, MAX_FRAMES, MAX_SIZE, MAX_TOKENS, ModelSpec
from .rho import check_parametrisation, is_shift, names_for, rho_width

__all__ = ["MotionAsset", "AssetError", "inspect", "FORMAT", "VERSION"]



def now() -> str:
    """The time a motion is made, UTC to the second; ``$SOURCE_DATE_EPOCH`` (the reproducible-builds
    convention) fixes it, so the same learn writes the same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


@dataclass
class MotionAsset:
    spec: ModelSpec
    timesteps: list[int]  # guided timestep values, in denoising order
    rho_delta: dict[int, dict[str, torch.Tensor]]  # t -> {name: ρ_t − ρ_base}
    ref_latent: torch.Tensor  # [1, F', C, h, w]
    ref_amf: dict[int, torch.Tensor]  # block -> [F, F, S, 2]
    ref_confidence: dict[int, torch.Tensor]  # block -> [F, F, S]
    params: dict  # guidance parameters + prompt, seed, steps, guidance scale
    steps: int  # denoising steps of the learn run
    scheduler: dict  # {"name": class name, "config": {...}}
    losses: list[list[float]] = field(default_factory=list)  # per guided step, per Adam step
    source: dict = field(default_factory=dict)  # reference clip facts (name, sha256, fps, ...)
    created_at: str = field(default_factory=lambda: now())
    ref_frames: torch.Tensor | None = None  # uint8 [F', h, w, 3] previews
    weights: str | None = None  # motionlib.weights.fingerprint of the transformer it was learnt with (None: unknown)
    # how an edited motion was made (motionlib.edit): {"operations": [...], "parents": [...]}; None: learnt
    lineage: dict | None = None

    def __post_init__(self):
        # What the file holds is what every reader sees: the confidence on the 1/255 grid it is
        # stored on, so a descriptor or thumbnail drawn now equals one drawn from the file later.
        self.ref_confidence = {b: stored_confidence(c) for b, c in self.ref_confidence.items()}

    @property
    def embedding(self) -> str:
        """The positional embedding of the model it was learnt with (motionlib.models.spec)."""
        return self.spec.embedding

    @property
    def guidance(self) -> GuidanceParams:
        """The typed guidance parameters the motion was learnt with (a GuidanceParams; keys an older
        file lacks take their defaults)."""
        return GuidanceParams.from_dict(self.params)

    @property
    def parametrisation(self) -> str:
        return self.guidance.parametrisation

    @property
    def blocks(self) -> list[int]:
        return sorted(self.ref_amf)

    @property
    def amf(self) -> torch.Tensor:
        """The reference AMF at the first guidance block."""
        return self.ref_amf[self.blocks[0]]

    @property
    def conditioning(self) -> str:
        """"t2v" (text-to-video) or "i2v" (image-to-video): what the model it was learnt with is conditioned on."""
        return self.spec.conditioning

    def check_compatible(self, spec: ModelSpec) -> None:
        """Refuse a model of another conditioning, positional embedding or latent grid, with the reason."""
        if spec.conditioning != self.spec.conditioning:
            words = {"t2v": "a text-to-video", "i2v": "an image-to-video"}
            raise AssetError(f"this is {words[self.spec.conditioning]} motion (learnt with {self.spec.name}) and "
                             f"cannot drive {spec.name}, {words[spec.conditioning]} model; learn it again on "
                             f"{spec.name}")
        if spec.embedding != self.spec.embedding:
            raise AssetError(f"this motion was learnt with {self.spec.name} ({self.spec.embedding} ρ) and cannot "
                             f"drive {spec.name} ({spec.embedding} ρ)")
        if spec.grid != self.spec.grid or spec.config_hash() != self.spec.config_hash():
            raise AssetError(f"this motion was learnt for {self.spec.name} with latent grid {self.spec.grid} "
                             f"(frames, rows, cols); {spec.name} uses {spec.grid}")

    # --- file format -------------------------------------------------------------------------
    def _metadata(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "created_at": self.created_at,
            "spec": self.spec.to_dict(), "timesteps": self.timesteps, "steps": self.steps,
            "scheduler": self.scheduler, "params": self.params, "losses": self.losses,
            "source": self.source, "blocks": self.blocks, "latent_shape": list(self.ref_latent.shape),
            "frames_shape": None if self.ref_frames is None else list(self.ref_frames.shape),
            **({} if self.weights is None else {"weights": self.weights}),
            **({} if self.lineage is None else {"lineage": self.lineage}),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"ref.latent": self.ref_latent.detach().to(torch.float16).cpu().contiguous()}
        for t in self.timesteps:
            for n in names_for(self.embedding, self.parametrisation):
                out[f"rho.{t}.{n}"] = self.rho_delta[t][n].detach().to(torch.float16).cpu().contiguous()
        amf_type = _TORCH[amf_dtype(self.spec)]
        for b in self.blocks:
            out[f"ref.amf.{b}"] = self.ref_amf[b].detach().round().to(amf_type).cpu().contiguous()
            out[f"ref.conf.{b}"] = quantise_confidence(self.ref_confidence[b].detach()).cpu().contiguous()
        if self.ref_frames is not None:
            out["ref.frames"] = self.ref_frames.detach().to(torch.uint8).cpu().contiguous()
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (fsutil.atomic_write), sealed with its hashes; refuses non-finite tensors."""
        from safetensors.torch import save

        tensors = self.tensors()
        for name, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise AssetError(f"cannot save the motion: tensor {name} holds NaN or Inf "
                                 "(values beyond ±65504 do not fit float16)")
        data = seal(save(tensors, metadata={"motionlib": json.dumps(self._metadata(), allow_nan=False)}))
        path = Path(path)
        atomic_write(path, data)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "MotionAsset":
        from safetensors import SafetensorError, safe_open

        head, meta = _read(path)
        if not verify(path, head):
            if meta["version"] >= 2:
                raise DamagedAsset(f"{path}: damaged: its content hash is missing")
            warnings.warn(UnverifiedAsset(f"motion format version {meta['version']} carries no content hash, so "
                                          "damage cannot be detected (export it again to add one)"),
                          stacklevel=2)
        spec = ModelSpec.from_dict(meta["spec"])
        rho, amf, conf = {}, {}, {}
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                latent = f.get_tensor("ref.latent")
                for t in meta["timesteps"]:
                    names = names_for(spec.embedding, GuidanceParams.from_dict(meta["params"]).parametrisation)
                    rho[t] = {n: f.get_tensor(f"rho.{t}.{n}") for n in names}
                for b in meta["blocks"]:
                    amf[b] = f.get_tensor(f"ref.amf.{b}")
                    conf[b] = f.get_tensor(f"ref.conf.{b}")
                frames = f.get_tensor("ref.frames") if meta.get("frames_shape") else None
        except SafetensorError as e:
            raise AssetError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:120]})") from None
        named = {"ref.latent": latent, **{f"rho.{t}.{n}": v for t, d in rho.items() for n, v in d.items()},
                 **{f"ref.conf.{b}": c for b, c in conf.items()}}
        for name, v in named.items():
            if not bool(torch.isfinite(v).all()):
                raise AssetError(f"{path}: tensor {name} holds NaN or Inf")
        latent = latent.float()
        rho = {t: {n: v.float() for n, v in d.items()} for t, d in rho.items()}
        amf = {b: a.float() for b, a in amf.items()}
        return cls(spec=spec, timesteps=list(meta["timesteps"]), rho_delta=rho, ref_latent=latent,
                   ref_amf=amf, ref_confidence=conf, params=meta["params"], steps=meta["steps"],
                   scheduler=meta["scheduler"], losses=meta["losses"], source=meta["source"],
                   created_at=meta["created_at"], ref_frames=frames, weights=meta.get("weights"),
                   lineage=meta.get("lineage"))


    # --- edits (motionlib.edit) ---------------------------------------------------------------
    def mirror(self, axis: str) -> "MotionAsset":
        """This motion mirrored left-right (``"x"``) or top-bottom (``"y"``): a new asset (motionlib.edit.mirror)."""
        from .edit import mirror

        return mirror(self, axis)

    def reversed(self) -> "MotionAsset":
        """This motion played backwards: a new asset (motionlib.edit.reverse)."""
        from .edit import reverse

        return reverse(self)

    # --- edits -------------------------------------------------------------------------------------
    def retarget(self, frames: int | None = None, height: int | None = None,
                 width: int | None = None) -> "MotionAsset":
        """This motion at another frame count and/or size (pixels; None keeps one): a new asset, this one
        untouched; the same geometry gives an equal copy. ``shift``/``shared-shift`` motions only
        (motionlib.retarget, docs/retarget.md)."""
        from .retarget import retarget

        return retarget(self, frames, height, width)


CONF_LEVELS = 255  # version 3: confidence p in [0, 1] is stored as round(p * 255), uint8


def quantise_confidence(conf: torch.Tensor) -> torch.Tensor:
    """Peak attention probabilities [0, 1] as uint8 steps of 1/255 (error at most 1/510)."""
    return (conf.float().clamp(0, 1) * CONF_LEVELS).round().to(torch.uint8)


def dequantise_confidence(stored: torch.Tensor) -> torch.Tensor:
    """float32 probabilities from a file's confidence tensor (uint8 in version 3, float16 before)."""
    return stored.float() / CONF_LEVELS if stored.dtype == torch.uint8 else stored.float()


def stored_confidence(conf: torch.Tensor) -> torch.Tensor:
    """float32 confidence as a version-3 file holds it: a file's uint8 read back, any other tensor
    (fresh from a reference pass, or a version-2 file's float16) rounded onto the 1/255 grid."""
    return dequantise_confidence(conf if conf.dtype == torch.uint8 else quantise_confidence(conf))


def amf_dtype(spec: ModelSpec) -> str:
    """The safetensors dtype of ``ref.amf.*`` in the current version: int8 holds every offset of a
    grid of at most 128 x 128 patches (|offset| <= 127), larger grids keep int16."""
    _, rows, cols = spec.grid
    return "I8" if max(rows, cols) <= 128 else "I16"


_TORCH = {"I8": torch.int8, "I16": torch.int16}


_SPEC_BOUNDS = {"num_frames": MAX_FRAMES, "height": MAX_SIZE, "width": MAX_SIZE, "temporal_compression": 64,
                "spatial_compression": 64, "patch_size": 16, "text_len": 4096, "heads": 256, "head_dim": 1024,
                "num_layers": 1024}


def _int_list(values, low: int, high: int, what: str) -> list[int]:
    if not isinstance(values, list) or not all(type(v) is int and low <= v < high for v in values):
        raise ValueError(f"{what} must be a list of integers in [{low}, {high})")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} has duplicates")
    return values


def _checked_spec(meta: dict) -> ModelSpec:
    """The file's model spec, with every number that sizes an allocation bounded."""
    spec = ModelSpec.from_dict(meta["spec"])
    for key, high in _SPEC_BOUNDS.items():
        v = getattr(spec, key)
        if type(v) is not int or not 1 <= v <= high:
            raise ValueError(f"spec.{key} = {v!r} is out of range")
    if spec.embedding not in EMBEDDINGS:
        raise ValueError(f"unknown positional embedding {spec.embedding!r}")
    if spec.conditioning not in CONDITIONINGS or type(spec.fixed_geometry) is not bool:
        raise ValueError(f"unknown conditioning {spec.conditioning!r}")
    step = spec.spatial_compression * spec.patch_size
    if spec.height % step or spec.width % step or (spec.num_frames - 1) % spec.temporal_compression:
        raise ValueError("spec geometry does not divide into latent patches")
    frames, rows, cols = spec.grid
    if frames * rows * cols > MAX_TOKENS:
        raise ValueError(f"{frames * rows * cols} video tokens is implausibly many")
    return spec


def _expected(meta: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    spec = _checked_spec(meta)
    _int_list(meta["timesteps"], 0, 10_000, "timesteps")
    _int_list(meta["blocks"], 0, spec.num_layers, "blocks")
    if not meta["blocks"]:
        raise ValueError("no guidance block")
    params = meta.get("params")
    if not isinstance(params, dict):
        raise ValueError("params must be a table")
    for key, kind in (("steps", int), ("scheduler", dict), ("losses", list), ("source", dict), ("created_at", str)):
        if not isinstance(meta.get(key), kind):
            raise ValueError(f"{key} must be a {kind.__name__}")
    weights = meta.get("weights")
    if weights is not None and not (isinstance(weights, str) and re.fullmatch(r"[0-9a-f]{64}", weights)):
        raise ValueError("weights must be a 64-digit hex fingerprint")
    check_lineage(meta.get("lineage"))
    guidance = GuidanceParams.from_dict(params)
    _int_list(list(guidance.inject_blocks), 0, spec.num_layers, "params.inject_blocks")
    param = guidance.parametrisation
    check_parametrisation(param)
    frames, rows, cols = spec.grid
    s = rows * cols
    n_tok = frames * s
    width = rho_width(spec)
    lat: tuple[int, ...] = tuple(int(x) for x in meta["latent_shape"])
    grid_lat = (1, frames, spec.height // spec.spatial_compression, spec.width // spec.spatial_compression)
    if len(lat) != 5 or (lat[0], lat[1], lat[3], lat[4]) != grid_lat:
        raise ValueError(f"latent shape {list(lat)} does not fit the model grid")
    out: dict[str, tuple[tuple[int, ...], str]] = {"ref.latent": (lat, "F16")}
    for t in meta["timesteps"]:
        for n in names_for(spec.embedding, param):
            out[f"rho.{t}.{n}"] = ((n_tok, 3 if is_shift(param) else width), "F16")
    compact = meta["version"] >= 3  # 8-bit AMF offsets and confidence
    for b in meta["blocks"]:
        out[f"ref.amf.{b}"] = ((frames, frames, s, 2), amf_dtype(spec) if compact else "I16")
        out[f"ref.conf.{b}"] = ((frames, frames, s), "U8" if compact else "F16")
    fshape = meta.get("frames_shape")
    if fshape is not None:
        fshape = tuple(int(x) for x in fshape)
        if len(fshape) != 4 or fshape[0] != frames or fshape[3] != 3 or not all(0 < x <= 512 for x in fshape[1:3]):
            raise ValueError(f"preview frames {list(fshape)} do not fit the model grid")
        out["ref.frames"] = (fshape, "U8")
    return out


def inspect(path: str | os.PathLike) -> dict:
    """Validated header metadata of an asset file, without reading tensor data.

    Raises AssetError naming the problem: not safetensors, header too large, wrong format or
    version, or any tensor whose name, shape or dtype differs from what the metadata implies.
    The hashes are checked by ``MotionAsset.load`` (which reads the data anyway).
    """
    return _read(path)[1]


def _read(path: str | os.PathLike) -> tuple[Header, dict]:
    head = read_header(path)
    meta = head.meta
    if meta is None or meta.get("format") != FORMAT:
        raise AssetError(f"{path}: not a motionlib motion (no motionlib metadata)")
    if meta.get("version") not in READS:
        raise AssetError(f"{path}: motion format version {meta.get('version')} is not supported "
                         f"(this motionlib reads versions {', '.join(map(str, READS))})")
    try:
        expected = _expected(meta)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as e:
        raise AssetError(f"{path}: motion metadata is invalid ({e})") from None
    tensors = head.table
    if set(tensors) != set(expected):
        extra = sorted(set(tensors) - set(expected))[:3]
        missing = sorted(set(expected) - set(tensors))[:3]
        raise AssetError(f"{path}: unexpected tensors {extra} / missing {missing}")
    spans = []
    for name, (shape, dtype) in expected.items():
        info = tensors[name]
        got = info.get("shape") if isinstance(info, dict) else None
        if (not isinstance(info, dict) or info.get("dtype") != dtype or not isinstance(got, list)
                or not all(type(x) is int for x in got) or tuple(got) != shape):
            got = got if isinstance(got, list) else []
            dt = info.get("dtype") if isinstance(info, dict) else None
            raise AssetError(f"{path}: tensor {name} is {dt}{got}, expected {dtype}{list(shape)}")
        offsets = info.get("data_offsets")
        nbytes = _ITEMSIZE[dtype] * _numel(shape)
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or offsets[0] < 0 or offsets[1] - offsets[0] != nbytes):
            raise AssetError(f"{path}: tensor {name} has data offsets {str(offsets)[:40]} that do not fit "
                             f"its {nbytes} bytes")
        spans.append(tuple(offsets))
    end = 0
    for start, stop in sorted(spans):
        if start != end:
            raise AssetError(f"{path}: tensor data offsets overlap or leave gaps")
        end = stop
    if end + head.data_start != head.size:
        raise AssetError(f"{path}: file size does not match its tensor table (truncated or padded)")
    return head, meta


_ITEMSIZE = {"F16": 2, "I16": 2, "I8": 1, "U8": 1}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for x in shape:
        n *= x
    return n
