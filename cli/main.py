"""`motionlib`: learn a motion from a clip once, render any prompt with it later.

Every command is a thin layer over the library API (motionlib.*) and the catalogue
(motionlib.store). Errors motionlib raises on purpose (``motionlib.errors.MotionlibError``) end with
one line on stderr and exit code 1 (2 for usage errors); `--verbose` shows the traceback instead.
Anything else is a bug: its traceback is shown with a request to report it.

Start-up: this module imports only typer and rich. The catalogue commands (list, show, tag, rename,
rm, export, doctor, models, --help) never import torch, diffusers or faiss; the engine is imported
inside the commands that render, learn or search.
"""

from __future__ import annotations

import json
import math
import errno
import os
import re
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from motionlib.errors import MotionlibError

try:  # typer >= 0.17 vendors click; older typers use click itself
    from typer._click.exceptions import ClickException as _ClickException
    from typer._click.exceptions import NoArgsIsHelpError as _NoArgsIsHelp
    from typer._click.exceptions import UsageError as _UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as _ClickException  # type: ignore[assignment]
    from click.exceptions import NoArgsIsHelpError as _NoArgsIsHelp  # type: ignore[assignment,attr-defined,no-redef]
    from click.exceptions import UsageError as _UsageError  # type: ignore[assignment]

DEFAULT_MODEL_ENV = "MOTIONLIB_MODEL"
FALLBACK_MODEL = "cogvideox-5b"

app = typer.Typer(
    name="motionlib",
    help="Turn the motion of a reference video into a reusable motion asset and render new videos with it "
         "(DiTFlow on CogVideoX).\n\nTypical day: `motionlib learn ref.mp4 --name squat`, then "
         "`motionlib apply squat \"a robot squatting\"`, and `motionlib search clip.mp4` to find stored motions "
         "like a clip.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Markup off: whatever a user typed (names, tags, paths, prompts) and every message quoting it prints as
# the text it is. Styles are given as styles (`labelled`, style=...), never as [markup] inside strings.
out = Console(markup=False)
err = Console(stderr=True, markup=False)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """`text` on one line, with control characters shown as escapes (\\n, \\t, \\x1b, ...): a user's value
    can neither move the cursor, recolour the terminal nor split a one-line message."""
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), str(text))


def labelled(label: str, style: str, msg: object) -> Text:
    """A one-line message: a styled label, then `msg` as plain text (never markup)."""
    return Text.assemble((label, style), " ", printable(msg))


def say(msg: object) -> None:
    """A result line on stdout, plain text with control characters escaped."""
    out.print(printable(msg), highlight=False, soft_wrap=True)


def dim(msg: object) -> None:
    """A dim progress line on stderr (plain text)."""
    err.print(printable(msg), style="dim", highlight=False, soft_wrap=True)


@dataclass
class State:
    home: Optional[Path] = None
    as_json: bool = False
    verbose: bool = False
    device: Optional[str] = None
    quiet: bool = False
    _lib: object = None

    def library(self):
        if self._lib is None:
            from motionlib.store import Library

            self._lib = Library(self.home, describe=_describe_file, progress=_RedescribeBar(not (self.as_json or self.quiet)))
        return self._lib


def _describe_file(path):
    """Library(describe=...): imported only when stored descriptors must be migrated (needs torch)."""
    from motionlib.catalog import describe_file

    return describe_file(path)


