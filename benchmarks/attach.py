"""Section: what ``motionlib.attach`` costs a diffusers pipeline on its unguided steps.

A CogVideoXPipeline on the demo model's parts renders with a motion attached (strength 1, injection on)
and without, alternately; each call's per-step times come from ``callback_on_step_end``, and the ratio
compares the steps after the motion's guided fraction (where attach's processors only ask whether the
pass is guided and run diffusers' own processor). ``python -m benchmarks --only attach``.
"""

from __future__ import annotations

import statistics
import time

from .common import Config, Pair, Section, demo_model_name, disc_video, fmt_s, log, model

PROMPT = "a blue disc on a dark background"


def run(cfg: Config) -> Section:
    import torch
    from diffusers import CogVideoXPipeline

    import motionlib
    from motionlib.guidance import guided_step_count
    from motionlib.learn import learn

    name = demo_model_name()
    m = model(name)
    s = m.spec
    pairs = 20 if cfg.quick else 24
    sec = Section("attach", f"attach: unguided steps with and without a motion ({name})",
                  "per-step time of unguided steps attached / not attached <= 1.02")
    log(f"attach: learning an asset on {name}")
    asset = learn(m, disc_video(s), prompt="a red disc", seed=0, opt_steps=2, samples=1).asset
    steps = s.num_inference_steps
    n = guided_step_count(steps, asset.guidance.guided_fraction)
    # the demo model's word-embedding text encoder is no diffusers component: give the pipeline the
    # model's own embeddings (tiny presets: their T5 works as is, the same call serves both)
    pipe = CogVideoXPipeline(tokenizer=m.tokenizer, text_encoder=None, vae=m.vae, transformer=m.transformer,
                             scheduler=m.new_scheduler())
    pipe.set_progress_bar_config(disable=True)
    embeds = {"prompt_embeds": m.encode_prompt([PROMPT]), "negative_prompt_embeds": m.encode_prompt([""])}

    def unguided_seconds() -> float:
        ends: list[float] = []

        def on_step(p, i, t, kw):
            ends.append(time.perf_counter())
            return {}

        pipe(**embeds, num_frames=s.num_frames, height=s.height, width=s.width, num_inference_steps=steps,
             guidance_scale=s.guidance_scale, use_dynamic_cfg=s.use_dynamic_cfg, output_type="latent",
             generator=torch.Generator().manual_seed(0), max_sequence_length=s.text_len, callback_on_step_end=on_step)
        return ends[-1] - ends[n - 1]  # steps n .. steps-1: from the end of the last guided step

    used = []

    def attached() -> float:
        with motionlib.attach(pipe, asset) as handle:  # attaching itself is outside the timed steps
            out = unguided_seconds()
        used.append(len(handle.used))
        return out

    def measure(a, b, count: int) -> Pair:
        a(), b()  # warm-up pair
        ta, tb = [], []
        for i in range(count):
            first, second = (a, b) if i % 2 == 0 else (b, a)
            x, y = first(), second()
            ta.append(x if i % 2 == 0 else y)
            tb.append(y if i % 2 == 0 else x)
        return Pair.from_times(ta, tb)

    log(f"attach: {pairs} pairs, attached vs plain")
    head = measure(attached, unguided_seconds, pairs)
    assert set(used) == {n}, used  # every attached call guided exactly its n steps
    rows = [("attached / plain (strength 1, injection on)", head)]
    if not cfg.quick:
        log("attach: A/A control, plain vs plain")
        rows.append(("A/A control: plain / plain (noise floor)", measure(unguided_seconds, unguided_seconds, 12)))
    per_step = 1 / (steps - n)
    sec.headers = ["case", "unguided-step time ratio", "per unguided step, A (context)", "per unguided step, B"]
    sec.rows = [[label, p.text(3), fmt_s(p.a_s * per_step), fmt_s(p.b_s * per_step)] for label, p in rows]
    met = head.ratio <= 1.02
    sec.status = "met" if met else "missed"
    sec.headline = (f"{head.ratio:.3f} per unguided step attached / plain "
                    f"({'met' if met else f'missed by {(head.ratio - 1.02) * 100:.1f} points'}; "
                    f"median of {head.n} interleaved pairs)")
    spread = statistics.median(abs(x / y - 1) for x, y in zip(head.ta, head.tb))
    sec.notes.append(f"{name}, CogVideoXPipeline on its components, {steps} steps of which the motion guides "
                     f"the first {n} (guided fraction {asset.guidance.guided_fraction}); timed: the {steps - n} "
                     "steps after them, from callback_on_step_end timestamps, so the guided steps' reference "
                     "pass and attaching itself are not in the ratio.")
    sec.notes.append(f"Pairs alternate their order (A B, B A, ...) after one warm-up pair; the median pair "
                     f"differs from 1 by {spread * 100:.1f}% either way on this shared machine.")
    return sec
