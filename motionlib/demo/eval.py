"""Evaluation of the shapes demo model: generation quality, AMF validity, motion transfer, search.

    motionlib eval --weights /work/demo_run --quick          # newest checkpoint (EMA) of a training run
    motionlib eval --weights shapes.safetensors --out eval/  # full evaluation of exported weights
    motionlib eval --random --quick                          # random (untrained) weights

Everything here *measures*; nothing asserts. The sections (keys of the result dict):

``generation`` (a)
    For each colour prompt (black background) and seed, a plain generation. Per frame: is the
    dominant non-background colour the prompted one, and is there a disc-like blob (largest
    connected bright component of disc-like area and roundness)? ``ok_frac`` is the share of frames
    where both hold. ``smooth_rms_px``: rms residual of a per-axis quadratic fit to the centroid
    track of the disc-like frames (x, y), in pixels (issue threshold <= 0.5; undefined with fewer
    than 4 such frames). For scale: the training trajectories themselves give 0 (linear, static),
    ~0.66 (arc), ~1.6 (zigzag), ~0.34 (speed change); ~69% of training clips are <= 0.5.
``amf`` (b)
    Appendix-D protocol on held-out clips with known linear motion: the hard AMF of the reference
    pass (``reference_motion`` at the spec's first guidance block) is compared, on patches of frame
    i covered by the disc, with the true displacement from frame i to i+k (pairs whose true shift is
    at least one patch); ``score`` = mean of (cos+1)/2 (0.5 = random directions; threshold >= 0.85).
    A zero AMF vector counts as cos 0.
``transfer`` (c)
    Held-out reference clips (seeds from ``EVAL_SEED_BASE``) per trajectory family; the motion is
    learnt (ρ mode, seed ``LEARN_SEED``, the learn prompts of the config — by default the empty
    prompt, as ``motionlib learn`` — and the guidance overrides, e.g. ``samples``) and rendered for
    other colours x seeds four ways: ``plain`` generation, ``injection`` only (apply with an identity
    asset: zero ρ deltas, KV injection on), ``zero_shot`` ρ (apply) and ``zt`` (one-shot z_t
    transfer). Zero-shot is also rendered with the learn seed, and at least one target prompt is not
    among the learn prompts. ``direction``: mean cosine between per-step centroid displacements of
    the render's disc-like blob and of the reference (steps where either moves less than
    ``STILL_PX`` or the render has no disc-like blob are skipped). **Every render counts**: a render
    with fewer than ``MIN_STEPS`` usable steps (no disc, or a disc that does not move) scores 0;
    ``undefined`` counts those and ``no_disc`` the renders with no disc-like blob in any frame.
    The zero-shot headline is over the other seeds and the prompts not learnt on; ``learn_seed``,
    ``other_seeds``, ``seen_prompts`` and ``unseen_prompts`` split it. Thresholds: zero-shot
    >= 0.85, plain and injection <= 0.2, ``seed_gap`` (learn seed minus other seeds) <= 0.1.
    ``direction_blob``: the same with the largest blob of any shape (a diagnostic, NaN left out).
    Issue 24's measures: ``segment_direction`` (the disc's displacement over each straight stretch of the
    reference, ``data.segments``, every stretch weighing the same), ``shape`` (its best value over rotations
    and mirror images of the reference: for plain renders, the model's prior for the family), ``steady``
    (no centroid jump above STEADY_JUMP of the frame) and ``present`` (a disc-like blob in every frame); per
    family over ``clips`` reference clips; ``worst_family_segment``, ``family_mean_segment`` and the
    ``seed_spread`` of that mean across render seeds.
    ``mf_lk`` (d): Motion Fidelity with OpenCV Lucas-Kanade tracklets (``motionlib.demo.mflk``);
    ``mf_lk_gain`` = zero-shot minus plain (threshold >= 0.25); skipped with a note when OpenCV is
    missing.
``search`` (e)
    Reference clips moving right/left/up/down (one colour) and query clips of other colours moving
    in each direction; top-1 accuracy of cosine search over ``motion_descriptor`` of the hard
    reference AMF. That AMF is exactly what ``learn`` stores and the catalogue describes
    (``catalog.descriptor_of(asset)``), so the (slow, descriptor-neutral) ρ optimisation is skipped.

Metrics are in ``motionlib.demo.metrics`` and ``motionlib.demo.mflk``, pictures in
``motionlib.demo.pictures``. Pictures (``out_dir``): ``grid.png`` (per trajectory: reference row, zero-shot rows, plain
rows), ``transfer_<trajectory>.png`` (all four methods), ``generation.png``; and ``eval.json``.

One file on purpose (over 400 lines): the four sections share one ``EvalConfig``, the held-out clips and the
shape of the records that ``summary_rows``, ``checks`` and ``eval.json`` read; the metrics, the MF-LK
baseline and the pictures it calls live in ``metrics.py``, ``mflk.py`` and ``pictures.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ModelError, ParameterError, WeightsMissing
from . import data
from .metrics import (amf_direction_cosines, blob_direction, blob_track, cos_to_unit, generation_quality, max_jump,
                      patch_coverage, render_direction, segment_direction, shape_agreement, to_uint8, top1_accuracy)
from .mflk import have_cv2, mf_lk
from .pictures import save_pictures

EVAL_SEED_BASE = 1_000_000  # reference/query clips: make_clip seeds far from anything training draws
LEARN_SEED = 7777  # seed of the learn runs (kept apart from the render seeds)
EVAL_TRAJECTORIES = ("linear", "arc", "zigzag", "speed_change", "reversal", "l_turn")  # "static" has no direction
CLIP_SEED_ORDER = ("linear", "arc", "zigzag", "speed_change", "static", "reversal", "l_turn")  # seeds stay put
STEADY_JUMP = 0.2  # a render is steady when no centroid jump between frames exceeds this share of the frame
DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
SECTIONS = ("generation", "amf", "transfer", "search")  # in run order; `motionlib eval --section`
THRESHOLDS = {  # from the issues (#10 for transfer): (comparison, value)
    "generation.smooth_rms_px": ("<=", 0.5),
    "amf.score": (">=", 0.85),
    "transfer.zero_shot.direction": (">=", 0.85),  # other seeds, prompts not learnt on, every render
    "transfer.plain.direction": ("<=", 0.2),
    "transfer.injection.direction": ("<=", 0.2),
    "transfer.seed_gap": ("<=", 0.1),  # zero-shot: learn seed minus other seeds
    "transfer.mf_lk_gain": (">=", 0.25),  # MF-LK: zero-shot minus plain
    # issue 24: per-segment direction in every family, steady renders, a disc in every frame
    "transfer.worst_family_segment": (">=", 0.8),  # zero-shot, other seeds, unseen prompts: the worst family
    "transfer.plain.segment_direction": ("<=", 0.2),
    "transfer.steady": (">=", 0.9),  # plain and zero-shot renders with no jump above STEADY_JUMP
    "transfer.zero_shot.present": (">=", 0.95),  # zero-shot renders with a disc-like blob in every frame
}
METHODS = ("plain", "injection", "zero_shot", "zt")


# =============================================================================================
# clips
# =============================================================================================
def reference_clip(trajectory: str, index: int = 0, colour: str = "red", background: str = "black"):
    """A held-out clip (frames uint8, prompt, meta) of `trajectory`: seed EVAL_SEED_BASE + ..."""
    seed = EVAL_SEED_BASE + 1000 * CLIP_SEED_ORDER.index(trajectory) + index
    return data.make_clip(seed, color=colour, background=background, trajectory=trajectory)


def directional_clip(direction: str, colour: str, *, speed: float = 2.5, offset: float = 0.0,
                     background: str = "black"):
    """A disc moving steadily right/left/up/down, centred across the motion (+ `offset` px)."""
    d = np.array(DIRECTIONS[direction])
    n, size, r = data.NUM_FRAMES, data.SIZE, data.RADIUS
    k = np.arange(n, dtype=np.float64)[:, None]
    centre = (size - 1) / 2
    along = k * speed - (n - 1) * speed / 2  # centred on the frame
    perp = np.array([-d[1], d[0]])
    track = centre + along * d + offset * perp
    track = np.clip(track, r, size - 1 - r)
    bg = np.zeros((size, size, 3), np.uint8)
    if background == "textured":
        bg = data.textured_background(np.random.default_rng(EVAL_SEED_BASE + 99), size)
    frames = data.render(track, data.COLORS[colour], bg, r)
    return frames, data.prompt_for(colour, background), {"track": track, "direction": direction}


# =============================================================================================
# model loading
# =============================================================================================
def resolve_weights(path, name: str = "shapes") -> tuple[str, Path]:
    """("weights" | "checkpoint", file) for a shapes.safetensors, a checkpoint dir/file or a run dir
    (a run dir gives its exported <name>.safetensors when present, else its newest checkpoint)."""
    p = Path(path).expanduser()
    if p.is_file():
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            keys = list(f.keys())
        return ("checkpoint" if any(k.startswith("ema.") for k in keys) else "weights"), p
    if p.is_dir():
        if (p / "state.safetensors").is_file():
            return "checkpoint", p / "state.safetensors"
        if (p / f"{name}.safetensors").is_file():
            return "weights", p / f"{name}.safetensors"
        from .train import latest_checkpoint

        ck = latest_checkpoint(p) if (p / "checkpoints").is_dir() else None
        if ck is not None:
            return "checkpoint", ck / "state.safetensors"
        raise WeightsMissing(f"{p}: no {name}.safetensors, state.safetensors or checkpoints/ inside")
    raise WeightsMissing(f"shapes weights not found: {p}")


def load_eval_model(weights=None, *, random: bool = False, ema: bool = True, device="cpu", name: str = "shapes"):
    """(Model, info): the shapes (or, `name` "shapes-i2v", shapes-i2v) model from `weights` (see
    resolve_weights), the bundled weights (None), or seeded random weights (`random`)."""
    from .model import shapes_model
    from .shapes_i2v import shapes_i2v_model
    from .spec import DEFAULT_I2V_WEIGHTS, DEFAULT_WEIGHTS

    build, default = (shapes_i2v_model, DEFAULT_I2V_WEIGHTS) if name == "shapes-i2v" else (shapes_model, DEFAULT_WEIGHTS)
    if random:
        return build(pretrained=False, device=device), {"weights": "random", "model": name}
    if weights is None:
        if not default.is_file():
            raise WeightsMissing(f"no bundled {name} weights: pass --weights (a {name}.safetensors, a "
                                 "training run folder or checkpoint) or --random")
        weights = default
    kind, file = resolve_weights(weights, name)
    if kind == "weights":
        return build(file, device=device), {"weights": str(file), "kind": "weights", "model": name}
    from safetensors import safe_open

    model = build(pretrained=False, device=device)
    prefix = "ema." if ema else "model."
    with safe_open(str(file), framework="pt") as f:
        step = (f.metadata() or {}).get("step")
        for name, module in (("transformer", model.transformer), ("text_encoder", model.text_encoder)):
            pre = f"{prefix}{name}."
            sd = {k[len(pre):]: f.get_tensor(k) for k in f.keys() if k.startswith(pre)}
            try:
                module.load_state_dict(sd, strict=True)  # copies into the parameters, on their device
            except RuntimeError as e:  # e.g. a shapes checkpoint given for shapes-i2v, or the reverse
                raise ModelError(f"{file} does not hold {model.spec.name} weights: {str(e).splitlines()[0]}") from None
    return model, {"weights": str(file), "kind": "checkpoint", "ema": ema, "model": name,
                   "step": int(step) if step is not None else None}


# =============================================================================================
# the evaluation
# =============================================================================================
@dataclass
class EvalConfig:
    seeds: tuple[int, ...] = (0, 1)  # render seeds (generation and transfer)
    trajectories: tuple[str, ...] = EVAL_TRAJECTORIES
    gen_colours: tuple[str, ...] = tuple(data.COLORS)
    ref_colour: str = "red"  # colour of the reference clips; the targets are the other colours
    targets: int = 3  # target prompts per reference (other colours)
    clips: int = 2  # reference clips per family (each learnt once): 2 x 3 targets x 2 seeds = 12 renders
    amf_clips: int = 24  # linear clips for (b), per background (one reference pass each: cheap)
    amf_backgrounds: tuple[str, ...] = ("black", "textured")
    search_colours: tuple[str, ...] = ("blue", "green", "yellow")  # query colours (refs: ref_colour)
    zt: bool = True  # include one-shot z_t transfer
    mf: bool = True  # include MF-LK (needs OpenCV)
    steps: int | None = None  # denoising steps (None: the model's default)
    overrides: dict = field(default_factory=dict)  # guidance overrides for learn/transfer (samples=, ...)
    learn_prompts: tuple[str, ...] = ()  # prompts of the learn generations (cycled over samples); () = ""
    out_dir: Path | None = None
    quick: bool = False

    @classmethod
    def make(cls, quick: bool = False, **kw) -> "EvalConfig":
        kw = {k: v for k, v in kw.items() if v is not None}
        if quick:
            base = dict(seeds=(0,), trajectories=("linear",), gen_colours=("red", "blue"), targets=1, clips=1, amf_clips=8,
                        amf_backgrounds=("black",), search_colours=("blue",), quick=True)
            base.update(kw)
            kw = base
        return cls(**kw)


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def _guidance(model, cfg: EvalConfig | None = None):
    """The guidance parameters learn would use: the spec's defaults with the config's overrides."""
    from ..guidance import GuidanceParams

    return GuidanceParams.from_spec(model.spec, **(cfg.overrides if cfg else {}))


def _descriptor(model, frames, cfg: EvalConfig | None = None) -> np.ndarray:
    """What the catalogue stores for a motion learnt from `frames`: descriptor of the hard AMF at the
    first guidance block (``catalog.descriptor_of(asset)``; the ρ optimisation does not change it)."""
    from ..asset import stored_confidence
    from ..descriptor import motion_descriptor
    from ..learn import reference_motion

    g = _guidance(model, cfg)
    ref = reference_motion(model, data.to_model_range(frames), blocks=g.blocks[:1], temperature=g.temperature)
    _, rows, cols = model.spec.grid
    return motion_descriptor(ref.amf[g.blocks[0]], (rows, cols), stored_confidence(ref.confidence[g.blocks[0]]))


def eval_generation(model, cfg: EvalConfig, log) -> tuple[dict, list]:
    from ..sampling import generate

    rows, per = [], []
    for colour in cfg.gen_colours:
        prompt = data.prompt_for(colour, "black")
        for seed in cfg.seeds:
            v = generate(model, prompt, seed=seed, steps=cfg.steps)
            q = generation_quality(v, colour)
            q.pop("track")
            per.append({"colour": colour, "seed": seed, **q})
            rows.append((f"{colour} s{seed} ok={q['ok_frac']:.2f}", to_uint8(v)))
            log(f"generation {colour} seed {seed}: ok {q['ok_frac']:.2f}")
    sx = _mean(p["smooth_rms_px"][0] for p in per)
    sy = _mean(p["smooth_rms_px"][1] for p in per)
    res = {"ok_frac": _mean(p["ok_frac"] for p in per), "disc_frac": _mean(p["disc_frac"] for p in per),
           "colour_frac": _mean(p["colour_frac"] for p in per), "smooth_rms_px_x": sx, "smooth_rms_px_y": sy,
           "smooth_rms_px": max(sx, sy) if np.isfinite(sx) and np.isfinite(sy) else float("nan"),
           "smooth_frac": _mean(float(max(p["smooth_rms_px"]) <= 0.5) for p in per
                                if np.isfinite(p["smooth_rms_px"]).all()),
           **data_smoothness(), "per_video": per}
    return res, rows


def data_smoothness(n: int = 64) -> dict:
    """The smoothness metric (as eval_generation aggregates it: per-axis means over clips, worst
    axis) on `n` clips of the training distribution itself (black background): what a model that
    reproduced its data exactly would score, overall and per trajectory family."""
    per_family: dict[str, list[np.ndarray]] = {}
    for i in range(n):
        frames, _, meta = data.make_clip(EVAL_SEED_BASE + 500_000 + i, background="black")
        rms = np.asarray(generation_quality(frames, meta["color"])["smooth_rms_px"])
        if np.isfinite(rms).all():
            per_family.setdefault(meta["trajectory"], []).append(rms)

    def worst_axis(rows):
        return float(np.mean(rows, axis=0).max()) if rows else float("nan")

    return {"smooth_rms_px_data": worst_axis([r for rs in per_family.values() for r in rs]),
            "smooth_rms_px_data_by_family": {k: round(worst_axis(v), 3) for k, v in sorted(per_family.items())}}


def amf_clip(n: int, background: str = "black"):
    """The n-th held-out clip of known (linear) motion of the (b) protocol: (frames, prompt, meta)."""
    return data.make_clip(EVAL_SEED_BASE + 500 + n + (0 if background == "black" else 50),
                          color=list(data.COLORS)[n % len(data.COLORS)], background=background, trajectory="linear")


def amf_block_scores(model, blocks, clips: int = 8, temperature: float = 2.0) -> dict[int, float]:
    """Appendix-D AMF direction agreement, (cos+1)/2, of each block on `clips` black-background clips
    of known motion (one reference pass per clip captures every block)."""
    from ..learn import reference_motion

    patch = model.spec.spatial_compression * model.spec.patch_size
    pooled: dict[int, list] = {b: [] for b in blocks}
    for n in range(clips):
        frames, _, meta = amf_clip(n)
        ref = reference_motion(model, data.to_model_range(frames), blocks=tuple(blocks), temperature=temperature)
        cov = patch_coverage(frames, patch)
        for b in blocks:
            pooled[b].append(amf_direction_cosines(ref.amf[b], meta["track"], cov, patch=patch))
    return {b: float(cos_to_unit(np.concatenate(c).mean())) for b, c in pooled.items()}


def eval_amf(model, cfg: EvalConfig, log) -> dict:
    from ..learn import reference_motion

    g = _guidance(model, cfg)
    block = g.blocks[0]
    patch = model.spec.spatial_compression * model.spec.patch_size
    out = {"block": block, "temperature": g.temperature}
    pooled_all = []
    for bg in cfg.amf_backgrounds:
        pooled, per, conf_obj, conf_bg = [], [], [], []
        for n in range(cfg.amf_clips):
            frames, _, meta = amf_clip(n, bg)
            ref = reference_motion(model, data.to_model_range(frames), blocks=(block,), temperature=g.temperature)
            cov = patch_coverage(frames, patch) if bg == "black" else _disc_coverage(meta, patch)
            c = amf_direction_cosines(ref.amf[block], meta["track"], cov, patch=patch)
            pooled.append(c)
            conf = ref.confidence[block].float().cpu().numpy()  # [F, F, S] peak attention probability
            obj = np.broadcast_to((cov >= 0.5)[:, None, :], conf.shape)
            off = ~np.eye(conf.shape[0], dtype=bool)[:, :, None]  # i != j
            conf_obj.append(conf[obj & off])
            conf_bg.append(conf[~np.broadcast_to((cov > 0)[:, None, :], conf.shape) & off])
            per.append(float(cos_to_unit(c.mean())) if len(c) else float("nan"))
        c = np.concatenate(pooled)
        pooled_all.append(c)
        out[bg] = {"score": float(cos_to_unit(c.mean())) if len(c) else float("nan"), "vectors": int(len(c)),
                   "zero_frac": float((c == 0).mean()) if len(c) else float("nan"), "per_clip": per,
                   # where a confidence mask would cut: peak attention probability on / off the disc
                   "confidence_object_median": float(np.median(np.concatenate(conf_obj))),
                   "confidence_background_p95": float(np.percentile(np.concatenate(conf_bg), 95))}
        log(f"amf {bg}: {out[bg]['score']:.3f} over {len(c)} patch vectors")
    c = np.concatenate(pooled_all)
    out["score"] = out["black"]["score"] if "black" in out else float(cos_to_unit(c.mean()))
    return out


def _disc_coverage(meta, patch: int) -> np.ndarray:
    """Coverage of the true disc (for textured backgrounds, where brightness does not separate it)."""
    size, r = data.SIZE, meta["radius"]
    alpha = data.render(meta["track"], (255, 255, 255), np.zeros((size, size, 3), np.uint8), r)
    return patch_coverage(alpha, patch)


def _identity(asset):
    zero = {t: {n: torch.zeros_like(v) for n, v in d.items()} for t, d in asset.rho_delta.items()}
    return dataclasses.replace(asset, rho_delta=zero)


def aggregate(renders: list[dict], mf_on: bool) -> dict:
    """Direction agreement (every render counted: undefined scores 0), how many were undefined or had
    no disc-like blob at all, the largest-blob diagnostic and MF-LK of a list of render records."""
    if not renders:
        return {"direction": float("nan"), "renders": 0}
    return {"direction": float(np.mean([r["direction"] if np.isfinite(r["direction"]) else 0.0 for r in renders])),
            "segment_direction": float(np.mean([r["segment_direction"] for r in renders])),
            "shape": float(np.mean([r["shape"] for r in renders])),
            "steady": steady_share(renders),
            "present": float(np.mean([r["present"] for r in renders])),
            "renders": len(renders),
            "undefined": sum(not np.isfinite(r["direction"]) for r in renders),
            "no_disc": sum(r["no_disc"] for r in renders),
            "direction_blob": _mean(r["direction_blob"] for r in renders),
            "mf_lk": _mean(r["mf_lk"] for r in renders) if mf_on else None}


def transfer_summary(renders: list[dict], mf_on: bool) -> dict:
    """Per method: `aggregate` over the renders of the other seeds and the prompts not learnt on;
    for zero-shot also the learn-seed / other-seed and seen / unseen prompt splits, and the gaps."""
    out: dict = {}
    for method in METHODS:
        rs = [r for r in renders if r["method"] == method]
        if not rs:
            continue
        head = [r for r in rs if not r["learn_seed"] and not r["seen_prompt"]]
        out[method] = aggregate(head or [r for r in rs if not r["learn_seed"]], mf_on)
        if method == "zero_shot":
            out[method]["split"] = {
                "learn_seed": aggregate([r for r in rs if r["learn_seed"]], mf_on),
                "other_seeds": aggregate([r for r in rs if not r["learn_seed"]], mf_on),
                "seen_prompts": aggregate([r for r in rs if r["seen_prompt"] and not r["learn_seed"]], mf_on),
                "unseen_prompts": aggregate([r for r in rs if not r["seen_prompt"] and not r["learn_seed"]], mf_on)}
    z = out.get("zero_shot")
    if z:
        sp = z["split"]
        out["seed_gap"] = sp["learn_seed"]["direction"] - sp["other_seeds"]["direction"]
        if mf_on and "plain" in out:
            out["mf_lk_gain"] = z["mf_lk"] - out["plain"]["mf_lk"]
    judged = [r for r in renders if r["method"] in ("plain", "zero_shot") and not r["learn_seed"]]
    if judged:
        out["steady"] = steady_share(judged)
    return out


def steady_share(renders: list[dict]) -> float:
    """Share of renders whose largest centroid jump is at most STEADY_JUMP (no track at all: not steady)."""
    return float(np.mean([bool(r["max_jump"] <= STEADY_JUMP) for r in renders]))


def trajectory_summary(fams: dict) -> dict:
    """Across families: the zero-shot per-segment direction (other seeds, unseen prompts) of the worst
    family and the mean over families (each weighing the same), and the seed-to-seed spread of that
    mean (max minus min over render seeds): the yardstick for "better weights"."""
    per = {f: r["zero_shot"]["segment_direction"] for f, r in fams.items() if "zero_shot" in r}
    if not per:
        return {}
    by_seed: dict[int, list[float]] = {}
    for rec in fams.values():
        rs = [r for r in rec["renders"] if r["method"] == "zero_shot" and not r["learn_seed"] and not r["seen_prompt"]]
        for seed in sorted({r["seed"] for r in rs}):
            by_seed.setdefault(seed, []).append(float(np.mean([r["segment_direction"] for r in rs if r["seed"] == seed])))
    seed_means = {s: float(np.mean(v)) for s, v in by_seed.items()}
    return {"worst_family_segment": min(per.values()), "family_mean_segment": float(np.mean(list(per.values()))),
            "seed_means": seed_means,
            "seed_spread": (max(seed_means.values()) - min(seed_means.values())) if len(seed_means) > 1 else None}


def _targets(cfg: EvalConfig) -> list[tuple[str, str]]:
    """(colour, prompt) targets: `cfg.targets` colours other than the reference's, plus one whose
    prompt the learn prompts do not hold when they hold all of those."""
    targets = [(c, data.prompt_for(c, "black")) for c in data.COLORS if c != cfg.ref_colour]
    chosen = targets[:cfg.targets]
    if all(p in cfg.learn_prompts for _, p in chosen):
        chosen += [t for t in targets if t[1] not in cfg.learn_prompts][:1]
    return chosen


def eval_transfer(model, cfg: EvalConfig, log) -> tuple[dict, dict]:
    mf_on = cfg.mf and have_cv2()
    targets = _targets(cfg)
    learn_prompts = list(cfg.learn_prompts) or None
    plain_cache: dict = {}
    fams, pictures = {}, {}
    for fam in cfg.trajectories:
        rec: dict[str, Any] = {"clips": [], "renders": []}
        rows: dict = {"reference": [], **{m: [] for m in METHODS}}
        for ci in range(cfg.clips):
            _transfer_clip(model, cfg, fam, ci, targets, learn_prompts, plain_cache, mf_on, rec,
                           rows if ci == 0 else None, log)
        for key in ("learn_s", "first_loss", "final_loss", "mf_lk_self"):  # means over the clips
            rec[key] = _mean(c[key] for c in rec["clips"])
        rec.update(transfer_summary(rec["renders"], mf_on))
        fams[fam] = rec
        pictures[fam] = rows
    res = {"families": fams, "mf_lk_available": mf_on, "targets": [p for _, p in targets], "learn_prompts": list(cfg.learn_prompts),
           "clips": cfg.clips,
           "note": None if mf_on else ("MF-LK skipped: OpenCV missing (pip install opencv-python-headless)"
                                       if cfg.mf else "MF-LK off")}
    res.update(transfer_summary([r for f in fams.values() for r in f["renders"]], mf_on))
    res.update(trajectory_summary(fams))
    return res, pictures


def render_record(video, frames, meta: dict, mf_on: bool, **fields) -> dict:
    """Every score of one render against its reference clip (`frames`, `meta` from ``reference_clip``):
    step and per-segment direction, shape agreement, largest jump, presence, the largest-blob diagnostic
    and MF-LK; `fields` (method, seed, learn_seed, seen_prompt, ...) are copied in."""
    ref_track = meta["track"]
    segs = data.segments(meta, len(ref_track))
    d, used = render_direction(video, ref_track)
    track = blob_track(video)
    return {**fields, "direction": d, "steps_used": used, "segment_direction": segment_direction(track, ref_track, segs),
            "shape": shape_agreement(track, ref_track, segs), "max_jump": max_jump(track, data.SIZE),
            "present": bool(np.isfinite(track).all()), "no_disc": bool(np.isnan(track).all()),
            "direction_blob": blob_direction(video, ref_track), "mf_lk": mf_lk(video, frames) if mf_on else None}


def _transfer_clip(model, cfg: EvalConfig, fam: str, ci: int, targets, learn_prompts, plain_cache: dict,
                   mf_on: bool, rec: dict, rows: dict | None, log) -> None:
    """Learn reference clip `ci` of family `fam` and render it every way: appends to rec["clips"] and
    rec["renders"] (and the picture rows, when given)."""
    from ..apply import apply
    from ..guidance import RHO_ONLY
    from ..learn import learn, transfer
    from ..sampling import generate

    frames, prompt, meta = reference_clip(fam, index=ci, colour=cfg.ref_colour)
    x = data.to_model_range(frames)
    t0 = time.monotonic()
    asset = learn(model, x, seed=LEARN_SEED, steps=cfg.steps, prompts=learn_prompts, **cfg.overrides).asset
    learn_s = time.monotonic() - t0
    ident = _identity(asset)
    clip = {"reference_prompt": prompt, "params": meta["params"], "segments": data.segments(meta, len(meta["track"])),
            "learn_s": round(learn_s, 1),
            "final_loss": asset.losses[-1][-1] if asset.losses else None,
            "first_loss": asset.losses[0][0] if asset.losses else None,
            "mf_lk_self": mf_lk(frames, frames) if mf_on else None}
    rec["clips"].append(clip)
    if rows is not None:
        rows["reference"].append((f"reference {fam}", frames))
    log(f"transfer {fam} clip {ci}: learnt in {learn_s:.0f} s, AMF loss {clip['first_loss']} -> {clip['final_loss']}")
    for colour, tp in targets:
        for seed in (*cfg.seeds, LEARN_SEED):
            vids = {}
            if seed == LEARN_SEED:  # the split: zero-shot with the noise the motion was learnt on
                vids["zero_shot"] = to_uint8(apply(model, asset, tp, seed=seed, steps=cfg.steps))
            else:
                if (tp, seed) not in plain_cache:
                    plain_cache[(tp, seed)] = to_uint8(generate(model, tp, seed=seed, steps=cfg.steps))
                vids["plain"] = plain_cache[(tp, seed)]
                vids["injection"] = to_uint8(apply(model, ident, tp, seed=seed, steps=cfg.steps, inject=True))
                vids["zero_shot"] = to_uint8(apply(model, asset, tp, seed=seed, steps=cfg.steps))
                if cfg.zt:
                    v, _ = transfer(model, x, tp, seed=seed, steps=cfg.steps,  # z_t has no 'local' gradient
                                    **{k: v for k, v in cfg.overrides.items() if k not in RHO_ONLY})
                    vids["zt"] = to_uint8(v)
            for method, v in vids.items():
                r = render_record(v, frames, meta, mf_on, method=method, colour=colour, prompt=tp, seed=seed,
                                  clip=ci, learn_seed=seed == LEARN_SEED, seen_prompt=tp in cfg.learn_prompts)
                rec["renders"].append(r)
                if rows is not None:
                    rows[method].append((f"{method} {colour} s{seed} seg={r['segment_direction']:.2f}"
                                         + (f" MF={r['mf_lk']:.2f}" if r["mf_lk"] is not None else ""), v))
            log(f"transfer {fam} {colour} seed {seed}: segment direction " + ", ".join(
                f"{r['method']} {r['segment_direction']:.2f}" for r in rec["renders"][-len(vids):]))


def eval_search(model, cfg: EvalConfig, log) -> dict:
    from ..catalog import frames_descriptor

    dirs = list(DIRECTIONS)
    refs = np.stack([_descriptor(model, directional_clip(d, cfg.ref_colour)[0], cfg) for d in dirs])
    queries, labels = [], []
    for i, colour in enumerate(cfg.search_colours):
        for d in dirs:
            frames = directional_clip(d, colour, speed=(2.0, 1.5, 3.0)[i % 3], offset=(3.0, -4.0, 0.0)[i % 3])[0]
            queries.append(frames_descriptor(model, data.to_model_range(frames)))  # as `search` reads a clip
            labels.append(d)
    acc, sim = top1_accuracy(refs, np.stack(queries), dirs, labels)
    log(f"search: top-1 {acc:.2f} over {len(labels)} queries")
    return {"top1": acc, "queries": len(labels), "reference_labels": dirs, "query_labels": labels,
            "similarity": np.round(sim, 3).tolist()}


# --- driver ------------------------------------------------------------------------------------
def checks(results: dict, thresholds: dict | None = None) -> list[dict]:
    """The issue's thresholds (default THRESHOLDS) against the measured values: [{metric, value, op, threshold, pass}]."""
    out = []
    for name, (op, thr) in (THRESHOLDS if thresholds is None else thresholds).items():
        v: Any = results
        for part in name.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        if v is None:
            continue
        ok = None if not np.isfinite(v) else (v <= thr if op == "<=" else v >= thr)
        out.append({"metric": name, "value": v, "op": op, "threshold": thr, "pass": ok})
    return out


