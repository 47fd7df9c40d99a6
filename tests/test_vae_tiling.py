"""VAE tiling at every size a model accepts (issue 25): tiled encode and decode give the untiled
latent and video shapes, for sizes below one tile and sizes that are not a whole number of tiles;
where no side exceeds a tile the result is the untiled one exactly, and above a tile CogVideoX's
blended tiles differ (docs/memory.md says so)."""

import pytest
import torch

from motionlib.models import load_model
from motionlib.offload import place

# (height, width): below the tiny presets' 32-px tile, odd multiples of the 8-px step, the default, a wide one
SIZES = [(8, 8), (16, 16), (24, 40), (40, 56), (64, 96), (72, 136)]


@pytest.fixture(scope="module", params=["tiny-5b", "tiny-wan", "shapes"])
def model(request):
    return load_model(request.param)


def _tile(model) -> int:
    """The smaller tile side in pixels (no tiling: infinite)."""
    vae = model.vae
    sides = [getattr(vae, f"tile_sample_min_{a}", None) for a in ("height", "width")]
    return min(sides) if all(sides) and hasattr(vae, "enable_tiling") else 1 << 30


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_tiled_encode_and_decode_have_the_untiled_shapes(model, size):
    h, w = size
    step = model.spec.spatial_compression * model.spec.patch_size
    if h % step or w % step:
        pytest.skip(f"{model.spec.name} takes sizes in steps of {step} px")
    video = torch.rand(model.spec.num_frames, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    try:
        place(model, vae_tiling=False)
        latent = model.encode_video(video)
        frames = model.decode(latent)
        place(model, vae_tiling=True)
        tiled_latent = model.encode_video(video)
        tiled_frames = model.decode(latent)
    finally:
        place(model, vae_tiling=False)
    assert tiled_latent.shape == latent.shape
    assert tiled_frames.shape == frames.shape == (model.spec.num_frames, 3, h, w)
    if max(h, w) <= _tile(model):  # one tile: tiling changes nothing
        assert torch.equal(tiled_latent, latent) and torch.equal(tiled_frames, frames)


OPTIONS = [["--vae-tiling", "on"], ["--vae-tiling", "auto"], ["--offload", "model"], ["--offload", "sequential"],
           ["--offload", "auto"]]
# (model, frames, height, width): an odd size for each (tiny-5b: 40x56 crosses its 32-px tiles unevenly)
SIZES_PER_MODEL = [("tiny-5b", 9, 40, 56), ("tiny-wan", 9, 40, 56), ("shapes", 8, 24, 40)]


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: "=".join(o))
@pytest.mark.parametrize("model,frames,height,width", SIZES_PER_MODEL, ids=[m for m, *_ in SIZES_PER_MODEL])
def test_learn_and_apply_at_an_odd_size_with_memory_options(model, frames, height, width, option, monkeypatch,
                                                             tmp_path, capsys):
    """Every --offload / --vae-tiling value works on a CPU, on the tiny presets and shapes (issue 25)."""
    from helpers import LEFT, cli_json

    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    cli_json(capsys, "learn", str(LEFT), "--name", "a", "--model", model, "--height", str(height), "--width",
             str(width), *option, "--steps", "3", "--opt-steps", "1", "--samples", "1")
    got = cli_json(capsys, "apply", "a", "a green circle", "-o", "a.mp4", "--steps", "2", *option)
    assert got["output"] == "a.mp4"
    from motionlib.video import read_video

    clip, _ = read_video(tmp_path / "a.mp4", frames, height, width)
    assert clip.shape == (frames, 3, height, width)
