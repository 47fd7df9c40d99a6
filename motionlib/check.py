"""A quality score per motion (issue 24): one zero-shot render on a new seed, read back as an AMF and
compared with the reference AMF the asset stores.

The score is model-agnostic: it needs nothing but the model that learnt the motion (no tracker, no
knowledge of what the clip shows), so it works on real models too. For every frame pair i < j it takes
the mean displacement of each AMF (eq. 4's hard AMF, weighted by the peak attention probability over
the tokens the confidence threshold keeps) and scores the cosine between the two; pairs whose reference
barely moves are left out. 1: the render moves as the reference does in every frame pair, 0: unrelated,
negative: the other way. A motion that keeps only the drift scores low on the pairs across its turns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MIN_SHIFT = 0.5  # patches: a frame pair whose reference moves less than this is not scored


def pair_motion(amf: torch.Tensor, confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """[F, F, 2]: each frame pair's confidence-weighted mean displacement (patch units) over the tokens
    whose peak attention probability is at least `threshold` (zero where none is)."""
    w = confidence.float() * (confidence.float() >= threshold)
    total = w.sum(-1, keepdim=True)
    mean = (amf.float() * w[..., None]).sum(-2) / total.clamp_min(1e-12)
    return torch.where(total > 0, mean, torch.zeros_like(mean))


def amf_agreement(ref_amf: torch.Tensor, ref_conf: torch.Tensor, amf: torch.Tensor, conf: torch.Tensor, *,
                  threshold: float, min_shift: float = MIN_SHIFT) -> tuple[float, int]:
    """Mean over frame pairs i < j of cos(reference pair motion, render pair motion), and the pairs used.

    Pairs where the reference's mean displacement is shorter than `min_shift` patches are skipped; a render
    pair that does not move scores 0. NaN (0 pairs) for a reference that does not move."""
    a = pair_motion(ref_amf, ref_conf, threshold)
    b = pair_motion(amf, conf, threshold)
    f = a.shape[0]
    i, j = torch.triu_indices(f, f, offset=1)
    a, b = a[i, j], b[i, j]
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    use = na >= min_shift
    if not bool(use.any()):
        return float("nan"), 0
    cos = torch.where(nb[use] > 0, (a[use] * b[use]).sum(-1) / (na[use] * nb[use]).clamp_min(1e-12),
                      torch.zeros_like(na[use]))
    return float(cos.mean()), int(use.sum())


@dataclass(frozen=True)
class CheckResult:
    score: float  # amf_agreement of the render, NaN for a motionless reference
    pairs: int  # frame pairs scored
    seed: int  # the render's seed
    block: int  # the guidance block whose AMF was compared

    def to_dict(self) -> dict:
        return {"score": None if math.isnan(self.score) else round(self.score, 4), "pairs": self.pairs,
                "seed": self.seed, "block": self.block}


def check_motion(model, asset, *, seed: int | None = None, prompt: str | None = None, steps: int | None = None,
                 progress=None, image=None) -> CheckResult:
    """Render `asset` zero-shot on `seed` (default: the learn seed + 1, a seed it was not learnt on) with
    its learn prompt (an image-to-video motion: from the first frame `image`), and score the render's AMF
    against the stored reference AMF."""
    from .apply import apply
    from .learn import reference_motion

    g = asset.guidance
    block = asset.blocks[0]
    seed = int(asset.params.get("seed", 0)) + 1 if seed is None else seed
    prompt = asset.params.get("prompt", "") if prompt is None else prompt
    video = apply(model, asset, prompt, seed=seed, steps=steps, progress=progress, image=image)  # [F, 3, H, W]
    got = reference_motion(model, video * 2 - 1, blocks=(block,), temperature=g.temperature)
    score, pairs = amf_agreement(asset.ref_amf[block], asset.ref_confidence[block], got.amf[block],
                                 got.confidence[block], threshold=g.confidence)
    return CheckResult(score, pairs, seed, block)
