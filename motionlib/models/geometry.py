"""A model at another frame count or resolution, and the spec check that runs before any weights
load. It asks the family adapter, so it lives in models/ (the one layer that imports the registry)."""

from __future__ import annotations

from dataclasses import replace

from ..errors import ParameterError
from .spec import MAX_FRAMES, MAX_SIZE, MAX_TOKENS

__all__ = ["check_geometry", "with_geometry"]


def check_geometry(s, num_frames: int | None = None, height: int | None = None, width: int | None = None):
    """The spec ``s`` with another frame count or resolution, or ParameterError naming what it cannot take.

    Cheap (no weights needed), so commands call it before loading a model or reading a clip."""
    from ..families import adapter

    for flag, value, high in (("--frames", num_frames, MAX_FRAMES), ("--height", height, MAX_SIZE),
                              ("--width", width, MAX_SIZE)):
        if value is not None and value < 1:
            raise ParameterError(f"{flag} must be a positive integer, got {value}")
        if value is not None and value > high:
            raise ParameterError(f"{flag} must be at most {high}, got {value}")
    spec = replace(s, num_frames=num_frames or s.num_frames, height=height or s.height, width=width or s.width)
    if s.fixed_geometry and (spec.num_frames, spec.height, spec.width) != (s.num_frames, s.height, s.width):
        raise ParameterError(f"{s.name} has learnt positional embeddings for one size only: {s.num_frames} frames "
                             f"at {s.height}x{s.width} (height x width); got {spec.num_frames} frames at "
                             f"{spec.height}x{spec.width}")
    adapter(s.embedding).check_spec(spec)
    frames, rows, cols = spec.grid
    if frames * rows * cols > MAX_TOKENS:
        raise ParameterError(f"{spec.num_frames} frames of {spec.height}x{spec.width} make {frames * rows * cols} "
                             f"video tokens for {s.name}; at most {MAX_TOKENS} are allowed")
    if spec.latent_frames < 2:
        t = spec.temporal_compression
        raise ParameterError(f"--frames {spec.num_frames} gives {s.name} {spec.latent_frames} latent frame; a motion "
                             f"needs at least 2 (--frames {t + 1} or more)")
    return spec


def with_geometry(model, num_frames: int | None = None, height: int | None = None, width: int | None = None):
    """The same model (shared weights) with another frame count or resolution, validated; ParameterError
    for a model that renders only at its own (its family's ``fixed_geometry`` says why)."""
    spec = check_geometry(model.spec, num_frames, height, width)
    if spec == model.spec:
        return model
    why = model.family.fixed_geometry(model)
    if why:
        s = model.spec
        raise ParameterError(f"{s.name} renders only at {s.num_frames} frames of {s.height}x{s.width} ({why}); "
                             f"asked for {spec.num_frames} frames of {spec.height}x{spec.width}")
    return replace(model, spec=spec)
