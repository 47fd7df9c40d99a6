"""Section 7 (CUDA only): CogVideoX-5B and -2B *architectures* with random weights at 49 frames
480x720, and Wan2.1-T2V-1.3B at 81 frames 480x832 — generate, apply, learn and the official-style
learn: wall time and peak GPU memory — plus the AMF at the 5B and the Wan size against the
per-head maps.

Weights do not change speed or memory, so the components are built from their real configs in
code (``motionlib.models.architecture``, by each family's adapter; nothing is downloaded). Two stand-ins, both
outside the timed denoising work: the text encoder is a 2-layer T5 / UMT5 with the real width
(4096; the real ones have 24 layers and run once per prompt), and the tokenizer is motionlib's
character-level one. The VAE decodes with tiling and slicing on every side, as it would on a
24-40 GB card. Modules diffusers keeps in float32 (Wan's RoPE, time embedder, norms) stay so.

Denoising steps are reduced (``GPU_STEPS``, guided steps scaled with the paper's 20%) so the
section fits a short device lease; every cost here is linear in the step count, and peak memory
does not depend on it. Timings are side-by-side ratios (alternating pairs, as many as the time
budget allows); absolute seconds are context.

CI and most sessions have no GPU, so a GPU run is recorded in ``benchmarks/gpu_last.json`` (by
``python -m benchmarks.gpu`` or by ``python -m benchmarks`` on a GPU machine) and ``python -m
benchmarks`` without a GPU reports that record with its date and device.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from motionlib.models.architecture import architecture_model

from .amf import DIM, GRID_5B, HEADS, maps_bytes
from .common import Config, Pair, Section, fmt_bytes, fmt_s, log

GPU_STEPS = 10  # denoising steps per run here (the paper's 50 cost 5x as much, same peak memory)
TEXT_LAYERS = 2
MODELS = ("cogvideox-5b", "cogvideox-2b", "wan2.1-t2v-1.3b")
# AMF probes: (latent grid, heads, head dim) of the guidance block at each model's default size
GRID_WAN = (21, 30, 52)  # Wan2.1 at 81 x 480 x 832: 32,760 video tokens
AMF_SIZES = {"cogvideox-5b": (GRID_5B, HEADS, DIM), "wan2.1-t2v-1.3b": (GRID_WAN, 12, 128)}
RECORD = Path(__file__).with_name("gpu_last.json")  # the last GPU measurement (committed)
PHASES = Path(__file__).with_name("gpu_phases.json")  # the last `python -m benchmarks.phases` on a GPU
RUNS = ("generate", "apply", "learn", "official-style learn")
WEIGHTS_GOALS = {"wan2.1-t2v-1.3b": 24e9}  # learn peak GPU memory, weights included, <= this
GOALS = {("apply", "generate"): 1.02, ("learn", "official-style learn"): 0.35}  # ratio A / B <= goal


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_run(fn, device: torch.device) -> tuple[float, int | None]:
    """(seconds, peak bytes above what was allocated before) of one call; memory on CUDA only."""
    cuda = device.type == "cuda"
    gc.collect()  # before the baseline: a collection during the run would lower it
    if cuda:
        _sync(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    seconds = time.perf_counter() - t0
    return seconds, (torch.cuda.max_memory_allocated(device) - base) if cuda else None


def _oom_text(exc: BaseException) -> str:
    return "out of memory: " + str(exc).splitlines()[0][:160]


class ModelBench:
    """generate / apply / learn / official-style learn on one model, in alternating pairs.

    Each pair runs apply and generate, then learn and the official-style learn, the order inside
    each flipped every pair; every run records its wall time and peak memory. A run that runs out
    of memory is reported as such and not retried.
    """

    COMPARISONS = tuple(GOALS)

    def __init__(self, model, steps: int, prompt: str = "a red disc"):
        from motionlib.apply import apply
        from motionlib.learn import learn
        from motionlib.sampling import generate

        from .common import disc_video
        from .official import official_learn

        self.model, self.steps, self.prompt = model, steps, prompt
        self.weights = sum(t.numel() * t.element_size() for m in (model.text_encoder, model.vae, model.transformer)
                           for t in (*m.parameters(), *m.buffers()))
        self.video = video = disc_video(model.spec).to(model.device)
        kw = dict(prompt=prompt, seed=0, steps=steps)
        self._warm = lambda: (learn(model, video, **kw).asset, generate(model, prompt, seed=1, steps=1))[0]
        self.asset = None
        self.runs = {
            "generate": lambda: generate(model, prompt, seed=1, steps=steps),
            "apply": lambda: apply(model, self.asset, prompt, seed=1, steps=steps),
            "learn": lambda: learn(model, video, **kw),
            "official-style learn": lambda: official_learn(model, video, **kw),
        }
        self.times: dict[str, list[float]] = {k: [] for k in self.runs}
        self.peaks: dict[str, int | None] = {}
        self.failed: dict[str, str] = {}
        self.pair_times: dict[tuple[str, str], list[tuple[float, float]]] = {c: [] for c in self.COMPARISONS}
        self.pair_seconds: list[float] = []

    def warm_up(self) -> None:
        """One learn (its asset is what apply renders) and a 1-step generate (decoder kernels)."""
        self.asset = self._warm()

    def _measure(self, name: str) -> float | None:
        if name in self.failed:
            return None
        try:
            seconds, peak = peak_run(self.runs[name], self.model.device)
        except torch.cuda.OutOfMemoryError as exc:
            self.failed[name] = _oom_text(exc)
            gc.collect()
            torch.cuda.empty_cache()
            return None
        self.times[name].append(seconds)
        if peak is not None:
            self.peaks[name] = max(peak, self.peaks.get(name) or 0)
        return seconds

    def pair(self) -> None:
        if self.asset is None:
            self.warm_up()
        t0 = time.perf_counter()
        flip = len(self.pair_seconds) % 2 == 1
        for a, b in self.COMPARISONS:
            got = {n: self._measure(n) for n in ((b, a) if flip else (a, b))}
            if got[a] is not None and got[b] is not None:
                self.pair_times[(a, b)].append((got[a], got[b]))
        self.pair_seconds.append(time.perf_counter() - t0)

    def ratio(self, a: str, b: str) -> Pair | None:
        pt = self.pair_times[(a, b)]
        return Pair.from_times([x for x, _ in pt], [y for _, y in pt]) if pt else None


def amf_probe(device="cuda", grid: tuple[int, int, int] = GRID_5B, heads: int = HEADS, dim: int = DIM) -> dict:
    """Peak memory of the AMF soft + backward (5B size by default): motion_flow vs the per-head maps."""
    from motionlib.amf import amf_loss, motion_flow

    from .official import per_head_flow

    f, r, c = grid
    n = f * r * c
    out = {"grid": list(grid), "heads": heads, "dim": dim, "maps_formula": maps_bytes(heads, n)}
    for key, fn in (("motion_flow", motion_flow), ("per_head", per_head_flow)):
        g = torch.Generator(device=device).manual_seed(0)
        q = torch.randn(heads, n, dim, generator=g, device=device, dtype=torch.bfloat16).requires_grad_(True)
        k = torch.randn(heads, n, dim, generator=g, device=device, dtype=torch.bfloat16).requires_grad_(True)
        ref = torch.randint(-3, 4, (f, f, r * c, 2), generator=g, device=device).float()

        def go(q=q, k=k, ref=ref, fn=fn):  # bound now: the tensors are deleted below, before the next case
            q.grad = k.grad = None
            amf_loss(fn(q, k, num_frames=f, height=r, width=c), ref).backward()

        try:
            go()  # warm-up
            seconds, peak = peak_run(go, torch.device(device))
            out[key] = {"seconds": seconds, "peak": peak}
        except torch.cuda.OutOfMemoryError as exc:
            out[key] = {"failed": _oom_text(exc)}
        del q, k, ref, go
        gc.collect()
        torch.cuda.empty_cache()
    return out


def section(benches: dict[str, ModelBench], amf: dict | None, device: str, steps: int,
            models=MODELS) -> Section:
    """The GPU section from what has been measured so far (`amf`: model -> amf_probe result)."""
    sec = Section("gpu", TITLE, GOAL_TEXT)
    sec.headers = ["model", "run", "wall time (median of the pairs, context)", "peak GPU memory above the weights"]
    ratios, met = [], []
    for model_name, b in benches.items():
        for run_name, times in b.times.items():
            if run_name in b.failed:
                sec.rows.append([model_name, run_name, "-", b.failed[run_name]])
            elif times:
                peak = b.peaks.get(run_name)
                sec.rows.append([model_name, run_name, fmt_s(sorted(times)[len(times) // 2]),
                                 fmt_bytes(peak) if peak is not None else "n/a"])
        for (a, bb), goal in GOALS.items():
            p = b.ratio(a, bb)
            why = b.failed.get(a) or b.failed.get(bb) or "not measured"
            ratios.append([model_name, f"{a} / {bb}", p.text(3) if p else f"n/a ({why})"])
            met.append(p is not None and p.ratio <= goal)
        if model_name in WEIGHTS_GOALS:
            goal, peak = WEIGHTS_GOALS[model_name], b.peaks.get("learn")
            total = None if peak is None else peak + b.weights
            ratios.append([model_name, f"learn peak incl. weights (goal <= {fmt_bytes(goal)})",
                           "n/a (CUDA only)" if total is None else fmt_bytes(total)])
            met.append(total is not None and total <= goal)
    sec.tables.append((["model", "ratio (side by side)", "value"], ratios))
    amf_texts = []
    rows = []
    for model_name, probe in (amf or {}).items():
        mf, ph, maps = probe.get("motion_flow", {}), probe.get("per_head", {}), probe["maps_formula"]
        (f, r, c), heads = probe["grid"], probe["heads"]
        for label, m in (("motion_flow", mf), ("per-head maps (official-style)", ph)):
            rows.append([f"{label} soft+backward, {f}x{r}x{c}, {heads} heads, bf16",
                         m.get("failed", "not measured") if "seconds" not in m
                         else "n/a (CUDA only)" if m["peak"] is None else fmt_bytes(m["peak"]),
                         fmt_s(m["seconds"]) if "seconds" in m else "-"])
        rows.append([f"the per-head maps alone (formula: {heads} x {f * r * c}^2 x 2 bytes)", fmt_bytes(maps), ""])
        if mf.get("peak"):
            base = ph.get("peak") or maps
            amf_texts.append(f"AMF at the {model_name} size 1/{base / mf['peak']:.1f} of the per-head "
                             + ("peak" if ph.get("peak") else "maps (formula)"))
            met.append(mf["peak"] <= maps / 20)
    if rows:
        sec.tables.append((["measure", "peak memory", "time (one run)"], rows))
    amf_text = "; ".join(amf_texts) or "AMF not measured"
    done = len(benches) == len(models) and amf is not None and len(amf) == len([m for m in models if m in AMF_SIZES])
    sec.status = "met" if done and all(met) else "missed" if benches else "not measured"
    sec.headline = (f"{device}, {steps} denoising steps: "
                    + "; ".join(f"{m} {what} {v.split(' ')[0]}" for m, what, v in ratios)
                    + f"; {amf_text}" + ("" if done else " (incomplete run)"))
    sec.notes += [ARCH_NOTE, WAN_NOTE]
    sec.extra = {"device": device, "models": list(models)}
    return sec


TITLE = "GPU: CogVideoX-5B/2B (49x480x720) and Wan2.1-1.3B (81x480x832) architectures"
NEVER = "never measured"
GOAL_TEXT = ("apply/generate <= 1.02, learn <= 0.35 x official-style, AMF <= 1/20 of the per-head maps; "
             "Wan2.1-1.3B learn <= 24 GB with its weights")
WAN_NOTE = ("Wan2.1-1.3B rows: the same runs on its random-weight architecture (the Wan-AI repo's transformer and "
            "VAE configs in code, UMT5 stand-in, guidance block 14 of 30) at 81x480x832 = 21x30x52 tokens; goal: "
            "learn peak memory, weights included, <= 24 GB. No GPU was lent to the session that added them: "
            "their code path runs on tiny-wan in tests/test_wan.py, the numbers are " + NEVER + ".")
ARCH_NOTE = (f"Random-weight architectures built in code (motionlib/models/architecture.py): {TEXT_LAYERS}-layer T5 stand-in, "
             "VAE tiling and slicing on. Steps reduced to fit a device lease: each run's time is linear in its "
             "guided and unguided step counts and peak memory does not depend on them, but learn/official-style "
             "does (learn stops after the guided steps): see the composed 50-step rows. Pairs: as many as "
             "the run's --budget allowed (n in each ratio; fewer than the CPU sections' 5 or more, to fit "
             "a 15-minute device lease); the pair range beside each ratio shows their spread.")
PHASE_COLUMNS = ("VAE encode", "reference pass", "guided steps (ρ optimisation)", "denoising forwards (CFG)",
                 "VAE decode")


def composed(res: dict, steps: int, measured_steps: int, fraction: float = 0.2) -> tuple[float, float]:
    """(learn, official-style) seconds at `steps` denoising steps, composed from one model's phase
    times measured at `measured_steps`: guided-step and CFG-step costs scale with their counts."""
    from motionlib.guidance import guided_step_count

    n0, n = guided_step_count(measured_steps, fraction), guided_step_count(steps, fraction)
    cfg = res["generate"]["phases"]["denoising forwards (CFG)"] / measured_steps
    out = []
    for case, cfg_steps in (("learn", n - 1), ("official-style learn", steps)):
        ph = res[case]["phases"]
        guided = ph["guided steps (ρ optimisation)"] / n0
        fixed = sum(v for k, v in ph.items() if k not in ("guided steps (ρ optimisation)", "denoising forwards (CFG)"))
        out.append(fixed + n * guided + cfg_steps * cfg)
    return out[0], out[1]


def local_pass(res: dict, opt_steps: int, measured_steps: int, fraction: float = 0.2) -> dict[str, float] | None:
    """Seconds of one Adam pass with gradient='full' (checkpointed, as measured) and composed for 'local'.

    A composition from recorded phases, not a measurement: the checkpointed pass minus the pass
    without checkpointing is the recompute, i.e. one forward of the blocks before the guidance block
    (F); their backward is taken as 2 F (the usual estimate; the record's no-checkpointing pass,
    ~3 F plus the guidance block and AMF, agrees). 'local' keeps F (run without grad) and drops the
    2 F backward and the recompute: local = no-checkpointing pass - 2 F.
    """
    from motionlib.guidance import guided_step_count

    if "learn, no activation checkpointing" not in res or "failed" in res["learn, no activation checkpointing"]:
        return None
    passes = guided_step_count(measured_steps, fraction) * opt_steps
    full = res["learn"]["phases"]["guided steps (ρ optimisation)"] / passes
    no_ckpt = res["learn, no activation checkpointing"]["phases"]["guided steps (ρ optimisation)"] / passes
    prefix_forward = full - no_ckpt
    local = no_ckpt - 2 * prefix_forward
    # reuse: the prefix forward once per guided step, then only the guidance block (and AMF) per pass
    return {"full": full, "local": local, "prefix forward": prefix_forward, "reuse": local - prefix_forward}


LOCAL_NOTE = ("'gradient=local' rows (RoPE models only): a what-if composed from the recorded phases, not measured "
              "on a GPU. One Adam pass with gradient='local' = the recorded pass without checkpointing minus twice "
              "the recompute (checkpointed minus unchecked pass = one forward of the blocks before the guidance "
              "block; their backward taken as 2x that), then the guided steps rescaled to it "
              "(benchmarks/gpu.py local_pass). With reuse, a pass is that minus the prefix forward, which runs "
              "once per guided step instead.")


def local_rows(model_name: str, res: dict, measured_steps: int, opt_steps: int = 5) -> list[list[str]]:
    """Composition rows for gradient='local' at the paper's 50 steps (RoPE models; none for additive ρ)."""
    from motionlib.models.spec import rho_kind
    from motionlib.guidance import guided_step_count
    from motionlib.models import known_models

    spec = known_models().get(model_name)
    passes = local_pass(res, opt_steps, measured_steps)
    if spec is None or passes is None:  # an unknown model in an old record, or no unchecked run
        return []
    if rho_kind(spec.embedding) != "rope":
        return [[model_name, "50, gradient=local", "n/a: additive ρ", "", ""]]
    rows = []
    # (label, its pass, what it runs once per guided step on top: reuse's prefix forward)
    for label, key, once in (("gradient=local", "local", 0.0),
                             ("gradient=local, reuse", "reuse", passes["prefix forward"])):
        saved = opt_steps * (passes["full"] - passes[key]) - once  # seconds saved per guided step
        local_res = {**res, "learn": {**res["learn"], "phases": dict(res["learn"]["phases"])}}
        ph = local_res["learn"]["phases"]
        ph["guided steps (ρ optimisation)"] -= saved * guided_step_count(measured_steps, 0.2)
        learn_s, off_s = composed(local_res, 50, measured_steps)
        rows.append([model_name, f"50, {label} (composed what-if: pass {passes[key]:.2f} s vs "
                     f"{passes['full']:.2f} s)", fmt_s(learn_s), fmt_s(off_s), f"{learn_s / off_s:.3f}"])
    return rows


