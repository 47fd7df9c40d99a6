"""Model registry and loading: `load_model("tiny-5b")`, `load_model("THUDM/CogVideoX-5b")`.

The registry (specs, `known_models`, `resolve_spec`) imports neither torch nor diffusers, so the
catalogue commands can read it at once; `load_model` and `Model` bring them in when used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._compat import check_diffusers
from ..errors import ModelError, ParameterError, WeightsMissing
from ..families import adapter
from .cogvideox import COGVIDEOX_2B, COGVIDEOX_5B, COGVIDEOX_5B_I2V
from .geometry import check_geometry, with_geometry
from .spec import GuidanceDefaults, ModelSpec
from .tiny import tiny_spec, tiny_wan_spec
from .wan import WAN21_I2V_14B_480P, WAN21_I2V_14B_720P, WAN21_T2V_1_3B, WAN21_T2V_14B

if TYPE_CHECKING:
    import torch

    from .base import Model


def __getattr__(name: str):
    if name == "Model":  # torch-backed: imported on first use
        from .base import Model

        return Model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Model", "ModelSpec", "GuidanceDefaults", "load_model", "known_models", "resolve_spec", "check_geometry",
           "with_geometry", "model_name_for"]

_TINY = {"tiny-5b": tiny_spec("rope"), "tiny-2b": tiny_spec("posemb"), "tiny-wan": tiny_wan_spec(),
         "tiny-5b-i2v": tiny_spec("rope", "i2v"), "tiny-wan-i2v": tiny_wan_spec("i2v")}
_REAL = {"cogvideox-5b": COGVIDEOX_5B, "cogvideox-2b": COGVIDEOX_2B,
         "wan2.1-t2v-1.3b": WAN21_T2V_1_3B, "wan2.1-t2v-14b": WAN21_T2V_14B,
         "cogvideox-5b-i2v": COGVIDEOX_5B_I2V, "wan2.1-i2v-14b-480p": WAN21_I2V_14B_480P,
         "wan2.1-i2v-14b-720p": WAN21_I2V_14B_720P}
_HUB_IDS = {s.source.lower(): s for s in _REAL.values()}


def _shapes() -> dict[str, ModelSpec]:
    from ..demo.spec import SHAPES_I2V_SPEC, SHAPES_SPEC

    return {"shapes": SHAPES_SPEC, "shapes-i2v": SHAPES_I2V_SPEC}


def shapes_available(name: str = "shapes") -> bool:
    """Whether the bundled demo model's (``"shapes"`` or ``"shapes-i2v"``) trained weights are installed."""
    from ..demo.spec import DEFAULT_I2V_WEIGHTS, DEFAULT_WEIGHTS

    return (DEFAULT_I2V_WEIGHTS if name == "shapes-i2v" else DEFAULT_WEIGHTS).is_file()


def known_models() -> dict[str, ModelSpec]:
    """Every model name motionlib knows, in display order."""
    return {**_shapes(), **_TINY, **_REAL}


def resolve_spec(name_or_path: str) -> ModelSpec:
    """Spec for a preset name, a known hub id, or a local folder holding a diffusers pipeline."""
    key = name_or_path.lower()
    if key in ("shapes", "shapes-i2v"):
        return _shapes()[key]
    if key in _TINY:
        return _TINY[key]
    if key in _REAL:
        return _REAL[key]
    if key in _HUB_IDS:
        return _HUB_IDS[key]
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return spec_from_folder(path)
    names = ", ".join(known_models())
    raise ParameterError(f"unknown model {name_or_path!r}: use one of {names}, a known hub id or a local diffusers folder")


def spec_from_folder(path: Path) -> ModelSpec:
    """Spec of a local diffusers pipeline folder, read by its family's adapter from the configs."""
    import json

    from ..families import for_pipeline

    def config(part: str) -> dict:
        f = path / part / "config.json"
        if not f.is_file():
            raise ParameterError(f"{path} is not a diffusers pipeline folder (no {part}/config.json)")
        return json.loads(f.read_text())

    index = path / "model_index.json"
    cls = json.loads(index.read_text()).get("_class_name") if index.is_file() else "CogVideoXPipeline"
    return for_pipeline(cls, str(path)).spec_from_folder(path, {p: config(p) for p in ("transformer", "vae")})


