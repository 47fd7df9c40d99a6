"""Section 7: GPU (only with CUDA): AMF at the 5B size on the GPU, bf16 inputs.

Peak memory is torch.cuda.max_memory_allocated above the inputs; time is a side-by-side ratio
against the naive per-head AMF at a size where both fit.
"""

from __future__ import annotations

import torch

from .amf import GRID_5B, HEADS, DIM, maps_bytes
from .common import Config, Section, fmt_bytes, fmt_s, paired


def _inputs(size, dtype=torch.bfloat16):
    f, r, c = size
    n = f * r * c
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(HEADS, n, DIM, generator=g, device="cuda", dtype=dtype).requires_grad_(True)
    k = torch.randn(HEADS, n, DIM, generator=g, device="cuda", dtype=dtype).requires_grad_(True)
    ref = torch.randint(-3, 4, (f, f, r * c, 2), generator=g, device="cuda").float()
    return q, k, ref


def _step(fn, q, k, ref, size):
    from motionlib.amf import amf_loss

    f, r, c = size

    def go():
        q.grad = k.grad = None
        amf_loss(fn(q, k, num_frames=f, height=r, width=c), ref).backward()
        torch.cuda.synchronize()
    return go


def _peak(fn, size) -> int:
    q, k, ref = _inputs(size)
    go = _step(fn, q, k, ref, size)
    go()  # warm-up
    q.grad = k.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    go()
    peak = torch.cuda.max_memory_allocated() - base
    del q, k, ref
    torch.cuda.empty_cache()
    return peak


def run(cfg: Config) -> Section:
    from motionlib.amf import motion_flow

    from .official import per_head_flow

    sec = Section("gpu", "GPU: AMF at the 5B size", "motion_flow soft+backward <= 1/20 of the per-head maps "
                  "(bf16) at the 5B size, on the GPU")
    if not torch.cuda.is_available():
        sec.status = "not measured"
        sec.headline = "not measured: no GPU in this run"
        return sec
    name = torch.cuda.get_device_name()
    f, r, c = GRID_5B
    n = f * r * c
    mf = _peak(motion_flow, GRID_5B)
    maps = maps_bytes(HEADS, n)
    small = (2, 30, 45)
    q, k, ref = _inputs(small)
    p = paired(_step(motion_flow, q, k, ref, small), _step(per_head_flow, q, k, ref, small), n=cfg.pairs)
    del q, k, ref
    torch.cuda.empty_cache()
    ok = mf <= maps / 20
    sec.status = "met" if ok else "missed"
    sec.headers = ["measure", "value", "context"]
    sec.rows = [["motion_flow soft+backward peak at 13x30x45 (bf16 inputs)", fmt_bytes(mf),
                 f"per-head maps {fmt_bytes(maps)}: 1/{maps / mf:.1f}"],
                ["time motion_flow / per-head at 2x30x45", p.text(2), f"{fmt_s(p.a_s)} vs {fmt_s(p.b_s)}"]]
    sec.headline = f"{name}: 5B-size peak {fmt_bytes(mf)} = 1/{maps / mf:.1f} of the per-head maps ({sec.status})"
    sec.extra = {"device": name}
    return sec
