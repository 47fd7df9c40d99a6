"""`motionlib`: learn a motion from a clip once, render any prompt with it later.

The console entry point (`motionlib = motionlib.cli.main:main`): `main(argv)` lets global flags follow
the command (`hoist_global_flags`), runs the app and turns errors into one line. Errors motionlib raises
on purpose (``motionlib.errors.MotionlibError``) end with one line on stderr and exit code 1 (2 for
usage errors); `--verbose` shows the traceback instead. Anything else is a bug: its traceback is shown
with a request to report it.

The commands live in their own modules (render, catalogue, eval, batch, serve), over the shared core
(core.py: the app, state, output) and options.py; this module imports them so that they register, in
the order `--help` lists them. Nothing imports this module back.

Start-up: importing this module loads typer and rich only. The catalogue commands (list, show, tag,
rename, rm, export, doctor, models, --help) never import torch, diffusers or faiss; the engine is
imported inside the commands that render, learn or search.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from typing import Optional

from motionlib.errors import MotionlibError
from motionlib.views import motion_details  # moved to motionlib.views; benchmarks/catalogue.py imports it from here

from .core import app, err, labelled, printable, state

# The command modules register on `app` when imported; --help lists the commands in this order.
from . import render as _render  # noqa: F401  learn, apply, transfer, generate
from . import catalogue as _catalogue  # noqa: F401  search, list, ls, show, rm, rename, tag, export, import, doctor, models
from . import edit as _edit  # noqa: F401  edit, blend
from . import eval as _eval  # noqa: F401  eval
from . import batch as _batch  # noqa: F401  apply-batch
from . import serve as _serve  # noqa: F401  serve (its imports load only when it runs)

try:  # typer >= 0.17 vendors click; older typers use click itself
    from typer._click.exceptions import ClickException as _ClickException
    from typer._click.exceptions import NoArgsIsHelpError as _NoArgsIsHelp
    from typer._click.exceptions import UsageError as _UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as _ClickException  # type: ignore[assignment]
    from click.exceptions import NoArgsIsHelpError as _NoArgsIsHelp  # type: ignore[assignment,attr-defined,no-redef]
    from click.exceptions import UsageError as _UsageError  # type: ignore[assignment]

# What tests, benchmarks and scripts import from here (the names live in core.py and motionlib.views).
__all__ = ["app", "hoist_global_flags", "main", "motion_details", "printable", "state"]

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