def json_safe(x):
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else round(float(x), 5)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


def check_sections(sections) -> tuple[str, ...]:
    """The sections to run, in SECTIONS order (all when none are named); an unknown one is an error."""
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ParameterError(f"unknown section {', '.join(bad)}: use {', '.join(SECTIONS)}")
    return tuple(s for s in SECTIONS if s in sections) if sections else SECTIONS


def run_eval(model, cfg: EvalConfig | None = None, *, sections=SECTIONS,
             log: Callable[[str], None] | None = None, info: dict | None = None) -> dict:
    """Run the selected sections; returns a JSON-safe dict (also written to out_dir/eval.json)."""
    cfg = cfg or EvalConfig()
    log = log or (lambda msg: None)
    sections = check_sections(sections)
    results: dict = {"model": info or {}, "config": {k: v for k, v in dataclasses.asdict(cfg).items()},
                     "seconds": {}}
    rows: dict = {"generation": [], "transfer": {}}
    t_all = time.monotonic()
    for sec in sections:
        t0 = time.monotonic()
        out = {"generation": eval_generation, "amf": eval_amf, "transfer": eval_transfer,
               "search": eval_search}[sec](model, cfg, log)
        if sec in rows:  # sections with pictures return (results, picture rows)
            out, rows[sec] = out
        results[sec] = out
        results["seconds"][sec] = round(time.monotonic() - t0, 1)
    results["seconds"]["total"] = round(time.monotonic() - t_all, 1)
    results["checks"] = checks(results)
    if cfg.out_dir is not None:
        results["pictures"] = save_pictures(Path(cfg.out_dir), rows["generation"], rows["transfer"])
    return saved(results, cfg.out_dir)


