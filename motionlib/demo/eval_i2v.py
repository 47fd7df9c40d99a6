"""Evaluation of the shapes-i2v demo model: first-frame fidelity and direction from other first frames.

    motionlib eval --model shapes-i2v --weights RUN            # a training run folder, checkpoint or weights file
    motionlib eval --model shapes-i2v --random --quick         # random (untrained) weights: the numbers, no meaning

Everything here *measures*; nothing asserts. For each trajectory family (linear and arc by default) and
held-out reference clip (``eval.reference_clip``: a red disc), a motion is learnt on shapes-i2v (ρ mode,
seed ``LEARN_SEED``, conditioned on the clip's own first frame, as ``motionlib learn`` does), then for
each other colour and render seed a **first frame that puts the disc elsewhere** is taken from another
held-out clip (seed ``FRAME_SEED_BASE`` + ...; its disc at least ``MIN_OFFSET_PX`` from the reference's
first position) and rendered two ways from it:

``plain``
    plain image-to-video generation (``generate(..., image=)``): its direction against the reference should
    be low (no motion given).
``zero_shot``
    the stored motion applied zero-shot (``apply(..., image=)``).

Per render: ``direction`` (``metrics.render_direction``: mean step cosine of the disc's track against the
reference's; **every render counts**: one with too few usable steps, no disc or a disc that does not move,
scores 0), ``segment_direction`` and ``present`` as in ``motionlib.demo.eval``, and ``first_frame_psnr``:
the PSNR (dB, uint8, ``metrics.psnr``) of the render's own decoded first frame against the given image
(nothing is pasted: the model must reproduce it). Goals (issue 29): first-frame PSNR >= 30 dB (the
mean over every render), zero-shot direction >= 0.8, plain direction <= 0.2.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import data
from .eval import LEARN_SEED, _mean, aggregate, checks as _checks, fmt, reference_clip, render_record, saved, verdicts
from .metrics import psnr, to_uint8

FRAME_SEED_BASE = 2_000_000  # clips whose first frames are rendered from: apart from training and eval seeds
MIN_OFFSET_PX = 6.0  # such a first frame's disc is at least this far from the reference's first position
I2V_TRAJECTORIES = ("linear", "arc")
METHODS = ("plain", "zero_shot")
THRESHOLDS = {  # issue 29: (comparison, value)
    "first_frame_psnr": (">=", 30.0),  # mean over every render, plain and zero-shot
    "zero_shot.direction": (">=", 0.8),
    "plain.direction": ("<=", 0.2),
}


@dataclass
class I2VEvalConfig:
    seeds: tuple[int, ...] = (0, 1)
    trajectories: tuple[str, ...] = I2V_TRAJECTORIES
    clips: int = 2  # reference clips per family, each learnt once
    ref_colour: str = "red"
    targets: int = 3  # other colours, each from its own first frame: clips x targets x seeds renders per method
    steps: int | None = None
    overrides: dict = field(default_factory=dict)
    out_dir: Path | None = None
    quick: bool = False

    @classmethod
    def make(cls, quick: bool = False, **kw) -> "I2VEvalConfig":
        kw = {k: v for k, v in kw.items() if v is not None}
        if quick:
            kw = {"seeds": (0,), "trajectories": ("linear",), "clips": 1, "targets": 1, "quick": True, **kw}
        return cls(**kw)


def other_first_frame(fam: str, colour: str, index: int, avoid: np.ndarray):
    """(uint8 [3, H, W] frame, its disc centre, seed): the first frame of a held-out `fam` clip of `colour`
    whose disc starts at least MIN_OFFSET_PX from `avoid` (the first seed from FRAME_SEED_BASE + 100 index)."""
    seed = FRAME_SEED_BASE + 100 * index
    while True:
        frames, _, meta = data.make_clip(seed, color=colour, background="black", trajectory=fam)
        start = meta["track"][0]
        if np.hypot(*(start - avoid)) >= MIN_OFFSET_PX:
            return frames[0], start, seed
        seed += 1


def _image(frame):
    from ..image import first_frame

    return first_frame(data.to_model_range(frame[None]))


def eval_i2v(model, cfg: I2VEvalConfig, log) -> tuple[dict, list]:
    from ..apply import apply
    from ..learn import learn
    from ..sampling import generate

    targets = [c for c in data.COLORS if c != cfg.ref_colour][:cfg.targets]
    renders, rows, clips = [], [], []
    for fam in cfg.trajectories:
        for ci in range(cfg.clips):
            frames, prompt, meta = reference_clip(fam, index=ci, colour=cfg.ref_colour)
            t0 = time.monotonic()
            asset = learn(model, data.to_model_range(frames), seed=LEARN_SEED, steps=cfg.steps, **cfg.overrides).asset
            clips.append({"trajectory": fam, "clip": ci, "reference_prompt": prompt,
                          "learn_s": round(time.monotonic() - t0, 1),
                          "first_loss": asset.losses[0][0] if asset.losses else None,
                          "final_loss": asset.losses[-1][-1] if asset.losses else None})
            rows.append((f"reference {fam} {ci}", frames))
            log(f"i2v {fam} clip {ci}: learnt in {clips[-1]['learn_s']:.0f} s")
            for k, colour in enumerate(targets):
                tp = data.prompt_for(colour, "black")
                for seed in cfg.seeds:
                    frame, start, frame_seed = other_first_frame(fam, colour, 1000 * ci + 10 * k + seed,
                                                                 meta["track"][0])
                    image = _image(frame)
                    vids = {"plain": generate(model, tp, seed=seed, steps=cfg.steps, image=image),
                            "zero_shot": apply(model, asset, tp, seed=seed, steps=cfg.steps, image=image)}
                    for method, video in vids.items():
                        v = to_uint8(video)
                        r = render_record(v, frames, meta, False, method=method, trajectory=fam, clip=ci,
                                          colour=colour, prompt=tp, seed=seed, frame_seed=frame_seed,
                                          offset_px=float(np.hypot(*(start - meta["track"][0]))),
                                          first_frame_psnr=psnr(v[0], frame))
                        r.pop("mf_lk", None)
                        renders.append(r)
                        rows.append((f"{method} {fam} {colour} s{seed} dir={r['direction']:.2f} "
                                     f"psnr={r['first_frame_psnr']:.1f}", v))
                    log(f"i2v {fam} {colour} seed {seed}: " + ", ".join(
                        f"{r['method']} direction {r['direction']:.2f} first-frame {r['first_frame_psnr']:.1f} dB"
                        for r in renders[-len(vids):]))
    res: dict = {"renders": renders, "clips": clips, "targets": targets}
    for method in METHODS:
        rs = [r for r in renders if r["method"] == method]
        res[method] = {**aggregate(rs, False), "first_frame_psnr": _mean(r["first_frame_psnr"] for r in rs)}
        res[method].pop("mf_lk", None)
    ps = [r["first_frame_psnr"] for r in renders]
    res["first_frame_psnr"] = _mean(ps)
    res["first_frame_psnr_min"] = float(min(ps)) if ps else float("nan")
    res["first_frame_renders"] = len(ps)
    res["by_trajectory"] = {fam: {m: aggregate([r for r in renders if r["trajectory"] == fam and r["method"] == m],
                                               False)["direction"] for m in METHODS} for fam in cfg.trajectories}
    return res, rows


def checks(results: dict) -> list[dict]:
    """The issue's goals against the measured values (``eval.checks`` with these thresholds)."""
    return _checks(results, THRESHOLDS)


