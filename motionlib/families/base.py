"""The model-family adapter interface: what the engine asks of a family of video DiTs.

Conventions shared by every family: latents are ``[B, F', C, h, w]`` (latent frames first), the
video tokens are ordered frame-major then row-major, ρ is a ``motionlib.rho.Rho`` whose
``embedding`` says which positional embedding it is, and the forward pass takes a
``motionlib.transformer.Controls``. A family converts to its own layouts inside its module.

The adapters sit below ``motionlib.models`` and the sampling loop (docs/architecture.md), so they see a
model and a run through the Protocols ``ModelLike`` and ``RunLike`` (what they read of them), never
through those modules' classes.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Protocol

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..models.spec import ModelSpec
    from ..rho import Rho
    from ..transformer import Controls


class ModelLike(Protocol):
    """What an adapter reads of a ``motionlib.models.Model``: its components, where they run, its spec."""

    spec: "ModelSpec"
    tokenizer: Any
    text_encoder: Any
    vae: Any
    transformer: Any
    scheduler: Any
    device: torch.device
    dtype: torch.dtype

    def on_device(self, module: torch.nn.Module) -> ContextManager[Any]: ...


class RunLike(Protocol):
    """What an adapter reads of a ``motionlib.sampling.Run``: one prepared generation."""

    model: Any  # a ModelLike
    scheduler: Any
    embeds: torch.Tensor
    extras: dict
    generator: Any
    guidance_scale: float
    do_cfg: bool
    use_dynamic_cfg: bool
    steps: int
    timesteps: Any


class ModelFamily:
    """One family of video DiTs (e.g. CogVideoX, Wan). Subclasses implement every method."""

    name: str = ""
    pipelines: tuple[str, ...] = ()  # diffusers pipeline classes whose folders this family loads
    i2v_pipelines: tuple[str, ...] = ()  # those of them that are image-to-video

    def pipelines_for(self, conditioning: str) -> tuple[str, ...]:
        """The family's diffusers pipeline classes of a conditioning ("t2v" or "i2v")."""
        i2v = conditioning == "i2v"
        return tuple(p for p in self.pipelines if (p in self.i2v_pipelines) == i2v)

    # --- ρ ---------------------------------------------------------------------------------------
    def base_rho(self, model: "ModelLike") -> "Rho":
        """The ρ a plain generation uses for the model's latent grid (diffusers' own values)."""
        raise NotImplementedError

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, transformer, latents: torch.Tensor, text_embeds: torch.Tensor, timestep: torch.Tensor,
                controls: "Controls", checkpointing: bool = True, image: dict | None = None) -> torch.Tensor | None:
        """Model output for `latents` with ρ, capture, injection, truncation (None) and checkpointing.

        `image` is an image-to-video model's first-frame conditioning (``image_condition``'s dict of
        ``[n, ...]`` tensors; the batch of `latents` is a multiple of n: CFG branches), None for text-to-video."""
        raise NotImplementedError

    # --- image-to-video ------------------------------------------------------------------------
    def image_condition(self, model: "ModelLike", image, generators: list) -> dict:
        """An image-to-video model's conditioning on the first frame `image` (a PIL image), as the family's
        diffusers image-to-video pipeline computes it: a dict of ``[len(generators), ...]`` tensors, one
        row per generation, drawing from each generator what the pipeline draws before its noise (a
        generator None: the deterministic choice, e.g. the posterior mode). Runs before ``initial_noise``."""
        from ..errors import ParameterError

        raise ParameterError(f"{model.spec.name} is a text-to-video model and takes no image")

    # --- diffusers' own forward (motionlib.attach) ---------------------------------------------
    def bind(self, transformer, source: Callable[[], "Controls | None"]) -> Callable[[], None]:
        """Let diffusers' own forward of `transformer` take ρ and KV injection from ``source()``.

        Each pass asks ``source()`` once per place where ρ enters; None leaves the pass exactly as
        diffusers computes it (its own processors, its own positional embedding), a `Controls` runs
        the same maths as ``forward`` does with it (the family's motion processors). A pass of
        ``forward`` itself (explicit Controls) is never asked. Returns a function that undoes the
        binding (idempotent; what others installed since is left alone)."""
        raise NotImplementedError

    def pipeline_noise(self, latents: torch.Tensor) -> torch.Tensor:
        """The family pipeline's ``prepare_latents`` output in motionlib's layout ``[B, F', C, h, w]``."""
        return latents

    def pipeline_image(self, condition: torch.Tensor, image_tokens: torch.Tensor | None) -> dict | None:
        """An image-to-video pipeline's conditioning (the second output of its ``prepare_latents``, and the
        image encoder's tokens when it has one) as ``image_condition`` gives it; None when a part it
        needs is missing."""
        return {"latents": condition}

    # --- grid, text, codec -----------------------------------------------------------------------
    def check_spec(self, spec: "ModelSpec") -> None:
        """Raise a ParameterError naming a frame count or size the family cannot take."""
        from ..errors import ParameterError

        if spec.num_frames < 1 or (spec.num_frames - 1) % spec.temporal_compression:
            k = max(0, (spec.num_frames - 1) // spec.temporal_compression)
            raise ParameterError(
                f"{spec.name} needs a frame count of the form {spec.temporal_compression}k+1 (e.g. "
                f"{k * spec.temporal_compression + 1} or {(k + 1) * spec.temporal_compression + 1}), "
                f"got {spec.num_frames}")
        step = spec.spatial_compression * spec.patch_size
        if spec.height % step or spec.width % step or spec.height < step or spec.width < step:
            raise ParameterError(f"{spec.name} needs height and width divisible by {step}, "
                                 f"got {spec.height}x{spec.width}")

    def fixed_geometry(self, model: "ModelLike") -> str | None:
        """Why the loaded `model` renders only at its own frame count and size (e.g. a positional embedding
        learnt for one geometry), or None when it takes any geometry ``check_spec`` allows."""
        return None

    def latent_shape(self, model: "ModelLike") -> tuple[int, int, int, int, int]:
        s = model.spec
        c = self.latent_channels(model)
        return (1, s.latent_frames, c, s.height // s.spatial_compression, s.width // s.spatial_compression)

    def latent_channels(self, model: "ModelLike") -> int:
        """Channels of the noise latent: the transformer's input channels, less the image conditioning's
        (image-to-video models take it concatenated on channels; their output is the noise's width)."""
        config: Any = model.transformer.config  # a diffusers model's config (untyped FrozenDict)
        return int(config.out_channels if model.spec.conditioning == "i2v" else config.in_channels)

    def initial_noise(self, model: "ModelLike", generator: torch.Generator) -> torch.Tensor:
        """The run's initial noise, drawn as the family's diffusers pipeline draws it."""
        raise NotImplementedError

    def encode_prompt(self, model: "ModelLike", prompts: list[str]) -> torch.Tensor:
        """Text embeddings [B, text_len, D] as the pipeline computes them."""
        raise NotImplementedError

    def encode_video(self, model: "ModelLike", video: torch.Tensor) -> torch.Tensor:
        """[F, 3, H, W] in [-1, 1] -> normalised latent [1, F', C, h, w] (posterior mode)."""
        raise NotImplementedError

    def decode(self, model: "ModelLike", latents: torch.Tensor) -> torch.Tensor:
        """Normalised latent [1, F', C, h, w] -> video [F, 3, H, W] in [0, 1] (float32, CPU)."""
        raise NotImplementedError

    # --- scheduler and sampling ------------------------------------------------------------------
    def new_scheduler(self, model: "ModelLike", steps: int) -> Any:
        """A fresh scheduler of the model's kind with `steps` timesteps set (schedulers keep state)."""
        raise NotImplementedError

    def predict(self, run: "RunLike", latents: torch.Tensor, t: torch.Tensor, controls: "Controls") -> torch.Tensor:
        """CFG-combined model output for one denoising step (no gradients)."""
        raise NotImplementedError

    def step(self, run: "RunLike", index: int, t: torch.Tensor, output: torch.Tensor,
             latents: torch.Tensor) -> torch.Tensor:
        """One scheduler step: the next latents (per-run solver state lives in ``run.extras``)."""
        raise NotImplementedError

    # --- loading ---------------------------------------------------------------------------------
    def default_scheduler(self, spec: "ModelSpec") -> Any:
        """The family's scheduler built from its config in code (tiny presets, random-weight architectures)."""
        raise NotImplementedError

    def load_components(self, spec: "ModelSpec", source: str, dtype: torch.dtype) -> tuple:
        """(tokenizer, text_encoder, vae, transformer, scheduler) from a hub id or folder."""
        raise NotImplementedError

    def build_tiny(self, spec: "ModelSpec", seed: int = 0) -> tuple:
        """The same five components at a tiny size with seeded random weights (tests)."""
        raise NotImplementedError

    def build_architecture(self, spec: "ModelSpec", text_layers: int = 2) -> tuple:
        """The five components of a real model's architecture (from its configs, in code) with random
        weights; the text encoder keeps its width but only `text_layers` layers (GPU benchmarks)."""
        raise NotImplementedError

    def spec_from_folder(self, path, configs: dict[str, dict]) -> "ModelSpec":
        """Spec of a local diffusers folder from its component configs ({"transformer": ..., ...})."""
        raise NotImplementedError


def repeat_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Conditioning ``[n, ...]`` for a batch of `batch` rows (a multiple of n: the CFG branches of n
    generations, as the pipelines' ``torch.cat([c] * 2)``)."""
    return x if x.shape[0] == batch else x.repeat(batch // x.shape[0], *([1] * (x.ndim - 1)))


def image_processor(spec):
    """The diffusers VideoProcessor the image-to-video pipelines preprocess the first frame with (resize to
    the model's height x width, scale to [-1, 1])."""
    from diffusers.video_processor import VideoProcessor

    return VideoProcessor(vae_scale_factor=spec.spatial_compression)


def build_tokenizer(text_len: int):
    """A character-level fast tokenizer made locally (no download): any prompt tokenizes."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(string.ascii_lowercase + string.digits + " .,;:!?'-")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    vocab.update({c: i + 3 for i, c in enumerate(chars)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    from tokenizers import normalizers, processors

    tok.normalizer = normalizers.Lowercase()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=text_len)
