"""`Model`: the components of a text- or image-to-video DiT, passed around together.

Like a diffusers pipeline without a ``__call__``: motionlib's sampling loop (``motionlib.sampling``)
drives the components through the model family's adapter (``motionlib.families``). The codec and
text encoder only need ``encode``/``decode``-style methods, so non-VAE codecs and non-T5 encoders
can stand behind the same interface.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from .spec import ModelSpec


@dataclass
class Model:
    spec: ModelSpec
    tokenizer: Any
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    transformer: torch.nn.Module
    scheduler: Any
    device: torch.device
    dtype: torch.dtype
    # offload level (motionlib.memory.LEVELS): "none", "text", "model" or "sequential"; True means "model"
    offload: str | bool = "none"
    plan: Any = None  # the motionlib.memory.Plan that chose the offload level, when one did
    # component -> "device" or "cpu": where each lives now (kept by on_device; shared by copies)
    placement: dict = field(default_factory=dict)
    # image-to-video models whose family encodes the first frame with an image encoder (Wan 2.1 I2V: CLIP);
    # it lives with the text encoder's placement rules (motionlib.offload) and is run by the adapter
    image_encoder: Any = None
    image_processor: Any = None

    COMPONENTS = ("text_encoder", "vae", "transformer")

    def __post_init__(self):
        if isinstance(self.offload, bool):
            self.offload = "model" if self.offload else "none"
        if not self.placement:
            on = {"none": self.COMPONENTS, "text": ("vae", "transformer")}.get(self.offload, ())
            self.placement.update({c: "device" if c in on else "cpu" for c in self.COMPONENTS})
            if self.offload == "sequential":
                self.placement["transformer"] = "streamed"  # blocks on the CPU, the rest on the device

    # --- placement -----------------------------------------------------------------------------
    def _move(self, name: str, where: str) -> None:
        if self.placement[name] != where:
            getattr(self, name).to(self.device if where == "device" else "cpu")
            self.placement[name] = where
            if where == "cpu" and self.device.type == "cuda":
                torch.cuda.empty_cache()

    @contextlib.contextmanager
    def on_device(self, module: torch.nn.Module):
        """Have `module` on the compute device for a block, as the offload level says.

        ``model``: it moves there and stays until another component needs the device (diffusers'
        model CPU offload); ``sequential``: the same for the text encoder and VAE, while the
        transformer streams its blocks (``motionlib.offload``); ``text``: the text encoder visits the
        device for the block only; ``none``: everything is there already."""
        name = next((c for c in self.COMPONENTS if getattr(self, c) is module), None)
        if name is None or self.offload == "none" or self.placement[name] == "device":
            yield module  # not a component, resident, or an outer block already moved it
            return
        if self.offload == "text":  # only the text encoder is ever off the device
            self._move(name, "device")
            try:
                yield module
            finally:
                self._move(name, "cpu")
            return
        for other in self.COMPONENTS:
            if other != name and not (self.offload == "sequential" and other == "transformer"):
                self._move(other, "cpu")
        if not (self.offload == "sequential" and name == "transformer"):
            self._move(name, "device")
        yield module

    # --- the family adapter does the family-specific work (motionlib.families) ------------------
    @property
    def family(self):
        """This model's family adapter (``motionlib.families.base.ModelFamily``)."""
        from ..families import adapter

        return adapter(self.spec.embedding)

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings padded to the model's text length: [B, text_len, D]."""
        return self.family.encode_prompt(self, prompts)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """[F, 3, H, W] in [-1, 1] -> normalised latent [1, F', C, h, w] (posterior mode: deterministic)."""
        return self.family.encode_video(self, video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latent [1, F', C, h, w] -> video [F, 3, H, W] in [0, 1] (float32, CPU)."""
        return self.family.decode(self, latents)

    def image_condition(self, image, generators: list) -> dict:
        """The family's conditioning on a first frame (a PIL image), one per generator ([N, ...] tensors)."""
        return self.family.image_condition(self, image, generators)

    def latent_shape(self) -> tuple[int, int, int, int, int]:
        return self.family.latent_shape(self)

    def new_scheduler(self, steps: int | None = None):
        """A fresh scheduler of the model's kind (schedulers carry per-run state), timesteps set."""
        return self.family.new_scheduler(self, steps or self.spec.num_inference_steps)