class _RedescribeBar:
    """Progress of re-describing stored motions after a descriptor version change (on stderr)."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.task = enabled, None, None

    def __call__(self, done: int, total: int, name: str) -> None:
        from motionlib.descriptor import DESCRIPTOR_VERSION

        if not self.enabled:
            return
        if self.bar is None:
            from rich.progress import Progress

            self.bar = Progress(console=err, transient=False)
            self.bar.start()
            self.task = self.bar.add_task(f"re-describing stored motions for search (descriptor v{DESCRIPTOR_VERSION})",
                                          total=total)
        self.bar.update(self.task, completed=done)
        if done >= total:
            self.bar.stop()


state = State()


def default_model() -> str:
    """$MOTIONLIB_MODEL, else the bundled shapes demo when its weights are installed, else CogVideoX-5B."""
    from motionlib.models import shapes_available

    return os.environ.get(DEFAULT_MODEL_ENV) or ("shapes" if shapes_available() else FALLBACK_MODEL)


JSON_HIGHLIGHT_MAX = 100_000  # characters: rich colours JSON at about 1 MB/s; larger output is written plainly


def emit(data, human=None) -> None:
    """--json prints `data` (coloured on a terminal when small); otherwise `human()` draws it (or data is
    printed plainly)."""
    if state.as_json:
        text = json.dumps(data, default=str, indent=2, ensure_ascii=False)
        if out.is_terminal and len(text) <= JSON_HIGHLIGHT_MAX:
            out.print_json(text)
        else:
            sys.stdout.write(text + "\n")
    elif human is not None:
        human()
    else:
        out.print(data)


def columns(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Rows as plain aligned columns under a bold header: a list of 10,000 motions prints in milliseconds
    (a rich Table measures every cell: seconds), and pipes to grep or cut."""
    rows = [tuple(printable(c) for c in r) for r in rows]  # user text: one line, no escape sequences
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out.print(line(headers), style="bold", highlight=False, markup=False, soft_wrap=True)
    sys.stdout.write("\n".join(line(r) for r in rows) + "\n")


@dataclass
class Memory:
    """--offload and --vae-tiling of a command, and the job they are chosen for (motionlib.memory)."""

    job: str
    offload: str = "auto"
    vae_tiling: str = "auto"

    def __post_init__(self):
        from motionlib.memory import OFFLOAD_CHOICES, TILING_CHOICES

        for flag, value, choices in (("--offload", self.offload, OFFLOAD_CHOICES),
                                     ("--vae-tiling", self.vae_tiling, TILING_CHOICES)):
            if value not in choices:
                raise UserError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


def load(model_name: str, memory: Memory, **geometry):
    """Load a model with frame/size overrides, placed as `memory` says (the choice printed in one dim
    line); loading failures become one clear line."""
    from motionlib.models import load_model, resolve_spec

    spec = resolve_spec(model_name)
    if not state.quiet and not state.as_json:
        dim(f"loading {spec.name} ({spec.source})…")
    model = load_model(model_name, device=state.device, offload=memory.offload, vae_tiling=memory.vae_tiling,
                       job=memory.job, **geometry)
    if not state.quiet and not state.as_json:
        dim(model.plan.line())
    return model


def fitting(model):
    """A block whose device out-of-memory error becomes one line naming a setting that would fit."""
    from motionlib.memory import out_of_memory

    return out_of_memory(model, model.plan.job if model.plan else "generate")


class UserError(MotionlibError):
    """A bad command-line value the CLI itself checks; shown as one line."""


def warn(msg: str) -> None:
    err.print(labelled("Warning:", "yellow", msg), highlight=False, soft_wrap=True)


@contextmanager
def shown_warnings(about: str):
    """motionlib's own warnings raised inside (e.g. an asset without a content hash) print as one
    'Warning: ABOUT: …' line each, once; other warnings pass through."""
    from motionlib.integrity import UnverifiedAsset
    from motionlib.weights import OtherWeights

    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnverifiedAsset)
            warnings.simplefilter("always", OtherWeights)
            yield
    finally:
        ours = [w for w in caught if issubclass(w.category, (UnverifiedAsset, OtherWeights))]
        for w in {str(w.message): w for w in ours}.values():
            warn(str(w.message) if issubclass(w.category, OtherWeights) else f"{about}: {w.message}")
        for w in caught:
            if w not in ours:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def progress_bar():
    from .progress import EngineProgress

    return EngineProgress(err, enabled=not (state.as_json or state.quiet))


def default_output(stem: str, gif: bool) -> Path:
    return Path(f"{stem}.{'gif' if gif else 'mp4'}")


