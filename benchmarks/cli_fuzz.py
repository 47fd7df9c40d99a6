"""A property-based CLI fuzzer (issue 25), shared by tests/test_cli_fuzz.py (a bounded run) and the
reliability section of ``python -m benchmarks`` (≥ 1,000 cases).

Hypothesis draws commands of every kind with hostile text (markup, control characters, unicode,
empty, huge) and numbers (NaN, inf, negative, huge, not numbers), runs each in-process on tiny-5b in a
fresh copy of a library holding one motion, and checks, for every case:

- the exit code is 0, 1 or 2, and nothing prints a traceback or "Internal error";
- a rejected input gets one clear line (a single "Error:" line);
- after a rejection the catalogue is unchanged (rows, blobs, index files) and no file was written;
- an accepted one writes only inside the library and its output path;
- each case ends within ``CASE_SECONDS`` and raises the process's peak memory by at most ``CASE_BYTES``.

``serve`` and ``apply-batch`` are fuzzed on argument parsing and validation only: the server and the
batch runner are replaced by recorders.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from hypothesis import strategies as st

from .common import run_cli

CASE_SECONDS = 20
CASE_BYTES = 2 << 30  # 2 GiB
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LEFT = EXAMPLES / "disc_left.mp4"

HOSTILE = ["[/x]", "[bold]x[/bold]", "a[b]", "\\", "x\ny", "\x1b[31mred", "\r", "\t", " ", "", "..", "../x", "/",
           "é ß 中文 🙂", "a" * 300, "-", "--", "-h", "--json", "NaN", "%s%d", "{}", "${HOME}", "nul\x01l"]
TEXT = st.one_of(st.sampled_from(HOSTILE),
                 st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30))
NUMBER = st.one_of(st.sampled_from(["nan", "NaN", "inf", "-inf", "1e309", "-1", "0", "-0.0", "1e-320", "1000000000",
                                    "99999999999999999999", "", "abc", "0x10", "1_0", " 3", "3.5"]),
                   st.integers(-10**15, 10**15).map(str), st.floats().map(repr))


def _long_render(value: str) -> bool:
    """A valid step count above 2 (e.g. "1000.0"): a legitimate render that may take minutes, not a hostile input."""
    try:
        v = float(value)
    except ValueError:
        return False
    return v == v and v.is_integer() and 2 < v <= 1000


# valid step counts stay small (1 or 2): a case must end in 20 s, and a long render that was asked for is not a hang
STEPS = st.one_of(NUMBER.filter(lambda v: not _long_render(v)), st.sampled_from(["1", "2"]))
PATHS = st.one_of(TEXT, st.sampled_from(["a b.mp4", "[x].mp4", "new\nline.mp4", "../../../etc/passwd", "/dev/null",
                                         "/", ".", "missing.mp4", "clip.txt", "left.mp4"]))
OUTS = st.one_of(st.sampled_from(["out.mp4", "o u t.gif", "[o].mp4", "x/y/z.mp4", "out.avi", "out", "/", ".mp4",
                                  "../escape.mp4"]), TEXT.map(lambda t: t + ".mp4"))
OPTIONAL = st.sampled_from([[], ["--seed"], ["--lr"], ["--guided-fraction"], ["--samples"], ["--block"],
                            ["--frames"], ["--height"], ["--width"], ["--opt-steps"], ["--strength"]])
MEMORY = st.sampled_from([[], ["--offload", "model"], ["--offload", "sequential"], ["--vae-tiling", "on"],
                          ["--offload", "auto"], ["--vae-tiling", "auto"]])


def _learn(d):
    extra = d(OPTIONAL)
    return ["learn", d(st.one_of(st.just("left.mp4"), PATHS)), "--name", d(TEXT), "--steps", d(STEPS),
            "--opt-steps", "1", "--tag", d(TEXT), *(extra and [extra[0], d(NUMBER)]), *d(MEMORY)]


GEOMETRY = st.sampled_from([[], ["--frames"], ["--height"], ["--width"]])  # apply: a retarget (docs/retarget.md)


def _apply(d):
    extra = d(GEOMETRY)
    return ["apply", d(st.one_of(st.just("left"), TEXT)), d(TEXT), "-o", d(OUTS), "--steps", d(STEPS),
            "--strength", d(st.one_of(NUMBER, st.just("1"))), "--seed", d(NUMBER),
            *(extra and [extra[0], d(NUMBER)]), *d(MEMORY)]


COMMANDS = {
    "learn": _learn,
    "apply": _apply,
    "generate": lambda d: ["generate", d(TEXT), "-o", d(OUTS), "--steps", d(STEPS), "--seed", d(NUMBER),
                           *d(MEMORY)],
    "transfer": lambda d: ["transfer", d(st.one_of(st.just("left.mp4"), PATHS)), d(TEXT), "-o", d(OUTS),
                           "--steps", d(STEPS), "--sampling", d(st.one_of(TEXT, st.just("start")))],
    "search": lambda d: ["search", d(PATHS), "-k", d(NUMBER)],
    "search --like": lambda d: ["search", "--like", d(st.one_of(st.just("left"), TEXT)), "-k", d(NUMBER)],
    "list": lambda d: ["list", "--tag", d(TEXT), "--model", d(TEXT)],
    "show": lambda d: ["show", d(TEXT)],
    "rm": lambda d: ["rm", d(TEXT), d(TEXT)],
    "rename": lambda d: ["rename", d(st.one_of(st.just("left"), TEXT)), d(TEXT)],
    "tag": lambda d: ["tag", d(st.one_of(st.just("left"), TEXT)), "+" + d(TEXT), "-" + d(TEXT)],
    "export": lambda d: ["export", d(st.one_of(st.just("left"), TEXT)), d(OUTS)],
    "import": lambda d: ["import", d(PATHS), "--name", d(TEXT)],
    "doctor": lambda d: ["doctor"],
    "models": lambda d: ["models"],
    "eval": lambda d: ["eval", "--random", "--quick", "--trajectory", "no-" + d(TEXT), "--seed", d(NUMBER),
                       "--steps", d(NUMBER), "--out", d(OUTS)],
    "serve": lambda d: ["serve", "--host", d(st.one_of(TEXT, st.just("127.0.0.1"))), "--port", d(NUMBER),
                        "--max-upload-mb", d(NUMBER)],
    "apply-batch": lambda d: ["apply-batch", d(PATHS), "--workers", d(NUMBER), "--in-process"],
    "edit": lambda d: ["edit", d(st.one_of(st.just("left"), TEXT)), "--as", d(TEXT),
                       *d(st.sampled_from([[], ["--reverse"]])), "--mirror", d(st.one_of(st.sampled_from(["x", "y"]), TEXT))],
    "blend": lambda d: ["blend", d(st.one_of(st.just("left"), TEXT)), d(st.one_of(st.just("left"), TEXT)), "--as",
                        d(TEXT), "--weights", d(st.one_of(NUMBER, TEXT, st.just("0.5,0.5")))],
}


@st.composite
def invocations(draw):
    """(command kind, argv) with hostile values."""
    kind = draw(st.sampled_from(sorted(COMMANDS)))
    return kind, ["-q", *COMMANDS[kind](draw)]


# --- running one case -------------------------------------------------------------------------------
@contextlib.contextmanager
def _env(**values: str | None):
    """$NAME=value for each item (None: unset), all restored on exit (mock.patch.dict keeps the copy)."""
    with mock.patch.dict(os.environ):
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield


def make_template(root: Path, motion_file: Path | None = None) -> Path:
    """A library holding 'left' (from `motion_file`, else learnt now on tiny-5b) and a work folder with
    the reference clip and a text file: what every case starts from."""
    (root / "work").mkdir(parents=True)
    shutil.copy(LEFT, root / "work" / "left.mp4")
    (root / "work" / "clip.txt").write_text("not a video")
    with _env(MOTIONLIB_HOME=str(root / "lib"), MOTIONLIB_MODEL="tiny-5b", MOTIONLIB_DB_URL=None):
        if motion_file is None:
            code, _, err = run_cli(["-q", "learn", str(LEFT), "--name", "left", "--opt-steps", "1", "--steps", "4"])
        else:
            code, _, err = run_cli(["-q", "import", str(motion_file), "--name", "left"])
    if code != 0:
        raise RuntimeError(f"could not make the fuzz template: {err}")
    return root


def _tree(root: Path) -> dict:
    """Every file under root with its size and mtime: what "nothing changed" compares."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.name.endswith(("-wal", "-shm")):  # SQLite's journal files change on any read
                continue
            st_ = p.stat()
            out[str(p.relative_to(root))] = (st_.st_size, st_.st_mtime_ns)
    return out


