"""Retargeting a stored motion to another frame count or size (issue 28 part 2; motionlib.retarget):
identity, the resampled shift field against a naive trilinear implementation, the scaling of offsets,
the AMF and previews, refusals on tiny-5b / tiny-2b / tiny-wan, apply and the CLI at another geometry."""

from __future__ import annotations

import copy
import json
import math
import warnings
from dataclasses import replace

import pytest
import torch

from motionlib.errors import ParameterError
from motionlib.retarget import CannotRetarget, RetargetNote, resample_amf, resample_shift, retarget

from helpers import LEFT, cli, noise_clip

PRESETS = ("tiny-5b", "tiny-2b", "tiny-wan")


@pytest.fixture(scope="module")
def models(tiny5b, tiny2b):
    from motionlib.models import load_model

    return {"tiny-5b": tiny5b, "tiny-2b": tiny2b, "tiny-wan": load_model("tiny-wan", device="cpu")}


@pytest.fixture(scope="module")
def assets(models):
    """{(preset, parametrisation): a motion learnt on a noise clip} (4 steps, 1 Adam step each; no
    'shared-shift' on tiny-2b, whose sin-cos ρ has one shift per token under 'shift' already)."""
    from motionlib.learn import learn

    out = {}
    for name, m in models.items():
        for param in ("shift", "shared-shift", "table"):
            if not (name == "tiny-2b" and param == "shared-shift"):
                out[name, param] = learn(m, noise_clip(m), seed=0, steps=4, opt_steps=1, parametrisation=param).asset
    return out


def tensors_equal(a, b) -> bool:
    ta, tb = a.tensors(), b.tensors()
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


# --- identity ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", PRESETS)
def test_same_geometry_is_the_identity_bit_for_bit(assets, preset, tmp_path):
    for param in ("shift", "shared-shift", "table"):
        if (preset, param) not in assets:
            continue
        a = assets[preset, param]
        s = a.spec
        for b in (a.retarget(), a.retarget(s.num_frames, s.height, s.width), retarget(a, s.num_frames)):
            assert b is not a and b.ref_latent is not a.ref_latent  # a new asset sharing no tensor
            assert tensors_equal(a, b) and b.spec == a.spec and b.params == a.params
            assert a.save(tmp_path / "a.safetensors").read_bytes() == b.save(tmp_path / "b.safetensors").read_bytes()


def test_the_input_is_untouched_and_the_same_retarget_writes_the_same_bytes(assets, tmp_path):
    a = assets["tiny-5b", "shift"]
    before = copy.deepcopy(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetargetNote)
        b, c = a.retarget(17, 32, 64), a.retarget(17, 32, 64)
    assert b.spec.grid == (5, 4, 8) and a.spec == before.spec and a.params == before.params
    assert tensors_equal(a, before)
    assert b.save(tmp_path / "b.safetensors").read_bytes() == c.save(tmp_path / "c.safetensors").read_bytes()


# --- the resampled field against a naive implementation ---------------------------------------------
def naive_resample(field, old, new):
    """Per new token: its position on the old grid (time: ends aligned, i·(F−1)/(F'−1); space: box,
    (i + 0.5)·n/n' − 0.5, clamped), the 8-corner trilinear mix, then (t, y, x) scaled by
    ((F'−1)/(F−1), R'/R, C'/C). Plain Python floats."""
    f, r, c = old
    f2, r2, c2 = new
    grid = field.double().reshape(f, r, c, 3).tolist()

    def where(i, n, n2, ends):
        p = i * (n - 1) / (n2 - 1) if ends else (i + 0.5) * n / n2 - 0.5
        p = min(max(p, 0.0), n - 1)
        lo = min(int(math.floor(p)), n - 1)
        return lo, min(lo + 1, n - 1), p - lo

    scale = ((f2 - 1) / (f - 1), r2 / r, c2 / c)
    out = []
    for t in range(f2):
        t0, t1, wt = where(t, f, f2, True)
        for y in range(r2):
            y0, y1, wy = where(y, r, r2, False)
            for x in range(c2):
                x0, x1, wx = where(x, c, c2, False)
                v = [0.0, 0.0, 0.0]
                for tt, a in ((t0, 1 - wt), (t1, wt)):
                    for yy, b in ((y0, 1 - wy), (y1, wy)):
                        for xx, d in ((x0, 1 - wx), (x1, wx)):
                            for k in range(3):
                                v[k] += a * b * d * grid[tt][yy][xx][k]
                out.append([v[k] * scale[k] for k in range(3)])
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("old,new", [((3, 4, 5), (5, 6, 8)), ((5, 6, 8), (2, 3, 4)), ((8, 8, 8), (12, 8, 8)),
                                     ((8, 8, 8), (8, 12, 12)), ((4, 3, 6), (4, 7, 2))])
