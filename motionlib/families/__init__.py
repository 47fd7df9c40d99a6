"""Model families: one adapter module per family of video DiTs (``cogvideox``, ``wan``).

The engine (learn, apply, guidance, injection, AMF, asset, catalogue) never asks which model it
runs; it asks the adapter of the spec's positional embedding (``model.family``). An adapter module (see ``base.ModelFamily``)
covers the base ρ and how a ρ enters, the forward pass with capture / injection / truncation /
checkpointing, the latent grid and noise, encode and decode, the scheduler step and CFG, and
loading (real weights, tiny presets, local folders).

The table of positional embeddings (``EMBEDDINGS``, ``rho_kind``; which family runs each) lives in
``motionlib.models.spec``; this
registry is imported only by ``motionlib.models``: the flows reach an adapter through the model they
are given (``model.family``). Adding a family: one adapter module here, its specs in
``motionlib/models/``, its row in ``models/spec.py``'s table, and its tests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..models.spec import EMBEDDINGS, RHO_KINDS, adapter_module, rho_kind

if TYPE_CHECKING:  # pragma: no cover
    from .base import ModelFamily

__all__ = ["EMBEDDINGS", "RHO_KINDS", "adapter", "for_pipeline", "rho_kind"]


def adapter(embedding: str) -> "ModelFamily":
    """The family adapter that runs models with this positional embedding (imported on first use)."""
    return importlib.import_module(f".{adapter_module(embedding)}", __name__).FAMILY


def for_pipeline(pipeline_class: str, where: str = "this folder") -> "ModelFamily":
    """The adapter whose diffusers pipeline class a folder's model_index.json names."""
    from ..errors import ParameterError

    found = {}
    for embedding in EMBEDDINGS:
        a = adapter(embedding)
        found.update(dict.fromkeys(a.pipelines, a))
    if pipeline_class not in found:
        raise ParameterError(f"{where} holds a {pipeline_class}; motionlib loads {', '.join(found)} folders")
    return found[pipeline_class]
