"""`motionlib eval`: measure the shapes demo models (thin over ``motionlib.demo.eval`` and, for shapes-i2v,
``motionlib.demo.eval_i2v``, imported when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .core import app, dim, emit, out, printable, say, state


@app.command("eval")
def eval_(
    model: str = typer.Option("shapes", "--model", "-m", help="shapes, or shapes-i2v: first-frame PSNR and the direction of a stored motion from other first frames (docs/i2v.md)."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="shapes.safetensors, a training run folder (its shapes.safetensors, else its newest checkpoint) or a checkpoint (default: the bundled weights)."),
    random: bool = typer.Option(False, "--random", help="Evaluate seeded random (untrained) weights."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="For a checkpoint: its EMA weights (default) or the raw model weights."),
    seed: List[int] = typer.Option([], "--seed", help="Render seed (repeatable; default 0 and 1, quick: 0)."),
    quick: bool = typer.Option(False, "--quick", help="1 trajectory, 1 target prompt, 1 seed (about 2 minutes on one CPU thread)."),
    out_dir: Path = typer.Option(Path("eval-out"), "--out", "-o", help="Folder for the picture grids and eval.json."),
    trajectory: List[str] = typer.Option([], "--trajectory", "--family", help="Trajectory of the reference clips for the transfer metrics (repeatable): linear, arc, zigzag, speed_change, reversal, l_turn (default: all; --family is the old name)."),
    clips: Optional[int] = typer.Option(None, "--clips", min=1, max=20, help="Reference clips per trajectory, each learnt once (default 2: 12 zero-shot renders per trajectory on other seeds; quick: 1)."),
    section: List[str] = typer.Option([], "--section", help="generation, amf, transfer or search (repeatable; default all)."),
    zt: bool = typer.Option(True, "--zt/--no-zt", help="Include one-shot z_t transfer (the slowest part)."),
    mf: bool = typer.Option(True, "--mf/--no-mf", help="Include MF-LK (needs opencv-python-headless)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (model default)."),
    opt_steps: Optional[int] = typer.Option(None, "--opt-steps", help="Guidance override: Adam steps per guided step."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Guidance override: start learning rate."),
    lr_end: Optional[float] = typer.Option(None, "--lr-end", help="Guidance override: end learning rate."),
    guided_fraction: Optional[float] = typer.Option(None, "--guided-fraction", help="Guidance override."),
    block: List[int] = typer.Option([], "--block", help="Guidance override: block(s) (repeatable)."),
    confidence: Optional[float] = typer.Option(None, "--confidence", help="Guidance override: confidence mask threshold."),
    parametrisation: Optional[str] = typer.Option(None, "--parametrisation", help="Guidance override: 'table', 'shift' or 'shared-shift'."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Guidance override: learn on N generations at once."),
    learn_prompts: Optional[str] = typer.Option(None, "--learn-prompts", help="Prompts of the learn generations: a file (one per line) or P1,P2 (default: the empty prompt); at least one target prompt is not among them."),
    shift_grid: Optional[int] = typer.Option(None, "--shift-grid", help="Guidance override: coarse G x G shift field per frame."),
    frame_shift: Optional[bool] = typer.Option(None, "--frame-shift/--no-frame-shift", help="Guidance override: a shift shared by each frame's tokens."),
    smoothness: Optional[float] = typer.Option(None, "--smoothness", help="Guidance override: shift smoothness penalty weight."),
    gradient: Optional[str] = typer.Option(None, "--gradient", help="Guidance override: 'full' or 'local' (see learn --help)."),
    reuse: Optional[bool] = typer.Option(None, "--reuse/--no-reuse", help="Guidance override, with --gradient local (see learn --help)."),
    amf_window: Optional[int] = typer.Option(None, "--amf-window", help="Guidance override (see learn --help)."),
    inject: Optional[bool] = typer.Option(None, "--inject/--no-inject", help="Guidance override: KV injection of the reference at the model's injection blocks (default: the model's)."),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: leave as is)."),
):
    """Evaluate the shapes demo model: generation quality, AMF direction, motion transfer, MF-LK, search.

    With --model shapes-i2v: first-frame PSNR, zero-shot and plain direction from other first frames."""
    from motionlib.demo.eval import evaluate, summary_rows
    from motionlib.errors import ParameterError
    from motionlib.learn import parse_prompts

    if model not in ("shapes", "shapes-i2v"):
        raise ParameterError(f"motionlib eval measures the demo models: --model shapes or shapes-i2v, not {model!r}")

    overrides = dict(opt_steps=opt_steps, lr_start=lr, lr_end=lr_end, guided_fraction=guided_fraction,
                     blocks=tuple(block), confidence=confidence, parametrisation=parametrisation, samples=samples,
                     shift_grid=shift_grid, frame_shift=frame_shift, smoothness=smoothness, gradient=gradient,
                     reuse=reuse, amf_window=amf_window, inject=inject)
    log = (lambda msg: None) if (state.as_json or state.quiet) else dim
    if model == "shapes-i2v":
        _eval_i2v(weights, random, ema, seed, quick, out_dir, trajectory, clips, section, learn_prompts, steps,
                  overrides, threads, log)
        return
    results = evaluate(weights=weights, random=random, ema=ema, device=state.device, quick=quick, sections=section,
                       trajectories=trajectory, seeds=seed, learn_prompts=parse_prompts(learn_prompts) or (),
                       overrides=overrides, threads=threads, log=log, zt=zt, mf=mf, steps=steps, out_dir=out_dir,
                       clips=clips)
    _report(results, summary_rows(results), "shapes eval", "threshold / note")


def _report(results: dict, rows, title: str, goal_header: str) -> None:
    """The results as JSON (--json), or a table of `rows` and the paths of the pictures."""
    def human():
        weights = (results.get("model") or {}).get("weights")
        t = Table("metric", "value", goal_header, title=printable(f"{title}: {weights}"))
        for row in rows:
            t.add_row(*row)
        out.print(t)
        for name, path in (results.get("pictures") or {}).items():
            say(f"{name}: {path}")

    emit(results, human)



def _eval_i2v(weights, random, ema, seed, quick, out_dir, trajectory, clips, section, learn_prompts, steps,
              overrides, threads, log) -> None:
    from motionlib.demo.eval_i2v import evaluate_i2v, summary_rows
    from motionlib.errors import ParameterError

    if section or learn_prompts:
        raise ParameterError("--section and --learn-prompts are for --model shapes; shapes-i2v's eval has one part")
    results = evaluate_i2v(weights=weights, random=random, ema=ema, device=state.device, quick=quick,
                           trajectories=trajectory, seeds=seed, overrides=overrides, threads=threads, log=log,
                           steps=steps, out_dir=out_dir, clips=clips)
    _report(results, summary_rows(results), "shapes-i2v eval", "goal")
