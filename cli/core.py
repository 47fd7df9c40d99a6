"""The CLI's shared core: the Typer `app` and its global options, the `state` they set, the consoles and
how every command prints (`emit`, `say`, `dim`, `warn`, `printable`, `labelled`, `columns`), `UserError`,
loading a model (`Memory`, `load`, `fitting`), progress and warnings, and the checks of command-line
values made before any work.

The command modules (render, catalogue, eval, batch, serve) import this module and register their
commands on `app`; `main.py` imports them, in the order `--help` lists them. Nothing here imports a
command module.

Start-up: this module imports only typer and rich (and motionlib.errors); the engine is imported inside
the functions that need it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from motionlib.errors import MotionlibError

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


# The global options (main.hoist_global_flags lets the value-less ones follow the command too). No
# docstring: the app's help is Typer(help=...) above.
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


def first_frame(path: Optional[Path], spec, *, needed: str | None = None):
    """The --image of a command on a model with `spec` (a ``motionlib.image.FirstFrame``: the image and its
    file's sha256), read before any model loads: None when not given (or UserError(`needed`) when one is
    needed); refused by name on a text-to-video model; a file that is not an image is one line
    (motionlib.image). A dim line says how the pipeline resizes it."""
    if path is None:
        if needed:
            raise UserError(needed)
        return None
    if spec.conditioning != "i2v":
        raise UserError(f"--image is for image-to-video models; {spec.name} is a text-to-video model")
    from motionlib.image import fit_note, read_first_frame

    frame = read_first_frame(path)
    note = fit_note(frame.image, spec)
    if note and not state.quiet and not state.as_json:
        dim(note)
    return frame


def warn(msg: str) -> None:
    err.print(labelled("Warning:", "yellow", msg), highlight=False, soft_wrap=True)


@contextmanager
def shown_warnings(about: str, *also: type[Warning]):
    """motionlib's own warnings raised inside (e.g. an asset without a content hash; `also`: more
    categories, e.g. motionlib.retarget.RetargetNote) print as one 'Warning: ABOUT: …' line each, once;
    other warnings pass through."""
    from motionlib.integrity import UnverifiedAsset
    from motionlib.weights import OtherWeights

    caught: list = []
    kinds = (UnverifiedAsset, OtherWeights, *also)
    try:
        with warnings.catch_warnings(record=True) as caught:
            for kind in kinds:
                warnings.simplefilter("always", kind)
            yield
    finally:
        ours = [w for w in caught if issubclass(w.category, kinds)]
        for w in {str(w.message): w for w in ours}.values():
            warn(str(w.message) if issubclass(w.category, OtherWeights) else f"{about}: {w.message}")
        for w in caught:
            if w not in ours:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def progress_bar():
    from .progress import EngineProgress

    return EngineProgress(err, enabled=not (state.as_json or state.quiet))


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