def model_name_for(spec) -> str:
    """What to load for an asset learnt with ``spec``: its preset name when known here, else its source."""
    return spec.name if spec.name in known_models() else spec.source


def default_device() -> torch.device:
    import torch

    return torch.device(os.environ.get("MOTIONLIB_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_model(name_or_path: str, *, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None, offload: bool | str = False,
               vae_tiling: bool | str = False, seed: int = 0, job: str = "generate",
               num_frames: int | None = None, height: int | None = None, width: int | None = None) -> Model:
    """Load a model by preset name, hub id or local folder.

    dtype defaults to the spec's (bf16 for CogVideoX-5B and Wan, fp16 for 2B) on CUDA and fp32 on the CPU.
    `offload` ("none", "model", "sequential", "auto"; True means "model") keeps components on the
    CPU between uses; `vae_tiling` ("on", "off", "auto" or a bool) enables VAE tiling and slicing.
    ``"auto"`` picks the fastest setting whose peak for `job` fits the device's free memory
    (``motionlib.memory``; the choice is ``model.plan``). num_frames/height/width override the
    spec's geometry (``motionlib.models.geometry.with_geometry``) before the choice.
    """
    import torch

    from .base import Model
    from .. import memory, offload as placement

    check_diffusers()
    if isinstance(offload, bool):
        offload = "model" if offload else "none"
    memory.check(offload, vae_tiling)
    spec = resolve_spec(name_or_path)
    family = adapter(spec.embedding)
    family.check_spec(spec)
    if num_frames or height or width:  # refused before any weights load
        check_geometry(spec, num_frames, height, width)
    device = torch.device(device) if device is not None else default_device()
    if dtype is None:
        dtype = getattr(torch, spec.dtype) if device.type == "cuda" else torch.float32
    if spec.source == "builtin:shapes":
        from ..demo.model import DEFAULT_WEIGHTS, build_shapes

        if not DEFAULT_WEIGHTS.is_file():
            raise WeightsMissing(f"the shapes demo weights are not installed ({DEFAULT_WEIGHTS}); "
                                    f"train them with: python -m motionlib.demo.train")
        parts = build_shapes(DEFAULT_WEIGHTS, seed=seed)
    elif spec.source == "builtin:shapes-i2v":  # WeightsMissing, naming the training command, until trained
        from ..demo.shapes_i2v import build_shapes_i2v

        parts = build_shapes_i2v(seed=seed)
    elif spec.source.startswith("builtin:"):
        parts = family.build_tiny(spec, seed=seed)
    else:
        try:
            parts = family.load_components(spec, spec.source, dtype)
        except OSError as e:  # from_pretrained without network or cache, or an unreadable folder
            raise ModelError(f"could not load {spec.source}: {(str(e).strip() or type(e).__name__).splitlines()[0]} "
                             "(no weights offline? try --model tiny-5b, or a local diffusers folder)") from e
    tokenizer, text_encoder, vae, transformer, scheduler, *rest = parts
    image = dict(rest[0]) if rest else {}  # image-to-video: {"image_encoder": ..., "image_processor": ...}
    encoder = image.get("image_encoder")
    for m in (text_encoder, vae, transformer) + ((encoder,) if encoder is not None else ()):
        m.requires_grad_(False).eval()
        if next(m.parameters()).dtype != dtype:
            m.to(dtype=dtype)
    on_cpu = Model(spec, tokenizer, text_encoder, vae, transformer, scheduler, device, dtype, "model", **image)
    if num_frames or height or width:
        on_cpu = with_geometry(on_cpu, num_frames=num_frames, height=height, width=width)
    plan = memory.plan(on_cpu, job, offload, vae_tiling)
    model = Model(on_cpu.spec, tokenizer, text_encoder, vae, transformer, scheduler, device, dtype,
                  plan.setting.offload, plan, **image)
    with memory.out_of_memory(model, job):  # e.g. a forced --offload none on a small card
        placement.place(model, plan.setting.vae_tiling)
    return model
