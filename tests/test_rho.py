"""ρ parametrisations: the RoPE rates against diffusers, the shift parametrisation end to end."""

import pytest
import torch

from motionlib.apply import apply
from motionlib.asset import AssetError, MotionAsset, inspect
from motionlib.guidance import GuidanceParams
from motionlib.learn import learn
from motionlib.rho import Parametrised, Rho, base_rho, from_stored, rope_rates, shifted
from motionlib.sampling import generate

from helpers import noise_clip


def neighbour_check(base, grid, atol=1e-5):
    """Shifting every query by one unit along t, y or x must give diffusers' table entry of the
    neighbouring token (an independent check of the rates and of the angle addition)."""
    frames, rows, cols = grid
    n = frames * rows * cols
    idx = torch.arange(n).reshape(frames, rows, cols)
    for axis in range(3):
        if idx.shape[axis] < 2:
            continue
        d = torch.zeros(n, 3)
        d[:, axis] = 1.0
        rho = shifted(base, d, torch.zeros(n, 3))
        src = idx.narrow(axis, 0, idx.shape[axis] - 1).reshape(-1)
        dst = idx.narrow(axis, 1, idx.shape[axis] - 1).reshape(-1)
        for k in ("q_cos", "q_sin"):
            torch.testing.assert_close(rho.tensors[k][src], base.tensors[k][dst], atol=atol, rtol=0)
        assert torch.equal(rho.tensors["k_cos"], base.tensors["k_cos"])  # keys untouched


