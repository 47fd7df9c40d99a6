"""The memory table (CUDA): peak GPU memory, weights included, of generate, apply and learn under each
offload / VAE-tiling setting (``motionlib.memory.LADDER``), with the time ratio against no offload.

``python -m benchmarks.gpu --memory`` writes it to ``motionlib/memory_table.json``, where
``--offload auto`` reads it (the package carries it; until it exists, auto uses estimates). The
models are the random-weight architectures of ``motionlib.models.architecture`` with the full
24-layer T5-XXL text encoder, since its 9.5 GB are part of what has to fit. Peaks do not depend on
the step count, so the runs use few steps (``--memory-steps``). learn runs with activation
checkpointing on: ``auto`` turns it on whenever the activations do not fit, so that is the peak
the choice needs. A run that runs out of memory is recorded as failed.
"""

from __future__ import annotations

import gc
import time

import torch

from motionlib import memory
from motionlib.offload import place, unplace

from .common import fmt_bytes, log

JOBS = ("learn", "generate", "apply")  # learn first: apply renders its asset
CARDS_GB = (12, 16, 24, 48, 80)


class Jobs:
    """The measured jobs on one model; apply renders the asset of the last learn."""

    def __init__(self, model, steps: int, prompt: str = "a red disc"):
        from .common import disc_video

        self.model, self.steps, self.prompt = model, steps, prompt
        self.video, self.asset = disc_video(model.spec), None

    def learn(self):
        from motionlib.learn import learn

        self.asset = learn(self.model, self.video, prompt=self.prompt, seed=0, steps=self.steps,
                           checkpointing="on").asset

    def generate(self):
        from motionlib.sampling import generate

        generate(self.model, self.prompt, seed=1, steps=self.steps)

    def apply(self):
        from motionlib.apply import apply

        apply(self.model, self.asset, self.prompt, seed=1, steps=self.steps)


def measure_one(model, setting: memory.Setting, fn) -> dict:
    """Place `model` as `setting` says, run `fn`: {"peak": bytes incl. weights, "seconds"} or {"failed"}."""
    cuda = model.device.type == "cuda"
    unplace(model)
    gc.collect()
    if cuda:
        torch.cuda.synchronize(model.device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(model.device)
        torch.cuda.reset_peak_memory_stats(model.device)
    model.offload = setting.offload
    model.placement.clear()
    model.__post_init__()  # the placement record of the new level
    try:
        t0 = time.perf_counter()
        place(model, setting.vae_tiling)
        fn()
        if cuda:
            torch.cuda.synchronize(model.device)
        out = {"seconds": round(time.perf_counter() - t0, 3)}
        if cuda:
            out["peak"] = int(torch.cuda.max_memory_allocated(model.device) - base)
    except torch.OutOfMemoryError as exc:
        out = {"failed": "out of memory: " + str(exc).splitlines()[0][:120]}
    finally:
        unplace(model)
    return out


def measure_table(models, build, *, steps: int = 2, jobs=JOBS, settings=memory.LADDER,
                  budget_s: float | None = None, progress=None) -> dict:
    """{"models": {model: {job: {setting key: result}}}} for every model, job and setting, in that
    order, while the time budget (seconds from the start) allows; `progress(table)` after each run.

    `build(name)` makes the model with its components on the CPU; tests pass tiny models."""
    t_start, table = time.perf_counter(), {"models": {}}
    for name in models:
        model = build(name)
        run = Jobs(model, steps)
        for job in jobs:
            for s in settings:
                if budget_s is not None and time.perf_counter() - t_start > budget_s:
                    table["incomplete"] = True
                    return table
                if job == "apply" and run.asset is None:
                    measure_one(model, settings[-1], run.learn)  # an asset to render (learn not measured)
                log(f"memory: {name} {job} {s.key}")
                table["models"].setdefault(name, {}).setdefault(job, {})[s.key] = \
                    measure_one(model, s, getattr(run, job))
                if progress:
                    progress(table)
        del model, run
        gc.collect()
    return table


def rows(table: dict) -> list[list[str]]:
    """model, job, setting, peak incl. weights, time / no offload (the same job's none/untiled run)."""
    out = []
    for name, jobs in table.get("models", {}).items():
        for job, results in jobs.items():
            base = results.get(memory.LADDER[0].key, {}).get("seconds")
            for key, r in results.items():
                if "failed" in r:
                    out.append([name, job, key, r["failed"], "-"])
                    continue
                ratio = f"{r['seconds'] / base:.2f}" if base else "n/a"
                out.append([name, job, key, fmt_bytes(r["peak"]) if "peak" in r else "n/a (CUDA only)", ratio])
    return out


def card_rows(models=("cogvideox-5b", "cogvideox-2b"), jobs=JOBS, cards=CARDS_GB, table: dict | None = None):
    """(rows, all measured?): per model and job, the setting ``--offload auto`` picks on an idle card of
    each size and its peak (its memory less 0.5 GiB of CUDA context free), from the measured table where it has
    the run and estimates from the real parameter counts (meta-device builds) otherwise."""
    from motionlib.models.architecture import T5_XXL_LAYERS, architecture_model

    out, all_measured = [], True
    for name in models:
        model = architecture_model(name, "meta", text_layers=T5_XXL_LAYERS)
        for job in sorted(jobs, key=JOBS.index):
            cells = []
            for gb in cards:
                p = memory.plan(model, job, free=int((gb - 0.5) * 2**30), table=table, device=torch.device("cuda"))
                all_measured &= p.setting in p.measured
                cells.append(f"{short(p.setting)}: {p.peak / 1e9:.1f} GB" if p.fits else "does not fit")
            out.append([name, job, *cells])
    return out, all_measured


def short(s: memory.Setting) -> str:
    level = {"text": "none (text encoder freed)"}.get(s.offload, s.offload)
    return f"{level}{', tiled' if s.vae_tiling else ''}"
