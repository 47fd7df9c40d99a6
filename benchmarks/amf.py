"""Section 3: AMF memory and time, motion_flow (chunked, checkpointed) vs naive per-head maps."""

from __future__ import annotations

import torch

from .common import Config, Section, fmt_bytes, fmt_s, log, paired, peak_memory

HEADS, DIM = 48, 64  # CogVideoX-5B attention
GRID_5B = (13, 30, 45)  # latent frames, patch rows, patch cols at 49 x 480 x 720
NAIVE_LIMIT = 3.5e9  # measure the naive version only where its formula peak stays under this


def maps_bytes(heads: int, n: int) -> float:
    """The per-head maps themselves in bf16: heads * (F*S)^2 * 2 bytes."""
    return heads * n * n * 2.0


def naive_peak_formula(heads: int, n: int) -> float:
    """Peak of per_head_flow soft+backward in fp32 on the CPU: two [H, N, N] fp32 buffers live at once
    (the matmul output and its scaled copy; in backward the expanded head-mean grad and its scaled copy)."""
    return 2.0 * heads * n * n * 4


def _frac(a: float, b: float) -> str:
    r = a / b
    return f"{r:.3f} (1/{1 / r:.1f})" if r < 1 else f"{r:.2f}"


def _sizes(cfg: Config):
    if cfg.quick:
        return [(2, 8, 12)]
    return [(2, 8, 12), (3, 15, 22), (2, 30, 45), (4, 30, 45), GRID_5B]


def _time_sizes(cfg: Config):
    return [(2, 8, 12)] if cfg.quick else [(2, 8, 12), (3, 15, 22)]


def _check_agree() -> float:
    from motionlib.amf import motion_flow

    from .official import per_head_flow

    g = torch.Generator().manual_seed(1)
    f, r, c = 2, 8, 12
    q = torch.randn(HEADS, f * r * c, DIM, generator=g)
    k = torch.randn(HEADS, f * r * c, DIM, generator=g)
    a = motion_flow(q, k, num_frames=f, height=r, width=c)
    b = per_head_flow(q, k, num_frames=f, height=r, width=c)
    return float((a - b).abs().max())


def _timing(size, n_pairs):
    from motionlib.amf import amf_loss, motion_flow

    from .official import per_head_flow

    f, r, c = size
    n = f * r * c
    g = torch.Generator().manual_seed(0)
    q = torch.randn(HEADS, n, DIM, generator=g).requires_grad_(True)
    k = torch.randn(HEADS, n, DIM, generator=g).requires_grad_(True)
    ref = torch.randint(-3, 4, (f, f, r * c, 2), generator=g).float()

    def step(fn):
        def go():
            q.grad = k.grad = None
            amf_loss(fn(q, k, num_frames=f, height=r, width=c), ref).backward()
        return go

    return paired(step(motion_flow), step(per_head_flow), n=n_pairs)


