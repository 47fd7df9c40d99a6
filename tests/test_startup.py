"""Catalogue commands start at once: no torch, diffusers, faiss or alembic unless a command needs them;
the schema check is one query; global flags are found wherever they are; errors are one family."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from motionlib.cli.main import hoist_global_flags
from helpers import cli  # (exit code, stdout, stderr) of an in-process run

HEAVY = ("torch", "diffusers", "transformers", "faiss", "alembic")


def asset_file(path: Path) -> Path:
    """A valid motionlib asset for tiny-5b (zero tensors), written without the engine."""
    from safetensors.numpy import save_file

    from motionlib.asset import FORMAT, VERSION, _expected, inspect
    from motionlib.models.tiny import tiny_spec

    spec = tiny_spec("rope")
    f, _, _ = spec.grid
    meta = {"format": FORMAT, "version": VERSION, "created_at": "2026-01-01T00:00:00+00:00",
            "spec": spec.to_dict(), "timesteps": [999, 833], "steps": 6,
            "scheduler": {"name": "CogVideoXDPMScheduler", "config": {}},
            "params": {"inject_blocks": [0], "parametrisation": "table"}, "losses": [[0.5, 0.4], [0.3, 0.2]],
            "source": {"name": "clip.mp4"}, "blocks": [2],
            "latent_shape": [1, f, 4, spec.height // spec.spatial_compression, spec.width // spec.spatial_compression],
            "frames_shape": None}
    dtypes = {"F16": np.float16, "I16": np.int16, "I8": np.int8, "U8": np.uint8}
    save_file({k: np.zeros(shape, dtypes[dt]) for k, (shape, dt) in _expected(meta).items()}, str(path),
              metadata={"motionlib": json.dumps(meta)})
    inspect(path)  # a file the engine accepts
    return path


def add(lib, tmp_path: Path, name: str, seed: int = 0):
    meta = {"model_name": "tiny-5b", "model_source": "builtin:tiny-5b", "family": "rope", "latent_frames": 3,
            "latent_rows": 8, "latent_cols": 12, "params": {"opt_steps": 3}, "loss": [[0.5, 0.4], [0.3, 0.2]]}
    vec = np.random.default_rng(seed).standard_normal(64).astype(np.float32)
    return lib.add_motion(name, asset_file=asset_file(tmp_path / f"{name}.safetensors"), meta=meta,
                          descriptor=vec)


@pytest.fixture
def home(tmp_path, monkeypatch):
    from motionlib.store import Library

    h = tmp_path / "lib"
    with Library(h) as lib:
        add(lib, tmp_path, "walk", seed=0)
        add(lib, tmp_path, "tag", seed=1)  # a motion named like a command
        add(lib, tmp_path, "spare", seed=2)
    monkeypatch.setenv("MOTIONLIB_HOME", str(h))
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    monkeypatch.setenv("MOTIONLIB_MODEL", "tiny-5b")
    monkeypatch.chdir(tmp_path)
    return h


# The commands of issue 18, each run in-process, one after the other, in a fresh interpreter.
CATALOGUE_COMMANDS = [
    ["--help"], ["list"], ["ls", "--tag", "x"], ["--json", "list"], ["show", "walk"], ["show", "tag", "--json"],
    ["tag", "walk", "+sport", "-draft"], ["rename", "walk", "walk2"], ["rename", "walk2", "walk"],
    ["export", "walk", "exported.safetensors"], ["doctor"], ["models"], ["rm", "spare"],
]
PROBE = """
import json, sys
from motionlib.cli.main import main
heavy = {heavy!r}
loaded = lambda: sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))
codes = []
for args in {commands!r}:
    try:
        main(args)
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code)
before = loaded()
import motionlib.asset  # the engine: the probe must see torch once it is imported
print("PROBE", json.dumps({{"codes": codes, "loaded": before, "after_engine": loaded()}}))
"""


def run_probe(commands: list, heavy: tuple, cwd: Path) -> dict:
    """Run `commands` in one fresh interpreter; which of `heavy` they loaded (all must exit 0)."""
    script = PROBE.format(heavy=heavy, commands=commands)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=300)
    line = [x for x in out.stdout.splitlines() if x.startswith("PROBE ")]
    assert out.returncode == 0 and line, out.stderr[-3000:]
    probe = json.loads(line[-1][len("PROBE "):])
    assert probe["codes"] == [0] * len(commands), (probe, out.stderr[-3000:])
    return probe


@pytest.mark.slow
def test_catalogue_commands_never_import_the_engine(home, tmp_path):
    probe = run_probe(CATALOGUE_COMMANDS, HEAVY, tmp_path)
    assert probe["loaded"] == [], f"catalogue commands imported {probe['loaded']}"
    assert "torch" in probe["after_engine"]  # the check itself can see a heavy import
    assert (tmp_path / "exported.safetensors").is_file()


@pytest.mark.slow
def test_browsing_commands_do_not_even_import_numpy(home, tmp_path):
    """--help, list, show and the organising commands read rows and headers only: not even numpy (a
    tenth of a second of start-up) loads; doctor (the index check) and search may load it."""
    probe = run_probe([c for c in CATALOGUE_COMMANDS if c[0] != "doctor"], (*HEAVY, "numpy"), tmp_path)
    assert probe["loaded"] == [], f"browsing commands imported {probe['loaded']}"
    assert "numpy" in probe["after_engine"]


@pytest.mark.slow
def test_commands_did_their_work(home, capsys, tmp_path):
    """The same commands in this process: the lazy paths still do everything they did."""
    shown = json.loads(cli(capsys, "show", "tag", "--json")[1])  # `tag` the motion, not the command
    assert shown["name"] == "tag" and shown["asset"]["guided_timesteps"] == [999, 833]
    code, out, _ = cli(capsys, "show", "walk")
    from motionlib.integrity import VERSION

    assert code == 0 and f"format v{VERSION}, 6 steps (CogVideoXDPMScheduler)" in out and "999, 833" in out
    assert json.loads(cli(capsys, "tag", "walk", "+sport", "--json")[1])["tags"] == ["sport"]
    code, _, err = cli(capsys, "rm", "spare", "ghost")
    assert code == 1 and "ghost" in err
    assert "spare" in [r["name"] for r in json.loads(cli(capsys, "--json", "list")[1])]  # all or nothing
    assert cli(capsys, "rm", "spare", "tag")[0] == 0
    assert [r["name"] for r in json.loads(cli(capsys, "--json", "list")[1])] == ["walk"]
    assert cli(capsys, "doctor")[0] == 0
    # a damaged asset file: show still shows the row and says what is wrong with the file
    blob = next((home / "blobs").rglob("*.safetensors"))
    blob.write_bytes(b"garbage")
    shown = json.loads(cli(capsys, "--json", "show", "walk")[1])
    assert shown["name"] == "walk" and "not a motion file" in shown["asset"]["error"]


@pytest.mark.parametrize("argv,want", [
    (["list", "--json"], ["--json", "list"]),
    (["show", "tag", "--json"], ["--json", "show", "tag"]),  # a motion named "tag"
    (["--home", "tag", "list", "-q"], ["--home", "tag", "-q", "list"]),  # a library folder named "tag"
    (["tag", "walk", "+a", "-v", "-q", "--json"], ["--json", "tag", "walk", "+a", "-v", "-q"]),  # -v: a tag
    (["rm", "a", "--", "--json"], ["rm", "a", "--", "--json"]),
    (["--json"], ["--json"]),
])
def test_hoist_global_flags(argv, want):
    assert hoist_global_flags(argv) == want


def test_old_catalogue_is_upgraded_on_open(tmp_path):
    from alembic import command
    from alembic.script import ScriptDirectory

    from motionlib.store import Library
    from motionlib.store.db import alembic_config, head_revision, schema_revision

    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    assert head_revision() == script.get_current_head()  # the cheap head is alembic's head
    for rev in script.walk_revisions():  # ... because each file is named by its revision number
        assert Path(rev.path).name.startswith(f"{rev.revision}_")

    home = tmp_path / "lib"
    Library(home).close()
    lib = Library(home)
    previous = script.get_revision(head_revision()).down_revision  # None: before the first migration
    cfg = alembic_config(lib.engine)
    command.downgrade(cfg, previous or "base")
    lib.close()
    assert schema_revision(lib.engine) == previous
    with Library(home) as lib:  # opening runs the missing migrations
        assert schema_revision(lib.engine) == head_revision()
        add(lib, tmp_path, "after-upgrade")
        assert lib.names() == ["after-upgrade"]


def test_bugs_show_a_traceback_and_user_errors_one_line(home, capsys, monkeypatch):
    from motionlib.store import Library

    def broken(*a, **k):
        raise ZeroDivisionError("a bug")

    with monkeypatch.context() as mp:  # not monkeypatch.undo(): that would also drop the home fixture's $MOTIONLIB_HOME
        mp.setattr(Library, "list", broken)
        code, _, err = cli(capsys, "list")
        assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err and "bug in motionlib" in err
    code, _, err = cli(capsys, "show", "ghost")
    assert code == 1 and err.strip().splitlines() == ["Error: no motion named 'ghost'; list the library to see "
                                                      "what it holds"]


def test_engine_user_errors_are_motionlib_errors(tmp_path):
    from motionlib.errors import ModelError, MotionlibError, ParameterError
    from motionlib.models import load_model, resolve_spec

    with pytest.raises(ParameterError, match="unknown model"):
        resolve_spec("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="not a diffusers pipeline folder"):
        resolve_spec(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="could not load"):  # offline, nothing cached (conftest)
        load_model("THUDM/CogVideoX-2b", device="cpu")
    from motionlib.checkpointing import check
    from motionlib.rho import check_parametrisation

    for bad in (lambda: check("maybe"), lambda: check_parametrisation("grid")):
        with pytest.raises(MotionlibError):
            bad()
