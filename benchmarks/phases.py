"""Where the time of learn, the official-style learn and generate goes, phase by phase.

``python -m benchmarks.phases [--models cogvideox-5b,...] [--steps N] [--out PATH]`` builds each
model (random-weight real architectures on a GPU, tiny models on a CPU), warms it up and runs each
case once (learn and the official-style learn with checkpointing on; learn with it off; for RoPE
models learn with ``gradient="local", reuse=True``, issue #13's cheaper passes) with the
engine's phases wrapped in synchronised timers: VAE encode/decode, text
encoder, the reference pass, the guided steps (ρ optimisation incl. KV injection), the CFG
denoising forwards. It is a diagnostic for deciding what to optimise, not a side-by-side benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import torch

import motionlib.guidance as guidance_mod
import motionlib.learn as learn_mod
import motionlib.sampling as sampling_mod
from motionlib.models.architecture import architecture_model

from .common import fmt_bytes, log, text_table
from .gpu import PHASES, ModelBench, _meta, _sync, peak_run


@contextlib.contextmanager
def timed_phases(model, totals: dict[str, float]):
    """Add the seconds spent in each engine phase of `model` to `totals` while active."""
    dev = model.device

    def wrap(name, fn):
        @functools.wraps(fn)
        def inner(*a, **kw):
            _sync(dev)
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                _sync(dev)
                totals[name] += time.perf_counter() - t0
        return inner

    with contextlib.ExitStack() as stack:
        for attr, name in (("encode_video", "VAE encode"), ("decode", "VAE decode"), ("encode_prompt", "text encoder")):
            stack.enter_context(mock.patch.object(model, attr, wrap(name, getattr(model, attr))))
        real_reference = learn_mod.reference_motion

        def reference_motion(*a, **kw):  # time the reference's transformer pass, not its VAE encode
            with mock.patch.object(model.family, "forward", wrap("reference pass", model.family.forward)):
                return real_reference(*a, **kw)

        stack.enter_context(mock.patch.object(learn_mod, "reference_motion", reference_motion))
        stack.enter_context(mock.patch.object(guidance_mod.Guidance, "__call__",
                                              wrap("guided steps (ρ optimisation)", guidance_mod.Guidance.__call__)))
        stack.enter_context(mock.patch.object(sampling_mod, "predict", wrap("denoising forwards (CFG)", sampling_mod.predict)))
        yield


LOCAL_REUSE = "learn, gradient=local, reuse"


def profile(model, steps: int, **overrides) -> dict[str, dict]:
    """{case: {"seconds", "peak", "phases": {phase: seconds}}} for one run of each case (`overrides`:
    guidance parameters of the learn cases, e.g. opt_steps=5)."""
    from motionlib.models.spec import rho_kind
    from motionlib.learn import learn
    from motionlib.sampling import generate

    from .official import official_learn

    bench = ModelBench(model, steps)
    bench.warm_up()
    kw = dict(prompt=bench.prompt, seed=0, steps=steps, **overrides)
    # checkpointing named, not "auto": the cases must not depend on the card's free memory
    cases = {"generate": lambda: generate(model, bench.prompt, seed=1, steps=steps),
             "learn": lambda: learn(model, bench.video, checkpointing="on", **kw),
             "official-style learn": lambda: official_learn(model, bench.video, checkpointing="on", **kw),
             "learn, no activation checkpointing": lambda: learn(model, bench.video, checkpointing="off", **kw)}
    if rho_kind(model.spec.embedding) == "rope":
        cases[LOCAL_REUSE] = lambda: learn(model, bench.video, checkpointing="on", gradient="local", reuse=True, **kw)
    out = {}
    for case, fn in cases.items():
        phases: dict[str, float] = defaultdict(float)
        try:
            with timed_phases(model, phases):
                seconds, peak = peak_run(fn, model.device)
        except torch.cuda.OutOfMemoryError as exc:
            out[case] = {"failed": str(exc).splitlines()[0][:160]}
            torch.cuda.empty_cache()
            continue
        phases["other"] = seconds - sum(phases.values())
        out[case] = {"seconds": seconds, "peak": peak, "phases": dict(phases)}
    return out


def table(results: dict[str, dict]) -> str:
    rows = []
    for case, r in results.items():
        if "failed" in r:
            rows.append([case, "-", r["failed"], ""])
            continue
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items() if v > 0.005)
        rows.append([case, f"{r['seconds']:.2f} s", fmt_bytes(r["peak"]) if r["peak"] is not None else "n/a", parts])
    return text_table(["case", "wall", "peak above weights", "phases (s)"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.phases", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated; default: cogvideox-5b,cogvideox-2b on a GPU, "
                    "tiny-5b,tiny-2b on a CPU")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here "
                    "(benchmarks/gpu_phases.json is what python -m benchmarks shows in its GPU section)")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    if args.out is not None and not cuda and args.out.resolve() == PHASES.resolve():
        ap.error(f"{PHASES.name} holds GPU measurements (python -m benchmarks shows it); on a CPU write elsewhere")
    meta = _meta(sys.argv[1:] if argv is None else argv, prog="python -m benchmarks.phases")
    meta.update(device=torch.cuda.get_device_name() if cuda else "cpu", steps=args.steps)
    names = [m for m in args.models.split(",") if m] or (["cogvideox-5b", "cogvideox-2b"] if cuda else ["tiny-5b", "tiny-2b"])
    results = {}
    for name in names:
        log(f"phases: {name}")
        if name.startswith("cogvideox"):
            model = architecture_model(name, "cuda" if cuda else "cpu")
        else:
            from motionlib.models import load_model

            model = load_model(name, device="cuda" if cuda else "cpu")
        results[name] = profile(model, args.steps)
        del model
        if cuda:
            torch.cuda.empty_cache()
        print(f"\n{name}, {args.steps} steps\n{table(results[name])}", flush=True)
        if args.out:
            args.out.write_text(json.dumps({**meta, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