@pytest.mark.parametrize("grid,sample", [((3, 4, 6), (4, 6)), ((2, 4, 4), (8, 6)), ((3, 6, 4), (6, 6))])
def test_rope_rates_match_diffusers_tables(grid, sample):
    """Also for resize-crop grids (sample size other than the latent grid: spacing != 1)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    frames, rows, cols = grid
    crops = get_resize_crop_region_for_grid((rows, cols), sample[1], sample[0])
    cos, sin = get_3d_rotary_pos_embed(embed_dim=64, crops_coords=crops, grid_size=(rows, cols),
                                       temporal_size=frames)
    base = Rho("rope", {"q_cos": cos, "q_sin": sin, "k_cos": cos, "k_sin": sin},
               rope_rates(64, crops, (rows, cols), frames))
    neighbour_check(base, grid)


def test_shift_by_one_patch_equals_the_neighbouring_token(tiny5b):
    neighbour_check(base_rho(tiny5b), tiny5b.spec.grid)


def test_zero_shift_is_the_base_bit_for_bit(tiny5b):
    base = base_rho(tiny5b)
    p = Parametrised(base, "shift")
    rho = p.rho()
    assert all(torch.equal(rho.tensors[k], base.tensors[k]) for k in base.tensors)
    assert from_stored(base, p.stored(), "shift", strength=1.0).tensors.keys() == base.tensors.keys()
    assert from_stored(base, p.stored(), "shift", strength=0.0) is base


def test_sincos_shift_by_one_patch_equals_the_neighbouring_token(tiny2b):
    """CogVideoX-2B's additive sin-cos table: a whole-patch shift gives the neighbour's row."""
    base = base_rho(tiny2b)
    frames, rows, cols = tiny2b.spec.grid
    n = frames * rows * cols
    idx = torch.arange(n).reshape(frames, rows, cols)
    for axis in range(3):
        d = torch.zeros(n, 3)
        d[:, axis] = 1.0
        moved = shifted(base, d).tensors["pos"]
        src = idx.narrow(axis, 0, idx.shape[axis] - 1).reshape(-1)
        dst = idx.narrow(axis, 1, idx.shape[axis] - 1).reshape(-1)
        torch.testing.assert_close(moved[src], base.tensors["pos"][dst].float(), atol=2e-3, rtol=0)
    assert torch.equal(shifted(base, torch.zeros(n, 3)).tensors["pos"], base.tensors["pos"].float())


def test_unknown_parametrisation_is_refused(tiny2b):
    with pytest.raises(ValueError, match="parametrisation must be"):
        GuidanceParams.from_spec(tiny2b.spec, parametrisation="grid")


@pytest.fixture(scope="module")
def shift_asset(tiny5b):
    g = torch.Generator().manual_seed(0)
    s = tiny5b.spec
    video = torch.rand(s.num_frames, 3, s.height, s.width, generator=g) * 2 - 1
    return learn(tiny5b, video, seed=1, parametrisation="shift", lr_start=0.2, lr_end=0.1).asset


def test_learn_with_shift_stores_small_position_offsets(tiny5b, shift_asset):
    frames, rows, cols = tiny5b.spec.grid
    a = shift_asset
    assert a.parametrisation == "shift"
    for t in a.timesteps:
        assert set(a.rho_delta[t]) == {"q_shift", "k_shift"}
        assert a.rho_delta[t]["q_shift"].shape == (frames * rows * cols, 3)
    last = a.rho_delta[a.timesteps[-1]]
    assert last["q_shift"].abs().max() > 0 and not torch.equal(last["q_shift"], last["k_shift"])
    # the optimisation makes progress within a guided step
    assert all(steps[-1] < steps[0] for steps in a.losses)


@pytest.mark.slow
def test_shift_asset_round_trip_and_apply(tiny5b, shift_asset, tmp_path):
    path = shift_asset.save(tmp_path / "m.safetensors")
    meta = inspect(path)
    assert meta["params"]["parametrisation"] == "shift"
    back = MotionAsset.load(path)
    for t in shift_asset.timesteps:
        for n, v in shift_asset.rho_delta[t].items():
            torch.testing.assert_close(back.rho_delta[t][n], v, atol=2e-3, rtol=1e-3)
    plain = generate(tiny5b, "a blue cube", seed=5, output="latent")
    zero = apply(tiny5b, back, "a blue cube", seed=5, strength=0.0, inject=False, output="latent")
    assert torch.equal(plain, zero)
    moved = apply(tiny5b, back, "a blue cube", seed=5, output="latent")
    assert not torch.allclose(moved, plain)


@pytest.mark.slow
def test_sincos_learn_with_shift(tiny2b, tmp_path):
    g = torch.Generator().manual_seed(0)
    s = tiny2b.spec
    video = torch.rand(s.num_frames, 3, s.height, s.width, generator=g) * 2 - 1
    asset = learn(tiny2b, video, seed=1, parametrisation="shift", lr_start=0.2, lr_end=0.1).asset
    frames, rows, cols = s.grid
    last = asset.rho_delta[asset.timesteps[-1]]
    assert set(last) == {"pos_shift"} and last["pos_shift"].shape == (frames * rows * cols, 3)
    assert last["pos_shift"].abs().max() > 0
    back = MotionAsset.load(asset.save(tmp_path / "m.safetensors"))
    plain = generate(tiny2b, "a blue cube", seed=5, output="latent")
    assert torch.equal(plain, apply(tiny2b, back, "a blue cube", seed=5, strength=0.0, inject=False,
                                    output="latent"))
    assert not torch.allclose(plain, apply(tiny2b, back, "a blue cube", seed=5, output="latent"))


def test_a_header_naming_an_unknown_parametrisation_is_refused(shift_asset, tmp_path):
    good = shift_asset.save(tmp_path / "ok.safetensors")
    raw = good.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].replace(b'\\"parametrisation\\": \\"shift\\"', b'\\"parametrisation\\": \\"grids\\"')
    assert header != raw[8:8 + n]
    (tmp_path / "bad.safetensors").write_bytes(raw[:8] + header + raw[8 + n:])
    with pytest.raises(AssetError, match="parametrisation"):
        inspect(tmp_path / "bad.safetensors")


def test_shift_takes_its_own_learning_rate_unless_one_is_given(tiny5b):
    g = tiny5b.spec.guidance
    p = GuidanceParams.from_spec(tiny5b.spec, parametrisation="shift")
    assert (p.lr_start, p.lr_end) == g.shift_lr != (g.lr_start, g.lr_end)
    p = GuidanceParams.from_spec(tiny5b.spec, parametrisation="shift", lr_start=0.3)
    assert (p.lr_start, p.lr_end) == (0.3, g.lr_end)
    p = GuidanceParams.from_spec(tiny5b.spec)
    assert (p.parametrisation, p.lr_start, p.lr_end) == (g.parametrisation, g.lr_start, g.lr_end)


def test_shared_shift_moves_query_and_key_alike(tiny5b):
    """'shared-shift': one offset per token gives the neighbour's query *and* key table entries
    (diffusers' own values), and equals 'shift' with the same offset on both sides."""
    base = base_rho(tiny5b)
    frames, rows, cols = tiny5b.spec.grid
    n = frames * rows * cols
    idx = torch.arange(n).reshape(frames, rows, cols)
    d = torch.zeros(n, 3)
    d[:, 2] = 1.0  # one patch to the right
    rho = from_stored(base, {"shift": d}, "shared-shift")
    src, dst = idx[..., :-1].reshape(-1), idx[..., 1:].reshape(-1)
    for k in ("q_cos", "q_sin", "k_cos", "k_sin"):
        torch.testing.assert_close(rho.tensors[k][src].float(), base.tensors[k][dst].float(), atol=1e-5, rtol=0)
    both = from_stored(base, {"q_shift": d, "k_shift": d}, "shift")
    assert all(torch.equal(rho.tensors[k], both.tensors[k]) for k in base.tensors)
    p = Parametrised(base, "shared-shift")
    assert set(p.stored()) == {"shift"} and len(p.params()) == 1
    assert all(torch.equal(p.rho().tensors[k], base.tensors[k]) for k in base.tensors)  # zero: the base


@pytest.mark.slow
def test_learn_with_shared_shift_stores_one_offset_per_token(tiny5b, tmp_path):
    asset = learn(tiny5b, noise_clip(tiny5b), seed=1, parametrisation="shared-shift").asset
    frames, rows, cols = tiny5b.spec.grid
    last = asset.rho_delta[asset.timesteps[-1]]
    assert set(last) == {"shift"} and last["shift"].shape == (frames * rows * cols, 3)
    assert last["shift"].abs().max() > 0
    assert all(steps[-1] < steps[0] for steps in asset.losses)
    path = asset.save(tmp_path / "m.safetensors")
    back = MotionAsset.load(path)
    assert back.parametrisation == "shared-shift" and set(back.rho_delta[back.timesteps[0]]) == {"shift"}
    plain = generate(tiny5b, "a blue cube", seed=5, output="latent")
    assert torch.equal(plain, apply(tiny5b, back, "a blue cube", seed=5, strength=0.0, inject=False, output="latent"))
    assert not torch.allclose(plain, apply(tiny5b, back, "a blue cube", seed=5, inject=False, output="latent"))


def test_shared_shift_on_sincos_and_wan(tiny2b):
    """Sin-cos has one offset per token anyway (stored as pos_shift); on Wan one shared offset equals
    'shift' with it on both sides."""
    from motionlib.models import load_model
    from motionlib.rho import names_for

    assert names_for(tiny2b.spec.embedding, "shared-shift") == names_for(tiny2b.spec.embedding, "shift") == ("pos_shift",)
    wan = load_model("tiny-wan", device="cpu")
    base = base_rho(wan)
    n = base.tensors["q_cos"].shape[0]
    d = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    one = from_stored(base, {"shift": d}, "shared-shift")
    both = from_stored(base, {"q_shift": d, "k_shift": d}, "shift")
    assert all(torch.equal(one.tensors[k], both.tensors[k]) for k in base.tensors)
    assert not torch.equal(one.tensors["k_cos"], base.tensors["k_cos"])
