"""Engine on the tiny presets: diffusers parity, learn, zero-shot apply, transfer, asset file."""

import json
import os
import struct

import pytest
import torch

from motionlib.apply import apply, nearest_timestep
from motionlib.asset import AssetError, MotionAsset, inspect
from motionlib.guidance import GuidanceParams, guided_step_count, learning_rate
from motionlib.learn import learn, reference_motion, transfer
from motionlib.progress import DenoiseStep, OptimiseStep, ReferenceExtracted, Stopped
from motionlib.rho import base_rho
from motionlib.families.cogvideox import dynamic_cfg_scale
from motionlib.sampling import generate

from helpers import noise_clip


@pytest.fixture(scope="module")
def learnt(tiny5b, tiny2b):
    """One learn per family, shared by the tests below (events recorded for inspection)."""
    out = {}
    for m in (tiny5b, tiny2b):
        events = []
        asset = learn(m, noise_clip(m), seed=1, progress=events.append, source={"name": "noise.mp4"}).asset
        out[m.spec.embedding] = (m, asset, events)
    return out


@pytest.mark.slow
def test_plain_generation_matches_diffusers_pipeline(tiny):
    from diffusers import CogVideoXPipeline

    m, s = tiny, tiny.spec
    pipe = CogVideoXPipeline(tokenizer=m.tokenizer, text_encoder=m.text_encoder, vae=m.vae,
                             transformer=m.transformer, scheduler=m.new_scheduler())
    pipe.set_progress_bar_config(disable=True)
    want = pipe("a red ball", num_frames=s.num_frames, height=s.height, width=s.width,
                num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                use_dynamic_cfg=s.use_dynamic_cfg, generator=torch.Generator().manual_seed(3),
                output_type="latent", max_sequence_length=s.text_len).frames
    got = generate(m, "a red ball", seed=3, output="latent")
    assert torch.equal(got, want)


@pytest.mark.slow
def test_identity_asset_reproduces_plain_generation_exactly(learnt):
    for m, asset, _ in learnt.values():
        ident = MotionAsset(**{**asset.__dict__, "rho_delta": {t: {n: torch.zeros_like(v) for n, v in d.items()}
                                                                  for t, d in asset.rho_delta.items()}})
        plain = generate(m, "a blue cube", seed=5, output="latent")
        same = apply(m, ident, "a blue cube", seed=5, inject=False, output="latent")
        assert torch.equal(plain, same), m.spec.name


@pytest.mark.slow
def test_learnt_asset_changes_output_and_strength_scales_it(learnt):
    for m, asset, _ in learnt.values():
        plain = generate(m, "a blue cube", seed=5, output="latent")
        full = apply(m, asset, "a blue cube", seed=5, inject=False, output="latent")
        half = apply(m, asset, "a blue cube", seed=5, inject=False, strength=0.5, output="latent")
        zero = apply(m, asset, "a blue cube", seed=5, inject=False, strength=0.0, output="latent")
        assert torch.equal(zero, plain)
        d_full, d_half = (full - plain).abs().mean().item(), (half - plain).abs().mean().item()
        assert 0 < d_half < d_full, m.spec.name
        injected = apply(m, asset, "a blue cube", seed=5, output="latent")
        assert not torch.equal(injected, full)


def test_amf_loss_falls_during_learn(learnt):
    for m, asset, _ in learnt.values():
        assert len(asset.losses) == guided_step_count(m.spec.num_inference_steps, m.spec.guidance.guided_fraction)
        for per_step in asset.losses:
            assert per_step[-1] < per_step[0], (m.spec.name, per_step)
        assert asset.losses[-1][-1] < asset.losses[0][0]


def test_learn_stops_after_last_guided_step(learnt):
    for m, asset, events in learnt.values():
        n = len(asset.timesteps)
        denoised = [e for e in events if isinstance(e, DenoiseStep)]
        assert len(denoised) == n - 1  # no denoising after the last guided step, no decode
        opt = [e for e in events if isinstance(e, OptimiseStep)]
        assert len(opt) == n * m.spec.guidance.opt_steps
        assert asset.timesteps == sorted(asset.timesteps, reverse=True)
        assert events[0] == ReferenceExtracted() and {type(e) for e in events} == {
            ReferenceExtracted, OptimiseStep, DenoiseStep, Stopped}
        assert isinstance(events[-1], Stopped) and events[-1].step == n - 1  # says why it ended early
        assert [e.done for e in opt] == list(range(1, len(opt) + 1))  # typed, ordered, no gaps
        assert [e.loss for e in opt] == [x for step in asset.losses for x in step]


