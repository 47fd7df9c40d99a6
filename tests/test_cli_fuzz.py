"""A property-based CLI fuzzer (issue 25): hypothesis draws commands of every kind with hostile text
(markup, control characters, unicode, empty, huge) and numbers (NaN, inf, negative, huge, not numbers),
runs them in-process on tiny-5b, and checks, for every case:

- the exit code is 0, 1 or 2, and nothing prints a traceback or "Internal error";
- a rejected input gets one clear line (a single "Error:" line);
- after a rejection the catalogue is unchanged (rows, blobs, index files) and no file was written;
- an accepted one writes only inside the library and its output path;
- each case ends within 20 s.

`serve` and `apply-batch` are fuzzed on argument parsing and validation only: the server and the batch
runner are replaced by recorders. The bounded run here draws FUZZ_EXAMPLES cases.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import LEFT, cli
from test_hostile_input import learnt  # noqa: F401  (the module-scoped learnt-motion fixture)

FUZZ_EXAMPLES = int(os.environ.get("MOTIONLIB_FUZZ_EXAMPLES", "60"))
CASE_SECONDS = 20

HOSTILE = ["[/x]", "[bold]x[/bold]", "a[b]", "\\", "x\ny", "\x1b[31mred", "\r", "\t", " ", "", "..", "../x", "/",
           "é ß 中文 🙂", "a" * 300, "-", "--", "-h", "--json", "NaN", "%s%d", "{}", "${HOME}", "nul\x01l"]
TEXT = st.one_of(st.sampled_from(HOSTILE),
                 st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30))
NUMBER = st.one_of(st.sampled_from(["nan", "NaN", "inf", "-inf", "1e309", "-1", "0", "-0.0", "1e-320", "1000000000",
                                    "99999999999999999999", "", "abc", "0x10", "1_0", " 3", "3.5"]),
                   st.integers(-10**15, 10**15).map(str), st.floats().map(repr))
STEPS = st.one_of(NUMBER, st.sampled_from(["1", "2"]))  # valid step counts stay small: a case must end in 20 s
PATHS = st.one_of(TEXT, st.sampled_from(["a b.mp4", "[x].mp4", "new\nline.mp4", "../../../etc/passwd", "/dev/null",
                                         "/", ".", "missing.mp4", "clip.txt", "left.mp4"]))
OUTS = st.one_of(st.sampled_from(["out.mp4", "o u t.gif", "[o].mp4", "x/y/z.mp4", "out.avi", "out", "/", ".mp4",
                                  "../escape.mp4"]), TEXT.map(lambda t: t + ".mp4"))
OPTIONAL = st.sampled_from([[], ["--seed"], ["--lr"], ["--guided-fraction"], ["--samples"], ["--block"],
                            ["--frames"], ["--height"], ["--width"], ["--opt-steps"], ["--strength"]])


def _learn(d):
    extra = d(OPTIONAL)
    return ["learn", d(st.one_of(st.just("left.mp4"), PATHS)), "--name", d(TEXT), "--steps", d(STEPS),
            "--opt-steps", "1", "--tag", d(TEXT), *(extra and [extra[0], d(NUMBER)])]


def _apply(d):
    return ["apply", d(st.one_of(st.just("left"), TEXT)), d(TEXT), "-o", d(OUTS), "--steps", d(STEPS),
            "--strength", d(st.one_of(NUMBER, st.just("1"))), "--seed", d(NUMBER)]


COMMANDS = {
    "learn": _learn,
    "apply": _apply,
    "generate": lambda d: ["generate", d(TEXT), "-o", d(OUTS), "--steps", d(STEPS), "--seed", d(NUMBER)],
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
    "eval": lambda d: ["eval", "--random", "--quick", "--family", "no-" + d(TEXT), "--seed", d(NUMBER),
                       "--steps", d(NUMBER), "--out", d(OUTS)],
    "serve": lambda d: ["serve", "--host", d(st.one_of(TEXT, st.just("127.0.0.1"))), "--port", d(NUMBER),
                        "--max-upload-mb", d(NUMBER)],
    "apply-batch": lambda d: ["apply-batch", d(PATHS), "--workers", d(NUMBER), "--in-process"],
}


@st.composite
def invocations(draw):
    kind = draw(st.sampled_from(sorted(COMMANDS)))
    return kind, ["-q", *COMMANDS[kind](draw)]


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


@pytest.fixture
def template(tmp_path_factory, learnt):  # noqa: F811
    """A library holding 'left' and a work folder with the reference clip, copied for every case."""
    from motionlib.cli.main import main

    root = tmp_path_factory.mktemp("fuzz-template")
    (root / "work").mkdir()
    shutil.copy(LEFT, root / "work" / "left.mp4")
    (root / "work" / "clip.txt").write_text("not a video")
    os.environ["MOTIONLIB_HOME"] = str(root / "lib")
    try:
        main(["-q", "import", str(learnt), "--name", "left"])
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        os.environ.pop("MOTIONLIB_HOME")
    return root


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


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=invocations())
def test_cli_fuzz(case, template, capsys, monkeypatch):
    kind, argv = case
    import uvicorn

    import motionlib.batch

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # serve: validation only
    monkeypatch.setattr(motionlib.batch, "run_batch", lambda *a, **k: [])  # apply-batch: validation only
    # (cli/batch.py imports run_batch when the command runs, so the recorder is what it gets)
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    monkeypatch.setenv("MOTIONLIB_MODEL", "tiny-5b")
    base = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        shutil.copytree(template, base, dirs_exist_ok=True)
        monkeypatch.setenv("MOTIONLIB_HOME", str(base / "lib"))
        monkeypatch.chdir(base / "work")
        before_lib, before_work = _tree(base / "lib"), _tree(base / "work")
        t0 = time.monotonic()
        code, out, err = cli(capsys, *argv)
        seconds = time.monotonic() - t0
        text = out + err
        assert code in (0, 1, 2), (argv, code, err)
        assert "Traceback" not in text and "Internal error" not in text, (argv, err)
        assert seconds <= CASE_SECONDS, (argv, seconds)
        assert sum(line.startswith("Error:") for line in err.splitlines()) == (0 if code == 0 else 1), (argv, err)
        allowed = _allowed_outputs(argv, base / "work")
        new = {base / p for p in set(_tree(base)) - {f"work/{q}" for q in before_work} if not p.startswith("lib/")}
        assert all(p in allowed or p.parent in allowed for p in new), (argv, new)  # only the asked-for outputs
        if code != 0:
            assert _tree(base / "lib") == before_lib, argv  # a rejection changes nothing in the catalogue
            assert _tree(base / "work") == before_work, argv  # and writes no file
    finally:
        shutil.rmtree(base, ignore_errors=True)
