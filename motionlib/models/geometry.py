"""A model at another frame count or resolution, and the spec check that runs before any weights
load. It asks the family adapter, so it lives in models/ (the one layer that imports the registry)."""

from __future__ import annotations

from dataclasses import replace

from ..errors import ParameterError

__all__ = ["check_geometry", "with_geometry"]


def check_geometry(s, num_frames: int | None = None, height: int | None = None, width: int | None = None):
    """The spec ``s`` with another frame count or resolution, or ParameterError naming what it cannot take.

    Cheap (no weights needed), so commands call it before loading a model or reading a clip."""
    from ..families import adapter

    for flag, value in (("--frames", num_frames), ("--height", height), ("--width", width)):
        if value is not None and value < 1:
            raise ParameterError(f"{flag} must be a positive integer, got {value}")
    spec = replace(s, num_frames=num_frames or s.num_frames, height=height or s.height, width=width or s.width)
    if s.fixed_geometry and (spec.num_frames, spec.height, spec.width) != (s.num_frames, s.height, s.width):
        raise ParameterError(f"{s.name} has learnt positional embeddings for one size only: {s.num_frames} frames "
                             f"at {s.height}x{s.width} (height x width); got {spec.num_frames} frames at "
                             f"{spec.height}x{spec.width}")
    adapter(s.embedding).check_spec(spec)
    if spec.latent_frames < 2:
        t = spec.temporal_compression
        raise ParameterError(f"--frames {spec.num_frames} gives {s.name} {spec.latent_frames} latent frame; a motion "
                             f"needs at least 2 (--frames {t + 1} or more)")
    return spec


def with_geometry(model, num_frames: int | None = None, height: int | None = None, width: int | None = None):
    """The same model (shared weights) with another frame count or resolution, validated."""
    spec = check_geometry(model.spec, num_frames, height, width)
    if spec == model.spec:
        return model
    return replace(model, spec=spec)