def test_resampled_shift_field_matches_a_naive_trilinear(old, new):
    g = torch.Generator().manual_seed(sum(old) * 100 + sum(new))
    field = torch.randn(old[0] * old[1] * old[2], 3, generator=g)
    got = resample_shift(field, old, new)
    assert got.shape == (new[0] * new[1] * new[2], 3) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), naive_resample(field, old, new), rtol=1e-5, atol=1e-5)


def test_offsets_are_scaled_to_the_new_grid_units():
    """A constant (t, y, x) offset becomes the same motion in the new grid's units: y x rows'/rows,
    x x cols'/cols, t x (frames'−1)/(frames−1)."""
    const = torch.tensor([1.0, 2.0, -1.0]).expand(8 * 8 * 8, 3)
    got = resample_shift(const, (8, 8, 8), (12, 12, 16))
    torch.testing.assert_close(got, torch.tensor([11 / 7, 3.0, -2.0]).expand(12 * 12 * 16, 3))
    # a field that moves each token by a fixed fraction of the frame keeps that fraction
    ys = torch.arange(8.0).repeat_interleave(8).repeat(4)  # row of each token, 4 frames of 8x8
    field = torch.stack([torch.zeros_like(ys), 0.25 * (ys + 0.5), torch.zeros_like(ys)], dim=1)
    got = resample_shift(field, (4, 8, 8), (4, 16, 16)).reshape(4, 16, 16, 3)
    rows = torch.arange(16.0)
    inner = (rows >= 1) & (rows <= 14)  # away from the clamped edge rows
    torch.testing.assert_close(got[0, inner, 0, 1], 0.25 * (rows[inner] + 0.5))


def test_scaled_offsets_keep_cogvideox_rope_angles(tiny5b):
    """CogVideoX's RoPE spans its training size at any grid, so a scaled offset is the same rotary angle."""
    from motionlib.models import with_geometry
    from motionlib.rho import base_rho

    small = with_geometry(tiny5b, height=32, width=48)  # token grid (3, 8, 12) -> (3, 4, 6)
    delta = torch.tensor([0.0, 1.0, -2.0])
    moved = resample_shift(delta.expand(3 * 8 * 12, 3), (3, 8, 12), (3, 4, 6))
    torch.testing.assert_close(moved[0], torch.tensor([0.0, 0.5, -1.0]))
    torch.testing.assert_close(moved[0] @ base_rho(small).rates, delta @ base_rho(tiny5b).rates)


def test_amf_and_confidence_follow_the_grid():
    """Nearest frame pair and token, offsets scaled and rounded, targets kept inside the new grid."""
    f, r, c = 4, 8, 8
    amf = torch.zeros(f, f, r * c, 2)
    amf[..., 0] = -2.0  # every patch moves 2 columns left ...
    amf[..., 1] = 1.0  # ... and one row down
    conf = torch.rand(f, f, r * c, generator=torch.Generator().manual_seed(0))
    got, got_conf = resample_amf(amf, conf, (f, r, c), (7, 12, 12))
    assert got.shape == (7, 7, 144, 2) and got_conf.shape == (7, 7, 144)
    xs = torch.arange(12).repeat(12)
    ys = torch.arange(12).repeat_interleave(12)
    free = (xs >= 3) & (ys <= 9)  # tokens whose target (x − 3, y + 2) stays inside the 12 x 12 grid
    assert (got[..., free, 0] == -3).all() and (got[..., free, 1] == 2).all()
    assert ((xs + got[..., 0]) >= 0).all() and ((ys + got[..., 1]) <= 11).all()  # clamped at the edges
    # confidence: nearest pair and token (time 0..3 -> 0..6 end-aligned: new 2 is old 1, new 3 old 2)
    assert torch.equal(got_conf[2, 3, 0], conf[1, 2, 0]) and torch.equal(got_conf[6, 0, 143], conf[3, 0, 63])


