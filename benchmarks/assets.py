"""Section 4: asset size per model family and ρ parametrisation, from the shapes the engine stores
(MotionAsset format v1), and what the compact form costs in quality on the shapes demo model."""

from __future__ import annotations

import io
import json
import math
import struct
import tempfile
from pathlib import Path

import torch

from .common import Config, Section, disc_video, every_core, fmt_bytes, log, model
from .learn import no_measured_loss

GOAL = 10e6  # bytes, for a 5B motion and a Wan 14B-class one (with a shift parametrisation)
REAL = ("cogvideox-5b", "cogvideox-2b", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b")
ITEMSIZE = {"F16": 2, "I16": 2, "I8": 1, "U8": 1, "F32": 4}
LATENT_CHANNELS = 16  # CogVideoX-2B/5B and Wan 2.1 VAE latent channels (the tiny presets use 4)


def _parts(meta: dict) -> dict[str, int]:
    """Bytes per part, from the tensor table ``motionlib.asset`` validates files against."""
    from motionlib.asset import _expected

    out = {"ρ": 0, "ref latent": 0, "AMF": 0, "confidence": 0, "previews": 0}
    for name, (shape, dtype) in _expected(meta).items():
        n = math.prod(shape) * ITEMSIZE[dtype]
        key = ("ρ" if name.startswith("rho.") else "ref latent" if name == "ref.latent" else
               "AMF" if name.startswith("ref.amf") else "confidence" if name.startswith("ref.conf")
               else "previews")
        out[key] += n
    return out


def _official_tables(spec) -> int:
    """Tables per step of the official code's ρ: q/k cos/sin for RoPE (4), the embedding (1)."""
    from motionlib.rho import names_for

    return len(names_for(spec.embedding, "table"))


def _official_bytes(spec, n_steps: int) -> int:
    """ρ of the official code, fp32, per guided timestep: rope [2, 2, N, head_dim]; posemb [1, N, hidden]."""
    from motionlib.rho import rho_width

    f, r, c = spec.grid
    n = f * r * c
    return _official_tables(spec) * n * rho_width(spec) * 4 * n_steps


def _official_pickle(spec, timesteps) -> int:
    """Measured: torch.save (pickle) of the official-style fp32 ρ tensors."""
    from motionlib.rho import rho_width

    f, r, c = spec.grid
    n = f * r * c
    shape = (_official_tables(spec), n, rho_width(spec))
    buf = io.BytesIO()
    torch.save({int(t): torch.zeros(shape) for t in timesteps}, buf)
    return buf.tell()


def _real_meta(spec, parametrisation: str) -> dict:
    from motionlib.catalog import PREVIEW_HEIGHT
    from motionlib.guidance import guided_step_count
    from motionlib.integrity import VERSION

    f, _, _ = spec.grid
    n_steps = guided_step_count(spec.num_inference_steps, spec.guidance.guided_fraction)
    h = PREVIEW_HEIGHT  # previews are always this tall (enlarged for small clips)
    return {"version": VERSION, "spec": spec.to_dict(), "timesteps": list(range(n_steps)), "blocks": list(spec.guidance.blocks),
            "params": {"inject_blocks": list(spec.guidance.inject_blocks), "parametrisation": parametrisation},
            "latent_shape": [1, f, LATENT_CHANNELS, spec.height // spec.spatial_compression,
                             spec.width // spec.spatial_compression],
            "frames_shape": [f, h, round(spec.width * h / spec.height), 3],
            # header fields the validator requires; their size is part of the header row, not a tensor
            "steps": spec.num_inference_steps, "scheduler": {"name": spec.scheduler}, "losses": [[0.0]] * n_steps,
            "source": {"name": "reference.mp4"}, "created_at": "2026-01-01T00:00:00+00:00"}


def _tiny_measured(name: str, parametrisation: str, tmp: Path) -> tuple[dict, dict[str, int], int, int, int]:
    from motionlib.catalog import previews
    from motionlib.learn import learn

    m = model(name)
    video = disc_video(m.spec)
    asset = learn(m, video, prompt="a red disc", seed=0, parametrisation=parametrisation).asset
    asset.ref_frames = previews(video, m.spec)
    path = asset.save(tmp / f"{name}-{parametrisation}.safetensors")
    with open(path, "rb") as f:
        header = 8 + struct.unpack("<Q", f.read(8))[0]
    meta = asset._metadata()
    return meta, _parts(meta), path.stat().st_size, header, _official_pickle(m.spec, asset.timesteps)


PARAMS = ("table", "shift", "shared-shift")
QUALITY_PARAMS = ("table", "shift")  # the in-section quality table (shared-shift's: the recorded sweep)


def _shared_shift_quality() -> dict | None:
    """The recorded zero-shot sweeps (benchmarks/learn_quality.json) of shapes' default ('shift') and
    of 'shared-shift' (the best of its recorded settings): {"default": summary, "shared": summary,
    "tried": [summaries]}, or None when not recorded."""
    from .learn import QUALITY

    if not QUALITY.is_file():
        return None
    results = json.loads(QUALITY.read_text())["results"]
    default = next((r for r in results if not r["overrides"]), None)
    tried = [r for r in results if r["overrides"].get("parametrisation") == "shared-shift"
             and r["direction"]["mean"] is not None]
    if default is None or not tried:
        return None
    return {"default": default, "shared": max(tried, key=lambda r: r["direction"]["mean"]), "tried": tried}


def run(cfg: Config) -> Section:
    from motionlib.models import known_models

    sec = Section("assets", "Asset size per model family and ρ parametrisation",
                  f"<= {fmt_bytes(GOAL)} for a 5B and a Wan 14B-class motion (a shift parametrisation), "
                  "no measurable loss")
    sec.headers = ["model", "ρ parametrisation", "guided steps", "ρ (fp16)", "ref latent", "AMF + confidence",
                   "previews", "motionlib total", "official ρ fp32 pickle", "motionlib / official", "how"]
    models = known_models()
    header_tiny = 0
    for name in ("tiny-5b", "tiny-2b", "tiny-wan"):
        for param in PARAMS:
            log(f"assets: saving a {name} asset ({param})")
            with tempfile.TemporaryDirectory() as tmp:
                meta, parts, size, header, pickle = _tiny_measured(name, param, Path(tmp))
            header_tiny = max(header_tiny, header)
            formula = sum(parts.values()) + header
            assert formula == size, f"{name}: formula {formula} != file {size}"
            sec.rows.append([name, param, str(len(meta["timesteps"])), fmt_bytes(parts["ρ"]),
                             fmt_bytes(parts["ref latent"]), fmt_bytes(parts["AMF"] + parts["confidence"]),
                             fmt_bytes(parts["previews"]), fmt_bytes(size), fmt_bytes(pickle),
                             f"{size / pickle:.2f}",
                             "measured (file saved; tensor table + header match it to the byte)"])
    totals = {}
    for name in REAL:
        spec = models[name]
        for param in PARAMS:
            meta = _real_meta(spec, param)
            parts = _parts(meta)
            total = sum(parts.values()) + header_tiny
            off = _official_bytes(spec, len(meta["timesteps"]))
            totals[name, param] = (total, parts)
            sec.rows.append([name, param, str(len(meta["timesteps"])), fmt_bytes(parts["ρ"]),
                             fmt_bytes(parts["ref latent"]), fmt_bytes(parts["AMF"] + parts["confidence"]),
                             fmt_bytes(parts["previews"]), fmt_bytes(total), fmt_bytes(off), f"{total / off:.3f}",
                             f"formula from the engine's tensor table ({spec.num_frames} frames, "
                             f"{spec.height}x{spec.width})"])
    spec5 = models["cogvideox-5b"]
    table5, shift5 = totals["cogvideox-5b", "table"][0], totals["cogvideox-5b", "shift"][0]
    if cfg.quick:
        q = None
    else:
        with every_core():
            q = _quality(sec)
    wan14, wan14_one = totals["wan2.1-t2v-14b", "shift"][0], totals["wan2.1-t2v-14b", "shared-shift"][0]
    shared = _shared_shift_quality()
    shared_ok = None if shared is None else no_measured_loss(shared["default"], shared["shared"])
    small = shift5 <= GOAL and min(wan14, wan14_one) <= GOAL
    # the Wan-size goal rests on shared-shift when only it fits: then its quality must be within the
    # default's seed spread too
    needs_shared = wan14 > GOAL
    no_loss = (q is not None and q["shift"]["dir"] >= q["table"]["dir"] and q["shift"]["psnr"] >= 40
               and (not needs_shared or bool(shared_ok)))
    sec.status = "met" if small and no_loss else "missed" if q is not None or not small else "n/a"
    sec.headline = (f"5B motion: {fmt_bytes(shift5)} with 'shift' (goal {fmt_bytes(GOAL)}: "
                    + ("size met" if shift5 <= GOAL else f"MISSED by {fmt_bytes(shift5 - GOAL)}")
                    + f"), {fmt_bytes(table5)} with 'table' (the paper's; the default for {spec5.name})"
                    + f"; 2B: {fmt_bytes(totals['cogvideox-2b', 'shift'][0])} shift / "
                      f"{fmt_bytes(totals['cogvideox-2b', 'table'][0])} table"
                    + f"; Wan2.1-14B (81x480x832): {fmt_bytes(wan14_one)} with 'shared-shift' ("
                    + ("size met" if wan14_one <= GOAL else f"MISSED by {fmt_bytes(wan14_one - GOAL)}")
                    + f"), {fmt_bytes(wan14)} with 'shift', {fmt_bytes(totals['wan2.1-t2v-14b', 'table'][0])} "
                      "with 'table'")
    if shared is not None:
        d, s = shared["default"]["direction"], shared["shared"]["direction"]
        sec.headline += (f"; shapes zero-shot, best 'shared-shift' {s['mean']:.3f} vs 'shift' {d['mean']:.3f} "
                         "(" + ("no measured loss" if shared_ok else "a measured loss") + ")")
    if q is None:
        sec.headline += "; quality on the demo model not measured in a quick run"
    else:
        sec.headline += (f"; shapes demo, zero-shot direction shift {q['shift']['dir']:.2f} vs table "
                         f"{q['table']['dir']:.2f}, fp16 file vs fp32 asset PSNR >= "
                         f"{min(q['shift']['psnr'], q['table']['psnr']):.0f} dB")
        if not no_loss:
            sec.headline += ("; goal missed: " + (
                "the only parametrisation under the size goal at Wan size, 'shared-shift', loses zero-shot quality"
                if needs_shared and not shared_ok else "'shift' loses quality against 'table' or in storage"))
    sec.notes.append("'table': fp16 ρ_t − ρ_base for every guided timestep, full [F·S, ·] tables (the paper's "
                     "parametrisation). 'shift': fp16 per-token 3D position offsets ([F·S, 3], twice for RoPE: "
                     "queries and keys), ρ recomputed from them by angle addition (motionlib/rho.py). "
                     "'shared-shift': one offset per token for its query and its key (the token moves, as with the "
                     "paper's single ρ; its official code optimises a query and a key copy): half of 'shift's ρ for RoPE, the same for sin-cos.")
    if shared is not None:
        d = shared["default"]["direction"]
        rows = [["'shift' (default)", f"{d['mean']:.3f}", f"{d['seed_spread']:.3f}", str(shared["default"]["renders"]),
                 "-", "-", "-"]]
        for r in shared["tried"]:
            lower = sum(r["direction"]["per_seed"].get(k, float("inf")) < v for k, v in d["per_seed"].items())
            rows.append([json.dumps(r["overrides"]), f"{r['direction']['mean']:.3f}",
                         f"{r['direction']['seed_spread']:.3f}", str(r["renders"]),
                         "yes" if r["direction"]["mean"] >= d["mean"] - d["seed_spread"] else "no",
                         f"{lower} of {len(d['per_seed'])}",
                         "no" if no_measured_loss(shared["default"], r) else "yes"])
        sec.tables.append((["shapes, zero-shot (recorded sweep)", "direction", "seed spread", "renders",
                            "within 'shift's seed spread", "render seeds where lower", "measured loss"], rows))
        sec.notes.append("Shared-shift quality: the zero-shot sweeps recorded in benchmarks/learn_quality.json "
                         "(section 2's table; the same clips, colours and render seeds for every row). A measured "
                         "loss: below the default by more than its seed spread (issue #13's rule), or lower on every "
                         "render seed (a paired comparison: a consistent drop that the spread rule alone would let "
                         "through).")
    wan_parts = totals["wan2.1-t2v-14b", "shift"][1]
    fixed = wan14 - wan_parts["ρ"]
    sec.notes.append("Format version 3 (motionlib.asset) stores the reference AMF offsets as int8 (grids up to 128 "
                     "patches each way) and its confidence in steps of 1/255 (uint8): half the bytes of version 2's "
                     "int16 / float16 for those parts, which only thumbnails, search descriptors and the catalogue "
                     "read (apply does not).")
    sec.notes.append(f"Wan 2.1 at 81x480x832 (21x30x52 = 32,760 tokens, 10 guided steps, 'shift'): reference latent "
                     f"{fmt_bytes(wan_parts['ref latent'])}, AMF + confidence "
                     f"{fmt_bytes(wan_parts['AMF'] + wan_parts['confidence'])}, previews "
                     f"{fmt_bytes(wan_parts['previews'])} and header take {fmt_bytes(fixed)} before any ρ; ρ "
                     f"(fp16 query and key shifts) adds {fmt_bytes(wan_parts['ρ'])}, or "
                     f"{fmt_bytes(totals['wan2.1-t2v-14b', 'shared-shift'][1]['ρ'])} with one shared shift.")
    sec.notes.append(f"Header: the safetensors JSON header measured on the tiny assets ({fmt_bytes(header_tiny)}) "
                     "is used for the real models too (it grows with the tensor count, a few kB at most).")
    sec.notes.append(f"Defaults: {spec5.name} and cogvideox-2b keep the paper's 'table' (the 'shift' lr is tuned on the "
                     "demo model only); shapes uses 'shift'. `motionlib learn --parametrisation shift` (or "
                     "`shared-shift`) picks one for any model.")
    return sec


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def _quality(sec: Section) -> dict | None:
    """On the shapes demo model: what fp16 storage changes in apply output (PSNR against the
    in-memory fp32 asset), and zero-shot motion fidelity of the two parametrisations."""
    import numpy as np

    from motionlib.apply import apply
    from motionlib.asset import MotionAsset
    from motionlib.learn import learn

    try:
        from motionlib.demo import data
        from motionlib.demo import eval as ev
        m, _ = ev.load_eval_model(None)
    except (ImportError, FileNotFoundError) as e:
        sec.notes.append(f"Quality on the demo model skipped: {e}")
        return None
    clips = [("linear", 0), ("linear", 1), ("arc", 0)]
    targets = [("green", 0), ("blue", 1)]  # storage loss (PSNR) on the first only
    res = {p: {"psnr": [], "dir": [], "mf": []} for p in QUALITY_PARAMS}
    with tempfile.TemporaryDirectory() as tmp:
        for fam, idx in clips:
            frames, _, meta = ev.reference_clip(fam, index=idx)
            x = data.to_model_range(frames)
            for param in QUALITY_PARAMS:
                log(f"assets: shapes quality, {fam} clip, {param}")
                asset = learn(m, x, seed=ev.LEARN_SEED, parametrisation=param).asset
                stored = MotionAsset.load(asset.save(Path(tmp) / f"{fam}-{param}.safetensors"))
                for j, (colour, seed) in enumerate(targets):
                    prompt = data.prompt_for(colour, "black")
                    compact = apply(m, stored, prompt, seed=seed)
                    if j == 0:
                        res[param]["psnr"].append(_psnr(apply(m, asset, prompt, seed=seed), compact))
                    v = ev.to_uint8(compact)
                    res[param]["dir"].append(ev.blob_direction(v, meta["track"]))
                    if ev.have_cv2():
                        res[param]["mf"].append(ev.mf_lk(v, frames))
    n = len(clips) * len(targets)
    out, rows = {}, []
    for param in QUALITY_PARAMS:
        r = res[param]
        psnr = min(r["psnr"])
        out[param] = {"psnr": psnr, "dir": float(np.nanmean(r["dir"])),
                      "mf": float(np.mean(r["mf"])) if r["mf"] else None}
        rows.append([f"'{param}'", "identical" if psnr == float("inf") else f"min PSNR {psnr:.1f} dB",
                     f"{out[param]['dir']:.2f}", "n/a (no OpenCV)" if out[param]["mf"] is None
                     else f"{out[param]['mf']:.2f}"])
    sec.tables.append((["shapes demo model", "storage loss: fp16 file vs fp32 asset (apply output)",
                        "zero-shot direction agreement", "MF-LK"], rows))
    sec.notes.append(f"Quality table: {n} zero-shot renders per parametrisation (held-out clips "
                     f"{', '.join(f'{f} #{i}' for f, i in clips)} x prompt colour/seed "
                     f"{', '.join(f'{c}/{s}' for c, s in targets)}), each learnt with the model's defaults for "
                     "that parametrisation. Direction: mean cosine of per-step centroid displacements of the "
                     "largest blob vs the reference track (1 = same motion, 0 = unrelated); both are far from "
                     "the demo issue's 0.9 (see docs/shapes-model-card.md).")
    return out
