"""Which weights a motion was learnt with (issue 25): a fingerprint of a transformer's parameters.

A motion's ρ_t are optimised against one set of transformer weights; on a retrained or fine-tuned
model of the same architecture they still load and run, but need not move the same way. ``learn``
records ``fingerprint(model.transformer)`` in the asset; ``apply`` warns (``OtherWeights``) when the
model it is given has another; ``doctor`` lists the motions whose model's installed weights differ.

The fingerprint is SHA-256 over every parameter and buffer in name order: its name, its shape and
``SAMPLES`` evenly spaced values rounded to bfloat16. That makes it cheap for a 5B model (one small
gather per tensor, no full read) and the same for the fp32 and bf16 copies of the same weights, while
a retrain, a fine-tune or an adapter (a LoRA adds its own parameters) changes it. A change confined to
values between the samples of every tensor goes unseen: this tells weights apart, it does not verify
them.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["SAMPLES", "OtherWeights", "fingerprint", "short", "mismatch"]

SAMPLES = 4096  # values read from each tensor
_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


class OtherWeights(UserWarning):
    """A motion applied with transformer weights other than those it was learnt with."""


def fingerprint(module: torch.nn.Module, *, cached: bool = True) -> str:
    """Hex fingerprint of a module's weights (see the module docstring); cached per module object,
    so a caller that changes weights in place passes ``cached=False``."""
    if cached and module in _CACHE:
        return _CACHE[module]
    import torch

    h = hashlib.sha256(b"motionlib-weights-v1")
    with torch.no_grad():
        for name, t in sorted({**dict(module.named_parameters()), **dict(module.named_buffers())}.items()):
            flat = t.detach().reshape(-1)
            n = flat.numel()
            idx = torch.linspace(0, max(n - 1, 0), min(n, SAMPLES), device=flat.device).round().long()
            values = flat[idx].to(torch.bfloat16).float().cpu() if t.is_floating_point() else flat[idx].cpu()
            h.update(f"{name}:{tuple(t.shape)}:{values.dtype};".encode())
            h.update(values.contiguous().numpy().tobytes())
    out = h.hexdigest()
    _CACHE[module] = out
    return out


def short(fp: str | None) -> str:
    """The first 12 hex digits, as messages show a fingerprint ("unknown" for None)."""
    return fp[:12] if fp else "unknown"


def mismatch(learnt: str | None, installed: str, model_name: str, source: str | None = None,
             motion: str | None = None) -> str | None:
    """The one-line warning for a motion learnt with weights `learnt` used with `installed` (None when
    they agree, or when the motion predates fingerprints: unknown weights are not warned about)."""
    if learnt is None or learnt == installed:
        return None
    import shlex

    clip = shlex.quote(source) if source else "CLIP"
    name = shlex.quote(motion) if motion else "NAME"
    what = f"motion '{motion}'" if motion else "this motion"
    return (f"{what} was learnt with other {model_name} weights ({short(learnt)}; these are {short(installed)}), "
            f"so it may not move as it did; learn it again from its reference clip for these weights: "
            f"motionlib learn {clip} --name {name} --model {shlex.quote(model_name)} --force")
