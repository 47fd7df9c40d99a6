"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

import json
import shutil
from pathlib import Path

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