VIDEO_SUFFIXES = (".mp4", ".gif")
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems


def check_output(path: Path) -> Path:
    """Refuse an output we could not write before spending minutes rendering it."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{path}: output must end in .mp4 or .gif")
    longest = max(len(os.fsencode(part)) for part in path.parts)
    if longest > NAME_MAX:
        raise UserError(f"{path}: a name in this path is {longest} bytes long; file names hold at most {NAME_MAX}")
    try:
        if path.is_dir():
            raise UserError(f"{path} is a folder; give a file name")
    except OSError as e:
        raise UserError(f"{path}: cannot write there ({e.strerror or e})") from None
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise UserError(f"{path}: cannot write there ({folder} is a file, not a folder)")
    return path


def write(video, path: Path, fps: int) -> Path:
    from motionlib.video import write_video

    return write_video(video, path, fps=fps)


# --------------------------------------------------------------------------------------------
@app.callback()
def main_options(
    home: Optional[Path] = typer.Option(None, "--home", envvar="MOTIONLIB_HOME",
                                        help="Library folder (default: $MOTIONLIB_HOME or the platform's user data dir)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors."),
    device: Optional[str] = typer.Option(None, "--device", envvar="MOTIONLIB_DEVICE",
                                         help="Compute device (default: cuda if available, else cpu)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    state.home, state.as_json, state.verbose, state.device, state.quiet = home, as_json, verbose, device, quiet
    state._lib = None


OFFLOAD = typer.Option(  # learn, apply, transfer, generate, search
    "auto", "--offload", envvar="MOTIONLIB_OFFLOAD",
    help="Where the model's parts wait between uses: 'none' (all on the GPU: fastest; the text encoder is "
         "freed after encoding when that makes it fit), 'model' (one part at a time on the GPU), 'sequential' "
         "(the transformer's blocks stream to the GPU: least memory, slowest), 'auto' (the fastest that fits "
         "the free memory).")
VAE_TILING = typer.Option(
    "auto", "--vae-tiling", envvar="MOTIONLIB_VAE_TILING",
    help="VAE tiling and slicing: 'on' (less memory), 'off', 'auto' (off when it fits).")
CHECKPOINTING = typer.Option(  # learn and transfer
    "auto", "--checkpointing",
    help="Activation checkpointing of the optimisation passes: 'on' (least memory), 'off' (about 20% "
         "faster learn on CogVideoX-5B), 'auto' (off when the activations fit in free memory).")


GRADIENT_HELP = ("How ρ gets its gradient: 'full' (default: through every block up to the guidance block, as in the "
                 "paper) or 'local' (the blocks before it run without gradients, so ρ is steered only through the "
                 "guidance block's own RoPE: much cheaper passes, but on the shapes demo zero-shot direction "
                 "agreement fell from 0.60 to 0.35, 64 renders; RoPE models only). See docs/learning-options.md.")
AMF_WINDOW_HELP = ("Match only frame pairs at most this many latent frames apart (FastVMT's windowed AMF): less AMF "
                   "work, but motion between distant frames is no longer supervised. Default: all pairs.")
OPT_STEPS_END_HELP = ("Adam steps at the last guided step, linear from --opt-steps at the first (e.g. --opt-steps 8 "
                      "--opt-steps-end 2: more early, when ρ moves most; fewer late). Default: --opt-steps throughout.")
REUSE_HELP = ("With --gradient local: run the blocks before the guidance block once per guided step (under that "
              "step's starting ρ) instead of once per Adam step, so an Adam step costs the guidance block alone "
              "(shapes: 0.36 zero-shot agreement vs 0.60, about local's). See docs/learning-options.md.")
OPT_TOL_HELP = ("End a guided step's Adam loop once one step lowers the AMF loss by less than this fraction "
                "(e.g. 0.05): saves passes where the loss has plateaued (shapes: 0.37 zero-shot agreement vs 0.60). "
                "Default 0: always run every step.")


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
             "--lr 0.15 --lr-end 0.05, its best, vs shift's 0.60). Default: the model's."),
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
    check_geometry(resolve_spec(model), frames, height, width)  # before any work
    lib = state.library()
    lib.check_new_name(name, force=force)  # before loading any model
    from motionlib.video import probe

    probe(video)  # fail on a bad clip before loading any model
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
                           prompts=parse_prompts(prompts), **overrides)
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


def check_steps(steps: Optional[int]) -> None:
    from motionlib.errors import ParameterError
    from motionlib.models.spec import MAX_STEPS

    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise ParameterError(f"--steps must be between 1 and {MAX_STEPS}, got {steps}")


def check_gradient(value: str | None) -> None:
    from motionlib.guidance import GRADIENTS

    if value is not None and value not in GRADIENTS:
        raise UserError(f"--gradient must be one of {', '.join(GRADIENTS)}, got {value!r}")


def check_checkpointing(value: str) -> None:
    from motionlib.checkpointing import CHOICES

    if value not in CHOICES:
        raise UserError(f"--checkpointing must be one of {', '.join(CHOICES)}, got {value!r}")


def _last(x):
    while isinstance(x, list) and x:
        x = x[-1]
    return x if isinstance(x, float) else None


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
    offload: str = OFFLOAD,
    vae_tiling: str = VAE_TILING,
):
    """Render PROMPT with a stored motion, zero-shot (no optimisation)."""
    from motionlib import render as rendering
    from motionlib.apply import warn_other_weights

    if not (math.isfinite(strength) and 0 <= strength <= 100):
        raise UserError(f"--strength must be a number from 0 to 100, got {strength}")
    check_steps(steps)
    path = check_output(output or default_output(f"{name}-{seed}", gif))
    memory = Memory("apply", offload, vae_tiling)
    lib = state.library()
    with shown_warnings(f"motion '{name}'"):
        motion = rendering.resolve(lib, name)  # read now: the catalogue may change while it renders
    m = rendering.ModelCache(load=lambda n, **geometry: load(n, memory, **geometry)).for_motion(motion, model)
    with shown_warnings(f"motion '{name}'"):
        warn_other_weights(m, motion.asset, name)  # said before the render, not after it
    with progress_bar() as bar, fitting(m):
        done = rendering.render(m, motion, prompt, path, seed=seed, steps=steps, strength=strength, inject=inject,
                                progress=bar)
    from motionlib.store import MotionNotFound

    try:
        rendering.record(lib, motion, prompt, done, seed=seed, strength=strength)
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
    checkpointing: str = CHECKPOINTING,
    offload: str = OFFLOAD,
    vae_tiling: str = VAE_TILING,
):
    """One-shot transfer optimising the latent z_t (best quality for one prompt; nothing stored)."""
    from motionlib.learn import transfer as transfer_motion
    from motionlib.video import read_video

    from motionlib.video import probe

    check_output(output)
    check_checkpointing(checkpointing)
    check_steps(steps)
    if sampling not in ("spread", "start"):
        raise UserError(f"--sampling must be 'spread' or 'start', got {sampling!r}")
    memory = Memory("transfer", offload, vae_tiling)
    probe(video)
    m = load(model or default_model(), memory)
    s = m.spec
    clip, _ = read_video(video, s.num_frames, s.height, s.width, sampling=sampling)
    started = time.monotonic()
    with progress_bar() as bar, fitting(m):
        result, _ = transfer_motion(m, clip, prompt, seed=seed, steps=steps, progress=bar,
                                    checkpointing=checkpointing)
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
    offload: str = OFFLOAD,
    vae_tiling: str = VAE_TILING,
):
    """Plain generation with the same settings (the baseline apply is compared with)."""
    from motionlib.sampling import generate as plain

    check_output(output)
    check_steps(steps)
    m = load(model or default_model(), Memory("generate", offload, vae_tiling))
    started = time.monotonic()
    with progress_bar() as bar, fitting(m):
        video = plain(m, prompt, seed=seed, steps=steps, progress=bar)
    write(video, output, m.spec.fps)
    seconds = round(time.monotonic() - started, 2)
    emit({"output": str(output), "seconds": seconds}, lambda: say(f"wrote {output} ({seconds} s)"))


@app.command()
def search(
    video: Optional[Path] = typer.Argument(None, help="Clip whose motion to look for."),
    k: int = typer.Option(5, "-k", help="How many results."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Read the clip with this model only and rank only its motions (default: every model that has stored motions)."),
    like: Optional[str] = typer.Option(None, "--like", help="Search motions like a stored one instead of a clip (all models, or --model's)."),
    offload: str = OFFLOAD,
    vae_tiling: str = VAE_TILING,
):
    """Rank stored motions by how similar their motion is to a clip's (or to --like NAME).

    Without --model, every model that has stored motions reads the clip (each loaded once) and its
    motions are scored against the clip as that model sees it. A score is the cosine similarity of
    two motion descriptors (normalised, confidence-weighted summaries of the attention motion flow):
    1 is the same motion, 0 unrelated, -1 the opposite direction. Every model's descriptors live in
    the same space, so the lists are merged by score and each hit names its model. A model that finds
    no motion in the clip is left out with a warning; if none finds any, search fails.
    """
    from motionlib.errors import ParameterError

    if k < 1:
        raise ParameterError(f"-k must be at least 1, got {k}")
    memory = Memory("search", offload, vae_tiling)
    if (video is None) == (like is None):
        raise UserError("give either a VIDEO or --like NAME")
    lib = state.library()
    if like:
        row = lib.get(like)
        desc = row.descriptor_array() if row.descriptor_version == lib.descriptor_version else None
        if desc is None:
            raise UserError(f"'{like}' cannot be searched with: its clip showed no motion")
        hits = lib.search(desc, k=k, model=model, exclude=like)
    else:
        from motionlib.video import probe

        probe(video)
        from motionlib.catalog import search_clip

        hits, notes = search_clip(lib, video, k=k, model=model, load=lambda name: load(name, memory), guard=fitting)
        for note in notes:
            warn(note)
    data = [{"name": r.name, "score": round(float(s), 4), "model": r.model_name, "tags": r.tags} for r, s in hits]

    def human():
        if not data:
            out.print("no stored motions to compare with")
            return
        t = Table("name", "similarity", "model", "tags")
        for d in data:
            t.add_row(printable(d["name"]), f"{d['score']:.3f}", d["model"], printable(", ".join(d["tags"])))
        out.print(t)

    emit(data, human)


@app.command("list")
def list_(
    tag: Optional[str] = typer.Option(None, "--tag", "-t"),
    model: Optional[str] = typer.Option(None, "--model", "-m"),
):
    """List stored motions, by name."""
    rows = state.library().list(tag=tag, model=model)
    data = [r.listing() for r in rows]

    def human():
        if not data:
            out.print("no motions yet: `motionlib learn CLIP --name NAME`")
            return
        columns(("name", "model", "source", "size", "tags", "created"),
                [(d["name"], d["model"], d["source"] or "", f"{d['bytes'] / 1e6:.2f} MB", ", ".join(d["tags"]),
                  d["created_at"][:19]) for d in data])

    emit(data, human)


app.command("ls", help="Alias of list.")(list_)


UNSET = {"check_score": "not checked (learn --check)",
         "weights_fingerprint": "unknown (learnt before motionlib recorded the weights)"}


@app.command()
def show(name: str = typer.Argument(...)):
    """Everything stored about a motion."""
    from motionlib.views import motion_details

    data = motion_details(state.library(), name)

    def human():
        t = Table(show_header=False)
        for key in ("name", "model_name", "family", "latent_frames", "latent_rows", "latent_cols", "source_name",
                    "source_fps", "source_frames", "blob_bytes", "tags", "created_at", "check_score",
                    "weights_fingerprint", "thumbnail_png", "thumbnail_gif"):
            value = data.get(key)
            if value is None and key in UNSET:
                t.add_row(key, UNSET[key])
            else:
                t.add_row(key, printable(value))
        loss = data["loss"] or []
        if loss and isinstance(loss[0], list):
            t.add_row("AMF loss", f"{loss[0][0]:.4f} → {loss[-1][-1]:.4f} over {len(loss)} guided steps")
        facts = data["asset"]
        t.add_row("asset file", printable(facts["error"]) if "error" in facts else
                  f"format v{facts['format_version']}, {facts['steps']} steps ({facts['scheduler']}), guided at "
                  f"timesteps {', '.join(map(str, facts['guided_timesteps'] or []))}")
        t.add_row("params", printable(json.dumps(data["params"], ensure_ascii=False)))
        t.add_row("renders", str(len(data["renders"])))
        out.print(t)

    emit(data, human)


@app.command()
def rm(names: List[str] = typer.Argument(..., help="Motions to remove.")):
    """Remove motions (their files go when no other motion shares them)."""
    state.library().remove_many(names)  # all or nothing
    emit({"removed": names}, lambda: say(f"removed {', '.join(names)}"))


@app.command()
def rename(old: str, new: str):
    """Rename a motion."""
    state.library().rename(old, new)
    emit({"renamed": old, "to": new}, lambda: say(f"renamed {old} → {new}"))


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": ["--help"]})
def tag(name: str = typer.Argument(...),
        changes: List[str] = typer.Argument(..., help="+TAG adds, -TAG removes (e.g. +sport -draft).")):
    """Add (+tag) or remove (-tag) tags."""
    add = [c[1:] for c in changes if c.startswith("+")]
    remove = [c[1:] for c in changes if c.startswith("-")]
    bad = [c for c in changes if c[:1] not in "+-" or len(c) < 2]
    if bad:
        raise UserError(f"tags must be written +TAG or -TAG, got {' '.join(bad)}")
    row = state.library().tag(name, add=add, remove=remove)
    emit({"name": name, "tags": row.tags}, lambda: say(f"{name}: {', '.join(row.tags) or '(no tags)'}"))


@app.command()
def export(name: str, file: Path = typer.Argument(..., help="Destination file or folder."),
           force: bool = typer.Option(False, "--force", "-f", help="Overwrite FILE.")):
    """Copy a motion's asset file (safetensors, with its content hash) out of the library."""
    from motionlib.integrity import seal_file

    path = state.library().export(name, file, overwrite=force)
    sealed = seal_file(path)  # a motion stored in an older format leaves with its hash added
    emit({"name": name, "file": str(path), "sealed": sealed},
         lambda: say(f"exported {name} to {path}" + (" (upgraded to the current format, with its content "
                                                           "hash)" if sealed else "")))


