"""Progress events: what the engine tells a ``progress`` callback during long work (typed, torch-free).

``learn``, ``transfer``, ``apply`` and ``generate`` take ``progress: ProgressFn``; it is called with one
of the small frozen dataclasses below. ``phase`` names the kind, so a consumer may dispatch on either
the type or ``event.phase``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Union

__all__ = ["ReferenceExtracted", "OptimiseStep", "DenoiseStep", "Stopped", "ProgressEvent", "ProgressFn"]


@dataclass(frozen=True)
class ReferenceExtracted:
    """The reference clip's motion (AMF) has been extracted; optimisation starts next."""

    phase: ClassVar[str] = "reference"


@dataclass(frozen=True)
class OptimiseStep:
    """Adam step ``k`` of ``opt_steps`` at guided denoising step ``step`` of ``total`` (both 1-based)."""

    step: int
    total: int
    k: int
    opt_steps: int
    loss: float
    lr: float

    phase: ClassVar[str] = "optimise"

    @property
    def done(self) -> int:
        """Adam steps finished so far, over all guided steps."""
        return (self.step - 1) * self.opt_steps + self.k


@dataclass(frozen=True)
class DenoiseStep:
    """Denoising step ``step`` of ``total`` (1-based) is finished."""

    step: int
    total: int

    phase: ClassVar[str] = "denoise"


@dataclass(frozen=True)
class Stopped:
    """A step hook ended the denoising loop before step ``step + 1`` of ``total``, for ``reason``
    (learn: ρ is learnt after the last guided step, the rest of the render is not needed)."""

    step: int
    total: int
    reason: str

    phase: ClassVar[str] = "stopped"


ProgressEvent = Union[ReferenceExtracted, OptimiseStep, DenoiseStep, Stopped]
ProgressFn = Callable[[ProgressEvent], None]