# --- assets stay self-consistent ---------------------------------------------------------------------
@pytest.mark.parametrize("preset", PRESETS)
def test_retargeted_assets_save_load_and_keep_injection_where_they_can(assets, preset, tmp_path):
    from motionlib.asset import MotionAsset

    a = assets[preset, "shift"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RetargetNote)  # a size change keeps injection, without a note
        wide = a.retarget(height=32, width=64)
    assert wide.spec.grid == (3, 4, 8) and wide.ref_latent.shape[1:] == (3, a.ref_latent.shape[2], 8, 16)
    assert wide.guidance.inject and wide.params == a.params
    with pytest.warns(RetargetNote, match="KV injection is off at 17 frames"):
        longer = a.retarget(17)  # CogVideoX's and Wan's VAEs compress time: the latent cannot be retimed
    assert longer.spec.grid == (5, 8, 12) and longer.guidance.inject is False
    for b in (wide, longer):
        back = MotionAsset.load(b.save(tmp_path / "b.safetensors"))
        assert back.spec == b.spec and back.params == json.loads(json.dumps(b.params))
        assert all(torch.equal(back.rho_delta[t][n], b.rho_delta[t][n].half().float())
                   for t in b.timesteps for n in b.rho_delta[t])
        assert back.ref_frames is None or back.ref_frames.shape[0] == b.spec.grid[0]


def test_shapes_latent_resizes_like_its_clip(random_shapes):
    """shapes' codec is a pixel unshuffle: the resampled latent decodes to the resized reference (to
    within the quarter-pixel the sub-pixel channels move)."""
    from motionlib.demo.eval import directional_clip
    from motionlib.retarget import resample_latent

    m = random_shapes
    frames, _, _ = directional_clip("left", "red")
    clip = torch.as_tensor(frames).float() / 127.5 - 1
    latent = m.family.encode_video(m, clip)
    up = resample_latent(latent, (8, 24, 24))
    decoded = m.family.decode(m, up)  # [8, 3, 48, 48] in [0, 1]
    resized = torch.nn.functional.interpolate((clip + 1) / 2, size=(48, 48), mode="bilinear", align_corners=False)
    assert decoded.shape == resized.shape
    assert (decoded - resized).abs().mean() < 0.02  # mean error a few grey levels; an unshifted disc edge
    longer = m.family.decode(m, resample_latent(latent, (12, 16, 16)))
    same = m.family.decode(m, latent)
    assert longer.shape == (12, 3, 32, 32)  # a retimed clip keeps the reference's first and last frames
    torch.testing.assert_close(longer[[0, -1]], same[[0, -1]], atol=1e-5, rtol=0)


# --- refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", PRESETS)
def test_table_motions_are_refused_naming_the_shift_parametrisation(assets, preset):
    with pytest.raises(CannotRetarget, match="--parametrisation shift") as e:
        assets[preset, "table"].retarget(height=32)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("geometry,words", [
    (dict(frames=12), "4k+1"), (dict(frames=1), "at least 2"), (dict(height=36), "divisible by 8"),
    (dict(width=0), "--width must be a positive integer"), (dict(frames=5000), "--frames must be at most 1024"),
    (dict(height=8192, width=8192), "at most 1048576 are allowed")])
def test_geometries_the_model_cannot_render_are_refused(assets, preset, geometry, words):
    with pytest.raises(ParameterError, match=words.replace("+", r"\+")):
        assets[preset, "shift"].retarget(**geometry)


def test_a_learnt_positional_embedding_pins_the_geometry(tiny5b):
    """CogVideoX checkpoints with learnt positional embeddings (5B-I2V) render at one geometry only."""
    from diffusers import CogVideoXTransformer3DModel

    from motionlib.models import with_geometry

    config = {k: v for k, v in tiny5b.transformer.config.items() if not k.startswith("_")}
    pinned = replace(tiny5b, transformer=CogVideoXTransformer3DModel.from_config(
        {**config, "use_learned_positional_embeddings": True}))
    assert with_geometry(pinned, 9, 64, 96) is pinned
    with pytest.raises(ParameterError, match="renders only at 9 frames of 64x96 .*learnt"):
        with_geometry(pinned, 17)
    assert with_geometry(tiny5b, 17).spec.grid == (5, 8, 12)  # the sin-cos / RoPE presets take it


# --- apply at another geometry -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_apply_on_a_model_at_another_geometry_retargets(models, assets, preset):
    from motionlib.apply import apply
    from motionlib.models import with_geometry

    a = assets[preset, "shift"]
    m = with_geometry(models[preset], height=32, width=64)
    video = apply(m, a, "a red ball", seed=1, steps=4)
    assert video.shape == (9, 3, 32, 64)
    again = apply(m, a.retarget(9, 32, 64), "a red ball", seed=1, steps=4)
    assert torch.equal(video, again)  # apply's retarget is asset.retarget
    plain = apply(m, a.retarget(9, 32, 64), "a red ball", seed=1, steps=4, strength=0, inject=False)
    assert not torch.equal(video, plain)  # the retargeted shifts do move the render
    with pytest.raises(CannotRetarget, match="--parametrisation shift"):
        apply(m, assets[preset, "table"], "a red ball", seed=1, steps=4)


