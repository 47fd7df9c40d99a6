"""Section: motion editing on shapes (issue 28): mirror, reverse and blend, scored zero-shot.

Learns four reference clips on ``shapes`` with its default recipe (``shift`` parametrisation): a disc
moving ``left``, one moving ``up``, a ``down-up`` reversal (down for 4 frames, then up) and a ``left-up``
L turn. Then renders zero-shot, on 2 prompts × 4 seeds (not the learn seed), each original and each edit:
mirror x of left (should move right), mirror y of up (down), reverse of down-up (a there-and-back
reversed is one too: down 3 steps, then up 4), reverse of left-up (down, then right) and blend(left, up)
0.5/0.5 (up-left), and scores each render's disc track with the eval's per-segment direction
(``motionlib.demo.metrics.segment_direction``: 0 for a render without a disc, every render counted)
against the edited reference track. The model's AMF of a mirrored clip is compared with the mirrored
stored AMF too (``mirrored_amf_agreement``). A full run writes ``docs/edit.png``.

``python -m benchmarks --only edit --update`` measures it into BENCHMARKS.md.
"""

from __future__ import annotations

import time

import numpy as np

from .common import ROOT, Config, Section, log

PICTURE = ROOT / "docs" / "edit.png"
TURN = 4  # the down-up clip turns at this frame
SPEED = 2.5  # px per frame, as the eval's directional clips


def down_up_clip(first=(0.0, 1.0), then=(0.0, -1.0)):
    """(frames uint8 [F, 3, H, W], meta) of a red disc moving along `first` (default: down) for TURN frames,
    then along `then` (default: up), centred."""
    from motionlib.demo import data

    n, size = data.NUM_FRAMES, data.SIZE
    rel = data._two_segments(np.array(first), np.array(then), SPEED, SPEED, TURN, n)
    track = rel - (rel.max(0) + rel.min(0)) / 2 + (size - 1) / 2
    frames = data.render(track, data.COLORS["red"], np.zeros((size, size, 3), np.uint8), data.RADIUS)
    return frames, {"trajectory": "reversal", "params": {"turns": [TURN]}, "track": track}


def straight_clip(direction: str):
    from motionlib.demo.eval import directional_clip

    frames, _, meta = directional_clip(direction, "red", speed=SPEED)
    return frames, {"trajectory": "linear", "params": {}, "track": meta["track"]}


def mirrored_track(track, axis: str, size: int):
    out = np.array(track, dtype=np.float64)
    out[:, 0 if axis == "x" else 1] = size - 1 - out[:, 0 if axis == "x" else 1]
    return out


def reversed_meta(meta: dict) -> dict:
    n = len(meta["track"])
    return {**meta, "track": np.array(meta["track"])[::-1].copy(),
            "params": {"turns": sorted(n - 1 - t for t in meta["params"].get("turns", []))}}


