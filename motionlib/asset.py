"""`MotionAsset`: a learnt motion in one safetensors file (never a pickle).

Tensors:
- ``rho.<t>.<name>``: for each guided timestep value t, float16, either ρ_t − ρ_base
  (``table`` parametrisation: ``q_cos``... or ``pos``) or the per-token position shifts
  (``shift``: ``q_shift``, ``k_shift`` of [tokens, 3]); see motionlib.rho. Storing a change
  keeps fp16 precise (it is small) and lets apply scale it by `strength`.
- ``ref.latent``: the reference latent for KV injection, float16.
- ``ref.amf.<block>``: the reference's hard AMF [F, F, S, 2] (integer patch offsets), int16.
- ``ref.conf.<block>``: its peak attention probabilities [F, F, S], float16.
- ``ref.frames`` (optional): small uint8 previews [F, h, w, 3] of the reference at the latent
  frames, so thumbnails can be redrawn from the file alone (e.g. after import).

The JSON header metadata holds the format name and version, the model spec, the guided timesteps,
scheduler, every learn parameter and the loss history. `load` checks the header size, every
tensor's name, shape and dtype against that metadata before reading any tensor data.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from .errors import MotionlibError
from .models.spec import ModelSpec
from .families import FAMILIES
from .rho import check_parametrisation, names_for, rho_width

FORMAT = "motionlib.motion"
VERSION = 1
MAX_HEADER_BYTES = 1 << 20  # metadata + tensor table; a 5B asset needs ~10 KB


class AssetError(MotionlibError, ValueError):
    """A motion file that is not a valid motionlib asset (or not for this model)."""


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
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    ref_frames: torch.Tensor | None = None  # uint8 [F', h, w, 3] previews

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def parametrisation(self) -> str:
        return self.params.get("parametrisation", "table")

    @property
    def blocks(self) -> list[int]:
        return sorted(self.ref_amf)

    @property
    def amf(self) -> torch.Tensor:
        """The reference AMF at the first guidance block."""
        return self.ref_amf[self.blocks[0]]

    def check_compatible(self, spec: ModelSpec) -> None:
        """Refuse a model of another family or latent grid, with the reason."""
        if spec.family != self.spec.family:
            raise AssetError(f"this motion was learnt with {self.spec.name} ({self.spec.family} ρ) and cannot "
                             f"drive {spec.name} ({spec.family} ρ)")
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
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"ref.latent": self.ref_latent.detach().to(torch.float16).cpu().contiguous()}
        for t in self.timesteps:
            for n in names_for(self.family, self.parametrisation):
                out[f"rho.{t}.{n}"] = self.rho_delta[t][n].detach().to(torch.float16).cpu().contiguous()
        for b in self.blocks:
            out[f"ref.amf.{b}"] = self.ref_amf[b].detach().round().to(torch.int16).cpu().contiguous()
            out[f"ref.conf.{b}"] = self.ref_confidence[b].detach().to(torch.float16).cpu().contiguous()
        if self.ref_frames is not None:
            out["ref.frames"] = self.ref_frames.detach().to(torch.uint8).cpu().contiguous()
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file in the same folder, fsync, rename)."""
        from safetensors.torch import save

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = save(self.tensors(), metadata={"motionlib": json.dumps(self._metadata())})
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "MotionAsset":
        from safetensors import safe_open

        meta = inspect(path)
        spec = ModelSpec.from_dict(meta["spec"])
        rho, amf, conf = {}, {}, {}
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            latent = f.get_tensor("ref.latent").float()
            for t in meta["timesteps"]:
                names = names_for(spec.family, meta["params"].get("parametrisation", "table"))
                rho[t] = {n: f.get_tensor(f"rho.{t}.{n}").float() for n in names}
            for b in meta["blocks"]:
                amf[b] = f.get_tensor(f"ref.amf.{b}").float()
                conf[b] = f.get_tensor(f"ref.conf.{b}").float()
            frames = f.get_tensor("ref.frames") if meta.get("frames_shape") else None
        return cls(spec=spec, timesteps=list(meta["timesteps"]), rho_delta=rho, ref_latent=latent,
                   ref_amf=amf, ref_confidence=conf, params=meta["params"], steps=meta["steps"],
                   scheduler=meta["scheduler"], losses=meta["losses"], source=meta["source"],
                   created_at=meta["created_at"], ref_frames=frames)


_SPEC_BOUNDS = {"num_frames": 1024, "height": 8192, "width": 8192, "temporal_compression": 64,
                "spatial_compression": 64, "patch_size": 16, "text_len": 4096, "heads": 256, "head_dim": 1024,
                "num_layers": 1024}
MAX_TOKENS = 1 << 20


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
    if spec.family not in FAMILIES:
        raise ValueError(f"unknown ρ family {spec.family!r}")
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
    _int_list(list(params.get("inject_blocks", [])), 0, spec.num_layers, "params.inject_blocks")
    param = params.get("parametrisation", "table")
    check_parametrisation(param)
    frames, rows, cols = spec.grid
    s = rows * cols
    n_tok = frames * s
    width = rho_width(spec)
    lat = tuple(int(x) for x in meta["latent_shape"])
    grid_lat = (1, frames, spec.height // spec.spatial_compression, spec.width // spec.spatial_compression)
    if len(lat) != 5 or (lat[0], lat[1], lat[3], lat[4]) != grid_lat:
        raise ValueError(f"latent shape {list(lat)} does not fit the model grid")
    out = {"ref.latent": (lat, "F16")}
    for t in meta["timesteps"]:
        for n in names_for(spec.family, param):
            out[f"rho.{t}.{n}"] = ((n_tok, 3 if param == "shift" else width), "F16")
    for b in meta["blocks"]:
        out[f"ref.amf.{b}"] = ((frames, frames, s, 2), "I16")
        out[f"ref.conf.{b}"] = ((frames, frames, s), "F16")
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
    """
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise AssetError(f"{path}: not a motion file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or n + 8 > size:
            raise AssetError(f"{path}: not a motion file (header of {n} bytes is not plausible)")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise AssetError(f"{path}: not a motion file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise AssetError(f"{path}: not a motion file (header is not a table)")
    try:
        meta = json.loads(header.get("__metadata__", {}).get("motionlib", "null"))
    except (AttributeError, TypeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AssetError(f"{path}: not a motionlib motion (no motionlib metadata)")
    if meta.get("version") != VERSION:
        raise AssetError(f"{path}: motion format version {meta.get('version')} is not supported "
                         f"(this motionlib reads version {VERSION})")
    try:
        expected = _expected(meta)
    except (KeyError, TypeError, ValueError, ArithmeticError) as e:
        raise AssetError(f"{path}: motion metadata is invalid ({e})") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if set(tensors) != set(expected):
        extra = sorted(set(tensors) - set(expected))[:3]
        missing = sorted(set(expected) - set(tensors))[:3]
        raise AssetError(f"{path}: unexpected tensors {extra} / missing {missing}")
    end = 0
    for name, (shape, dtype) in expected.items():
        info = tensors[name]
        got = tuple(info.get("shape", ()))
        ok_shape = got == shape
        if info.get("dtype") != dtype or not ok_shape:
            raise AssetError(f"{path}: tensor {name} is {info.get('dtype')}{list(got)}, expected {dtype}{list(shape)}")
        end = max(end, int(info["data_offsets"][1]))
    if end + 8 + n != size:
        raise AssetError(f"{path}: file size does not match its tensor table (truncated or padded)")
    return meta
