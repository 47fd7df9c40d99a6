"""Measure and draw what retargeting does on `shapes` (docs/retarget.md, docs/retarget.png).

    python examples/retarget_picture.py              # the numbers and the picture (35 min on this loaded 2-core machine)
    python examples/retarget_picture.py --ablation   # 8x48x48 without scaling the offsets / with nearest tokens

`shapes` was trained at 8 frames of 32x32 only. This learns `left` from examples/shapes_left.mp4 with the
shapes defaults (what `make demo` runs), then renders it zero-shot at its learnt geometry (8x32x32),
retargeted to 8x48x48 and to 12x32x32, for 2 prompts x 4 seeds, with a plain generation (same prompt and
seed, no motion) at each geometry as the baseline. Every render is scored with the demo evaluation's
metrics (motionlib.demo.metrics) against the reference track at that geometry (scaled by 1.5 at 48x48,
retimed by linear interpolation with its first and last frames kept at 12 frames):

- ``segment``: the eval's per-segment direction (cosine of the disc's net displacement with the
  reference's; `left` is one straight segment; a render with no disc track scores 0, so every render counts);
- ``steps``: the mean cosine of the frame-to-frame steps that both tracks move in (NaN when none);
- ``present``: the share of renders with a disc-like blob in every frame.

A disc counts as disc-like at the training radius or at the radius scaled with the frame (the model may
draw either at 48x48). Prints one line per render and a summary, and writes docs/retarget.png: for seed
1 and the first prompt, the reference, then the zero-shot and plain renders at each geometry.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

GEOMETRIES = ((8, 32, 32), (8, 48, 48), (12, 32, 32))  # frames, height, width
PROMPTS = ("a green circle on a black background", "a blue circle on a black background")
SEEDS = (1, 2, 3, 4)
ROW_HEIGHT = 96  # pixels of every frame in the picture (32 x 3, 48 x 2)


def disc_track(video, scale: float):
    """[F, 2] (x, y) centroid of the largest bright component where it is disc-like at the training
    radius or at that radius x `scale` (NaN elsewhere)."""
    import numpy as np

    from motionlib.demo import data
    from motionlib.demo.metrics import bright_mask, components, is_disc_like

    mask = bright_mask(video)
    out = np.full((mask.shape[0], 2), np.nan)
    for k, m in enumerate(mask):
        comps = components(m)
        if comps and (is_disc_like(comps[0]) or is_disc_like(comps[0], data.RADIUS * scale)):
            out[k] = comps[0][:, 1].mean(), comps[0][:, 0].mean()
    return out


def retimed(track, frames: int):
    """The [F, 2] track at `frames` frames, first and last kept (linear interpolation)."""
    import numpy as np

    f = len(track)
    pos = np.linspace(0, f - 1, frames)
    return np.stack([np.interp(pos, np.arange(f), track[:, a]) for a in range(2)], axis=1)


def strip(video, label: str, font):
    """PIL image: a label column, then the frames of uint8 [F, 3, H, W] at ROW_HEIGHT px."""
    import numpy as np
    from PIL import Image, ImageDraw

    from motionlib.demo.pictures import wrap_label

    f, _, h, w = video.shape
    k = ROW_HEIGHT // h
    label_w, gap = 250, 2
    img = np.full((ROW_HEIGHT + 2 * gap, label_w + f * (w * k + gap) + gap, 3), 40, np.uint8)
    frames = video.transpose(0, 2, 3, 1).repeat(k, 1).repeat(k, 2)
    for i in range(f):
        x = label_w + gap + i * (w * k + gap)
        img[gap:gap + ROW_HEIGHT, x:x + w * k] = frames[i]
    im = Image.fromarray(img)
    draw = ImageDraw.Draw(im)
    for i, ln in enumerate(wrap_label(label, 28)[:5]):
        draw.text((6, 8 + 17 * i), ln, fill=(235, 235, 235), font=font)
    return im


def ablation_assets(asset, frames: int, height: int, width: int) -> dict:
    """`--ablation`: the retargeted asset and two variants of it: its offsets left in the old grid's
    units (resampled, not scaled), and a nearest-token resampling (scaled) instead of trilinear."""
    import torch

    from motionlib.retarget import axis_scale, nearest_indices, retarget

    full = retarget(asset, frames, height, width)
    old, new = asset.spec.grid, full.spec.grid
    scale = torch.tensor([axis_scale(old[0], new[0], True), axis_scale(old[1], new[1], False),
                          axis_scale(old[2], new[2], False)])
    ti, yi, xi = (nearest_indices(o, n, ends) for o, n, ends in zip(old, new, (True, False, False)))

    def nearest(v):
        field = v.reshape(*old, 3)[ti][:, yi][:, :, xi]
        return (field * scale).reshape(-1, 3)

    unscaled = {t: {n: v / scale for n, v in d.items()} for t, d in full.rho_delta.items()}
    near = {t: {n: nearest(v) for n, v in d.items()} for t, d in asset.rho_delta.items()}
    return {"retargeted": full, "offsets not scaled": replace(full, rho_delta=unscaled),
            "nearest tokens": replace(full, rho_delta=near)}


def travel(track, ref) -> float:
    """How far the disc travels along the reference's net displacement, as a share of it (1: as far;
    NaN with fewer than two frames with a disc), between the first and last frames with a disc."""
    import numpy as np

    known = np.flatnonzero(np.isfinite(track).all(axis=1))
    if len(known) < 2:
        return float("nan")
    a, b = known[0], known[-1]
    d_tr, d_ref = track[b] - track[a], ref[b] - ref[a]
    return float(d_tr @ d_ref / (d_ref @ d_ref))


def run_ablation(model, asset, ref_track) -> None:
    """Zero-shot at 8x48x48 with each ablation_assets variant (and at the learnt 8x32x32), scored like
    main's renders, plus the median travel along the reference's displacement (1 = as far as it)."""
    import numpy as np

    from motionlib.apply import apply
    from motionlib.demo.metrics import direction_agreement, segment_direction, to_uint8
    from motionlib.models import with_geometry

    s = model.spec
    variants = [("learnt geometry 8x32x32", model, asset, 1.0)]
    m48 = with_geometry(model, 8, 48, 48)
    variants += [(f"8x48x48 {k}", m48, v, 48 / s.height) for k, v in ablation_assets(asset, 8, 48, 48).items()]
    for label, m, variant, scale in variants:
        ref = ref_track * scale
        segs, steps, present, far = [], [], [], []
        for prompt in PROMPTS:
            for seed in SEEDS:
                track = disc_track(to_uint8(apply(m, variant, prompt, seed=seed)), scale)
                segs.append(segment_direction(track, ref, [(0, m.spec.num_frames - 1)]))
                steps.append(direction_agreement(track, ref)[0])
                present.append(bool(np.isfinite(track).all()))
                far.append(travel(track, ref))
        print(f"{label}: segment direction {np.mean(segs):+.2f} (min {np.min(segs):+.2f}), step direction "
              f"{np.nanmean(steps):+.2f}, disc in every frame {np.mean(present):.2f}, travel (median) "
              f"{np.nanmedian(far):.2f} (range {np.nanmin(far):.2f} to {np.nanmax(far):.2f})", flush=True)


def main() -> int:
    import numpy as np
    from PIL import Image, ImageFont

    from motionlib.apply import apply
    from motionlib.demo.metrics import direction_agreement, segment_direction, to_uint8
    from motionlib.learn import learn
    from motionlib.models import load_model, with_geometry
    from motionlib.sampling import generate
    from motionlib.video import read_video

    model = load_model("shapes")
    s = model.spec
    clip, _ = read_video(HERE / "shapes_left.mp4", s.num_frames, s.height, s.width)
    reference = to_uint8((clip + 1) / 2)
    ref_track = disc_track(reference, 1.0)
    asset = learn(model, clip, seed=0).asset  # the shapes defaults, as `motionlib learn` (make demo)
    if "--ablation" in sys.argv[1:]:
        run_ablation(model, asset, ref_track)
        return 0
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    rows = [strip(reference, "reference: shapes_left.mp4 (8x32x32)", font)]
    summary = []
    for frames, height, width in GEOMETRIES:
        m = with_geometry(model, frames, height, width)
        scale = height / s.height
        ref = retimed(ref_track * scale, frames)
        segs = [(0, frames - 1)]
        where = f"{frames}x{height}x{width}"
        scores: dict[str, list] = {"zero-shot": [], "plain": []}
        for prompt in PROMPTS:
            for seed in SEEDS:
                videos = {"zero-shot": apply(m, asset, prompt, seed=seed), "plain": generate(m, prompt, seed=seed)}
                for method, video in videos.items():
                    v = to_uint8(video)
                    track = disc_track(v, scale)
                    seg = segment_direction(track, ref, segs)
                    steps, used = direction_agreement(track, ref)
                    present = bool(np.isfinite(track).all())
                    scores[method].append((seg, steps, present))
                    print(f"{where} {method:9s} seed {seed} {prompt.split()[1]:5s}: segment {seg:+.2f}, steps "
                          f"{steps:+.2f} ({used} used), disc in every frame: {present}", flush=True)
                    if seed == SEEDS[0] and prompt == PROMPTS[0]:
                        rows.append(strip(v, f"{method} {where}: segment {seg:+.2f}, steps {steps:+.2f}, "
                                             f"{prompt.split()[1]}, seed {seed}", font))
        for method, rs in scores.items():
            seg = np.array([r[0] for r in rs])
            st = np.array([r[1] for r in rs])
            line = (f"{where} {method}: segment direction {seg.mean():+.2f} (min {seg.min():+.2f}, "
                    f"{int((seg > 0.5).sum())}/{len(seg)} above 0.5), step direction "
                    f"{np.nanmean(st) if np.isfinite(st).any() else float('nan'):+.2f} "
                    f"({int(np.isfinite(st).sum())} scored), disc in every frame {np.mean([r[2] for r in rs]):.2f}")
            summary.append(line)
    print("\n".join(["", f"{len(PROMPTS)} prompts x {len(SEEDS)} seeds per row; learn seed 0", *summary]))
    width = max(r.width for r in rows)
    out_img = Image.new("RGB", (width, sum(r.height for r in rows)), (40, 40, 40))
    y = 0
    for r in rows:
        out_img.paste(r, (0, y))
        y += r.height
    out = HERE.parent / "docs" / "retarget.png"
    out_img.save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