# --- the CLI ----------------------------------------------------------------------------------------
def _probe(path):
    from motionlib.video import probe

    info = probe(path)
    return info.frame_count, info.height, info.width


@pytest.mark.slow
def test_cli_apply_at_another_geometry_on_tiny5b(cli_home, capsys):
    code, _, err = cli(capsys, "-q", "learn", str(LEFT), "--name", "left", "--steps", "4", "--opt-steps", "1",
                       "--parametrisation", "shift")
    assert code == 0, err
    code, _, err = cli(capsys, "-q", "learn", str(LEFT), "--name", "tab", "--steps", "4", "--opt-steps", "1")
    assert code == 0, err
    code, out, err = cli(capsys, "apply", "left", "a red ball", "--steps", "3", "--height", "32", "--width", "64",
                         "-o", "wide.mp4")
    assert code == 0, err
    assert _probe(cli_home / "wide.mp4") == (9, 32, 64) and "Warning" not in err
    code, out, err = cli(capsys, "apply", "left", "a red ball", "--steps", "3", "--frames", "17", "-o", "long.mp4")
    assert code == 0, err
    assert _probe(cli_home / "long.mp4") == (17, 64, 96)
    assert "Warning: motion 'left': KV injection is off at 17 frames" in err and "Traceback" not in err
    # same inputs, same seed: the same bytes
    code, _, err = cli(capsys, "-q", "apply", "left", "a red ball", "--steps", "3", "--height", "32", "--width", "64",
                       "-o", "wide2.mp4")
    assert code == 0, err
    assert (cli_home / "wide.mp4").read_bytes() == (cli_home / "wide2.mp4").read_bytes()
    # refusals: one line, nothing written, before any model loads
    for args, words in ((["tab", "x", "--height", "32"], "--parametrisation shift"),
                        (["left", "x", "--frames", "12"], "4k+1"),
                        (["left", "x", "--width", "100"], "divisible by 8"),
                        (["left", "x", "--frames", "0"], "--frames must be a positive integer")):
        code, out, err = cli(capsys, "apply", *args, "-o", "no.mp4")
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 1 and len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0], err
        assert "loading" not in err and not (cli_home / "no.mp4").exists()


@pytest.mark.slow
def test_apply_batch_takes_the_geometry_keys(cli_home, capsys):
    from motionlib.batch import read_jobs

    code, _, err = cli(capsys, "-q", "learn", str(LEFT), "--name", "left", "--steps", "4", "--opt-steps", "1",
                       "--parametrisation", "shift")
    assert code == 0, err
    jobs = cli_home / "jobs.jsonl"
    rows = [{"motion": "left", "prompt": "a", "seed": 1, "output": "a.mp4", "steps": 3, "height": 32, "width": 64},
            {"motion": "left", "prompt": "b", "seed": 1, "output": "b.mp4", "steps": 3, "frames": 12},
            {"motion": "left", "prompt": "c", "seed": 1, "output": "c.mp4", "frames": 0}]
    jobs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    good, bad = read_jobs(jobs, base=cli_home)
    assert [(j.frames, j.height, j.width) for j in good] == [(None, 32, 64), (12, None, None)]
    assert len(bad) == 1 and "'frames' must be a positive integer" in bad[0].error
    code, out, err = cli(capsys, "--json", "-q", "apply-batch", str(jobs), "--in-process")
    results = {r["line"]: r for r in json.loads(out)["jobs"]}
    assert results[1]["status"] == "done" and _probe(cli_home / "a.mp4") == (9, 32, 64)
    assert results[2]["status"] == "failed" and "4k+1" in results[2]["error"]


@pytest.mark.slow
def test_cli_apply_on_shapes_at_48_and_at_12_frames(cli_home, capsys, monkeypatch):
    from helpers import EXAMPLES

    monkeypatch.setenv("MOTIONLIB_MODEL", "shapes")
    code, _, err = cli(capsys, "-q", "learn", str(EXAMPLES / "shapes_left.mp4"), "--name", "left", "--steps", "4",
                       "--opt-steps", "1", "--samples", "1")
    assert code == 0, err
    for args, shape in ((["--height", "48", "--width", "48"], (8, 48, 48)), (["--frames", "12"], (12, 32, 32))):
        code, _, err = cli(capsys, "-q", "apply", "left", "a green circle on a black background", "--steps", "4",
                           *args, "-o", "out.mp4")
        assert code == 0, err
        assert _probe(cli_home / "out.mp4") == shape and "Warning" not in err  # shapes keeps injection
        (cli_home / "out.mp4").unlink()
