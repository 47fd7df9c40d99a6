"""Whether the ρ / z_t optimisation passes checkpoint block activations.

Checkpointing keeps one tensor per block and recomputes the forward during backward: a third
more time per optimisation pass, for a fraction of the memory (random-weight CogVideoX-5B at 49
frames, 10 steps, H200: learn 21.1 s and 5.8 GB above the weights with it, 16.9 s and 46 GB
without; ``python -m benchmarks.phases``).
``"auto"`` turns it off when the activations fit comfortably in the free memory of the model's
device; on CUDA a pass that still runs out of memory is retried with checkpointing on (see
``motionlib.guidance.Guidance``), on a CPU there is no such retry, so the margin is wider. Under
sequential offload (``motionlib.offload``) ``"auto"`` is always on.
"""

from __future__ import annotations

import torch

from .errors import ParameterError
from .models.spec import ACTIVATION_FACTOR

CHOICES = ("auto", "on", "off")
MARGIN = {"cuda": 0.9, "cpu": 0.5}  # share of the free memory the estimate may take


def activation_bytes(model, blocks_with_grad: int) -> int:
    """Estimated activations one batch-1 optimisation pass keeps without checkpointing."""
    s = model.spec
    frames, rows, cols = s.grid
    tokens = frames * rows * cols + s.text_len
    # bytes kept per block for backward, per (token x hidden width x element size): the family's
    factor = ACTIVATION_FACTOR[s.embedding]
    return factor * tokens * s.heads * s.head_dim * model.dtype.itemsize * blocks_with_grad


def free_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device, or MemAvailable for the CPU; None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    return None


def free_for_pass(model) -> int | None:
    """Free memory of the model's device once the transformer is on it and, under model offload,
    the other components are off it (they are moved when the pass starts)."""
    free = free_bytes(model.device)
    placement = getattr(model, "placement", {})
    if free is None or getattr(model, "offload", "none") != "model":
        return free
    size = lambda m: sum(t.numel() * t.element_size() for t in m.parameters())  # noqa: E731
    for name, where in placement.items():
        if name == "transformer" and where != "device":
            free -= size(model.transformer)
        elif name != "transformer" and where == "device":
            free += size(getattr(model, name))
    return free


def check(setting: bool | str) -> None:
    if not isinstance(setting, bool) and setting not in CHOICES:
        raise ParameterError(f"checkpointing must be one of {', '.join(CHOICES)}, got {setting!r}")


def resolve(setting: bool | str, model, blocks: tuple[int, ...], *, truncate: bool = True, batch: int = 1) -> bool:
    """True to checkpoint: ``"on"``/True, ``"off"``/False, or ``"auto"`` by the estimate above for a
    pass that keeps the activations of the blocks up to the last guidance block in `blocks`
    (every block when the pass is not truncated there), for `batch` generations at once."""
    check(setting)
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        return setting == "on"
    if getattr(model, "offload", "none") == "sequential":
        return True  # streamed blocks: without checkpointing each block's weights stay for backward
    free = free_for_pass(model)
    if free is None:
        return True
    kept = max(blocks) + 1 if truncate else model.spec.num_layers
    return batch * activation_bytes(model, kept) > MARGIN.get(model.device.type, 0.5) * free