def mirrored_amf_agreement(model, directions=("left", "up", "right", "down"),
                           min_shift: float = 1.0) -> dict[str, dict[str, float]]:
    """Direction agreement of the model's AMF of a mirrored clip with the mirror of its AMF of the clip, per
    axis, at the first guidance block, on the eval's directional clips (a disc on black: background patches
    tie, their argmax points anywhere, so only patches of frame i that the disc covers by half or more count).

    Three numbers per axis, each a mean cosine (0 where a vector is zero):

    - ``every pair``: mirrored vs model, over every frame pair i ≠ j;
    - ``moved pairs``: the same over the pairs whose true disc shift is at least `min_shift` patches, the
      rule of the eval's AMF direction (``metrics.amf_direction_cosines``, paper appendix D): at 2.5 px
      per frame and 4 px patches an adjacent pair moves 0.6 patch, and its hard AMF is often 0 in one of
      the two;
    - ``AMF vs truth``: the model's AMF of the mirrored clip against the true displacement on those pairs
      (appendix D): how exact the model's AMF is at all, the ceiling of the agreement."""
    import torch

    from motionlib.demo import data
    from motionlib.demo.metrics import amf_direction_cosines, patch_coverage
    from motionlib.edit import mirror_amf
    from motionlib.learn import reference_motion

    g = model.spec.guidance
    block = g.blocks[0]
    grid = model.spec.grid
    patch = model.spec.spatial_compression * model.spec.patch_size
    out: dict[str, dict[str, float]] = {}
    for axis in ("x", "y"):
        every, moved, truth = [], [], []
        for d in directions:
            frames, meta = straight_clip(d)
            flipped = np.ascontiguousarray(frames[..., ::-1] if axis == "x" else frames[..., ::-1, :])
            track = mirrored_track(meta["track"], axis, data.SIZE) / patch
            a = reference_motion(model, data.to_model_range(frames), blocks=(block,), temperature=g.temperature)
            b = reference_motion(model, data.to_model_range(flipped), blocks=(block,), temperature=g.temperature)
            want, _ = mirror_amf(a.amf[block], a.confidence[block], grid, axis)
            got = b.amf[block]
            coverage = patch_coverage(flipped, patch)
            cover = torch.from_numpy(coverage >= 0.5)  # [F, S]
            for i in range(grid[0]):
                for j in range(grid[0]):
                    if i == j or not cover[i].any():
                        continue
                    u, v = want[i, j][cover[i]].float(), got[i, j][cover[i]].float()
                    cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp_min(1e-12)
                    every.append(cos)
                    if np.linalg.norm(track[j] - track[i]) >= min_shift:
                        moved.append(cos)
            truth.append(amf_direction_cosines(got, track * patch, coverage, patch=patch, min_shift=min_shift))
        out[axis] = {"every pair": float(torch.cat(every).mean()) if every else float("nan"),
                     "moved pairs": float(torch.cat(moved).mean()) if moved else float("nan"),
                     "AMF vs truth": float(np.concatenate(truth).mean()) if truth else float("nan")}
    return out


def _score(videos, meta) -> list[float]:
    from motionlib.demo import data
    from motionlib.demo.metrics import blob_track, segment_direction

    segs = data.segments(meta, len(meta["track"]))
    return [segment_direction(blob_track(v), meta["track"], segs) for v in videos]


def _diagonal(videos, target=(-1.0, -1.0)) -> list[float]:
    """Cosine of each render's overall disc displacement (first to last frame with a disc) with `target`;
    0 for a render with fewer than two frames with a disc."""
    from motionlib.demo.metrics import blob_track

    t = np.array(target) / np.linalg.norm(target)
    out = []
    for v in videos:
        tr = blob_track(v)
        known = [k for k in range(len(tr)) if np.isfinite(tr[k]).all()]
        if len(known) < 2:
            out.append(0.0)
            continue
        d = tr[known[-1]] - tr[known[0]]
        out.append(float(d @ t / np.linalg.norm(d)) if np.linalg.norm(d) > 0 else 0.0)
    return out