@app.command("import")
def import_(file: Path = typer.Argument(..., help="A motion asset file (.safetensors)."),
            name: Optional[str] = typer.Option(None, "--name", "-n", help="Name in this library (default: file stem)."),
            force: bool = typer.Option(False, "--force", "-f")):
    """Import a motion asset file: its header, content hash and values are checked; nothing in it is executed."""
    from motionlib.catalog import import_motion

    name = name or file.stem
    with shown_warnings(file.name):
        row = import_motion(state.library(), file, name, force=force)
    emit({"name": row.name, "model": row.model_name},
         lambda: say(f"imported {row.name} ({row.model_name})"))


@app.command()
def doctor(repair: bool = typer.Option(False, "--repair", help="Remove orphans and temp files, rebuild the index."),
           weights: bool = typer.Option(False, "--weights", help="Also load the large models the motions use (hub "
                                        "ids, folders; on the CPU) to compare their weights; built-in models are always "
                                        "compared.")):
    """Check the library: orphan blobs (e.g. from a killed learn), corrupt or damaged files (checksums and each
    file's embedded content hash), stale index, and motions learnt with weights other than the installed ones."""
    from functools import partial

    from motionlib.catalog import installed_weights
    from motionlib.integrity import check_file

    report = state.library().doctor(repair=repair, check_content=check_file,
                                    installed_weights=partial(installed_weights, load_large=weights))
    data = {"ok": report.ok, "problems": report.problems(), "notes": report.notes(), "repaired": report.repaired,
            "skipped": report.skipped}
    emit(data, lambda: out.print(str(report)))
    if report.needs_attention or (report.problems() and not repair):
        raise typer.Exit(1)


