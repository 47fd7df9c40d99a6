"""Search from the command line: mixed-model catalogues, no-motion answers, descriptor migration, and
the learn/apply input checks that must refuse before any work (nothing stored)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from motionlib.demo import data
from motionlib.models import shapes_available
from motionlib.video import write_video

from helpers import EXAMPLES, LEFT, RIGHT, cli, cli_json

SHAPES_LEFT = EXAMPLES / "shapes_left.mp4"
needs_shapes = pytest.mark.skipif(not shapes_available(), reason="shapes weights not installed")


def still_clip(path: Path, frames: int = 16, background: str = "textured") -> Path:
    """A disc that does not move (over a static texture by default)."""
    f, _, _ = data.make_clip(3, color="green", background=background, trajectory="static", num_frames=frames)
    return write_video(torch.from_numpy(f).float() / 127.5 - 1, path, fps=8)


def nothing_stored(home: Path) -> bool:
    from motionlib.store import Library

    with Library(home) as lib:  # the catalogue under test: SQLite or $MOTIONLIB_DB_URL (PostgreSQL)
        names = [m.name for m in lib.list()]
    blobs = list((home / "blobs").rglob("*.safetensors")) if (home / "blobs").exists() else []
    return not names and not blobs


@pytest.mark.slow
@needs_shapes
def test_mixed_model_catalogue(home, capsys):
    cli_json(capsys, "learn", str(LEFT), "--name", "left5b", "--model", "tiny-5b")
    cli_json(capsys, "learn", str(RIGHT), "--name", "right2b", "--model", "tiny-2b")
    cli_json(capsys, "learn", str(SHAPES_LEFT), "--name", "sleft", "--model", "shapes", "--steps", "3",
             "--opt-steps", "1")
    code, out, err = cli(capsys, "search", str(SHAPES_LEFT))  # no --model: every model reads the clip
    assert code == 0, err
    for name in ("shapes", "tiny-2b", "tiny-5b"):
        assert f"loading {name}" in err and err.count(f"loading {name}") == 1  # each model loaded once
    hits = cli_json(capsys, "search", str(SHAPES_LEFT), "-k", "5")
    assert {h["model"] for h in hits} == {"shapes", "tiny-2b", "tiny-5b"}
    assert hits[0]["name"] == "sleft" and hits[0]["score"] > 0.9  # its own clip, as shapes reads it
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert len(cli_json(capsys, "search", str(SHAPES_LEFT), "-k", "2")) == 2
    only = cli_json(capsys, "search", str(LEFT), "--model", "tiny-2b")
    assert [(h["name"], h["model"]) for h in only] == [("right2b", "tiny-2b")]
    like = cli_json(capsys, "search", "--like", "sleft")
    assert sorted(h["model"] for h in like) == ["tiny-2b", "tiny-5b"]
    assert [h["name"] for h in cli_json(capsys, "search", "--like", "sleft", "--model", "tiny-5b")] == ["left5b"]


@pytest.mark.slow
def test_search_a_still_clip_says_no_motion(home, capsys, tmp_path):
    cli_json(capsys, "learn", str(LEFT), "--name", "left")
    still = still_clip(tmp_path / "still.mp4")
    code, out, err = cli(capsys, "search", str(still))
    assert code == 1 and f"no motion found in {still} (static" in err, err
    assert err.strip().splitlines()[-1].startswith("Error:") and not out
    assert cli_json(capsys, "list")[0]["name"] == "left" and len(cli_json(capsys, "list")) == 1


@pytest.mark.slow
def test_search_a_clip_too_short(home, capsys, tmp_path):
    cli_json(capsys, "learn", str(LEFT), "--name", "left")
    one = still_clip(tmp_path / "one.mp4", frames=1)
    code, _, err = cli(capsys, "search", str(one))
    assert code == 1 and f"no motion found in {one} (too short: 1 frame" in err, err
    # a clip shorter than the model's 9 frames but long enough is read whole (5 frames: 2 latent)
    short = tmp_path / "short.mp4"
    f, _, _ = data.make_clip(5, color="red", background="black", trajectory="linear", num_frames=6)
    write_video(torch.from_numpy(f).float() / 127.5 - 1, short, fps=8)
    assert cli_json(capsys, "search", str(short))[0]["name"] == "left"


@pytest.mark.slow
def test_learn_a_still_clip_warns_and_stores_it_unsearchable(home, capsys, tmp_path):
    still = still_clip(tmp_path / "still.mp4")
    code, out, err = cli(capsys, "-q", "learn", str(still), "--name", "still")
    assert code == 0, err
    assert "Warning:" in err and f"no motion found in {still} (static" in err and "search will not rank" in err
    assert cli_json(capsys, "show", "still")["name"] == "still"
    code, _, err = cli(capsys, "search", "--like", "still")
    assert code == 1 and "its clip showed no motion" in err
    cli_json(capsys, "export", "still", str(tmp_path / "still.safetensors"))  # and it travels as it is
    assert cli_json(capsys, "import", str(tmp_path / "still.safetensors"), "--name", "again")["name"] == "again"
    assert cli(capsys, "search", "--like", "again")[0] == 1


@pytest.mark.parametrize("args, message", [
    (["learn", str(LEFT), "--name", "x", "--frames", "1"], "a motion needs at least 2 (--frames 5 or more)"),
    (["learn", str(LEFT), "--name", "x", "--frames", "0"], "--frames must be a positive integer, got 0"),
    (["learn", str(LEFT), "--name", "x", "--frames", "6"], "frame count of the form 4k+1"),
    (["learn", str(LEFT), "--name", "x", "--height", "30"], "height and width divisible by 8, got 30x96"),
    (["learn", str(LEFT), "--name", "x", "--steps", "0"], "--steps must be between 1 and 1000, got 0"),
    (["apply", "m", "a cat", "--steps", "0"], "--steps must be between 1 and 1000, got 0"),
    (["search", str(LEFT), "-k", "0"], "-k must be at least 1, got 0"),
])
def test_impossible_input_is_refused_before_any_work(home, capsys, tmp_path, args, message):
    code, out, err = cli(capsys, *args)
    assert code == 1 and message in err, err
    assert "loading" not in err  # refused before a model was loaded
    assert nothing_stored(home)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob("*.gif"))


@pytest.mark.slow
def test_apply_steps_below_one_renders_nothing(home, capsys, tmp_path):
    cli_json(capsys, "learn", str(LEFT), "--name", "m")
    code, _, err = cli(capsys, "apply", "m", "a cat", "--steps", "-1", "-o", str(tmp_path / "out.mp4"))
    assert code == 1 and "--steps must be between 1 and 1000, got -1" in err
    assert not (tmp_path / "out.mp4").exists() and cli_json(capsys, "show", "m")["renders"] == []


@pytest.mark.slow
def test_old_descriptors_are_redescribed_on_open(home, capsys):
    cli_json(capsys, "learn", str(LEFT), "--name", "left")
    cli_json(capsys, "learn", str(RIGHT), "--name", "right")
    want = {h["name"]: h["score"] for h in cli_json(capsys, "search", str(LEFT))}
    import os

    from sqlalchemy import create_engine, text

    db = create_engine(os.environ.get("MOTIONLIB_DB_URL") or f"sqlite:///{home / 'motionlib.db'}")  # either backend
    with db.begin() as c:  # as a library of descriptor version 1 left them
        c.execute(text("UPDATE motions SET descriptor_version = 1, descriptor = :d"), {"d": np.ones(408, "<f4").tobytes()})
    code, out, err = cli(capsys, "search", str(LEFT))
    assert code == 0 and "re-describing stored motions" in err, err
    got = {h["name"]: h["score"] for h in cli_json(capsys, "search", str(LEFT))}
    assert got == pytest.approx(want, abs=1e-4)
    from motionlib.descriptor import DESCRIPTOR_VERSION

    with db.connect() as c:
        assert {v for (v,) in c.execute(text("SELECT descriptor_version FROM motions"))} == {DESCRIPTOR_VERSION}
    db.dispose()
    code, _, err = cli(capsys, "doctor")
    assert code == 0, err