def _allowed_outputs(argv: list[str], work: Path) -> set[Path]:
    """The paths a command was asked to write: -o's, and export's FILE."""
    out = set()
    for i, a in enumerate(argv[:-1]):
        if a in ("-o", "--output", "--out"):
            out.add(Path(os.path.abspath(work / argv[i + 1])))
    if "export" in argv:
        i = argv.index("export")
        if len(argv) > i + 2:
            out.add(Path(os.path.abspath(work / argv[i + 2])))
    return out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@dataclass
class Case:
    """One fuzzed invocation and what it broke (``problems`` empty: it conformed)."""

    kind: str
    argv: list[str]
    code: int | None
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return "violation" if self.problems else ("accepted" if self.code == 0 else "rejected")


def run_case(kind: str, argv: list[str], template: Path) -> Case:
    """Run `argv` in a fresh copy of `template` and check every invariant of the module docstring."""
    import uvicorn

    import motionlib.batch

    base = Path(tempfile.mkdtemp(prefix="fuzz-"))
    real_run, real_batch = uvicorn.run, motionlib.batch.run_batch
    cwd = os.getcwd()
    try:
        shutil.copytree(template, base, dirs_exist_ok=True)
        uvicorn.run = lambda *a, **k: None  # serve: validation only
        motionlib.batch.run_batch = lambda *a, **k: []  # apply-batch: validation only
        before_lib, before_work = _tree(base / "lib"), _tree(base / "work")
        os.chdir(base / "work")
        rss, peak = _rss(), _peak()
        t0 = time.monotonic()
        with _env(MOTIONLIB_HOME=str(base / "lib"), MOTIONLIB_MODEL="tiny-5b", MOTIONLIB_DB_URL=None):
            code, out, err = run_cli(argv)
        seconds = time.monotonic() - t0
        grew = _peak() - rss if _peak() > peak else 0
        os.chdir(cwd)
        case = Case(kind, argv, code, seconds)
        text = out + err
        if code not in (0, 1, 2):
            case.problems.append(f"exit code {code}")
        if "Traceback" in text or "Internal error" in text:
            case.problems.append("traceback or internal error: " + (err.strip().splitlines() or [""])[-1][:200])
        if seconds > CASE_SECONDS:
            case.problems.append(f"took {seconds:.1f} s (cap {CASE_SECONDS} s)")
        if grew > CASE_BYTES:
            case.problems.append(f"raised the peak memory by {grew / 2**30:.2f} GiB (cap {CASE_BYTES / 2**30:g} GiB)")
        errors = sum(line.startswith("Error:") for line in err.splitlines())
        if errors != (0 if code == 0 else 1):
            case.problems.append(f"{errors} 'Error:' lines with exit code {code}")
        allowed = _allowed_outputs(argv, base / "work")
        new = {base / p for p in set(_tree(base)) - {f"work/{q}" for q in before_work} if not p.startswith("lib/")}
        stray = sorted(str(p) for p in new if p not in allowed and p.parent not in allowed)
        if stray:
            case.problems.append(f"wrote outside its outputs: {stray[:3]}")
        if code != 0:
            if _tree(base / "lib") != before_lib:
                case.problems.append("a rejection changed the catalogue")
            if _tree(base / "work") != before_work:
                case.problems.append("a rejection wrote a file")
        return case
    finally:
        os.chdir(cwd)
        uvicorn.run, motionlib.batch.run_batch = real_run, real_batch
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class FuzzRun:
    cases: list[Case] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counts(self) -> Counter:
        return Counter(c.outcome for c in self.cases)

    @property
    def by_kind(self) -> dict[str, Counter]:
        out: dict[str, Counter] = {}
        for c in self.cases:
            out.setdefault(c.kind, Counter())[c.outcome] += 1
        return out


def fuzz(n: int, template: Path) -> FuzzRun:
    """At least `n` hypothesis-drawn cases (derandomized: the same cases every run), every one recorded."""
    from hypothesis import HealthCheck, Phase, given, settings

    run = FuzzRun()
    t0 = time.perf_counter()

    @settings(max_examples=n, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=invocations())
    def one(case):
        if len(run.cases) < n:
            run.cases.append(run_case(*case, template))

    one()
    run.seconds = time.perf_counter() - t0
    return run
