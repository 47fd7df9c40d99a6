"""Section 2: motionlib.learn vs the official-style DiTFlow run (benchmarks/official.py)."""

from __future__ import annotations

from .common import Config, Section, disc_video, fmt_bytes, fmt_s, log, model, paired, peak_memory

MODEL = "tiny-5b"


def settings(cfg: Config) -> dict:
    if cfg.quick:
        return {"steps": 10, "guided_fraction": 0.2, "opt_steps": 2}
    return {"steps": 20, "guided_fraction": 0.2, "opt_steps": 5}


def run(cfg: Config) -> Section:
    from motionlib.learn import learn

    from .official import official_learn

    s = settings(cfg)
    m = model(MODEL)
    video = disc_video(m.spec)
    sec = Section("learn", "learn vs official-style DiTFlow (tiny-5b)", "learn <= 0.35 x official-style time")
    kw = dict(prompt="a red disc", seed=0, **s)
    log("learn: timing learn vs official-style")
    p = paired(lambda: learn(m, video, **kw), lambda: official_learn(m, video, **kw), n=cfg.pairs)
    log("learn: peak memory (subprocesses)")
    mem_l = peak_memory("learn", impl="learn", model=MODEL, **s)["peak_bytes"]
    mem_o = peak_memory("learn", impl="official", model=MODEL, **s)["peak_bytes"]
    sec.headers = ["measure", "learn / official-style", "learn (context)", "official-style (context)"]
    sec.rows = [["time", p.text(3), fmt_s(p.a_s), fmt_s(p.b_s)],
                ["peak memory (RSS increase)", f"{mem_l / mem_o:.2f}", fmt_bytes(mem_l), fmt_bytes(mem_o)]]
    ok = p.ratio <= 0.35
    sec.status = "met" if ok else "missed"
    sec.headline = (f"time ratio {p.ratio:.3f} (goal 0.35: "
                    + ("met" if ok else f"missed by {p.ratio - 0.35:.3f}, {p.ratio / 0.35:.2f}x the goal")
                    + f"); peak memory ratio {mem_l / mem_o:.2f}")
    sec.notes.append(f"Settings: {s['steps']} steps, guided fraction {s['guided_fraction']}, opt_steps "
                     f"{s['opt_steps']}, the model's guidance block and KV injection; seed 0.")
    sec.notes.append("Official-style = the same Guidance/loss/sampler with per-head AMF maps, no truncation "
                     "after the guidance block, all steps rendered and decoded (benchmarks/official.py). Both "
                     "keep motionlib's block activation checkpointing.")
    sec.notes.append("tiny-5b has 2 heads and 288 tokens, so the per-head maps cost little here; the memory "
                     "ratio at the real size is section 3's (AMF memory).")
    return sec
