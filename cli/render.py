"""The commands that render or learn: learn, apply, transfer, generate.

Each checks every value it can (names, outputs, steps, guidance settings, the clip) before it loads a
model, then runs the engine under one progress bar. The engine (torch, diffusers, motionlib's modules)
is imported inside the commands.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.text import Text

from .core import (DEFAULT_MODEL_ENV, FALLBACK_MODEL, Memory, UserError, app, check_checkpointing, check_gradient,
                   check_output, check_steps, default_model, dim, emit, first_frame, fitting, load, out, printable,
                   progress_bar, say, shown_warnings, state, warn)
from .options import (AMF_WINDOW_HELP, CHECKPOINTING, GRADIENT_HELP, IMAGE_HELP, OFFLOAD, OPT_STEPS_END_HELP,
                      OPT_TOL_HELP, RETARGET_HELP, REUSE_HELP, VAE_TILING)


@app.command()
def learn(
    video: Path = typer.Argument(..., help="Reference clip (mp4, mov, gif, ...)."),
    name: str = typer.Option(..., "--name", "-n", help="Name to store the motion under."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=f"Model name, hub id or folder (default: ${DEFAULT_MODEL_ENV}, else shapes when installed, else {FALLBACK_MODEL}); see `motionlib models`."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Prompt of the learning generation (default: empty)."),
    tag: List[str] = typer.Option([], "--tag", "-t", help="Tag the motion (repeatable)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Frames to sample from the clip (model default)."),
    height: Optional[int] = typer.Option(None, "--height", help="Render height (model default)."),
    width: Optional[int] = typer.Option(None, "--width", help="Render width (model default)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (model default, 50 for CogVideoX)."),
    seed: int = typer.Option(0, "--seed"),
    sampling: str = typer.Option("spread", "--sampling", help="'spread': frames spread over the clip; 'start': consecutive frames from its start."),
    check: bool = typer.Option(False, "--check", help="After learning, render once zero-shot on a new seed (--seed + 1) and score how its attention motion flow agrees with the reference's, frame pair by frame pair (1: the same motion, 0: unrelated; a motion that keeps only the drift scores low). Costs one render; shown by show, list --json and the gallery."),
    opt_steps: Optional[int] = typer.Option(None, "--opt-steps", help="Adam steps per guided step (K_opt)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Start learning rate (decays linearly to --lr-end)."),
    lr_end: Optional[float] = typer.Option(None, "--lr-end"),
    guided_fraction: Optional[float] = typer.Option(None, "--guided-fraction", help="Share of denoising steps that are guided."),
    block: List[int] = typer.Option([], "--block", help="Guidance block(s) (repeatable)."),
    parametrisation: Optional[str] = typer.Option(
        None, "--parametrisation",
        help="What is optimised: 'table' (every ρ entry, as in the paper), 'shift' (a learnt 3D position "
             "offset per token for its query and one for its key: motions 15-100x smaller) or 'shared-shift' "
             "(one offset per token for both: half of shift's ρ, but on the shapes demo 0.44 zero-shot agreement at "
             "--lr 0.15 --lr-end 0.05, its best, vs shift's 0.60). Only shift and shared-shift motions can be "
             "edited later (motionlib edit, blend). Default: the model's ('table' for CogVideoX and Wan, "
             "'shift' for shapes)."),
    samples: Optional[int] = typer.Option(
        None, "--samples",
        help="Learn one shared ρ on N generations at once (noise seeds SEED, SEED+1, ...; prompts cycled "
             "from --prompts), their AMF losses averaged, so the motion depends less on where one "
             "generation put its content. The N generations go through the transformer as one batch "
             "(one batched pass, not N runs); measured on shapes (`python -m benchmarks --only samples`, one "
             "thread of a loaded CPU): N=2 takes 2.1x the time and 1.6x the memory of N=1, N=4 3.8x and "
             "3.1x. Default: the model's (4 for shapes, chosen by motionlib eval; 1 for the real models)."),
    prompts: Optional[str] = typer.Option(
        None, "--prompts",
        help="Prompts of the --samples generations: a text file (one prompt per line) or P1,P2,... "
             "(default: --prompt for all)."),
    shift_grid: Optional[int] = typer.Option(
        None, "--shift-grid",
        help="Shift parametrisation: a coarse G x G shift field per frame upsampled to the tokens "
             "(spatially smooth) instead of a free shift per token (0: per token)."),
    frame_shift: Optional[bool] = typer.Option(
        None, "--frame-shift/--no-frame-shift",
        help="Shift parametrisation: add one shift shared by all tokens of a frame (default: the model's; on for shapes)."),
    smoothness: Optional[float] = typer.Option(
        None, "--smoothness", help="Shift parametrisation: weight of a penalty on neighbouring tokens' shift differences."),
    gradient: Optional[str] = typer.Option(None, "--gradient", help=GRADIENT_HELP),
    reuse: Optional[bool] = typer.Option(None, "--reuse/--no-reuse", help=REUSE_HELP),
    amf_window: Optional[int] = typer.Option(None, "--amf-window", help=AMF_WINDOW_HELP),
    opt_steps_end: Optional[int] = typer.Option(None, "--opt-steps-end", help=OPT_STEPS_END_HELP),
    opt_tol: Optional[float] = typer.Option(None, "--opt-tol", help=OPT_TOL_HELP),
    image: Optional[Path] = typer.Option(
        None, "--image", "-i",
        help=IMAGE_HELP + " The learn generations start from it; default on an image-to-video model: the "
                          "clip's first frame."),
    checkpointing: str = CHECKPOINTING,
    offload: str = OFFLOAD,
    vae_tiling: str = VAE_TILING,
    force: bool = typer.Option(False, "--force", "-f", help="Replace a motion of the same name."),
):
    """Learn the motion of VIDEO (ρ optimisation) and store it in the library."""
    from motionlib.catalog import learn_motion
    from motionlib.learn import parse_prompts
    from motionlib.rho import PARAMETRISATIONS

    if sampling not in ("spread", "start"):
        raise UserError(f"--sampling must be 'spread' or 'start', got {sampling!r}")
    if parametrisation is not None and parametrisation not in PARAMETRISATIONS:
        raise UserError(f"--parametrisation must be one of {', '.join(PARAMETRISATIONS)}, got {parametrisation!r}")
    check_gradient(gradient)
    check_checkpointing(checkpointing)
    memory = Memory("learn", offload, vae_tiling)
    check_steps(steps)
    from motionlib.catalog import NoMotionWarning, check_geometry
    from motionlib.models import resolve_spec

    model = model or default_model()
    spec = check_geometry(resolve_spec(model), frames, height, width)  # before any work
    lib = state.library()
    lib.check_new_name(name, force=force)  # before loading any model
    from motionlib.video import probe

    probe(video)  # fail on a bad clip before loading any model
    picture = first_frame(image, spec)
    if picture is None and spec.conditioning == "i2v" and not state.quiet and not state.as_json:
        dim(f"{spec.name} is an image-to-video model: the learn starts from the clip's first frame")
    overrides = dict(opt_steps=opt_steps, lr_start=lr, lr_end=lr_end, guided_fraction=guided_fraction,
                     blocks=block or None, parametrisation=parametrisation, samples=samples, shift_grid=shift_grid,
                     frame_shift=frame_shift, smoothness=smoothness, gradient=gradient, reuse=reuse,
                     amf_window=amf_window, opt_steps_end=opt_steps_end, opt_tol=opt_tol)
    from motionlib.guidance import GuidanceParams

    GuidanceParams.from_spec(resolve_spec(model), **overrides)  # every guidance value checked before loading
    m = load(model, memory, num_frames=frames, height=height, width=width)
    started = time.monotonic()
    with progress_bar() as bar, fitting(m), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoMotionWarning)
        row = learn_motion(lib, m, video, name, prompt=prompt, seed=seed, steps=steps, sampling=sampling,
                           tags=tag, force=force, progress=bar, check=check, checkpointing=checkpointing,
                           prompts=parse_prompts(prompts), image=picture and picture.image, **overrides)
    for w in caught:
        if issubclass(w.category, NoMotionWarning):
            warn(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    thumb = lib.thumb_path(row, "png")
    data = {"name": row.name, "model": row.model_name, "bytes": row.blob_bytes, "thumbnail": str(thumb),
            "seconds": round(time.monotonic() - started, 2), "final_loss": _last(row.loss),
            "searchable": row.descriptor is not None, "check_score": row.check_score}
    checked = "" if not check else f"\ncheck score: {_score(row.check_score)} (zero-shot on seed {seed + 1})"
    emit(data, lambda: out.print(Text.assemble(
        "learnt ", (printable(row.name), "bold"), f" with {row.model_name}: {row.blob_bytes / 1e6:.2f} MB, "
        f"{data['seconds']} s, final AMF loss {data['final_loss']:.4f}\nthumbnail: ", printable(thumb), checked),
        highlight=False))


def _score(v: Optional[float]) -> str:
    return "n/a (the reference does not move)" if v is None else f"{v:.2f}"


def _last(x):
    while isinstance(x, list) and x:
        x = x[-1]
    return x if isinstance(x, float) else None


def default_output(stem: str, gif: bool) -> Path:
    return Path(f"{stem}.{'gif' if gif else 'mp4'}")


def write(video, path: Path, fps: int) -> Path:
    from motionlib.video import write_video

    return write_video(video, path, fps=fps)


@app.command()
def apply(
    name: str = typer.Argument(..., help="Stored motion."),
    prompt: str = typer.Argument(..., help="What to render."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (.mp4 or .gif; default NAME-SEED.mp4)."),
    seed: int = typer.Option(0, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: those of the learn)."),
    strength: float = typer.Option(1.0, "--strength", "-s", help="Scale of the learnt change of ρ (0 = the model's own ρ; KV injection still runs unless --no-inject)."),
    inject: bool = typer.Option(True, "--inject/--no-inject", help="KV injection of the stored reference latent."),
    gif: bool = typer.Option(False, "--gif", help="Write a GIF instead of an mp4 (when -o is not given)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Load the weights from here (same architecture)."),
    image: Optional[Path] = typer.Option(
        None, "--image", "-i", help=IMAGE_HELP + " Needed by an image-to-video motion: any image, zero-shot."),
    frames: Optional[int] = typer.Option(None, "--frames", help=RETARGET_HELP.format(what="frame count")),
    height: Optional[int] = typer.Option(None, "--height", help=RETARGET_HELP.format(what="height")),
    width: Optional[int] = typer.Option(None, "--width", help=RETARGET_HELP.format(what="width")),
    offload: str = OFFLOAD,
    vae_tiling: str = VAE_TILING,
):
    """Render PROMPT with a stored motion, zero-shot (no optimisation); an image-to-video motion from --image;
    at another frame count or size with --frames/--height/--width (the motion is retargeted, docs/retarget.md)."""
    from motionlib import render as rendering
    from motionlib.apply import warn_other_weights
    from motionlib.retarget import RetargetNote

    if not (math.isfinite(strength) and 0 <= strength <= 100):
        raise UserError(f"--strength must be a number from 0 to 100, got {strength}")
    check_steps(steps)
    path = check_output(output or default_output(f"{name}-{seed}", gif))
    memory = Memory("apply", offload, vae_tiling)
    lib = state.library()
    with shown_warnings(f"motion '{name}'", RetargetNote):
        motion = rendering.resolve(lib, name)  # read now: the catalogue may change while it renders
        motion = rendering.retargeted(motion, frames, height, width)  # refused here, before any model loads
    spec = motion.asset.spec
    picture = first_frame(image, spec, needed=f"motion '{name}' is an image-to-video motion ({spec.name}): give its "
                                              "first frame with --image" if spec.conditioning == "i2v" else None)
    m = rendering.ModelCache(load=lambda n, **geometry: load(n, memory, **geometry)).for_motion(motion, model)
    with shown_warnings(f"motion '{name}'"):
        warn_other_weights(m, motion.asset, name)  # said before the render, not after it
    with progress_bar() as bar, fitting(m):
        done = rendering.render(m, motion, prompt, path, seed=seed, steps=steps, strength=strength, inject=inject,
                                progress=bar, image=picture and picture.image)
    from motionlib.store import MotionNotFound

    try:
        rendering.record(lib, motion, prompt, done, seed=seed, strength=strength, image=picture)
        recorded = True
    except MotionNotFound:
        recorded = False
        warn(f"the render could not be recorded: motion '{name}' was removed or renamed while it rendered")
    emit({"output": str(path), "motion": name, "seconds": done.seconds, "recorded": recorded},
         lambda: say(f"wrote {path} ({done.seconds} s)"))


@app.command()
def transfer(
    video: Path = typer.Argument(..., help="Reference clip."),
    prompt: str = typer.Argument(..., help="What to render."),
    output: Path = typer.Option(Path("transfer.mp4"), "--output", "-o"),
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    seed: int = typer.Option(0, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps"),
    sampling: str = typer.Option("spread", "--sampling"),
    image: Optional[Path] = typer.Option(
        None, "--image", "-i",
        help=IMAGE_HELP + " Default on an image-to-video model: the clip's first frame."),
    checkpointing: str = CHECKPOINTING,
    offload: str = OFFLOAD,
    vae_tiling: str = VAE_TILING,
):
    """One-shot transfer optimising the latent z_t (best quality for one prompt; nothing stored)."""
    from motionlib.learn import transfer as transfer_motion
    from motionlib.video import probe, read_video

    check_output(output)
    check_checkpointing(checkpointing)
    check_steps(steps)
    if sampling not in ("spread", "start"):
        raise UserError(f"--sampling must be 'spread' or 'start', got {sampling!r}")
    memory = Memory("transfer", offload, vae_tiling)
    probe(video)
    from motionlib.models import resolve_spec

    model = model or default_model()
    picture = first_frame(image, resolve_spec(model))
    m = load(model, memory)
    s = m.spec
    clip, _ = read_video(video, s.num_frames, s.height, s.width, sampling=sampling)
    started = time.monotonic()
    with progress_bar() as bar, fitting(m):
        result, _ = transfer_motion(m, clip, prompt, seed=seed, steps=steps, progress=bar,
                                    checkpointing=checkpointing, image=picture and picture.image)
    write(result, output, s.fps)
    seconds = round(time.monotonic() - started, 2)
    emit({"output": str(output), "seconds": seconds}, lambda: say(f"wrote {output} ({seconds} s)"))


@app.command()
def generate(
    prompt: str = typer.Argument(...),
    output: Path = typer.Option(Path("generate.mp4"), "--output", "-o"),
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    seed: int = typer.Option(0, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps"),
    image: Optional[Path] = typer.Option(
        None, "--image", "-i", help=IMAGE_HELP + " Needed by an image-to-video model."),
    offload: str = OFFLOAD,
    vae_tiling: str = VAE_TILING,
):
    """Plain generation with the same settings (the baseline apply is compared with)."""
    from motionlib.models import resolve_spec
    from motionlib.sampling import generate as plain

    check_output(output)
    check_steps(steps)
    model = model or default_model()
    spec = resolve_spec(model)
    picture = first_frame(image, spec, needed=f"{spec.name} is an image-to-video model: give its first frame with "
                                              "--image" if spec.conditioning == "i2v" else None)
    m = load(model, Memory("generate", offload, vae_tiling))
    started = time.monotonic()
    with progress_bar() as bar, fitting(m):
        video = plain(m, prompt, seed=seed, steps=steps, progress=bar, image=picture and picture.image)
    write(video, output, m.spec.fps)
    seconds = round(time.monotonic() - started, 2)
    emit({"output": str(output), "seconds": seconds}, lambda: say(f"wrote {output} ({seconds} s)"))