def phase_tables(sec: Section, path: Path = PHASES) -> None:
    """Append the recorded phase breakdown and the 50-step composition to `sec`, if recorded."""
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    rows, comp = [], []
    for model_name, res in data["results"].items():
        for case, r in res.items():
            if "failed" in r:
                rows.append([model_name, case, "-", r["failed"], *[""] * len(PHASE_COLUMNS)])
                continue
            rows.append([model_name, case, fmt_s(r["seconds"]), fmt_bytes(r["peak"]) if r["peak"] is not None else "-",
                         *[fmt_s(r["phases"][c]) if r["phases"].get(c) else "-" for c in PHASE_COLUMNS]])
        main = ("generate", "learn", "official-style learn")
        if all(c in res and "failed" not in res[c] for c in main):
            for steps in (data["steps"], 50):
                learn_s, off_s = composed(res, steps, data["steps"])
                comp.append([model_name, str(steps), fmt_s(learn_s), fmt_s(off_s), f"{learn_s / off_s:.3f}"])
            comp += local_rows(model_name, res, data["steps"])
            reuse = res.get("learn, gradient=local, reuse")  # benchmarks.phases.LOCAL_REUSE, when recorded
            if reuse is not None and "failed" not in reuse:
                for steps in (data["steps"], 50):
                    learn_s, off_s = composed({**res, "learn": reuse}, steps, data["steps"])
                    comp.append([model_name, f"{steps}, gradient=local, reuse (measured phases)", fmt_s(learn_s),
                                 fmt_s(off_s), f"{learn_s / off_s:.3f}"])
    sec.tables.append((["model", "case (one run each)", "wall", "peak above weights", *PHASE_COLUMNS], rows))
    sec.tables.append((["model", "denoising steps", "learn (composed)", "official-style (composed)", "ratio"], comp))
    sec.notes.append(f"Phase breakdown: `{data['command']}` on {data['device']}, {data['measured']}, {data['steps']} "
                     "steps, one run per case. The composed rows scale its guided-step and CFG-step times to the "
                     "paper's 50 steps (10 guided): a cost model from measured phases, not a side-by-side run.")
    if any("composed what-if" in str(r[1]) for r in comp):
        sec.notes.append(LOCAL_NOTE)
    if any("measured phases" in str(r[1]) for r in comp):
        sec.notes.append("'(measured phases)' rows: the recorded `learn, gradient=local, reuse` case (a GPU run of "
                         "benchmarks.phases) composed to 50 steps like the rows above.")
    sec.notes += data.get("notes", [])


