"""The motionlib CLI on the tiny presets: in-process (main) and as real subprocesses."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from motionlib.cli.main import main

from helpers import LEFT, RIGHT, cli, cli_json


@pytest.mark.slow
def test_whole_flow(home, capsys, tmp_path):
    learnt = cli_json(capsys, "learn", str(LEFT), "--name", "left", "--tag", "demo")
    assert learnt["name"] == "left" and learnt["model"] == "tiny-5b"
    assert Path(learnt["thumbnail"]).is_file() and learnt["thumbnail"].startswith(str(home))
    cli_json(capsys, "learn", str(RIGHT), "--name", "right", "--model", "tiny-5b")
    # apply from the catalogue alone (the clip may be gone)
    rendered = cli_json(capsys, "apply", "left", "a red ball", "-o", str(tmp_path / "out.mp4"), "--seed", "3")
    assert Path(rendered["output"]).stat().st_size > 0
    code, _, err = cli(capsys, "-q", "apply", "left", "a red ball", "--gif", "--strength", "0.5")
    assert code == 0 and (tmp_path / "left-0.gif").is_file(), err
    # self-retrieval (search reads the clip with auto levels, learn reads it as it is: near 1, not exactly)
    hits = cli_json(capsys, "search", str(LEFT), "-k", "2")
    assert [h["name"] for h in hits][0] == "left" and hits[0]["score"] > 0.9
    like = cli_json(capsys, "search", "--like", "left")
    assert [h["name"] for h in like] == ["right"]
    listed = cli_json(capsys, "list", "--tag", "demo")
    assert [r["name"] for r in listed] == ["left"]
    shown = cli_json(capsys, "show", "left")
    assert shown["renders"] and shown["renders"][0]["prompt"] == "a red ball"
    assert shown["params"]["opt_steps"] == 3 and len(shown["loss"]) == 3
    # export -> import -> rm
    exported = cli_json(capsys, "export", "left", str(tmp_path / "left.safetensors"))
    assert Path(exported["file"]).is_file()
    code, _, err = cli(capsys, "export", "left", str(tmp_path / "left.safetensors"))
    assert code == 1 and "exists" in err
    imported = cli_json(capsys, "import", str(tmp_path / "left.safetensors"), "--name", "copy")
    assert imported["name"] == "copy"
    assert cli_json(capsys, "search", "--like", "copy", "-k", "1")[0]["name"] == "left"
    cli_json(capsys, "rename", "copy", "copy2")
    cli_json(capsys, "tag", "copy2", "+a", "+b", "+sharp", "+v", "-a")
    cli_json(capsys, "tag", "copy2", "-sharp", "-v")  # not taken for -h / --verbose
    assert cli_json(capsys, "show", "copy2")["tags"] == ["b"]
    cli_json(capsys, "rm", "copy2", "right")
    assert [r["name"] for r in cli_json(capsys, "ls")] == ["left"]
    assert cli_json(capsys, "doctor")["ok"]
    models = {m["name"]: m for m in cli_json(capsys, "models")}
    assert models["tiny-5b"]["offline"] and models["tiny-5b"]["default"]


@pytest.mark.parametrize("args,message", [
    (["learn", "missing.mp4", "--name", "x"], "no such file"),
    (["learn", "notvideo.mp4", "--name", "x"], "notvideo.mp4"),
    (["learn", "empty.mp4", "--name", "x"], "empty"),
    (["learn", str(LEFT), "--name", "../evil"], "path separator"),
    (["learn", str(LEFT), "--name", "a" * 65], "64"),
    (["learn", str(LEFT), "--name", "x", "--frames", "8"], "4k+1"),
    (["learn", str(LEFT), "--name", "x", "--sampling", "middle"], "--sampling"),
    (["learn", str(LEFT), "--name", "x", "--block", "99"], "outside"),
    (["learn", str(LEFT), "--name", "x", "--parametrisation", "grid"], "--parametrisation"),
    (["learn", str(LEFT), "--name", "x", "--checkpointing", "maybe"], "--checkpointing"),
    (["transfer", str(LEFT), "a cat", "--checkpointing", "maybe"], "--checkpointing"),
    (["learn", str(LEFT), "--name", "x", "--model", "nope"], "unknown model"),
    (["apply", "ghost", "a cat"], "no motion named 'ghost'"),
    (["show", "ghost"], "ghost"),
    (["tag", "ghost", "x"], "+TAG"),
    (["import", "bogus.safetensors"], "not a valid motion"),
    (["search"], "either a VIDEO or --like"),
    (["apply", "ghost", "a cat", "-o", "out.avi"], ".mp4 or .gif"),
    (["generate", "a cat", "-o", "out.txt"], ".mp4 or .gif"),
])
@pytest.mark.slow
def test_bad_input_is_one_clear_line(home, capsys, tmp_path, args, message):
    (tmp_path / "notvideo.mp4").write_text("hello, I am text")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "bogus.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    code, out, err = cli(capsys, *args)
    assert code == 1, (out, err)
    assert message in err
    assert "Traceback" not in err and len([x for x in err.splitlines() if x.startswith("Error:")]) == 1, err
    assert err.strip().splitlines()[-1].startswith("Error:")


@pytest.mark.slow
def test_duplicate_name_needs_force(home, capsys):
    cli_json(capsys, "learn", str(LEFT), "--name", "m")
    code, _, err = cli(capsys, "learn", str(RIGHT), "--name", "m")
    assert code == 1 and "--force" in err
    cli_json(capsys, "learn", str(RIGHT), "--name", "m", "--force")
    assert cli_json(capsys, "show", "m")["source_name"] == "disc_right.mp4"
    assert len(cli_json(capsys, "list")) == 1


@pytest.mark.slow
def test_apply_refuses_other_model_family(home, capsys):
    cli_json(capsys, "learn", str(LEFT), "--name", "m")
    code, _, err = cli(capsys, "apply", "m", "x", "--model", "tiny-2b")
    assert code == 1 and "rope" in err and "posemb" in err


@pytest.mark.slow
def test_corrupt_blob_is_named(home, capsys):
    cli_json(capsys, "learn", str(LEFT), "--name", "m")
    blob = next((home / "blobs").rglob("*.safetensors"))
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF
    blob.write_bytes(bytes(data))
    code, _, err = cli(capsys, "apply", "m", "x")
    assert code == 1 and "'m'" in err and blob.name in err
    code, out, _ = cli(capsys, "doctor")
    assert code == 1 and "corrupt" in out


def test_verbose_shows_traceback(home, capsys):
    from motionlib.store import MotionNotFound

    with pytest.raises(MotionNotFound):  # --verbose re-raises the error itself instead of one line
        main(["--verbose", "apply", "ghost", "x"])


@pytest.mark.slow
def test_crash_between_blob_and_row_leaves_nothing_visible(home, capsys, monkeypatch):
    from motionlib.store import Library

    def boom(*a, **k):
        raise KeyboardInterrupt  # as if the process died while writing the row

    with monkeypatch.context() as mp:
        mp.setattr(Library, "_put_thumbs", boom)  # runs after the blob is durable, before the row
        mp.setattr(Library, "gc_blob", lambda self, sha: None)  # a dead process cleans nothing up
        with pytest.raises(SystemExit):
            main(["-q", "learn", str(LEFT), "--name", "m"])
    assert list((home / "blobs").rglob("*.safetensors"))  # the blob landed ...
    assert cli_json(capsys, "list") == []  # ... but no motion is visible
    code, out, _ = cli(capsys, "--json", "doctor")
    assert code == 1 and any("orphan blob" in p for p in json.loads(out)["problems"]), out
    report = cli_json(capsys, "doctor", "--repair")
    assert any("removed orphan blob" in r for r in report["repaired"])
    assert not list((home / "blobs").rglob("*.safetensors"))
    assert cli(capsys, "doctor")[0] == 0


def _motionlib(*args, env):
    return [sys.executable, "-c", "from motionlib.cli.main import main; main()", *args]


def wait_for(path: Path, marker: str, proc, timeout: float = 180) -> None:
    """Wait until ``marker`` appears in the file ``path`` (a subprocess's stderr)."""
    deadline = time.monotonic() + timeout
    while marker not in path.read_text(errors="replace"):
        assert proc.poll() is None, f"exited with {proc.returncode} before {marker!r}: {path.read_text()}"
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout} s: {path.read_text()}"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_dash_9_mid_learn_leaves_no_partial_motion(home, tmp_path, capsys):
    env = {**os.environ, "MOTIONLIB_HOME": str(home), "MOTIONLIB_MODEL": "tiny-5b"}
    kept = cli_json(capsys, "learn", str(RIGHT), "--name", "kept")  # learnt before: its blob must survive
    stderr = tmp_path / "learn.err"
    with open(stderr, "w") as errf:
        proc = subprocess.Popen(_motionlib("learn", str(LEFT), "--name", "killed", "--steps", "40",
                                           "--opt-steps", "20", env=env), env=env, stdout=subprocess.DEVNULL,
                                stderr=errf)
        try:
            # the progress marker: the reference AMF is extracted and the ρ optimisation begins
            wait_for(stderr, "reference motion extracted", proc)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it was killed mid-way, not finished
    assert [r["name"] for r in cli_json(capsys, "list")] == ["kept"]
    sha = cli_json(capsys, "show", "kept")["blob_sha256"]
    assert sorted(p.name for p in (home / "blobs").rglob("*")  if p.is_file()) == [f"{sha}.safetensors"]
    assert not [p for p in home.rglob("*") if ".tmp" in p.name]  # no staging or temp file left
    report = cli_json(capsys, "doctor")
    assert report["ok"] and report["problems"] == [], report
    assert Path(cli_json(capsys, "export", "kept", str(tmp_path / "k.safetensors"))["file"]).is_file()
    assert kept["bytes"] == (tmp_path / "k.safetensors").stat().st_size  # the blob verifies, whole