@app.command()
def models():
    """Known models and presets, and which run offline."""
    from motionlib.models import known_models

    data = []
    for name, s in known_models().items():
        from motionlib.models import shapes_available

        offline = (shapes_available() if name == "shapes" else s.source.startswith("builtin:")) or _hf_cached(s.source)
        data.append({"name": name, "family": s.embedding, "source": s.source, "grid": list(s.grid),
                     "frames": s.num_frames, "size": f"{s.height}x{s.width}", "offline": offline,
                     "description": s.description, "default": name == default_model()})

    def human():
        t = Table("name", "family", "frames", "size", "offline", "description")
        for d in data:
            t.add_row(d["name"] + (" (default)" if d["default"] else ""), d["family"], str(d["frames"]),
                      d["size"], "yes" if d["offline"] else "needs download", d["description"])
        out.print(t)

    emit(data, human)


def _hf_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str)
    except Exception:
        return False


@app.command("eval")
def eval_(
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="shapes.safetensors, a training run folder (its shapes.safetensors, else its newest checkpoint) or a checkpoint (default: the bundled weights)."),
    random: bool = typer.Option(False, "--random", help="Evaluate seeded random (untrained) weights."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="For a checkpoint: its EMA weights (default) or the raw model weights."),
    seed: List[int] = typer.Option([], "--seed", help="Render seed (repeatable; default 0 and 1, quick: 0)."),
    quick: bool = typer.Option(False, "--quick", help="1 family, 1 target prompt, 1 seed (about 2 minutes on one CPU thread)."),
    out_dir: Path = typer.Option(Path("eval-out"), "--out", "-o", help="Folder for the picture grids and eval.json."),
    family: List[str] = typer.Option([], "--family", help="Trajectory family for the transfer metrics (repeatable): linear, arc, zigzag, speed_change, reversal, l_turn (default: all)."),
    clips: Optional[int] = typer.Option(None, "--clips", min=1, max=20, help="Reference clips per family, each learnt once (default 2: 12 zero-shot renders per family on other seeds; quick: 1)."),
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
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: leave as is)."),
):
    """Evaluate the shapes demo model: generation quality, AMF direction, motion transfer, MF-LK, search."""
    from motionlib.demo.eval import evaluate, summary_rows
    from motionlib.learn import parse_prompts

    overrides = dict(opt_steps=opt_steps, lr_start=lr, lr_end=lr_end, guided_fraction=guided_fraction,
                     blocks=tuple(block), confidence=confidence, parametrisation=parametrisation, samples=samples,
                     shift_grid=shift_grid, frame_shift=frame_shift, smoothness=smoothness, gradient=gradient,
                     reuse=reuse, amf_window=amf_window)
    log = (lambda msg: None) if (state.as_json or state.quiet) else dim
    results = evaluate(weights=weights, random=random, ema=ema, device=state.device, quick=quick, sections=section,
                       trajectories=family, seeds=seed, learn_prompts=parse_prompts(learn_prompts) or (),
                       overrides=overrides, threads=threads, log=log, zt=zt, mf=mf, steps=steps, out_dir=out_dir,
                       clips=clips)
    info = results.get("model", {})

    def human():
        t = Table("metric", "value", "threshold / note", title=printable(f"shapes eval: {info.get('weights')}"))
        for row in summary_rows(results):
            t.add_row(*row)
        out.print(t)
        for name, path in (results.get("pictures") or {}).items():
            say(f"{name}: {path}")

    emit(results, human)