def save_record(sec: Section, path: Path, **meta) -> None:
    data = dataclasses.asdict(sec)
    data["extra"].update(meta)
    path.write_text(json.dumps(data, indent=1) + "\n")


def load_record(path: Path = RECORD, phases: Path = PHASES) -> Section | None:
    """The recorded GPU section, or None. Its headline says when and on what it was measured."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data["tables"] = [tuple(t) for t in data.get("tables", [])]
    sec = Section(**data)
    sec.title, sec.goal = TITLE, GOAL_TEXT
    sec.notes = [ARCH_NOTE, WAN_NOTE]  # the current wording; the numbers are the record's
    recorded = {row[0] for row in sec.rows}
    for model_name in sec.extra.get("models", MODELS):  # older records: every model of this version
        if model_name not in recorded:
            sec.rows += [[model_name, run_name, NEVER, NEVER] for run_name in RUNS]
            if sec.tables:
                sec.tables[0][1].extend([model_name, f"{a} / {b}", NEVER] for a, b in GOALS)
                if model_name in WEIGHTS_GOALS:
                    sec.tables[0][1].append([model_name, "learn peak incl. weights (goal <= "
                                             f"{fmt_bytes(WEIGHTS_GOALS[model_name])})", NEVER])
            if model_name in AMF_SIZES and len(sec.tables) > 1:
                (f, r, c), heads, _ = AMF_SIZES[model_name]
                sec.tables[1][1].extend([f"{label} soft+backward, {f}x{r}x{c}, {heads} heads, bf16", NEVER, "-"]
                                        for label in ("motion_flow", "per-head maps (official-style)"))
    phase_tables(sec, phases)
    when, where = sec.extra.get("measured", "?"), sec.extra.get("device", "?")
    sec.headline = f"recorded {when} on {where} (no GPU in this run): " + sec.headline
    sec.notes.append(f"Measured {when} by `{sec.extra.get('command', 'python -m benchmarks.gpu')}` "
                     f"(torch {sec.extra.get('torch', '?')}, diffusers {sec.extra.get('diffusers', '?')}).")
    if "checkpointing" not in sec.extra:
        sec.notes.append("That run predates checkpointing='auto': learn and the official-style learn both "
                         "checkpointed block activations (the phase table has learn with it off).")
    return sec


def measure(steps: int, max_pairs: int, budget_s: float | None = None, progress=None, *,
            models=MODELS, build=None, amf_grid=None, device: str = "cuda") -> Section:
    """Build each architecture, warm it up, run one pair; then more pairs, round-robin, while the
    time budget (seconds from the start) allows another. `progress(section)` after each step.

    `build(name)` makes the model (default: ``architecture_model`` on the GPU); tests pass tiny
    models, a small `amf_grid` (instead of each model's own, ``AMF_SIZES``) and device "cpu"."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    build = build or (lambda m: architecture_model(m, dev, text_layers=TEXT_LAYERS))
    t_start = time.perf_counter()
    benches: dict[str, ModelBench] = {}

    def report():
        sec = section(benches, amf, name, steps, models)
        if progress:
            progress(sec)
        return sec

    amf: dict = {}
    for model_name in models:
        if model_name in AMF_SIZES:
            grid, heads, dim = AMF_SIZES[model_name]
            grid = amf_grid or grid
            log(f"gpu: AMF at {grid} ({model_name}) on {name}")
            amf[model_name] = amf_probe(device, grid, heads, dim)
    report()
    for model_name in models:
        log(f"gpu: building {model_name}")
        benches[model_name] = ModelBench(build(model_name), steps)
        benches[model_name].pair()
        report()
    while True:
        ran = False
        for model_name, b in benches.items():
            left = None if budget_s is None else budget_s - (time.perf_counter() - t_start)
            if len(b.pair_seconds) >= max_pairs or (left is not None and left < 1.1 * b.pair_seconds[-1]):
                continue
            log(f"gpu: {model_name} pair {len(b.pair_seconds) + 1}")
            b.pair()
            report()
            ran = True
        if not ran:
            return report()


def _meta(argv: list[str], prog: str = "python -m benchmarks.gpu") -> dict:
    import diffusers

    return {"measured": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join([prog, *argv]),
            "torch": torch.__version__, "diffusers": diffusers.__version__, "checkpointing": "auto"}


def memory_tables(sec: Section, path: Path | None = None) -> None:
    """Append the memory table (measured, when recorded) and what ``--offload auto`` picks per card size."""
    from motionlib import memory

    from . import gpu_memory

    table = memory.measured_table(path or memory.TABLE)
    if table.get("models"):
        m = table.get("meta", {})
        sec.tables.append((["model", "job", "offload/VAE tiling", "peak GPU memory, weights included",
                            "time / no offload"], gpu_memory.rows(table)))
        sec.notes.append(f"Memory table: `{m.get('command', '?')}` on {m.get('device', '?')}, {m.get('measured', '?')}, "
                         f"{m.get('steps', '?')} steps, 24-layer T5-XXL; learn with checkpointing on"
                         + (" (incomplete: the time budget ran out)" if table.get("incomplete") else "") + ".")
    cards, measured = gpu_memory.card_rows(table=table)
    sec.tables.append((["model", "job", *[f"{gb} GB card" for gb in gpu_memory.CARDS_GB]], cards))
    goal = {r[1]: r[2 + gpu_memory.CARDS_GB.index(24)] for r in cards if r[0] == "cogvideox-5b"}
    sec.notes.append("What `--offload auto` picks on an idle card of each size, for the real models' parameter "
                     "counts (goal: CogVideoX-5B learn and apply fit 24 GB, peak <= 22 GB: "
                     f"learn {goal.get('learn')}; apply {goal.get('apply')}): "
                     + ("from the measured table." if measured else
                        "ESTIMATED from parameter counts where the measured table lacks the run (no GPU session has "
                        "measured it yet: `python -m benchmarks.gpu --memory`)."))


def run(cfg: Config) -> Section:
    if not torch.cuda.is_available():
        rec = load_record()
        if rec is None:
            rec = section({}, None, "none", 0)
            rec.rows = [[m, r, NEVER, NEVER] for m in MODELS for r in RUNS]
            rec.headline = "not measured: no GPU in this run, and no recorded GPU run"
        memory_tables(rec)
        return rec
    steps, pairs = (5, 1) if cfg.quick else (GPU_STEPS, 5)
    meta = _meta([], prog="python -m benchmarks")
    sec = measure(steps, pairs, progress=None if cfg.quick else lambda s: save_record(s, RECORD, **meta))
    sec.extra.update(meta)
    memory_tables(sec)
    return sec


def memory_main(args, argv: list[str]) -> int:
    """``--memory``: the per-model, per-setting memory table, written after every run."""
    from motionlib import memory
    from motionlib.models.architecture import T5_XXL_LAYERS, architecture_model

    from . import gpu_memory

    meta = {**_meta(argv), "device": torch.cuda.get_device_name(0), "steps": args.memory_steps}

    def save(table):
        args.memory_out.write_text(json.dumps({"meta": meta, **table}, indent=1) + "\n")

    build = lambda name: architecture_model(name, "cuda", text_layers=T5_XXL_LAYERS, offload="model")  # noqa: E731
    table = gpu_memory.measure_table(args.models, build, steps=args.memory_steps, jobs=args.jobs,
                                     settings=[memory.Setting.from_key(k) for k in args.settings]
                                     if args.settings else memory.LADDER, budget_s=args.budget, progress=save)
    save(table)
    for row in gpu_memory.rows(table):
        print("  ".join(row))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description="Section 7 alone, on a CUDA GPU; "
                                 "records the result for python -m benchmarks.")
    ap.add_argument("--steps", type=int, default=GPU_STEPS, help="denoising steps per run")
    ap.add_argument("--pairs", type=int, default=5, help="at most this many pairs per model")
    ap.add_argument("--budget", type=float, default=None, help="seconds: start no pair that would not fit")
    ap.add_argument("--out", type=Path, default=RECORD, help="where the record goes (written after every step)")
    mem = ap.add_argument_group("memory table (--memory)")
    mem.add_argument("--memory", action="store_true", help="measure the peak memory of each job under each "
                     "offload / VAE-tiling setting instead (what --offload auto reads)")
    mem.add_argument("--models", nargs="+", default=list(MODELS))
    mem.add_argument("--jobs", nargs="+", default=["learn", "generate", "apply"], choices=["learn", "generate", "apply"])
    mem.add_argument("--settings", nargs="+", default=None, help="setting keys, e.g. none/untiled model/tiled "
                     "(default: all eight)")
    mem.add_argument("--memory-steps", type=int, default=2, help="denoising steps (peaks do not depend on them)")
    mem.add_argument("--memory-out", type=Path, default=None, help="default: motionlib/memory_table.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("python -m benchmarks.gpu needs a CUDA GPU", file=sys.stderr)
        return 2
    if args.memory:
        from motionlib.memory import TABLE

        args.memory_out = args.memory_out or TABLE
        return memory_main(args, argv)
    from .__main__ import number, print_section

    meta = _meta(argv)
    sec = measure(args.steps, args.pairs, args.budget, lambda s: save_record(s, args.out, **meta))
    print_section(number("gpu"), sec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