def test_rho_is_warm_started_and_keyed_by_timestep(learnt):
    m, asset, _ = learnt["rope"]
    norms = [asset.rho_delta[t]["q_cos"].norm().item() for t in asset.timesteps]
    assert all(x > 0 for x in norms)
    assert set(asset.rho_delta[asset.timesteps[0]]) == {"q_cos", "q_sin", "k_cos", "k_sin"}
    # queries and keys are optimised as separate tables
    d = asset.rho_delta[asset.timesteps[-1]]
    assert not torch.equal(d["q_cos"], d["k_cos"])
    m2, asset2, _ = learnt["posemb"]
    assert set(asset2.rho_delta[asset2.timesteps[0]]) == {"pos"}
    frames, rows, cols = m2.spec.grid
    assert asset2.rho_delta[asset2.timesteps[0]]["pos"].shape == (frames * rows * cols, m2.spec.heads * m2.spec.head_dim)


def test_apply_with_other_step_count_uses_nearest_timesteps(learnt):
    from motionlib.apply import AssetHook
    from motionlib.sampling import prepare, sample

    m, asset, _ = learnt["rope"]
    run = prepare(m, "x", seed=0, steps=12)
    hook = AssetHook(asset, inject=False)
    sample(run, [hook])
    assert len(hook.used) == guided_step_count(12, asset.params["guided_fraction"])
    for t, stored in hook.used:
        assert stored == min(asset.timesteps, key=lambda s: (abs(s - t), s))
    assert nearest_timestep([1000, 500], 750) == 500  # ties go to the lower value
    assert nearest_timestep([1000, 500], 760) == 1000


def test_apply_refuses_other_family_or_grid(learnt, tiny5b):
    from dataclasses import replace

    _, asset2b, _ = learnt["posemb"]
    with pytest.raises(AssetError, match="posemb"):
        apply(tiny5b, asset2b, "x")
    _, asset5b, _ = learnt["rope"]
    other = replace(tiny5b.spec, num_frames=13)
    with pytest.raises(AssetError, match="latent grid"):
        asset5b.check_compatible(other)


@pytest.mark.slow
def test_asset_round_trip(learnt, tmp_path):
    for m, asset, _ in learnt.values():
        path = asset.save(tmp_path / f"{m.spec.name}.safetensors")
        assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
        back = MotionAsset.load(path)
        assert back.timesteps == asset.timesteps and back.spec == asset.spec
        assert back.params == json.loads(json.dumps(asset.params))
        assert back.losses == asset.losses and back.source == {"name": "noise.mp4"}
        for b in asset.blocks:
            assert torch.equal(back.ref_amf[b], asset.ref_amf[b])
        for t in asset.timesteps:
            for n, v in asset.rho_delta[t].items():
                torch.testing.assert_close(back.rho_delta[t][n], v, atol=1e-4, rtol=1e-3)
        # fp16 storage loses nothing measurable in the render
        a = apply(m, asset, "a blue cube", seed=5, output="latent")
        b = apply(m, back, "a blue cube", seed=5, output="latent")
        assert (a - b).abs().max().item() < 1e-3 * a.abs().max().item()


def _rewrite_header(src, dst, mutate):
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    header, body = mutate(header, body)
    h = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(h)) + h + body)
    return dst