@pytest.mark.slow
def test_two_concurrent_learns_both_land(home):
    env = {**os.environ, "MOTIONLIB_HOME": str(home), "MOTIONLIB_MODEL": "tiny-5b"}
    procs = [subprocess.Popen(_motionlib("-q", "learn", str(clip), "--name", name, env=env), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for clip, name in ((LEFT, "a"), (RIGHT, "b"))]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    listed = subprocess.run(_motionlib("--json", "list", env=env), env=env, capture_output=True, text=True)
    assert sorted(r["name"] for r in json.loads(listed.stdout)) == ["a", "b"]


@pytest.mark.slow
def test_console_script_help():
    exe = shutil.which("motionlib", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("console script not installed (run pip install -e .)")
    out = subprocess.run([exe, "learn", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--name" in out.stdout and "Learn the motion" in out.stdout


@pytest.mark.slow
def test_learn_with_shift_parametrisation_makes_a_smaller_motion(home, capsys):
    table = cli_json(capsys, "learn", str(LEFT), "--name", "t")
    shift = cli_json(capsys, "learn", str(LEFT), "--name", "s", "--parametrisation", "shift")
    assert shift["bytes"] < table["bytes"]
    assert cli_json(capsys, "show", "s")["params"]["parametrisation"] == "shift"
    assert cli_json(capsys, "show", "t")["params"]["parametrisation"] == "table"
    code, out, err = cli(capsys, "apply", "s", "a red disc", "-o", str(home / "s.mp4"))
    assert code == 0, err
    shared = cli_json(capsys, "learn", str(LEFT), "--name", "one", "--parametrisation", "shared-shift")
    assert shared["bytes"] < shift["bytes"]
    assert cli_json(capsys, "show", "one")["params"]["parametrisation"] == "shared-shift"
    code, out, err = cli(capsys, "learn", str(LEFT), "--name", "x", "--parametrisation", "shfit")
    assert code != 0 and "shared-shift" in err and "'shfit'" in err


# -- a team on one PostgreSQL catalogue ---------------------------------------------------------
def _run(*args) -> tuple[int, str]:
    """`motionlib ARGS` in this process: (exit code, last stderr line)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        try:
            main(["-q", "--json", *args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    lines = buf.getvalue().strip().splitlines()
    return code, lines[-1] if lines else ""


def _team_member(i: int, asset: str, out: str) -> None:
    """One of 8 processes: learners (0, 1) learn, tag and rename; the others import the same asset
    (the same blob) repeatedly, tag, rename and remove, and all race for the name 'shared'."""
    os.environ["MOTIONLIB_MODEL"] = "tiny-5b"
    done: dict = {"committed": [], "removed": [], "errors": [], "shared": False}

    def ok(*args) -> bool:
        code, msg = _run(*args)
        if code:
            done["errors"].append(f"{' '.join(args)}: {msg}")
        return code == 0

    if i < 2:
        if ok("learn", str(LEFT if i == 0 else RIGHT), "--name", f"learn-{i}", "--steps", "4"):
            ok("tag", f"learn-{i}", f"+team{i}")
            if ok("rename", f"learn-{i}", f"learnt-{i}"):
                done["committed"].append(f"learnt-{i}")
    else:
        for j in range(3):
            if not ok("import", asset, "--name", f"imp-{i}-{j}"):
                continue
            ok("tag", f"imp-{i}-{j}", f"+t{i}")
            if ok("rename", f"imp-{i}-{j}", f"ren-{i}-{j}"):
                done["committed"].append(f"ren-{i}-{j}")
                if j == 1 and ok("rm", f"ren-{i}-{j}"):
                    done["removed"].append(f"ren-{i}-{j}")
        code, msg = _run("import", asset, "--name", "shared")
        done["shared"] = code == 0
        if code and "already exists" not in msg:
            done["errors"].append(f"import shared: {msg}")
    Path(out).write_text(json.dumps(done))


@pytest.mark.slow
@pytest.mark.parametrize("catalogue_db", ["postgres"], indirect=True)
def test_eight_processes_share_one_postgres_catalogue(home, tmp_path, capsys):
    import multiprocessing as mp

    cli_json(capsys, "learn", str(LEFT), "--name", "seed")
    asset = str(tmp_path / "seed.safetensors")
    cli_json(capsys, "export", "seed", asset)
    cli_json(capsys, "rm", "seed")  # its blob goes; the importers put the same bytes back, concurrently
    env = {**os.environ, "MOTIONLIB_MODEL": "tiny-5b"}
    stderr = tmp_path / "doomed.err"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_team_member, args=(i, asset, str(tmp_path / f"m{i}.json"))) for i in range(8)]
    with open(stderr, "w") as errf:
        doomed = subprocess.Popen(_motionlib("learn", str(RIGHT), "--name", "doomed", "--steps", "40",
                                             "--opt-steps", "20", env=env), env=env,
                                  stdout=subprocess.DEVNULL, stderr=errf)
        for p in procs:
            p.start()
        try:
            wait_for(stderr, "reference motion extracted", doomed, timeout=400)
            os.kill(doomed.pid, signal.SIGKILL)  # kill -9 in the middle of the others' work
        finally:
            doomed.kill()
            doomed.wait()
            for p in procs:
                p.join(600)
    assert doomed.returncode == -signal.SIGKILL
    assert [p.exitcode for p in procs] == [0] * 8
    results = [json.loads((tmp_path / f"m{i}.json").read_text()) for i in range(8)]
    assert [r["errors"] for r in results] == [[]] * 8
    assert sum(r["shared"] for r in results) == 1  # exactly one process got the contested name
    expected = {n for r in results for n in r["committed"]} - {n for r in results for n in r["removed"]}
    expected.add("shared")
    listed = {r["name"]: r for r in cli_json(capsys, "list")}
    assert set(listed) == expected  # every committed motion is listed; nothing of 'doomed'
    assert listed["learnt-0"]["tags"] == ["team0"] and listed["ren-3-0"]["tags"] == ["t3"]
    used = {cli_json(capsys, "show", n)["blob_sha256"] for n in listed}
    on_disk = {p.name.split(".")[0] for p in (home / "blobs").rglob("*.safetensors")}
    assert on_disk == used  # no orphan, no missing blob
    report = cli_json(capsys, "doctor")  # every blob re-hashed against its row
    assert report["ok"] and report["problems"] == [], report
    assert cli_json(capsys, "search", "--like", "ren-2-0", "-k", "1")[0]["score"] == pytest.approx(1.0, abs=1e-4)
