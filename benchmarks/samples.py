"""Section: the cost of ``learn --samples N`` (one shared ρ on N generations in one batched forward)."""

from __future__ import annotations

from .common import Config, Section, demo_model_name, disc_video, fmt_bytes, fmt_s, log, model, paired, peak_memory

SAMPLES = (2, 4)


def settings(cfg: Config) -> dict:
    # fewer guided and Adam steps than the defaults: the cost per Adam step is what N changes
    if cfg.quick:
        return {"steps": 6, "guided_fraction": 0.34, "opt_steps": 1}
    return {"steps": 10, "guided_fraction": 0.4, "opt_steps": 3}


def run(cfg: Config) -> Section:
    from motionlib.learn import learn

    name = demo_model_name()
    m = model(name)
    video = disc_video(m.spec)
    s = settings(cfg)
    sec = Section("samples", f"learn --samples N vs N = 1 ({name})", "cost stated in --help and docs/learning-options.md")
    sec.headers = ["N", "time / N=1", "time (context)", "peak memory (RSS increase)", "memory / N=1"]
    kw = dict(prompt="a red disc", seed=0, **s)
    log("samples: peak memory of N = 1 (subprocess)")
    mem1 = peak_memory("learn", impl="learn", model=name, samples=1, **s)["peak_bytes"]
    for n in SAMPLES:
        log(f"samples: timing N = {n} vs N = 1")
        p = paired(lambda: learn(m, video, samples=n, **kw), lambda: learn(m, video, samples=1, **kw),
                   n=cfg.pairs_fine)
        mem = peak_memory("learn", impl="learn", model=name, samples=n, **s)["peak_bytes"]
        if n == SAMPLES[0]:
            sec.rows.append(["1", "1", fmt_s(p.b_s), fmt_bytes(mem1), "1"])
        sec.rows.append([str(n), p.text(2), fmt_s(p.a_s), fmt_bytes(mem), f"{mem / mem1:.2f}"])
    sec.headline = "; ".join(f"N={r[0]}: {r[1].split(' ')[0]}x time, {r[4]}x memory" for r in sec.rows[1:])
    sec.notes.append(f"{name}, {s['steps']} steps, guided fraction {s['guided_fraction']}, {s['opt_steps']} Adam "
                     "steps per guided step; the N generations (seeds 0..N-1) go through the transformer "
                     "as one batch per Adam step and per denoising step.")
    return sec