def test_asset_validation_rejects_bad_files(learnt, tmp_path):
    import pickle

    m, asset, _ = learnt["rope"]
    good = asset.save(tmp_path / "good.safetensors")
    assert inspect(good)["format"] == "motionlib.motion"
    cases = {}
    (tmp_path / "empty").write_bytes(b"")
    cases["empty"] = "too short"
    (tmp_path / "pickle").write_bytes(pickle.dumps({"a": 1}))
    cases["pickle"] = "not"
    (tmp_path / "huge").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    cases["huge"] = "header"
    (tmp_path / "trunc").write_bytes(good.read_bytes()[:-10])
    cases["trunc"] = "size"

    def wrong_dtype(h, b):
        name = next(k for k in h if k.startswith("rho."))
        h[name]["dtype"] = "F32"
        return h, b

    def extra_tensor(h, b):
        h["evil"] = {"dtype": "U8", "shape": [1], "data_offsets": [len(b), len(b) + 1]}
        return h, b + b"\0"

    def wrong_shape(h, b):
        h["ref.amf." + str(asset.blocks[0])]["shape"][0] += 1
        return h, b

    def version(h, b):
        meta = json.loads(h["__metadata__"]["motionlib"])
        meta["version"] = 99
        h["__metadata__"]["motionlib"] = json.dumps(meta)
        return h, b

    def foreign(h, b):
        h["__metadata__"] = {"format": "pt"}
        return h, b

    for fn, msg in [(wrong_dtype, "expected F16"), (extra_tensor, "unexpected"), (wrong_shape, "expected"),
                    (version, "version 99"), (foreign, "not a motionlib")]:
        _rewrite_header(good, tmp_path / fn.__name__, fn)
        cases[fn.__name__] = msg
    for name, msg in cases.items():
        with pytest.raises(AssetError, match=msg):
            MotionAsset.load(tmp_path / name)


def test_asset_validation_bounds_every_allocation(learnt, tmp_path):
    """A crafted header must not make load/thumbnails allocate absurd sizes or crash oddly."""
    _, asset, _ = learnt["rope"]
    good = asset.save(tmp_path / "good.safetensors")

    def meta_edit(fn):
        def mutate(h, b):
            meta = json.loads(h["__metadata__"]["motionlib"])
            fn(meta)
            h["__metadata__"]["motionlib"] = json.dumps(meta)
            return h, b
        return mutate

    edits = {
        "wide": lambda m: m["spec"].update(width=40_000_000),
        "zero_patch": lambda m: m["spec"].update(patch_size=0),
        "str_timesteps": lambda m: m.update(timesteps=[str(t) for t in m["timesteps"]]),
        "bad_block": lambda m: m.update(blocks=[999]),
        "bad_inject": lambda m: m["params"].update(inject_blocks=[999]),
        "family": lambda m: m["spec"].update(family="other"),
    }
    for name, fn in edits.items():
        _rewrite_header(good, tmp_path / name, meta_edit(fn))
        with pytest.raises(AssetError, match="invalid"):
            MotionAsset.load(tmp_path / name)


@pytest.mark.slow
def test_fp16_learn_gets_nonzero_updates():
    """fp16 models (CogVideoX-2B on CUDA) scale the loss so ρ still moves; here on the CPU in fp16."""
    from motionlib.models import load_model

    m = load_model("tiny-2b", device="cpu", dtype=torch.float16)
    asset = learn(m, noise_clip(m).half(), seed=1, opt_steps=2).asset
    assert all(torch.isfinite(d["pos"]).all() and d["pos"].abs().max() > 0 for d in asset.rho_delta.values())


@pytest.mark.slow
def test_transfer_latent_mode(tiny5b):
    video, losses = transfer(tiny5b, noise_clip(tiny5b), "a red ball", seed=2)
    s = tiny5b.spec
    assert video.shape == (s.num_frames, 3, s.height, s.width)
    assert 0 <= video.min() and video.max() <= 1
    assert losses[0][-1] < losses[0][0]
    plain = generate(tiny5b, "a red ball", seed=2)
    assert not torch.equal(video, plain)


@pytest.mark.slow
def test_learn_preview_renders_video(tiny2b):
    result = learn(tiny2b, noise_clip(tiny2b), seed=0, preview=True, opt_steps=1)
    asset, video = result.asset, result.preview
    assert video.shape[0] == tiny2b.spec.num_frames
    assert asset.params["opt_steps"] == 1


def test_reference_amf_shapes_and_bad_video(tiny5b):
    frames, rows, cols = tiny5b.spec.grid
    ref = reference_motion(tiny5b, noise_clip(tiny5b), blocks=(1, 2), temperature=2.0)
    assert set(ref.amf) == {1, 2}
    assert ref.amf[2].shape == (frames, frames, rows * cols, 2)
    assert ref.confidence[2].shape == (frames, frames, rows * cols)
    with pytest.raises(ValueError, match="needs"):
        learn(tiny5b, torch.zeros(5, 3, 8, 8))


