"""Compare guidance settings on the shapes model by zero-shot motion transfer (a tuning aid).

    python -m motionlib.demo.sweep parametrisation=shift lr_start=0.3 lr_end=0.1
    python -m motionlib.demo.sweep parametrisation=table --families linear --clips 1
    python -m motionlib.demo.sweep --learn-seed     # also: the optimised render, and the learn seed

For each held-out reference clip (``eval.reference_clip``: families x clip indices), learn with the
given guidance overrides (seed ``eval.LEARN_SEED``), then render zero-shot for other colours x seeds
and print, per clip and overall: the disc-only direction agreement of ``motionlib eval`` (c) (with
how many renders it is defined for), the largest-blob direction agreement and MF-LK. This is how
the shapes guidance defaults in ``motionlib/demo/model.py`` were chosen; ``motionlib eval`` is the
measurement of record. ``--learn-seed`` adds two diagnostics: the optimised learn render itself
(rendered to the end) and zero-shot renders with the learn seed, to separate "the optimisation
does not move the content" from "the motion does not carry over to other noise".
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"overrides are key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare word, e.g. parametrisation=shift
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m motionlib.demo.sweep", description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="*", help="guidance overrides as key=value (GuidanceParams fields)")
    ap.add_argument("--families", default="linear,arc,zigzag")
    ap.add_argument("--clips", type=int, default=2, help="held-out clips per family")
    ap.add_argument("--colours", default="green,blue")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (model default)")
    ap.add_argument("--weights", default=None, help="shapes weights, run folder or checkpoint (default: bundled)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--learn-seed", action="store_true",
                    help="also score the optimised learn render and zero-shot renders with the learn seed")
    a = ap.parse_args(argv)
    overrides = parse_overrides(a.overrides)

    import torch

    from ..apply import apply
    from ..learn import learn
    from . import data
    from . import eval as ev

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    model, _ = ev.load_eval_model(a.weights)
    seeds = [int(s) for s in a.seeds.split(",")]
    totals: dict[str, list[float]] = {"direction": [], "direction_blob": [], "mf_lk": []}
    extra: dict[str, list[float]] = {"optimised render": [], "zero-shot, learn seed": []}

    for fam in a.families.split(","):
        for idx in range(a.clips):
            frames, _, meta = ev.reference_clip(fam, index=idx)
            t0 = time.monotonic()
            asset = learn(model, data.to_model_range(frames), seed=ev.LEARN_SEED, steps=a.steps,
                          preview=a.learn_seed, **overrides)
            if a.learn_seed:
                asset, optimised = asset
                extra["optimised render"].append(ev.blob_direction(optimised, meta["track"]))
            learn_s = time.monotonic() - t0
            per = {k: [] for k in totals}
            for colour in a.colours.split(","):
                for seed in seeds:
                    v = ev.to_uint8(apply(model, asset, data.prompt_for(colour, "black"), seed=seed, steps=a.steps))
                    per["direction"].append(ev.render_direction(v, meta["track"])[0])
                    per["direction_blob"].append(ev.blob_direction(v, meta["track"]))
                    if ev.have_cv2():
                        per["mf_lk"].append(ev.mf_lk(v, frames))
                if a.learn_seed:
                    v = apply(model, asset, data.prompt_for(colour, "black"), seed=ev.LEARN_SEED, steps=a.steps)
                    extra["zero-shot, learn seed"].append(ev.blob_direction(v, meta["track"]))
            for k in totals:
                totals[k] += per[k]
            print(f"{fam} #{idx}: learn {learn_s:.0f} s, loss {asset.losses[0][0]:.3f} -> {asset.losses[-1][-1]:.4f}; "
                  + summary(per), flush=True)
    print(f"overall {json.dumps(overrides)}: " + summary(totals))
    if a.learn_seed:
        print("largest-blob direction, " + ", ".join(f"{k}: {np.nanmean(v):.3f} (n={len(v)})"
                                                     for k, v in extra.items()))
    return 0


def summary(vals: dict[str, list[float]]) -> str:
    d = [x for x in vals["direction"] if np.isfinite(x)]
    blob = [x for x in vals["direction_blob"] if np.isfinite(x)]
    out = [f"direction {np.mean(d):.3f} ({len(d)}/{len(vals['direction'])} defined)" if d
           else f"direction n/a (0/{len(vals['direction'])} defined)",
           f"largest-blob direction {np.mean(blob):.3f}" if blob else "largest-blob direction n/a"]
    if vals["mf_lk"]:
        out.append(f"MF-LK {np.mean(vals['mf_lk']):.3f}")
    return ", ".join(out)


if __name__ == "__main__":
    sys.exit(main())