def run(cfg: Config) -> Section:
    sec = Section("amf", "AMF memory and time: motion_flow vs per-head maps",
                  "motion_flow soft+backward peak <= 1/20 of the per-head maps (bf16) at the 5B size "
                  "(48 heads x 64, 30x45 patches, 13 latent frames)")
    diff = _check_agree()
    sec.notes.append(f"Correctness: motion_flow and the naive per-head AMF agree to {diff:.1e} (max abs, "
                     "patch units) on a 48-head 2x8x12 case.")

    time_rows = []
    for size in _time_sizes(cfg):
        n = size[0] * size[1] * size[2]
        log(f"amf: timing soft+backward at {n} tokens")
        p = _timing(size, cfg.pairs)
        time_rows.append((size, n, p))

    points = []
    for size in _sizes(cfg):
        f, r, c = size
        n = f * r * c
        log(f"amf: peak memory at {n} tokens ({f}x{r}x{c})")
        mf = peak_memory("amf", impl="motion_flow", heads=HEADS, dim=DIM, frames=f, rows=r, cols=c)
        naive, naive_kind = naive_peak_formula(HEADS, n), "formula"
        if naive <= NAIVE_LIMIT:
            naive = peak_memory("amf", impl="per_head", heads=HEADS, dim=DIM, frames=f, rows=r, cols=c)["peak_bytes"]
            naive_kind = "measured"
        points.append({"size": size, "tokens": n, "maps": maps_bytes(HEADS, n), "naive": naive,
                       "naive_kind": naive_kind, "mf": mf["peak_bytes"], "method": mf["method"],
                       "inputs": 2 * HEADS * n * DIM * 4})

    sec.headers = ["grid FxRxC", "tokens", "q+k inputs (fp32)", "per-head maps (bf16, formula)",
                   "naive per-head peak (fp32 CPU)", "motion_flow peak (measured)", "motion_flow / maps"]
    for p in points:
        f, r, c = p["size"]
        sec.rows.append([f"{f}x{r}x{c}", str(p["tokens"]), fmt_bytes(p["inputs"]), fmt_bytes(p["maps"]),
                         f"{fmt_bytes(p['naive'])} ({p['naive_kind']})", fmt_bytes(p["mf"]), _frac(p["mf"], p["maps"])])
    sec.tables.append((["grid FxRxC", "tokens", "time motion_flow / naive per-head (soft+backward)",
                        "motion_flow (context)", "naive (context)"],
                       [[f"{s[0]}x{s[1]}x{s[2]}", str(n), p.text(2), fmt_s(p.a_s), fmt_s(p.b_s)]
                        for s, n, p in time_rows]))

    calib = [p["naive"] / naive_peak_formula(HEADS, p["tokens"]) for p in points if p["naive_kind"] == "measured"]
    if calib:
        sec.notes.append("Naive formula = 2 x heads x N^2 x 4 B (two live fp32 [H, N, N] buffers); "
                         f"measured / formula = {', '.join(f'{x:.2f}' for x in calib)} where it was measured. "
                         f"Sizes whose formula exceeds {NAIVE_LIMIT / 1e9:.1f} GB are not run (marked formula).")
    sec.notes.append("Peak memory: each case in a fresh subprocess; increase of peak RSS over the inputs "
                     f"(method: {points[0]['method']}, see benchmarks/memprobe.py). It includes q/k gradients "
                     "and the head-concatenated copies of q/k; the inputs themselves are excluded.")
    five = [p for p in points if p["size"] == GRID_5B]
    if five:
        p = five[0]
        limit = p["maps"] / 20
        ok = p["mf"] <= limit
        sec.status = "met" if ok else "missed"
        sec.headline = (f"5B size ({p['tokens']} tokens): motion_flow soft+backward peak {fmt_bytes(p['mf'])} vs "
                        f"per-head maps {fmt_bytes(p['maps'])} (bf16): 1/{p['maps'] / p['mf']:.1f} "
                        f"(goal 1/20 = {fmt_bytes(limit)}: {'met' if ok else 'missed'}"
                        + ("" if ok else f", over by {fmt_bytes(p['mf'] - limit)} ({p['mf'] / limit:.2f}x)") + ")")
    else:
        sec.status = "not measured"
        sec.headline = (f"quick run: 5B size not measured (per-head maps there: "
                        f"{fmt_bytes(maps_bytes(HEADS, 13 * 30 * 45))} bf16, formula)")
    if time_rows:
        sec.headline += "; time ratio " + ", ".join(f"{n} tok: {p.ratio:.2f}" for _, n, p in time_rows)
    sec.extra = {"points": points}
    return sec


def plot(points: list[dict], path) -> str | None:
    """Log-log memory vs tokens; returns None, or why no plot was made."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: plot skipped (pip install matplotlib)"
    import numpy as np

    xs = np.geomspace(min(p["tokens"] for p in points), max(p["tokens"] for p in points), 100)
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    ax.plot(xs, maps_bytes(HEADS, xs), color="tab:red", label="per-head maps, bf16 (formula: H·N²·2 B)")
    ax.plot(xs, maps_bytes(HEADS, xs) / 20, color="tab:red", ls=":", label="goal: 1/20 of the per-head maps")
    ax.plot(xs, naive_peak_formula(HEADS, xs), color="tab:orange", ls="--",
            label="naive per-head soft+backward, fp32 (formula)")
    meas = [p for p in points if p["naive_kind"] == "measured"]
    ax.plot([p["tokens"] for p in meas], [p["naive"] for p in meas], "o", color="tab:orange",
            label="naive per-head soft+backward (measured)")
    ax.plot([p["tokens"] for p in points], [p["mf"] for p in points], "s-", color="tab:blue",
            label="motion_flow soft+backward (measured)")
    five = [p for p in points if p["size"] == GRID_5B]
    if five:
        p5 = five[0]
        ax.axvline(p5["tokens"], color="grey", lw=0.8)
        ax.annotate(f"CogVideoX-5B (13x30x45):\nmotion_flow {fmt_bytes(p5['mf'])}\nmaps {fmt_bytes(p5['maps'])} "
                    f"(1/{p5['maps'] / p5['mf']:.1f})", (p5["tokens"], p5["mf"]), xytext=(0.55, 0.12),
                    textcoords="axes fraction", fontsize=8, bbox={"fc": "white", "ec": "grey", "alpha": 0.9},
                    arrowprops={"arrowstyle": "->", "color": "grey"})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("video tokens N = F·S (48 heads x 64 dims)")
    ax.set_ylabel("bytes (peak increase over inputs)")
    ax.set_title("AMF memory: motion_flow vs per-head maps (CPU)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
