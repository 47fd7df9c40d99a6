"""Section: the shapes-i2v trainer (``--i2v``) against the plain shapes trainer, samples/s, side by side.

Issue 29 part 4 budgets shapes-i2v's training in CPU-minutes: this says what a minute buys compared with the
plain trainer. Both run ``Trainer.train_step`` from the committed shapes weights (the i2v one widened with zero
image channels) at batch 16 on one thread (the training run's setting), alternating A and B so that drift
and neighbours on the machine hit both. The i2v step differs by the image latents (one more latent tensor on
channels: the patch embedding's input doubles, nothing else grows) and the image-drop draw.
"""

from __future__ import annotations

import os

from .common import Config, Section, fmt_s, log, paired

BATCH = 16
THREADS = 1


def _trainer(i2v: bool):
    from motionlib.demo import train
    from motionlib.demo.model import DEFAULT_WEIGHTS

    args = ["--out", os.devnull, "--val-size", "0", "--batch-size", str(BATCH), "--seed", "0"]
    if DEFAULT_WEIGHTS.is_file():
        args += ["--init", str(DEFAULT_WEIGHTS)]
    return train.Trainer(train.parse_args(args + (["--i2v"] if i2v else [])))


def run(cfg: Config) -> Section:
    import torch

    steps = 2 if cfg.quick else 6
    pairs = 2 if cfg.quick else 5
    sec = Section("train_i2v", f"shapes-i2v trainer (--i2v) vs the shapes trainer, samples/s (batch {BATCH}, "
                               f"{THREADS} thread)", "what a CPU-minute of shapes-i2v training buys (issue 29)")
    sec.headers = ["trainer", "samples/s", "time per sample / shapes'", "step (context)"]
    threads0 = torch.get_num_threads()
    try:
        torch.set_num_threads(THREADS)
        plain, i2v = _trainer(False), _trainer(True)

        def steps_of(tr):
            def go():
                for _ in range(steps):
                    tr.train_step()
            return go

        log("train_i2v: --i2v vs plain")
        p = paired(steps_of(i2v), steps_of(plain), n=pairs, warmup=1)
    finally:
        torch.set_num_threads(threads0)
    rate_a, rate_b = steps * BATCH / p.a_s, steps * BATCH / p.b_s
    sec.rows = [["shapes (plain)", f"{rate_b:.2f}", "1", fmt_s(p.b_s / steps)],
                ["shapes-i2v (--i2v)", f"{rate_a:.2f}", p.text(3), fmt_s(p.a_s / steps)]]
    sec.status = "met"
    sec.headline = f"--i2v {rate_a:.2f} samples/s, plain {rate_b:.2f}: time per sample ratio {p.text(3)}"
    sec.notes.append(f"{steps} steps per timing, {pairs} pairs alternating (after one unmeasured pair), "
                     f"{THREADS} thread, from the committed shapes weights; the ratio is the median of the per-pair "
                     "time ratios (i2v / plain). Wall-clock: other processes on the machine slow both sides alike.")
    return sec