def run(cfg: Config) -> Section:
    from motionlib.apply import apply
    from motionlib.demo import data
    from motionlib.demo.eval import LEARN_SEED
    from motionlib.demo.metrics import to_uint8
    from motionlib.edit import blend
    from motionlib.learn import learn

    from .common import demo_model_name, model

    name = demo_model_name()
    sec = Section("edit", f"motion editing: mirror, reverse, blend zero-shot ({name})",
                  "mirror: ≥ 0.9 × the original's agreement (x on left, y on up); reverse of a reversal: ≥ 0.9 × the "
                  "original per segment and ≥ 0.6; blend(left, up): cosine with (−1, −1)/√2 ≥ 0.7; the model's AMF "
                  "of a mirrored clip agrees with the mirrored AMF ≥ 0.9")
    if name != "shapes":
        sec.status, sec.headline = "not measured", "needs the shapes demo model"
        return sec
    m = model(name)
    size = data.SIZE
    prompts = [data.prompt_for(c, "black") for c in ("blue", "green")]
    seeds = (0, 1, 2, 3)
    overrides: dict = {}
    if cfg.quick:
        prompts, seeds, overrides = prompts[:1], (0,), {"samples": 1, "opt_steps": 2}
    refs = {"left": straight_clip("left"), "up": straight_clip("up"), "down-up": down_up_clip(),
            "left-up": down_up_clip((-1.0, 0.0), (0.0, -1.0))}
    assets, learn_s = {}, {}
    for key, (frames, _) in refs.items():
        t0 = time.monotonic()
        assets[key] = learn(m, data.to_model_range(frames), seed=LEARN_SEED, **overrides).asset
        learn_s[key] = time.monotonic() - t0
        log(f"edit: learnt {key} in {learn_s[key]:.0f} s ({assets[key].parametrisation})")
    left, up, downup, leftup = (refs[k][1] for k in ("left", "up", "down-up", "left-up"))
    cases = {  # label -> (asset, reference meta to score against)
        "left": (assets["left"], left),
        "mirror x of left (moves right)": (assets["left"].mirror("x"), {**left, "track": mirrored_track(left["track"], "x", size)}),
        "up": (assets["up"], up),
        "mirror y of up (moves down)": (assets["up"].mirror("y"), {**up, "track": mirrored_track(up["track"], "y", size)}),
        "down-up": (assets["down-up"], downup),
        "reverse of down-up": (assets["down-up"].reversed(), reversed_meta(downup)),
        "left-up (an L turn)": (assets["left-up"], leftup),
        "reverse of left-up (down, then right)": (assets["left-up"].reversed(), reversed_meta(leftup)),
        "blend(left, up) 0.5/0.5": (blend([assets["left"], assets["up"]], [0.5, 0.5]), None),
        "blend(left, up) 0.5/0.5, --part full": (blend([assets["left"], assets["up"]], [0.5, 0.5], part="full"), None),
    }
    renders: dict[str, list] = {}
    for label, (asset, _) in cases.items():
        t0 = time.monotonic()
        renders[label] = [to_uint8(apply(m, asset, p, seed=s)) for p in prompts for s in seeds]
        log(f"edit: {len(renders[label])} renders of {label} in {time.monotonic() - t0:.0f} s")
    scores = {label: (_score(renders[label], meta) if meta is not None else _diagonal(renders[label]))
              for label, (_, meta) in cases.items()}
    # controls: the unedited renders scored against the reversed track (how much reversing changes the score)
    controls = {"down-up renders (unedited) vs the reversed track": _score(renders["down-up"], reversed_meta(downup)),
                "left-up renders (unedited) vs the reversed track": _score(renders["left-up (an L turn)"],
                                                                           reversed_meta(leftup))}
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    amf = mirrored_amf_agreement(m)

    def ratio(a: str, b: str) -> float:
        return mean[a] / mean[b] if mean[b] > 0 else float("nan")

    mx, my = ratio("mirror x of left (moves right)", "left"), ratio("mirror y of up (moves down)", "up")
    rv = ratio("reverse of down-up", "down-up")
    bl = mean["blend(left, up) 0.5/0.5"]
    goals = {
        "mirror x": mx >= 0.9, "mirror y": my >= 0.9,
        "reverse": rv >= 0.9 and mean["reverse of down-up"] >= 0.6, "blend": bl >= 0.7,
        "mirrored AMF": min(v["moved pairs"] for v in amf.values()) >= 0.9,
    }
    sec.headers = ["motion", "scored against", "renders", "mean", "min", "edit / original"]
    against = {"left": "left track", "mirror x of left (moves right)": "mirrored left track (right)",
               "up": "up track", "mirror y of up (moves down)": "mirrored up track (down)",
               "down-up": "down-up track (turn at frame 4)",
               "reverse of down-up": "reversed track (down 3 steps, then up 4: a reversal reversed is one too)",
               "left-up (an L turn)": "left-up track", "reverse of left-up (down, then right)": "reversed track",
               "blend(left, up) 0.5/0.5": "(−1, −1)/√2, overall displacement (global parts: the default)",
               "blend(left, up) 0.5/0.5, --part full": "(−1, −1)/√2, overall displacement (full fields)"}
    rel = {"mirror x of left (moves right)": mx, "mirror y of up (moves down)": my, "reverse of down-up": rv,
           "reverse of left-up (down, then right)": ratio("reverse of left-up (down, then right)", "left-up (an L turn)")}
    sec.rows = [[k, against[k], str(len(v)), f"{mean[k]:.3f}", f"{min(v):.3f}",
                 f"{rel[k]:.3f}" if k in rel else ""] for k, v in scores.items()]
    sec.rows += [[k, "reversed track (control)", str(len(v)), f"{np.mean(v):.3f}", f"{min(v):.3f}", ""]
                 for k, v in controls.items()]
    sec.tables.append((["AMF of the mirrored clip vs mirrored stored AMF (left, up, right, down clips)",
                        "moved pairs (true shift ≥ 1 patch; the goal)", "every pair", "model's AMF vs truth (moved pairs)"],
                       [[f"mirror {a}", f"{v['moved pairs']:.3f}", f"{v['every pair']:.3f}", f"{v['AMF vs truth']:.3f}"]
                        for a, v in amf.items()]))
    met = all(goals.values())
    sec.status = "met" if met else "missed"
    sec.headline = (f"mirror x {mx:.2f}×, mirror y {my:.2f}× the original; reverse {rv:.2f}× "
                    f"({mean['reverse of down-up']:.2f}); blend cosine {bl:.2f}; mirrored AMF "
                    f"{amf['x']['moved pairs']:.2f} (x) / {amf['y']['moved pairs']:.2f} (y); "
                    + ("all met" if met else "missed: " + ", ".join(k for k, ok in goals.items() if not ok)))
    sec.notes.append(f"Each motion learnt once on {name} with its default recipe ({assets['left'].parametrisation} "
                     f"parametrisation, seed {LEARN_SEED}{', quick: ' + str(overrides) if overrides else ''}; learn "
                     f"{', '.join(f'{k} {v:.0f} s' for k, v in learn_s.items())}); renders zero-shot "
                     f"(apply, strength 1) on {len(prompts)} prompt(s) × seeds {list(seeds)}, every render counted "
                     "(a render without a disc scores 0). Scores: the eval's per-segment direction of the disc track "
                     "against the (edited) reference track; the blend: cosine of the overall displacement.")
    sec.notes.append("Mirrored AMF: mean cosine over the patches of frame i the disc covers by half or more, at the "
                     "first guidance block; the goal uses the frame pairs whose true disc shift is at least one patch, "
                     "the rule of the eval's AMF direction (paper appendix D): an adjacent pair moves 0.6 patch and its "
                     "hard AMF is often 0 on one side. 'every pair' keeps them all (the measure before 2026-12-08); the "
                     "last column is the model's AMF of the mirrored clip against the true displacement, its ceiling.")
    sec.notes.append("The blend's KV injection is off (motionlib.edit: one parent's reference would pull the render "
                     "to its motion); every other motion keeps shapes' injection at block 0.")
    if not cfg.quick:
        renders["reverse of left"] = [to_uint8(apply(m, assets["left"].reversed(), prompts[0], seed=seeds[0]))]
        picture(renders, refs, PICTURE)
        sec.notes.append(f"Picture: {PICTURE.relative_to(ROOT)} (the first prompt, seed 0).")
    return sec


