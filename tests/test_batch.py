"""apply-batch: jobs files, 2 Ray workers on the CPU with tiny-5b, failures that stay alone, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from motionlib.batch import BatchError, read_jobs
from motionlib.cli.main import main

from helpers import LEFT


def run_cli(capsys, *args):
    try:
        main(["--json", "-q", *args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    cap = capsys.readouterr()
    return code, (json.loads(cap.out) if cap.out.strip().startswith("{") else cap.out), cap.err


def write_jobs(path: Path, jobs: list) -> Path:
    path.write_text("\n".join(j if isinstance(j, str) else json.dumps(j) for j in jobs) + "\n")
    return path


def test_read_jobs_reports_each_bad_line(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [
        {"motion": "m", "prompt": "a", "seed": 1, "output": "a.mp4", "strength": 0.5, "steps": 3},
        "",
        "{not json",
        {"motion": "m", "prompt": "b", "seed": "one", "output": "b.mp4"},
        {"motion": "m", "prompt": "c", "seed": 1, "output": "c.avi"},
        {"motion": "m", "prompt": "d", "seed": 1, "output": "a.mp4"},
        {"motion": "m", "prompt": "e", "seed": 1, "output": "e.gif", "colour": "red"},
        {"motion": "m", "seed": 1, "output": "f.mp4"},
        {"motion": "m", "prompt": "g", "seed": 1, "output": "g.mp4", "strength": -1},
    ])
    good, bad = read_jobs(jobs, base=tmp_path)
    assert [(j.line, j.output, j.strength, j.steps) for j in good] == [(1, tmp_path / "a.mp4", 0.5, 3)]
    errors = {r.line: r.error for r in bad}
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9] and all(r.status == "failed" for r in bad)
    for line, words in {3: "not JSON", 4: "'seed'", 5: ".mp4 or .gif", 6: "line 1", 7: "colour",
                        8: "prompt", 9: "'strength'"}.items():
        assert errors[line].startswith(f"line {line}: ") and words in errors[line], errors[line]
    with pytest.raises(BatchError, match="no such jobs file"):
        read_jobs(tmp_path / "missing.jsonl")


@pytest.fixture(scope="module")
def motion_home(tmp_path_factory, tiny5b):
    """A library (SQLite) holding one motion learnt with tiny-5b, shared by the module's tests."""
    from motionlib.catalog import learn_motion
    from motionlib.store import Library

    home = tmp_path_factory.mktemp("batch") / "lib"
    with Library(home, db_url=f"sqlite:///{home / 'motionlib.db'}") as lib:
        learn_motion(lib, tiny5b, LEFT, "left")
    return home


@pytest.fixture
def home(motion_home, tmp_path, monkeypatch):
    monkeypatch.setenv("MOTIONLIB_HOME", str(motion_home))
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return motion_home


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster of 2 CPUs for the module (starting Ray is the slow part)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI must run the Ray cases: pip install -e '.[batch]'")
        pytest.skip("Ray is not installed (pip install -e '.[batch]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


JOBS = [
    {"motion": "left", "prompt": "a red ball", "seed": 0, "output": "out/a.mp4", "steps": 2},
    {"motion": "ghost", "prompt": "a red ball", "seed": 0, "output": "out/ghost.mp4", "steps": 2},
    {"motion": "left", "prompt": "a blue ball", "seed": 1, "output": "out/b.gif", "steps": 2, "strength": 0.5},
    {"motion": "left", "prompt": "a cat", "seed": 2, "output": "out/c.mp4", "steps": 2},
]


@pytest.mark.slow
def test_two_ray_workers_render_fail_alone_and_resume(home, tmp_path, capsys, ray_cluster):
    from motionlib.store import Library

    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS)
    with Library(home) as lib:
        before = len(lib.renders("left"))
    code, data, err = run_cli(capsys, "apply-batch", str(jobs), "--workers", "2")
    assert code == 1, err  # one job failed ...
    status = {r["line"]: r["status"] for r in data["jobs"]}
    assert status == {1: "done", 2: "failed", 3: "done", 4: "done"}  # ... alone
    failed = next(r for r in data["jobs"] if r["status"] == "failed")
    assert "no motion named 'ghost'" in failed["error"] and failed["error"].startswith("line 2 (ghost)")
    assert {r["worker"] for r in data["jobs"] if r["status"] == "done"} == {"worker-0", "worker-1"}
    outs = [tmp_path / "out" / n for n in ("a.mp4", "b.gif", "c.mp4")]
    assert all(p.stat().st_size > 0 for p in outs)
    with Library(home) as lib:  # recorded like apply's renders
        rows = lib.renders("left")
    assert len(rows) == before + 3
    assert {(r.prompt, r.seed, r.steps, r.strength, r.output_path) for r in rows[:3]} == {
        ("a red ball", 0, 2, 1.0, str(outs[0])), ("a blue ball", 1, 2, 0.5, str(outs[1])),
        ("a cat", 2, 2, 1.0, str(outs[2]))}
    # a re-run skips what is done; only the missing output is rendered again
    stamp = outs[0].stat().st_mtime_ns
    outs[2].unlink()
    code, data, err = run_cli(capsys, "apply-batch", str(jobs), "--workers", "2")
    assert code == 1 and (data["done"], data["skipped"], data["failed"]) == (1, 2, 1)
    assert [r["line"] for r in data["jobs"] if r["status"] == "done"] == [4] and outs[2].is_file()
    assert outs[0].stat().st_mtime_ns == stamp
    with Library(home) as lib:
        assert len(lib.renders("left")) == before + 4


@pytest.mark.slow
def test_without_ray_runs_in_process_and_says_so(home, tmp_path, capsys, monkeypatch):
    import motionlib.batch

    monkeypatch.setattr(motionlib.batch, "ray_available", lambda: False)
    jobs = write_jobs(tmp_path / "jobs.jsonl", [JOBS[0], JOBS[3]])
    try:
        main(["apply-batch", str(jobs)])
        code = 0
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "Ray is not installed" in cap.err and "one after another" in cap.err
    assert "rendered 2, skipped 0" in cap.out
    assert (tmp_path / "out" / "a.mp4").is_file() and (tmp_path / "out" / "c.mp4").is_file()
    code, _, err = run_cli(capsys, "apply-batch", str(jobs), "--address", "auto")
    assert code == 1 and "--address needs Ray" in err
    code, _, err = run_cli(capsys, "apply-batch", str(jobs), "--workers", "0")
    assert code == 1 and "--workers must be >= 1" in err
