"""The Wan 2.1 family on tiny-wan: WanPipeline parity, ρ, learn/apply, asset, CLI — CogVideoX's guarantees."""

import json
from pathlib import Path

import pytest
import torch

from motionlib.apply import apply
from motionlib.asset import MotionAsset, inspect
from motionlib.errors import ParameterError
from motionlib.learn import learn
from motionlib.rho import Parametrised, base_rho, shifted
from motionlib.sampling import generate

from helpers import LEFT, RIGHT, noise_clip


@pytest.fixture(scope="module")
def wan():
    from motionlib.models import load_model

    return load_model("tiny-wan", device="cpu")


@pytest.fixture(scope="module")
def learnt(wan):
    events = []
    return learn(wan, noise_clip(wan), seed=1, progress=events.append).asset, events


def _pipe(m):
    from diffusers import WanPipeline

    pipe = WanPipeline(tokenizer=m.tokenizer, text_encoder=m.text_encoder, vae=m.vae,
                       transformer=m.transformer, scheduler=m.new_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_plain_generation_matches_wan_pipeline(wan):
    s = wan.spec
    want = _pipe(wan)("a red ball", num_frames=s.num_frames, height=s.height, width=s.width,
                      num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                      generator=torch.Generator().manual_seed(3), output_type="latent",
                      max_sequence_length=s.text_len).frames
    got = generate(wan, "a red ball", seed=3, output="latent")
    assert got.shape == wan.latent_shape()
    assert torch.equal(got.permute(0, 2, 1, 3, 4), want)  # motionlib keeps latent frames first


@pytest.mark.slow
def test_decode_matches_wan_pipeline_video(wan):
    s = wan.spec
    want = _pipe(wan)("a cat", num_frames=s.num_frames, height=s.height, width=s.width, num_inference_steps=2,
                      guidance_scale=s.guidance_scale, generator=torch.Generator().manual_seed(1),
                      output_type="pt", max_sequence_length=s.text_len).frames[0]
    got = generate(wan, "a cat", seed=1, steps=2)
    assert got.shape == (s.num_frames, 3, s.height, s.width)
    torch.testing.assert_close(got, want.float(), atol=1e-6, rtol=0)


def test_base_rho_is_what_diffusers_uses(wan):
    frames, rows, cols = wan.spec.grid
    x = torch.zeros(1, 4, frames, rows * 2, cols * 2)
    cos, sin = wan.transformer.rope(x)
    rho = base_rho(wan)
    assert rho.embedding == "wan"
    assert torch.equal(rho.tensors["q_cos"], cos[0, :, 0]) and torch.equal(rho.tensors["k_sin"], sin[0, :, 0])


def test_whole_patch_shift_equals_the_neighbouring_tokens_rope(wan):
    """Moving every query by one latent frame / patch row / column gives the neighbour's entry of
    diffusers' own WanRotaryPosEmbed tables (a grid one larger along each axis)."""
    frames, rows, cols = wan.spec.grid
    n = frames * rows * cols
    base = base_rho(wan)
    for axis in range(3):
        d = torch.zeros(n, 3)
        d[:, axis] = 1.0
        moved = shifted(base, d, torch.zeros(n, 3))
        grid = [frames, rows, cols]
        grid[axis] += 1
        cos, sin = wan.transformer.rope(torch.zeros(1, 4, grid[0], grid[1] * 2, grid[2] * 2))
        big = torch.arange(grid[0] * grid[1] * grid[2]).reshape(grid)
        dst = big.narrow(axis, 1, big.shape[axis] - 1).reshape(-1)  # the neighbour of each token
        torch.testing.assert_close(moved.tensors["q_cos"], cos[0, dst, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(moved.tensors["q_sin"], sin[0, dst, 0], atol=1e-5, rtol=0)
        assert torch.equal(moved.tensors["k_cos"], base.tensors["k_cos"])
    zero = Parametrised(base, "shift").rho()
    assert all(torch.equal(zero.tensors[k], base.tensors[k]) for k in base.tensors)


@pytest.mark.slow
def test_identity_asset_reproduces_plain_generation_exactly(wan, learnt):
    asset, _ = learnt
    ident = MotionAsset(**{**asset.__dict__, "rho_delta": {t: {n: torch.zeros_like(v) for n, v in d.items()}
                                                              for t, d in asset.rho_delta.items()}})
    plain = generate(wan, "a blue cube", seed=5, output="latent")
    assert torch.equal(apply(wan, ident, "a blue cube", seed=5, inject=False, output="latent"), plain)
    assert not torch.equal(apply(wan, asset, "a blue cube", seed=5, inject=False, output="latent"), plain)
    assert not torch.equal(apply(wan, asset, "a blue cube", seed=5, output="latent"),
                           apply(wan, asset, "a blue cube", seed=5, inject=False, output="latent"))


def test_amf_loss_falls_within_each_guided_step(learnt):
    asset, events = learnt
    assert len(asset.losses) == 3 and all(len(per) == 3 for per in asset.losses)
    for per_step in asset.losses:
        assert per_step[-1] < per_step[0], per_step
    assert not any(e.phase == "denoise" and e.step > 3 for e in events)  # stops after the last guided step


def test_kv_only_pass_records_what_a_full_pass_sees(wan):
    from motionlib.injection import reference_kv
    from motionlib.sampling import prepare
    from motionlib.transformer import Controls

    run = prepare(wan, "a red disc", seed=3, steps=4)
    ref = torch.randn(wan.latent_shape(), generator=torch.Generator().manual_seed(0))
    t = run.timesteps[1]
    fast = reference_kv(run, ref, t, (0, 1))
    noisy = run.scheduler.add_noise(ref, run.init_noise, t.reshape(1))
    controls = Controls(rho=run.base, record_kv=(0, 1))
    with torch.no_grad():
        assert wan.family.forward(wan.transformer, noisy, run.cond_embeds, t.expand(1), controls) is not None
    for b in (0, 1):
        for got, want in zip(fast[b], controls.captured[("kv", b)]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_checkpointing_does_not_change_the_motion(wan):
    kw = dict(seed=2, steps=4, opt_steps=2)
    on = learn(wan, noise_clip(wan, 1), checkpointing="on", **kw).asset
    off = learn(wan, noise_clip(wan, 1), checkpointing="off", **kw).asset
    assert on.losses == off.losses
    for t in on.timesteps:
        assert all(torch.equal(v, off.rho_delta[t][n]) for n, v in on.rho_delta[t].items())


@pytest.mark.slow
def test_asset_round_trip_and_shift_parametrisation(wan, learnt, tmp_path):
    asset, _ = learnt
    path = asset.save(tmp_path / "m.safetensors")
    meta = inspect(path)
    assert meta["spec"]["family"] == "wan" and meta["spec"]["name"] == "tiny-wan"
    back = MotionAsset.load(path)
    assert back.timesteps == asset.timesteps and back.losses == asset.losses
    a = apply(wan, asset, "x", seed=2, output="latent")
    b = apply(wan, back, "x", seed=2, output="latent")
    torch.testing.assert_close(a, b, atol=1e-2, rtol=0)  # ρ deltas are stored in fp16
    shift = learn(wan, noise_clip(wan), seed=1, parametrisation="shift").asset
    n = wan.spec.grid[0] * wan.spec.grid[1] * wan.spec.grid[2]
    assert set(shift.rho_delta[shift.timesteps[0]]) == {"q_shift", "k_shift"}
    assert shift.rho_delta[shift.timesteps[0]]["q_shift"].shape == (n, 3)
    shift_back = MotionAsset.load(shift.save(tmp_path / "s.safetensors"))
    assert shift_back.parametrisation == "shift"
    assert not torch.equal(apply(wan, shift_back, "x", seed=2, inject=False, output="latent"),
                           generate(wan, "x", seed=2, output="latent"))


def test_cogvideox_assets_refuse_wan_and_back(wan, learnt, tiny5b):
    from motionlib.asset import AssetError

    asset, _ = learnt
    with pytest.raises(AssetError, match="wan"):
        apply(tiny5b, asset, "x", output="latent")


def test_frame_counts_other_than_4k_plus_1_are_refused(wan):
    from motionlib.catalog import with_geometry

    with pytest.raises(ParameterError, match=r"4k\+1 \(e\.g\. 9 or 13\), got 10"):
        with_geometry(wan, num_frames=10)
    assert with_geometry(wan, num_frames=13).spec.grid == (4, 8, 12)


def test_real_specs_and_local_folder_loads_through_wan_pipeline(wan, tmp_path):
    """The real loading path (WanPipeline.from_pretrained) on a saved tiny pipeline."""
    from motionlib.models import known_models, load_model

    real = known_models()["wan2.1-t2v-1.3b"]
    assert real.grid == (21, 30, 52) and real.num_frames == 81 and (real.height, real.width) == (480, 832)
    assert real.guidance.blocks == (14,) and "untested" in real.description
    assert known_models()["wan2.1-t2v-14b"].heads == 40
    _pipe(wan).save_pretrained(tmp_path / "wan")
    loaded = load_model(str(tmp_path / "wan"), device="cpu")
    assert loaded.spec.embedding == "wan" and loaded.spec.num_layers == 4 and loaded.spec.heads == 2
    loaded = type(loaded)(**{**loaded.__dict__, "spec": wan.spec})  # tiny geometry (the folder has none)
    s = wan.spec
    # against WanPipeline on the loaded components (loading itself moves diffusers' own forward by
    # ~1e-6: its time embedding differs from a fresh model's with the same state dict)
    want = _pipe(loaded)("x", num_frames=s.num_frames, height=s.height, width=s.width, num_inference_steps=3,
                         guidance_scale=s.guidance_scale, generator=torch.Generator().manual_seed(1),
                         output_type="latent", max_sequence_length=s.text_len).frames
    got = generate(loaded, "x", seed=1, steps=3, output="latent")
    assert torch.equal(got.permute(0, 2, 1, 3, 4), want)
    torch.testing.assert_close(got, generate(wan, "x", seed=1, steps=3, output="latent"), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_cli_flow_on_tiny_wan(tmp_path, monkeypatch, capsys):
    from motionlib.cli.main import main

    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    monkeypatch.setenv("MOTIONLIB_MODEL", "tiny-wan")
    monkeypatch.chdir(tmp_path)

    def run(*args):
        try:
            main(["--json", "-q", *args])
        except SystemExit as e:
            assert not e.code, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    left = LEFT
    assert run("learn", str(left), "--name", "left", "--model", "tiny-wan")["model"] == "tiny-wan"
    run("learn", str(RIGHT), "--name", "right", "--parametrisation", "shift")
    assert {r["name"] for r in run("list", "--model", "tiny-wan")} == {"left", "right"}
    out = run("apply", "left", "a red ball", "-o", str(tmp_path / "out.mp4"))
    assert Path(out["output"]).stat().st_size > 0
    assert run("search", str(left), "-k", "1")[0]["name"] == "left"
    run("export", "left", str(tmp_path / "left.safetensors"))
    assert run("import", str(tmp_path / "left.safetensors"), "--name", "copy")["name"] == "copy"
    assert run("show", "copy")["family"] == "wan"
    models = {m["name"]: m for m in run("models")}
    assert models["tiny-wan"]["offline"] and "untested" in models["wan2.1-t2v-1.3b"]["description"]


def test_transfer_latent_mode_keeps_wans_float32_latents(wan):
    from motionlib.learn import transfer

    latents, losses = transfer(wan, noise_clip(wan), "a cat", seed=0, steps=4, output="latent")
    assert latents.dtype == torch.float32 and latents.shape == wan.latent_shape()
    assert len(losses) == 2 and all(per[-1] < per[0] for per in losses)