def test_guidance_params_validation(tiny5b):
    assert GuidanceParams.from_spec(tiny5b.spec).blocks == tiny5b.spec.guidance.blocks
    assert GuidanceParams.from_spec(tiny5b.spec, blocks=[1, 3]).blocks == (1, 3)
    with pytest.raises(ValueError, match="outside"):
        GuidanceParams.from_spec(tiny5b.spec, blocks=[99])
    with pytest.raises(ValueError, match="guided_fraction"):
        GuidanceParams.from_spec(tiny5b.spec, guided_fraction=0)


def test_schedules_match_their_formulas():
    # paper: 10 of 50 steps guided, lr 0.002 -> 0.001 linearly over them
    assert guided_step_count(50, 0.2) == 10
    lrs = [learning_rate(i, 10, 0.002, 0.001) for i in range(10)]
    assert lrs[0] == 0.002 and lrs[-1] == pytest.approx(0.001)
    assert all(a - b == pytest.approx(0.001 / 9) for a, b in zip(lrs, lrs[1:]))
    import math

    for t in (999, 500, 1):
        naive = 1 + 6 * ((1 - math.cos(math.pi * ((50 - t) / 50) ** 5.0)) / 2)
        assert dynamic_cfg_scale(6, t, 50) == naive


def test_base_rho_is_what_diffusers_uses(tiny):
    rho = base_rho(tiny)
    frames, rows, cols = tiny.spec.grid
    if tiny.spec.embedding == "rope":
        assert rho.tensors["q_cos"].shape == (frames * rows * cols, tiny.spec.head_dim)
    else:
        pe = tiny.transformer.patch_embed
        # diffusers keeps the table in float64 and casts it to the activations dtype when adding
        assert torch.equal(rho.tensors["pos"], pe.pos_embedding[0, pe.max_text_seq_length:].to(tiny.dtype))


def test_kv_only_pass_records_what_a_full_pass_sees(tiny):
    """The injection pass stops inside the block computing only video k/v; they equal the k/v that
    block computes in a full forward of the same input (queries, text tokens and later blocks aside)."""
    from motionlib.injection import reference_kv
    from motionlib.sampling import prepare
    from motionlib.transformer import Controls

    run = prepare(tiny, "a red disc", seed=3, steps=4)
    ref = torch.randn(tiny.latent_shape(), generator=torch.Generator().manual_seed(0))
    t = run.timesteps[1]
    fast = reference_kv(run, ref, t, (0, 1))
    noisy = run.scheduler.scale_model_input(run.scheduler.add_noise(ref, run.init_noise, t.reshape(1)), t)
    controls = Controls(rho=run.base, record_kv=(0, 1))
    with torch.no_grad():
        assert tiny.family.forward(tiny.transformer, noisy, run.cond_embeds, t.expand(1), controls) is not None
    for b in (0, 1):
        for got, want in zip(fast[b], controls.captured[("kv", b)]):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_the_stored_scheduler_is_the_same_whatever_the_hash_seed():
    """Found comparing `make demo` runs: diffusers lists default config keys in set order, which follows
    PYTHONHASHSEED, so two learns of the same motion stored different bytes."""
    import subprocess
    import sys

    code = ("import json; from motionlib.models import load_model; from motionlib.learn import scheduler_record;"
            "print(json.dumps(scheduler_record(load_model('tiny-5b').scheduler)))")
    outs = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                           capture_output=True, text=True, check=True).stdout for seed in (1, 2, 3)}
    assert len(outs) == 1


@pytest.mark.slow
def test_the_same_learn_writes_the_same_bytes_with_source_date_epoch(tmp_path, monkeypatch, capsys):
    """Same inputs, same seed, same bytes: with $SOURCE_DATE_EPOCH fixing the creation time, two learns of
    one clip export byte-identical motion files (without it only created_at and the header hash differ)."""
    from helpers import LEFT, cli_json

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    files = []
    for i in range(2):
        monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / f"lib{i}"))
        cli_json(capsys, "learn", str(LEFT), "--name", "a", "--model", "tiny-5b", "--steps", "4", "--opt-steps", "1")
        cli_json(capsys, "export", "a", str(tmp_path / f"a{i}.safetensors"))
        files.append((tmp_path / f"a{i}.safetensors").read_bytes())
    assert files[0] == files[1]
    assert json.loads(cli_json(capsys, "show", "a")["created_at"][:4]) == 2026