def saved(results: dict, out_dir) -> dict:
    """`results` made JSON-safe, and written to out_dir/eval.json when out_dir is given."""
    results = json_safe(results)
    if out_dir is not None:
        Path(out_dir, "eval.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


def fmt(v, nd: int = 3) -> str:
    """A value for a summary table: floats to `nd` decimals, None as n/a."""
    return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def verdicts(results: dict) -> dict[str, str]:
    """{metric: "op threshold: pass|FAIL|n/a"} from the results' checks."""
    return {c["metric"]: f"{c['op']} {c['threshold']}: " + {True: "pass", False: "FAIL", None: "n/a"}[c["pass"]]
            for c in results.get("checks", [])}


def summary_rows(results: dict) -> list[tuple[str, str, str]]:
    """(metric, value, threshold/verdict) rows for a human table."""
    f = fmt
    verdict = verdicts(results)
    rows = []
    g = results.get("generation")
    if g:
        rows += [("(a) generation ok-frame share", f(g["ok_frac"]), ""),
                 ("(a)   disc-like / right colour", f"{f(g['disc_frac'])} / {f(g['colour_frac'])}", ""),
                 ("(a) track smoothness rms px (x, y)", f"{f(g['smooth_rms_px_x'], 2)}, {f(g['smooth_rms_px_y'], 2)}",
                  verdict.get("generation.smooth_rms_px", ""))]
        if g.get("smooth_rms_px_data") is not None:
            fams = ", ".join(f"{k} {v:.2f}" for k, v in g.get("smooth_rms_px_data_by_family", {}).items())
            rows.append(("(a)   the same metric on training clips", f(g["smooth_rms_px_data"], 2), fams))
    a = results.get("amf")
    if a:
        rows.append((f"(b) AMF direction (cos+1)/2, block {a['block']}", f(a["score"]), verdict.get("amf.score", "")))
        for bg in ("black", "textured"):
            if bg in a:
                rows.append((f"(b)   {bg}: score / vectors / zero share",
                             f"{f(a[bg]['score'])} / {a[bg]['vectors']} / {f(a[bg]['zero_frac'], 2)}",
                             f"confidence: disc median {f(a[bg]['confidence_object_median'], 3)}, "
                             f"background p95 {f(a[bg]['confidence_background_p95'], 3)}"))
    t = results.get("transfer")
    if t:
        def counted(a):
            return f"{f(a['direction'])} ({a['renders']} renders, {a['undefined']} scored 0, {a['no_disc']} without a disc)"

        for m in METHODS:
            if m in t:
                rows.append((f"(c) direction agreement: {m}", counted(t[m]), verdict.get(f"transfer.{m}.direction", "")))
        z = t.get("zero_shot")
        if z:
            for k, label in (("learn_seed", "learn seed"), ("other_seeds", "other seeds"),
                             ("seen_prompts", "learnt prompts"), ("unseen_prompts", "prompts not learnt on")):
                if z["split"][k]["renders"]:
                    rows.append((f"(c)   zero-shot, {label}", counted(z["split"][k]), ""))
            rows.append(("(c)   zero-shot: learn seed minus other seeds", f(t.get("seed_gap")),
                         verdict.get("transfer.seed_gap", "")))
        for m in METHODS:
            if m in t and t[m].get("direction_blob") is not None:
                rows.append((f"(c)   largest-blob direction: {m}", f(t[m]["direction_blob"]), "diagnostic"))
        for m in METHODS:
            if m in t:
                rows.append((f"(d) MF-LK: {m}", f(t[m]["mf_lk"]) if t["mf_lk_available"] else "skipped",
                             "" if t["mf_lk_available"] else (t.get("note") or "")))
        if t.get("mf_lk_gain") is not None:
            rows.append(("(d)   MF-LK zero-shot minus plain", f(t["mf_lk_gain"]), verdict.get("transfer.mf_lk_gain", "")))
        for fam, rec in t["families"].items():
            rows.append((f"(c)   {fam}: zero-shot / zt / plain",
                         " / ".join(f(rec.get(m, {}).get("direction"), 2) for m in ("zero_shot", "zt", "plain")),
                         f"loss {f(rec['first_loss'], 3)} -> {f(rec['final_loss'], 3)}"))
        if "worst_family_segment" in t:  # issue 24: per-segment direction, steadiness, presence
            z = t["zero_shot"]
            rows += [("(c) per-segment direction: zero-shot, family mean", f(t["family_mean_segment"]),
                      f"seed-to-seed spread {f(t.get('seed_spread'))}"),
                     ("(c)   the worst family", f(t["worst_family_segment"]),
                      verdict.get("transfer.worst_family_segment", "")),
                     ("(c)   plain", f(t["plain"]["segment_direction"]) if "plain" in t else "n/a",
                      verdict.get("transfer.plain.segment_direction", "")),
                     (f"(c) steady renders (no jump > {STEADY_JUMP} of the frame), plain + zero-shot",
                      f(t.get("steady")), verdict.get("transfer.steady", "")),
                     ("(c) zero-shot renders with a disc in every frame", f(z["present"]),
                      verdict.get("transfer.zero_shot.present", ""))]
            for fam, rec in t["families"].items():
                zs = rec.get("zero_shot", {})
                sp = zs.get("split", {})
                rows.append((f"(c)   {fam}: prior / zt / zero-shot learn seed / other seeds",
                             " / ".join(f(v, 2) for v in (rec.get("plain", {}).get("shape"),
                                                           rec.get("zt", {}).get("segment_direction"),
                                                           sp.get("learn_seed", {}).get("segment_direction"),
                                                           zs.get("segment_direction"))),
                             f"steady {f(zs.get('steady'), 2)}, disc in every frame {f(zs.get('present'), 2)}"))
    s = results.get("search")
    if s:
        rows.append(("(e) search top-1 accuracy", f(s["top1"], 2), f"{s['queries']} queries"))
    rows.append(("seconds", f(results["seconds"].get("total"), 0),
                 ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items() if k != "total")))
    return rows


