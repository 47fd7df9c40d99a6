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
        out["bf16 autocast"] = {"context": lambda: torch.autocast("cpu", dtype=torch.bfloat16)}
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

    def steps_of(tr, threads: int, context=None):
        def go():
            torch.set_num_threads(threads)
            with (context() if context else contextlib.nullcontext()):
                for _ in range(steps):
                    tr.train_step()
        return go

    baseline = steps_of(base, cores)
    rows = []
    try:
        for name, c in candidates(cfg.quick).items():
            log(f"train: {name} vs today's trainer")
            tr = _trainer(c.get("batch", BATCH))
            if c.get("compile"):
                tr.net["transformer"] = torch.compile(tr.net["transformer"])
            p = paired(steps_of(tr, c["threads"], c.get("context")), baseline, n=pairs, warmup=1)
            batch = c.get("batch", BATCH)
            rate = steps * batch / p.a_s
            speed = (steps * batch / p.a_s) / (steps * BATCH / p.b_s)  # per-sample rate ratio, medians
            rows.append([name, f"{rate:.2f}", f"{speed:.2f} (time ratio {p.text(2)})", fmt_s(p.a_s / steps)])
        base_rate = steps * BATCH / p.b_s
        rng = __import__("numpy").random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(steps):
            data.sample_batch(rng, BATCH, vary_words=True)
        data_s = (time.perf_counter() - t0) / steps
    finally:
        torch.set_num_threads(threads0)
    sec.rows = [["today's trainer", f"{base_rate:.2f}", "1", fmt_s(BATCH / base_rate)], *rows]
    faster = [r for r in rows if float(r[2].split(" ")[0]) > 1.0]
    sec.status = "met"
    sec.headline = (f"today's trainer {base_rate:.1f} samples/s; " +
                    (f"faster: {', '.join(r[0] for r in faster)}" if faster else "no candidate is faster"))
    sec.notes.append(f"Each candidate ran {steps} steps per timing, {pairs} pairs alternating with today's "
                     "trainer (after one unmeasured pair), on the committed weights. Data generation takes "
                     f"{fmt_s(data_s)} per batch of {BATCH} ({100 * data_s * base_rate / BATCH:.1f}% of a step): "
                     "generating data off the main thread cannot gain more than that.")
    return sec
