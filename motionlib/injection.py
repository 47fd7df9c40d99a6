"""KV injection (paper §5.1, "Injection" baseline, applied by DiTFlow at block 0).

At a guided step with timestep t, the reference latent is noised to t with the run's own initial
noise and passed through the transformer (base ρ, the run's prompt) up to the injection block(s);
the video keys and values it produces there replace the generation's in that block, for the
optimisation passes and for both CFG branches of the denoising pass. An image-to-video run's
reference pass is conditioned on the run's own first frame.
"""

from __future__ import annotations

import torch

from .transformer import Controls


def reference_kv(run, ref_latent: torch.Tensor, t: torch.Tensor, blocks: tuple[int, ...]) -> dict:
    """{block: (k, v)} video keys/values of the noised reference at timestep `t` ([N, ...]: one per
    generation of the run, each noised with that generation's initial noise)."""
    if not blocks:
        return {}
    model, sched = run.model, run.scheduler
    ref = ref_latent.to(device=run.init_noise.device, dtype=run.init_noise.dtype)
    noisy = sched.add_noise(ref, run.init_noise, t.reshape(1))
    noisy = sched.scale_model_input(noisy, t)
    controls = Controls(rho=run.base, record_kv=tuple(blocks), stop_at=max(blocks))
    with torch.no_grad(), model.on_device(model.transformer) as tr:
        model.family.forward(tr, noisy, run.cond_embeds, t.expand(noisy.shape[0]), controls,
                             image=getattr(run, "image", None))
    return {b: controls.captured[("kv", b)] for b in blocks}