def run_eval_i2v(model, cfg: I2VEvalConfig | None = None, *, log: Callable[[str], None] | None = None,
                 info: dict | None = None) -> dict:
    """Run the shapes-i2v evaluation; a JSON-safe dict (also out_dir/eval.json, with out_dir/i2v.png)."""
    cfg = cfg or I2VEvalConfig()
    log = log or (lambda msg: None)
    t0 = time.monotonic()
    res, rows = eval_i2v(model, cfg, log)
    results: dict = {"model": info or {}, "config": dataclasses.asdict(cfg), "i2v": res,
                     "seconds": {"total": round(time.monotonic() - t0, 1)}}
    results["checks"] = checks(res)
    if cfg.out_dir is not None:
        from .pictures import picture

        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        results["pictures"] = {"i2v": str(Path(cfg.out_dir) / "i2v.png")}
        picture(rows).save(results["pictures"]["i2v"])
    return saved(results, cfg.out_dir)


def summary_rows(results: dict) -> list[tuple[str, str, str]]:
    """(metric, value, goal/verdict) rows for a human table."""
    f = fmt
    verdict = verdicts(results)
    r = results["i2v"]
    rows = [("first-frame PSNR dB (every render, mean)", f(r["first_frame_psnr"], 2),
             verdict.get("first_frame_psnr", "")),
            ("  lowest / renders", f"{f(r['first_frame_psnr_min'], 2)} / {r['first_frame_renders']}", "")]
    for m in METHODS:
        a = r[m]
        rows.append((f"direction: {m}", f"{f(a['direction'])} ({a['renders']} renders, {a['undefined']} scored 0, "
                                        f"{a['no_disc']} without a disc)", verdict.get(f"{m}.direction", "")))
    for fam, d in r["by_trajectory"].items():
        rows.append((f"  {fam}: zero-shot / plain", f"{f(d['zero_shot'], 2)} / {f(d['plain'], 2)}", ""))
    rows.append(("seconds", f(results["seconds"]["total"], 0), ""))
    return rows


def evaluate_i2v(*, weights=None, random: bool = False, ema: bool = True, device: str | None = None,
                 quick: bool = False, trajectories=(), seeds=(), overrides: dict | None = None, threads: int = 0,
                 log: Callable[[str], None] | None = None, **config) -> dict:
    """`motionlib eval --model shapes-i2v`: check the options, load the model, run; the results dict.
    `config` takes the other I2VEvalConfig fields (steps, clips, out_dir); None keeps the defaults."""
    import torch

    from ..errors import ParameterError
    from ..guidance import GuidanceParams
    from .eval import EVAL_TRAJECTORIES, load_eval_model

    if threads > 0:
        torch.set_num_threads(threads)
    bad = [f for f in trajectories if f not in EVAL_TRAJECTORIES]
    if bad:
        raise ParameterError(f"unknown trajectory {', '.join(bad)}: use {', '.join(EVAL_TRAJECTORIES)}")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None and v != ()}
    cfg = I2VEvalConfig.make(quick=quick, seeds=tuple(seeds) or None, trajectories=tuple(trajectories) or None,
                             overrides=overrides, **config)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, info = load_eval_model(weights, random=random, ema=ema, device=device, name="shapes-i2v")
    GuidanceParams.from_spec(model.spec, **cfg.overrides)  # bad guidance overrides fail here, before any work
    log = log or (lambda msg: None)
    log(f"evaluating shapes-i2v {info.get('weights')} on {device}{' (quick)' if quick else ''}")
    return run_eval_i2v(model, cfg, log=log, info=info)
