"""Compare guidance settings on the shapes model by zero-shot motion transfer (a tuning aid).

    python -m motionlib.demo.sweep parametrisation=shift lr_start=0.3 lr_end=0.1
    python -m motionlib.demo.sweep samples=4 --prompts "a green circle on a black background,a blue circle on a black background"
    python -m motionlib.demo.sweep shift_grid=2 frame_shift=true smoothness=0.1
    python -m motionlib.demo.sweep --learn-seed     # also: the optimised render, and the learn seed
    python -m motionlib.demo.sweep --block-table    # every block and pair: AMF agreement and zero-shot
    python -m motionlib.demo.sweep --block-table --amf-only   # the AMF column alone (seconds)

For each held-out reference clip (``eval.reference_clip``: families x clip indices), learn with the
given guidance overrides (any ``GuidanceParams`` field: ``samples=``, ``shift_grid=``,
``frame_shift=``, ``smoothness=``, ``blocks=[2,3]``, ...; seed ``eval.LEARN_SEED``; ``--prompts``
the learn prompts), then render zero-shot for other colours x seeds and print, per clip and
overall, the measures of ``motionlib eval`` (c) (``eval.aggregate``): disc-only direction agreement
with every render counted (a render without a usable disc track scores 0; how many did, and how
many had no disc-like blob at all), the largest-blob direction agreement and MF-LK. This is how the
shapes guidance defaults in ``motionlib/demo/model.py`` are chosen; ``motionlib eval`` is the
measurement of record. ``--learn-seed`` adds two diagnostics: the optimised learn render itself
(rendered to the end) and zero-shot renders with the learn seed, to separate "the optimisation
does not move the content" from "the motion does not carry over to other noise".
``--block-table`` measures, for every block of the model (or ``--candidates``) and every pair of
them, the AMF direction agreement on clips of known motion (paper appendix D; a pair: the mean of
its two blocks) and, unless ``--amf-only``, the zero-shot result with that guidance.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

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


def zero_shot(model, a, overrides: dict, prompts: list[str] | None, log=print) -> dict:
    """Learn on every held-out clip with `overrides`, render zero-shot; per-render records (as eval's)."""
    from ..apply import apply
    from ..learn import learn
    from . import data
    from . import eval as ev

    seeds = [int(s) for s in a.seeds.split(",")]
    renders: list[dict] = []
    learns: list[dict] = []  # per learn: wall seconds and Adam passes (context for benchmarks.learn)
    extra: dict[str, list[float]] = {"optimised render": []}
    mf_on = ev.have_cv2()
    for fam in a.families.split(","):
        for idx in range(a.clips):
            frames, _, meta = ev.reference_clip(fam, index=idx)
            t0 = time.monotonic()
            result = learn(model, data.to_model_range(frames), seed=ev.LEARN_SEED, steps=a.steps,
                           preview=a.learn_seed, prompts=prompts, **overrides)
            asset = result.asset
            if a.learn_seed:
                extra["optimised render"].append(ev.blob_direction(result.preview, meta["track"]))
            learn_s = time.monotonic() - t0
            learns.append({"family": fam, "clip": idx, "learn_s": learn_s,
                           "passes": sum(len(step) for step in asset.losses)})
            per = []
            for colour in a.colours.split(","):
                tp = data.prompt_for(colour, "black")
                for seed in seeds + ([ev.LEARN_SEED] if a.learn_seed else []):
                    v = ev.to_uint8(apply(model, asset, tp, seed=seed, steps=a.steps))
                    per.append(ev.render_record(v, frames, meta, mf_on, method="zero_shot", seed=seed,
                                                learn_seed=seed == ev.LEARN_SEED, seen_prompt=tp in (prompts or ())))
            renders += per
            log(f"  {fam} #{idx}: learn {learn_s:.0f} s, loss {asset.losses[0][0]:.3f} -> "
                f"{asset.losses[-1][-1]:.4f}; " + summary(ev.aggregate([r for r in per if not r["learn_seed"]], mf_on)))
    out = ev.transfer_summary(renders, mf_on)
    out["renders"] = renders  # every render's scores, for seed-to-seed spreads (benchmarks.learn --record-quality)
    out["learns"] = learns
    out["optimised_render_blob"] = float(np.nanmean(extra["optimised render"])) if extra["optimised render"] else None
    return out


def summary(agg: dict) -> str:
    if not agg.get("renders"):
        return "no renders"
    out = [f"direction {agg['direction']:.3f} ({agg['renders']} renders, {agg['undefined']} scored 0, "
           f"{agg['no_disc']} without a disc)",
           "largest-blob direction " + ("n/a" if not np.isfinite(agg["direction_blob"]) else f"{agg['direction_blob']:.3f}")]
    if agg.get("mf_lk") is not None and np.isfinite(agg["mf_lk"]):
        out.append(f"MF-LK {agg['mf_lk']:.3f}")
    return ", ".join(out)


def block_table(model, a, overrides: dict, prompts) -> list[dict]:
    """Every candidate block and pair: AMF direction agreement (appendix D) and the zero-shot result."""
    from . import eval as ev
    from ..guidance import GuidanceParams

    g = GuidanceParams.from_spec(model.spec, **overrides)
    blocks = [int(b) for b in a.candidates.split(",")] if a.candidates else list(range(model.spec.num_layers))
    scores = ev.amf_block_scores(model, blocks, clips=a.amf_clips, temperature=g.temperature)
    rows: list[dict[str, Any]] = []
    for combo in [(b,) for b in blocks] + list(itertools.combinations(blocks, 2)):
        row: dict[str, Any] = {"blocks": list(combo), "amf": float(np.mean([scores[b] for b in combo]))}
        print(f"blocks {list(combo)}: AMF direction agreement {row['amf']:.3f}", flush=True)
        if not a.amf_only:
            res = zero_shot(model, a, {**overrides, "blocks": list(combo)}, prompts)
            z = res["zero_shot"]
            row.update(zero_shot=z["direction"], zero_shot_blob=z["direction_blob"], undefined=z["undefined"],
                       no_disc=z["no_disc"], renders=z["renders"], mf_lk=z["mf_lk"])
            print(f"blocks {list(combo)}: zero-shot " + summary(z), flush=True)
        rows.append(row)
    print("\n| blocks | AMF agreement (appendix D) | zero-shot direction (every render) | no disc | largest blob | MF-LK |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        def f(k, nd=3, r=r):
            return "—" if r.get(k) is None else (f"{r[k]:.{nd}f}" if isinstance(r[k], float) else str(r[k]))

        print(f"| {','.join(map(str, r['blocks']))} | {f('amf')} | {f('zero_shot')} | "
              f"{'—' if 'no_disc' not in r else str(r['no_disc']) + '/' + str(r['renders'])} | {f('zero_shot_blob')} | {f('mf_lk')} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m motionlib.demo.sweep", description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="*", help="guidance overrides as key=value (GuidanceParams fields: samples=4, "
                                                 "shift_grid=2, frame_shift=true, smoothness=0.1, blocks=[2,3], ...)")
    ap.add_argument("--families", default="linear,arc,zigzag")
    ap.add_argument("--clips", type=int, default=2, help="held-out clips per family")
    ap.add_argument("--colours", default="green,blue")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--prompts", default=None, help="learn prompts: a file (one per line) or P1,P2 (default: empty)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (model default)")
    ap.add_argument("--weights", default=None, help="shapes weights, run folder or checkpoint (default: bundled)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--learn-seed", action="store_true",
                    help="also score the optimised learn render and zero-shot renders with the learn seed")
    ap.add_argument("--block-table", action="store_true",
                    help="every block and pair of blocks: AMF direction agreement and zero-shot result")
    ap.add_argument("--candidates", default=None, help="--block-table: these blocks only (e.g. 1,2,3,4)")
    ap.add_argument("--amf-only", action="store_true", help="--block-table: the AMF column only")
    ap.add_argument("--amf-clips", type=int, default=8, help="--block-table: clips of known motion for the AMF column")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    overrides = parse_overrides(a.overrides)
    from ..learn import parse_prompts

    prompts = parse_prompts(a.prompts)

    import torch

    from . import eval as ev

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    model, _ = ev.load_eval_model(a.weights)
    print(f"sweep {json.dumps(overrides)}" + (f", learn prompts {prompts}" if prompts else ""), flush=True)
    out: dict[str, Any]
    if a.block_table:
        out = {"block_table": block_table(model, a, overrides, prompts)}
    else:
        out = zero_shot(model, a, overrides, prompts)
        z = out["zero_shot"]
        print(f"overall {json.dumps(overrides)}: " + summary(z))
        if a.learn_seed:
            sp = z["split"]
            print(f"zero-shot, learn seed: {summary(sp['learn_seed'])}\nzero-shot, other seeds: "
                  f"{summary(sp['other_seeds'])}\nlearn seed minus other seeds: {out.get('seed_gap', float('nan')):.3f}; "
                  f"optimised learn render, largest-blob direction: {out['optimised_render_blob']:.3f}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(ev.json_safe({"overrides": overrides, "prompts": prompts, **out}),
                                               indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