from . import batch as _batch  # noqa: E402,F401  (registers apply-batch on the app)

# --------------------------------------------------------------------------------------------
GLOBAL_FLAGS = ("--json", "--verbose", "-v", "--quiet", "-q")
GLOBAL_OPTIONS_WITH_VALUE = ("--home", "--device")


def _command_index(args: list[str]) -> Optional[int]:
    """Position of the command word: the first argument that is neither a global option nor its value."""
    i = 0
    while i < len(args):
        a = args[i]
        if a in GLOBAL_OPTIONS_WITH_VALUE:
            i += 2
            continue
        if not a.startswith("-"):
            return i
        i += 1
    return None


def hoist_global_flags(argv: list[str]) -> list[str]:
    """Let value-less global flags follow the command too (`motionlib list --json`).

    After `tag`, `-x` means "remove tag x", so there only the long forms (--json, --verbose, --quiet)
    move; nothing after `--` moves."""
    cut = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:cut], argv[cut:]
    at = _command_index(head)
    if at is None:
        return argv
    movable = [f for f in GLOBAL_FLAGS if f.startswith("--")] if head[at] == "tag" else GLOBAL_FLAGS
    command = head[at:]
    return head[:at] + [a for a in command if a in movable] + [a for a in command if a not in movable] + tail


