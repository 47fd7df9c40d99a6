"""Section: the shapes trainer's samples/s, each candidate speed-up side by side with today's trainer.

Issue 24 asks for the fastest trainer this machine allows before the training campaign. Every candidate
runs `Trainer.train_step` on the committed weights for a few steps and is paired with the baseline
(today's trainer: batch 16, both cores), alternating A and B so that drift hits both. A candidate is
adopted only if it is faster; the verdict names the fastest. Data generation is timed on its own: if it
is a small share of a step, moving it off the main thread cannot pay.
"""

from __future__ import annotations

import contextlib
import os
import time

from .common import Config, Section, fmt_s, log, paired

BATCH = 16


def _trainer(batch: int = BATCH):
    from motionlib.demo import train
    from motionlib.demo.model import DEFAULT_WEIGHTS

    args = ["--out", os.devnull, "--val-size", "0", "--batch-size", str(batch), "--seed", "0"]
    if DEFAULT_WEIGHTS.is_file():
        args += ["--init", str(DEFAULT_WEIGHTS)]
    return train.Trainer(train.parse_args(args))


def candidates(quick: bool) -> dict[str, dict]:
    """name -> {threads, batch, context (a factory of a context manager), compile}."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cores = os.cpu_count() or 1
    out = {
        "one thread": {"threads": 1},
        "batch 32": {"batch": 32},
        "math attention (no flash kernel)": {"context": lambda: sdpa_kernel(SDPBackend.MATH)},
    }
    if not quick:  # slow to warm up or to run: the full section only
        out["bf16 autocast"] = {"context": lambda: torch.autocast("cpu", dtype=torch.bfloat16), "steps": 1}
        out["torch.compile (inductor)"] = {"compile": True}
    for v in out.values():
        v.setdefault("threads", cores)
    return out


def run(cfg: Config) -> Section:
    import torch

    from motionlib.demo import data

    cores = os.cpu_count() or 1
    steps = 2 if cfg.quick else 4
    pairs = 2 if cfg.quick else 3
    sec = Section("train", f"shapes trainer samples/s: candidates vs today's trainer (batch {BATCH}, "
                           f"{cores} threads)", "the fastest trainer this machine allows (issue 24)")
    sec.headers = ["candidate", "samples/s", "speed / today's", "step (context)"]
    threads0 = torch.get_num_threads()
    base = _trainer()

    def steps_of(tr, threads: int, n: int, context=None):
        def go():
            torch.set_num_threads(threads)
            with (context() if context else contextlib.nullcontext()):
                for _ in range(n):
                    tr.train_step()
        return go

    rows, base_rates = [], []
    try:
        for name, c in candidates(cfg.quick).items():
            log(f"train: {name} vs today's trainer")
            n, batch = c.get("steps", steps), c.get("batch", BATCH)
            tr = _trainer(batch)
            if c.get("compile"):
                tr.net["transformer"] = torch.compile(tr.net["transformer"])
                for _ in range(2):  # compiling forward and backward: minutes, not counted
                    steps_of(tr, c["threads"], 1)()
            p = paired(steps_of(tr, c["threads"], n, c.get("context")), steps_of(base, cores, n), n=pairs, warmup=1)
            # samples/s of each side from its median; the speed-up per pair (time per sample), its median and range
            per_pair = [(n * batch / a) / (n * BATCH / b) for a, b in zip(p.ta, p.tb)]
            base_rates.append(n * BATCH / p.b_s)
            rows.append([name, f"{n * batch / p.a_s:.2f}", f"{sorted(per_pair)[len(per_pair) // 2]:.2f} "
                         f"(pairs {min(per_pair):.2f}-{max(per_pair):.2f}, n={len(per_pair)})", fmt_s(p.a_s / n),
                         min(per_pair) > 1.0])
        base_rate = sorted(base_rates)[len(base_rates) // 2]
        rng = __import__("numpy").random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(steps):
            data.sample_batch(rng, BATCH, vary_words=True)
        data_s = (time.perf_counter() - t0) / steps
    finally:
        torch.set_num_threads(threads0)
    faster = [r[0] for r in rows if r[4]]  # faster in every pair: a speed-up, not noise
    sec.rows = [["today's trainer (median over the pairings)", f"{base_rate:.2f}", "1", fmt_s(BATCH / base_rate)],
                *(r[:4] for r in rows)]
    sec.status = "met"
    sec.headline = (f"today's trainer {base_rate:.1f} samples/s; " +
                    (f"faster in every pair: {', '.join(faster)}" if faster else "no candidate is faster in every pair"))
    sec.notes.append(f"Each candidate ran {steps} steps per timing, {pairs} pairs alternating with today's "
                     "trainer (after one unmeasured pair), on the committed weights. Data generation takes "
                     f"{fmt_s(data_s)} per batch of {BATCH} ({100 * data_s * base_rate / BATCH:.1f}% of a step): "
                     "generating data off the main thread cannot gain more than that.")
    return sec
