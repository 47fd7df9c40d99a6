"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from motionlib.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LEFT, RIGHT = EXAMPLES / "disc_left.mp4", EXAMPLES / "disc_right.mp4"


def noise_clip(model, seed: int = 0) -> torch.Tensor:
    """A seeded uniform-noise clip in [-1, 1] of the model's size, [F, 3, H, W]."""
    s = model.spec
    g = torch.Generator().manual_seed(seed)
    return torch.rand(s.num_frames, 3, s.height, s.width, generator=g) * 2 - 1


def cli(capsys, *args):
    """Run `motionlib ARGS` in-process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_json(capsys, *args):
    """`motionlib --json -q ARGS` in-process; asserts success and returns the parsed output."""
    code, out, err = cli(capsys, "--json", "-q", *args)
    assert code == 0, err
    return json.loads(out)


def tmp_copy(path: Path, folder: Path) -> Path:
    """A copy of a committed file in ``folder`` (tmp_path), so a test that may write it cannot harm the original."""
    return Path(shutil.copy(path, folder / path.name))


# --- catalogue rows without a model (tests of the store and doctor) ------------------------------
DIM = 16  # descriptor length of the fake rows


def meta(**kw):
    base = dict(model_name="tiny-5b", model_source="local", config_hash="abc", family="rope",
                latent_frames=4, latent_rows=6, latent_cols=8, source_sha256="0" * 64,
                source_name="/some/where/clip.mp4", source_fps=24.0, source_frames=49,
                source_width=720, source_height=480, params={"steps": 10, "lr": 0.003},
                loss=[1.0, 0.5, 0.25])
    base.update(kw)
    return base


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def asset_file(tmp_path: Path, content: bytes, name: str = "a.safetensors") -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


def add(lib, tmp_path, name, *, seed=0, content=None, tags=(), force=False, thumbs=False, **meta_kw):
    content = content if content is not None else f"asset:{name}:{seed}".encode()
    thumbnails = None
    if thumbs:
        png = tmp_path / f"{name}.png"
        png.write_bytes(b"\x89PNG fake " + content)
        gif = tmp_path / f"{name}.gif"
        gif.write_bytes(b"GIF89a fake " + content)
        thumbnails = {"png": png, "gif": gif}
    return lib.add_motion(name, asset_file=asset_file(tmp_path, content, f"{name}-{seed}.bin"), meta=meta(**meta_kw),
                          descriptor=vec(seed), thumbnails=thumbnails, tags=tags, force=force)


def learn_exported(root, *options: str):
    """Learn examples' LEFT once on tiny-5b in a library of its own under ``root``; the exported motion file."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:  # fixtures wider than a test: their own environment, undone on exit
        mp.setenv("MOTIONLIB_HOME", str(root / "lib"))
        mp.setenv("MOTIONLIB_MODEL", "tiny-5b")
        mp.delenv("MOTIONLIB_DB_URL", raising=False)
        for args in (["-q", "learn", str(LEFT), "--name", "left", "--opt-steps", "1", "--steps", "4", *options],
                     ["-q", "export", "left", str(root / "left.safetensors")]):
            try:
                main(args)
            except SystemExit as e:
                assert e.code in (0, None)
    return root / "left.safetensors"