def evaluate(*, weights=None, random: bool = False, ema: bool = True, device: str | None = None, quick: bool = False,
             sections=(), trajectories=(), seeds=(), learn_prompts=(), overrides: dict | None = None,
             threads: int = 0, log: Callable[[str], None] | None = None, **config) -> dict:
    """`motionlib eval`: check the options, load the model, run the sections; the results dict.

    `config` takes the other EvalConfig fields (zt, mf, steps, out_dir, ...); None values keep the defaults."""
    if threads > 0:
        torch.set_num_threads(threads)
    sections = check_sections(tuple(sections))
    bad = [f for f in trajectories if f not in EVAL_TRAJECTORIES]
    if bad:
        raise ParameterError(f"unknown trajectory {', '.join(bad)}: use {', '.join(EVAL_TRAJECTORIES)}")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None and v != ()}
    cfg = EvalConfig.make(quick=quick, seeds=tuple(seeds) or None, trajectories=tuple(trajectories) or None,
                          learn_prompts=tuple(learn_prompts) or None, overrides=overrides, **config)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, info = load_eval_model(weights, random=random, ema=ema, device=device)
    _guidance(model, cfg)  # bad guidance overrides fail here, before any work
    log = log or (lambda msg: None)
    if cfg.mf and not have_cv2() and "transfer" in sections:
        log("MF-LK skipped: OpenCV missing (pip install opencv-python-headless)")
    log(f"evaluating {info.get('weights')} on {device}{' (quick)' if quick else ''}")
    return run_eval(model, cfg, sections=sections, log=log, info=info)