BUG_HINT = ("this is a bug in motionlib, not a problem with your input; please report it with the traceback "
            "above (and the command you ran)")


def _out_of_memory(e: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only a command that loaded torch can run out of GPU memory
    return torch is not None and isinstance(e, torch.cuda.OutOfMemoryError)


PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP,
               errno.ENOENT, errno.EEXIST, errno.ENOSPC, errno.EDQUOT}


def _path_error(e: BaseException) -> bool:
    """An OSError about a path the user gave (too long, through a file, no permission, full disk...)."""
    return isinstance(e, OSError) and e.errno in PATH_ERRNOS and e.filename is not None


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: run the app; motionlib's own errors become one line + exit code 1, anything
    else (a bug) shows its traceback and asks for a report."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=".*kept in float32.*")
    argv = hoist_global_flags(list(sys.argv[1:] if argv is None else argv))
    try:
        code = app(args=argv, prog_name="motionlib", standalone_mode=False)  # usage errors reach us, below
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:
        if isinstance(e, _UsageError) and not isinstance(e, _NoArgsIsHelp):  # one line, not typer's panel
            where = e.ctx.command_path if e.ctx is not None else "motionlib"
            err.print(labelled("Error:", "red", f"{e.format_message()} (see `{where} --help`)"), highlight=False,
                      soft_wrap=True)
            sys.exit(e.exit_code)
        if isinstance(e, _ClickException):  # `motionlib` alone: the help, as typer shows it
            from typer import rich_utils

            rich_utils.rich_format_error(e)
            sys.exit(e.exit_code)
        if state.verbose:
            raise
        if isinstance(e, MotionlibError):  # the whole message, on one line (printable escapes newlines)
            msg = str(e).strip() or type(e).__name__
        elif _path_error(e):  # the user's path cannot be used here: not a bug
            msg = f"cannot use {e.filename}: {e.strerror}"  # type: ignore[attr-defined]
        elif _out_of_memory(e):
            msg = (f"out of GPU memory ({str(e).strip().splitlines()[0] if str(e).strip() else 'CUDA'}); try "
                   "--checkpointing on, fewer --frames, a smaller --height/--width, or --device cpu")
        else:
            import traceback

            traceback.print_exc()
            err.print(labelled("Internal error:", "red", f"{type(e).__name__}: {BUG_HINT}"), highlight=False,
                      soft_wrap=True)
            sys.exit(1)
        err.print(labelled("Error:", "red", msg), highlight=False, soft_wrap=True)
        sys.exit(1)
    if isinstance(code, int) and code:  # typer.Exit(n), or 130 after Ctrl+C
        sys.exit(code)


from . import serve as _serve  # noqa: E402,F401  registers `motionlib serve` (its imports load only when it runs)
