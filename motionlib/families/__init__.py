"""Model families: one adapter module per family of video DiTs (``cogvideox``, ``wan``).

The engine (learn, apply, guidance, injection, AMF, asset, catalogue) never asks which model it
runs; it asks the adapter of the spec's ρ family. An adapter module (see ``base.ModelFamily``)
covers the base ρ and how a ρ enters, the forward pass with capture / injection / truncation /
checkpointing, the latent grid and noise, encode and decode, the scheduler step and CFG, and
loading (real weights, tiny presets, local folders).

This module imports nothing heavy: the store and the CLI read ``FAMILIES`` without torch.
Adding a family: one adapter module here, its specs in ``motionlib/models/``, one line in
``_REGISTRY`` below, and its tests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .base import ModelFamily

__all__ = ["FAMILIES", "RHO_KINDS", "adapter", "for_pipeline", "rho_kind"]

# ρ family (the value of ModelSpec.family, stored in assets and the catalogue) ->
# (adapter module, ρ kind). The kind says what a ρ is made of: "rope" = cos/sin tables for
# queries and keys, "additive" = an embedding added to the video tokens (motionlib.rho).
_REGISTRY: dict[str, tuple[str, str]] = {
    "rope": ("cogvideox", "rope"),  # CogVideoX-5B: 3D RoPE
    "posemb": ("cogvideox", "additive"),  # CogVideoX-2B: additive 3D sin-cos
    "wan": ("wan", "rope"),  # Wan 2.1: 3D RoPE on a t/h/w channel split of each head
}
FAMILIES: tuple[str, ...] = tuple(_REGISTRY)
RHO_KINDS: tuple[str, ...] = ("rope", "additive")


def _entry(family: str) -> tuple[str, str]:
    try:
        return _REGISTRY[family]
    except KeyError:
        from ..errors import ParameterError

        raise ParameterError(f"unknown model family {family!r}: use one of {', '.join(FAMILIES)}") from None


def rho_kind(family: str) -> str:
    """"rope" or "additive": what the family's ρ tensors are."""
    return _entry(family)[1]


def adapter(family: str) -> "ModelFamily":
    """The adapter of a ρ family (imported on first use)."""
    return importlib.import_module(f".{_entry(family)[0]}", __name__).FAMILY


def for_pipeline(pipeline_class: str, where: str = "this folder") -> "ModelFamily":
    """The adapter whose diffusers pipeline class a folder's model_index.json names."""
    from ..errors import ParameterError

    found = {}
    for family in FAMILIES:
        a = adapter(family)
        found.update(dict.fromkeys(a.pipelines, a))
    if pipeline_class not in found:
        raise ParameterError(f"{where} holds a {pipeline_class}; motionlib loads {', '.join(found)} folders")
    return found[pipeline_class]