def picture(renders: dict, refs: dict, path) -> None:
    """Frame strips: the left reference, then one zero-shot render per motion (first prompt, seed 0)."""
    from PIL import Image, ImageDraw

    rows = [("reference: left", refs["left"][0]), ("zero-shot: left", renders["left"][0]),
            ("mirror x of left", renders["mirror x of left (moves right)"][0]),
            ("reverse of left", renders["reverse of left"][0]),
            ("blend(left, up)", renders["blend(left, up) 0.5/0.5"][0]),
            ("reference: down-up", refs["down-up"][0]), ("zero-shot: down-up", renders["down-up"][0]),
            ("reverse of down-up", renders["reverse of down-up"][0]),
            ("reference: left-up", refs["left-up"][0]), ("zero-shot: left-up", renders["left-up (an L turn)"][0]),
            ("reverse of left-up", renders["reverse of left-up (down, then right)"][0])]
    scale, label_w, gap = 3, 150, 2
    f, _, h, w = np.asarray(rows[0][1]).shape
    cell = h * scale
    img = Image.new("RGB", (label_w + f * (cell + gap), len(rows) * (cell + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for r, (label, video) in enumerate(rows):
        v = np.asarray(video)
        y = r * (cell + gap)
        draw.text((4, y + cell // 2 - 6), label, fill=(0, 0, 0))
        for k in range(f):
            frame = Image.fromarray(v[k].transpose(1, 2, 0)).resize((cell, cell), Image.NEAREST)
            img.paste(frame, (label_w + k * (cell + gap), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def blend_variants(weights=((1.0, 1.0), (0.5, 0.5)), inject=(False, True), parts=("global", "full")) -> dict[str, float]:
    """The blend(left, up) choices side by side (not part of the section: 8 renders each): the part of each
    parent summed, the weights, and KV injection off (what motionlib.edit does) or on with the first parent's
    latent. Returns the mean cosine of the overall displacement with (−1, −1)/√2 per variant."""
    from dataclasses import replace

    from motionlib.apply import apply
    from motionlib.demo import data
    from motionlib.demo.eval import LEARN_SEED
    from motionlib.demo.metrics import to_uint8
    from motionlib.edit import blend
    from motionlib.learn import learn

    from .common import model

    m = model("shapes")
    left, up = (learn(m, data.to_model_range(straight_clip(d)[0]), seed=LEARN_SEED).asset for d in ("left", "up"))
    prompts = [data.prompt_for(c, "black") for c in ("blue", "green")]
    out = {}
    for part in parts:
        for w in weights:
            for on in inject:
                b = blend([left, up], list(w), part=part)
                b = replace(b, params={**b.params, "inject": on})
                videos = [to_uint8(apply(m, b, p, seed=s)) for p in prompts for s in (0, 1, 2, 3)]
                key = f"part {part}, weights {w}, injection {'on (left)' if on else 'off'}"
                out[key] = float(np.mean(_diagonal(videos)))
                log(f"edit: {key}: {out[key]:.3f}")
    return out


def global_part_variants() -> dict[str, float]:
    """The left motion whole or reduced to its global part (motionlib.edit.global_shift), KV injection on or
    off, 8 renders each (not part of the section): does each frame's mean offset carry the motion? Returns the
    mean per-segment direction against the left track per variant."""
    from dataclasses import replace

    from motionlib.apply import apply
    from motionlib.demo import data
    from motionlib.demo.eval import LEARN_SEED
    from motionlib.demo.metrics import to_uint8
    from motionlib.edit import global_shift
    from motionlib.learn import learn

    from .common import model

    m = model("shapes")
    frames, meta = straight_clip("left")
    left = learn(m, data.to_model_range(frames), seed=LEARN_SEED).asset
    glob = replace(left, rho_delta={t: {n: global_shift(v, m.spec.grid) for n, v in d.items()}
                                    for t, d in left.rho_delta.items()})
    prompts = [data.prompt_for(c, "black") for c in ("blue", "green")]
    out = {}
    for label, asset in (("whole", left), ("global part", glob)):
        for on in (True, False):
            a = replace(asset, params={**asset.params, "inject": on})
            videos = [to_uint8(apply(m, a, p, seed=s)) for p in prompts for s in (0, 1, 2, 3)]
            key = f"left, {label}, injection {'on' if on else 'off'}"
            out[key] = float(np.mean(_score(videos, meta)))
            log(f"edit: {key}: {out[key]:.3f}")
    return out


if __name__ == "__main__":  # python -m benchmarks.edit --blend-variants | --global-part
    import sys

    runs = {"--blend-variants": blend_variants, "--global-part": global_part_variants}
    if len(sys.argv) != 2 or sys.argv[1] not in runs:
        sys.exit("usage: python -m benchmarks.edit --blend-variants | --global-part  "
                 "(the section itself: python -m benchmarks --only edit)")
    from .common import setup_threads

    setup_threads()
    for k, v in runs[sys.argv[1]]().items():
        print(f"{k}: {v:.3f}")
