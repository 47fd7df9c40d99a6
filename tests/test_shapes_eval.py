"""motionlib.demo.eval: the metric functions on synthetic tracks and clips with known answers,
checkpoint loading, and a smoke run of the quick evaluation (random weights, few steps)."""

import json
import math

import numpy as np
import pytest
import torch

from motionlib.demo import data
from motionlib.demo import eval as ev
from motionlib.demo import metrics as mt
from motionlib.demo import mflk

needs_cv2 = pytest.mark.skipif(not mflk.have_cv2(), reason="OpenCV missing: pip install opencv-python-headless")


def _linear(n=8, start=(5.0, 9.0), step=(1.5, 0.5)):
    return np.array(start) + np.arange(n)[:, None] * np.array(step)


# --- (cos + 1) / 2 and direction agreement ---------------------------------------------------------
def test_cos_to_unit():
    assert np.allclose(mt.cos_to_unit([1.0, -1.0, 0.0, 0.5]), [1.0, 0.0, 0.5, 0.75])


@pytest.mark.parametrize("family", ["linear", "arc", "zigzag", "speed_change"])
def test_direction_agreement_self_and_reflected(family):
    _, _, meta = data.make_clip(3, trajectory=family, background="black")
    track = meta["track"]
    d, used = mt.direction_agreement(track, track)
    assert d == pytest.approx(1.0) and used >= 5
    reflected = 2 * track[0] - track  # every displacement reversed
    assert mt.direction_agreement(reflected, track)[0] == pytest.approx(-1.0)
    rot = track[0] + (track - track[0]) @ np.array([[0.0, 1.0], [-1.0, 0.0]])  # every step turned 90°
    assert mt.direction_agreement(rot, track)[0] == pytest.approx(0.0, abs=1e-9)


def test_direction_agreement_time_reversed_linear_is_minus_one():
    t = _linear()
    assert mt.direction_agreement(t[::-1], t)[0] == pytest.approx(-1.0)


def test_direction_agreement_skips_still_steps_and_unknown_frames():
    ref = _linear(step=(2.0, 0.0))
    gen = ref.copy()
    gen[4:] = gen[4]  # stops after step 3: those steps are skipped, not counted as disagreement
    d, used = mt.direction_agreement(gen, ref)
    assert d == pytest.approx(1.0) and used == 4
    gen2 = ref.copy()
    gen2[2] = np.nan  # steps 1->2 and 2->3 unknown
    assert mt.direction_agreement(gen2, ref)[1] == 5
    d, used = mt.direction_agreement(np.zeros((8, 2)), ref)  # a static render: nothing to compare
    assert math.isnan(d) and used == 0


# --- per-segment direction, shape agreement and steadiness (issue 24) ----------------------------
def _reversal(turn, n=8, step=(0.0, 2.0), start=(15.0, 8.0)):
    k = np.arange(n, dtype=np.float64)
    out = np.minimum(k, turn) - np.maximum(k - turn, 0)  # up to the turn, then back
    return np.array(start) + out[:, None] * np.array(step)


def _naive_segment_direction(track, ref, segs):
    """Issue 24's definition, written out: per segment, the cosine of end-minus-start displacements."""
    out = []
    for a, b in segs:
        u, v = track[b] - track[a], ref[b] - ref[a]
        out.append(float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))))
    return sum(out) / len(out)


@pytest.mark.parametrize("family", ["linear", "arc", "zigzag", "speed_change", "reversal", "l_turn"])
def test_segment_direction_against_the_naive_definition(family):
    for seed in range(3):
        _, _, meta = data.make_clip(seed, trajectory=family, background="black")
        ref, segs = meta["track"], data.segments(meta, 8)
        assert mt.segment_direction(ref, ref, segs) == pytest.approx(1.0)
        other = data.make_clip(seed + 50, trajectory="linear", background="black")[2]["track"]
        assert mt.segment_direction(other, ref, segs) == pytest.approx(_naive_segment_direction(other, ref, segs))


def test_segment_direction_weighs_each_segment_the_same():
    ref = _reversal(turn=5)  # five steps down, two steps up: a late turn
    straight = _linear(step=(0.0, 2.0))  # goes down all the way: misses the turn
    assert mt.direction_agreement(straight, ref)[0] == pytest.approx(3 / 7)  # per step: the drift dominates
    assert mt.segment_direction(straight, ref, [(0, 5), (5, 7)]) == pytest.approx(0.0)  # per segment: half wrong
    assert mt.segment_direction(ref, ref, [(0, 5), (5, 7)]) == pytest.approx(1.0)


def test_segment_direction_unknown_frames_and_still_segments_score_zero():
    ref = _reversal(turn=3)
    segs = [(0, 3), (3, 7)]
    gen = ref.copy()
    gen[0] = np.nan  # the first segment is measured from frame 1 on, against the reference over 1..3
    assert mt.segment_direction(gen, ref, segs) == pytest.approx(1.0)
    gen[1:3] = np.nan  # only frame 3 left in the first segment: it scores 0
    assert mt.segment_direction(gen, ref, segs) == pytest.approx(0.5)
    still = np.repeat(ref[:1], 8, axis=0)
    assert mt.segment_direction(still, ref, segs) == 0.0
    assert mt.segment_direction(np.full((8, 2), np.nan), ref, segs) == 0.0
    with pytest.raises(ValueError):
        mt.segment_direction(ref[:7], ref, segs)


def test_shape_agreement_is_direction_free_but_keeps_the_turns():
    ref = _reversal(turn=4)
    segs = [(0, 4), (4, 7)]
    sideways = _reversal(turn=4, step=(-1.5, 0.0))  # a reversal along another axis, another speed
    assert mt.segment_direction(sideways, ref, segs) == pytest.approx(0.0, abs=1e-9)
    assert mt.shape_agreement(sideways, ref, segs) == pytest.approx(1.0)
    straight = _linear(step=(1.0, 1.0))
    assert mt.shape_agreement(straight, ref, segs) <= 1e-9  # no rotation turns a line into a there-and-back


def test_max_jump_is_the_largest_step_as_a_share_of_the_frame():
    t = _linear(step=(1.0, 0.0))
    t[5] = t[4] + np.array([0.0, 16.0])  # one jump of 16 px, then back
    assert mt.max_jump(t, size=32) == pytest.approx(math.hypot(2.0, 16.0) / 32)  # the way back is longer
    t[5] = np.nan  # the pairs around an unknown frame are not frame-to-frame moves
    assert mt.max_jump(t, size=32) == pytest.approx(1.0 / 32)
    assert math.isnan(mt.max_jump(np.full((8, 2), np.nan)))


# --- (a) smoothness and frame checks -----------------------------------------------------------
def test_quadratic_residual_of_parabola_is_zero_and_zigzag_is_not():
    t = np.arange(8.0)
    parabola = np.stack([3 + 0.7 * t - 0.2 * t ** 2, 20 - 1.1 * t + 0.05 * t ** 2], 1)
    assert np.allclose(mt.quadratic_residual(parabola), 0.0, atol=1e-9)
    zig = parabola.copy()
    zig[:, 1] += np.array([0, 2, 0, -2] * 2)
    r = mt.quadratic_residual(zig)
    assert r[0] == pytest.approx(0.0, abs=1e-9) and r[1] > 0.5
    gaps = parabola.copy()
    gaps[[1, 5]] = np.nan
    assert np.allclose(mt.quadratic_residual(gaps), 0.0, atol=1e-9)
    assert np.isnan(mt.quadratic_residual(parabola[:3])).all()


@pytest.mark.parametrize("colour", list(data.COLORS))
def test_generation_quality_of_training_clips(colour):
    frames, _, meta = data.make_clip(11, color=colour, background="black", trajectory="linear")
    video = torch.from_numpy(frames).float() / 255  # as generate() returns it
    q = mt.generation_quality(video, colour)
    assert q["ok_frac"] == 1.0 and q["disc_frac"] == 1.0
    assert np.abs(q["track"] - meta["track"]).max() < 0.35
    assert max(q["smooth_rms_px"]) < 0.1
    other = next(c for c in data.COLORS if c != colour)
    assert mt.generation_quality(video, other)["ok_frac"] == 0.0  # wrong colour


def test_generation_quality_rejects_blank_and_non_disc_frames():
    blank = np.zeros((8, 3, 32, 32), np.uint8)
    q = mt.generation_quality(blank, "red")
    assert q["ok_frac"] == 0.0 and np.isnan(mt.blob_track(blank)).all()
    bar = blank.copy()
    bar[:, 0, 10:12, 2:30] = 230  # a thin red bar: right colour, not a disc
    q = mt.generation_quality(bar, "red")
    assert q["colour_frac"] == 1.0 and q["disc_frac"] == 0.0 and q["ok_frac"] == 0.0
    square = blank.copy()
    square[:, 0, 4:18, 4:18] = 230  # 14x14 = 196 px: far too big for the training disc
    assert mt.generation_quality(square, "red")["disc_frac"] == 0.0


def test_render_direction_ignores_noise_blobs_and_needs_enough_steps():
    frames, _, meta = ev.directional_clip("right", "blue")
    assert mt.render_direction(frames, meta["track"]) == (pytest.approx(1.0), 7)
    left = ev.directional_clip("left", "green")[0]
    assert mt.render_direction(left, meta["track"])[0] == pytest.approx(-1.0)
    noise = np.zeros_like(frames)
    for k in range(8):  # a wandering 2x2 speck per frame: not a disc, so no track at all
        noise[k, :, 4 + 3 * k:6 + 3 * k, 4:6] = 200
    assert np.isnan(mt.blob_track(noise)).all() and not np.isnan(mt.blob_track(noise, disc_only=False)).any()
    d, used = mt.render_direction(noise, meta["track"])
    assert math.isnan(d) and used == 0
    part = frames.copy()
    part[3:] = 0  # a disc in frames 0-2 only: 2 usable steps < MIN_STEPS
    d, used = mt.render_direction(part, meta["track"])
    assert used == 2 and math.isnan(d)


def test_components_are_eight_connected_and_sorted():
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[1, 1] = m[2, 2] = True  # diagonal chain: one component
    m[5, 5] = True
    comps = mt.components(m)
    assert [len(c) for c in comps] == [3, 1]


# --- (b) AMF direction agreement ------------------------------------------------------------------
def _amf_from_track(track, coverage, patch, noise_rng=None):
    f, s = coverage.shape
    amf = np.zeros((f, f, s, 2))
    if noise_rng is not None:  # uncovered patches: junk that must not count
        amf[:] = noise_rng.integers(-7, 8, size=amf.shape)
    for i in range(f):
        for j in range(f):
            cov = coverage[i] >= 0.5
            amf[i, j, cov] = np.round((track[j] - track[i]) / patch)
    return amf


@pytest.mark.parametrize("direction", list(ev.DIRECTIONS))
def test_amf_direction_cosines_known_answers(direction):
    frames, _, meta = ev.directional_clip(direction, "green")
    cov = mt.patch_coverage(frames, 4)
    assert (cov >= 0.5).sum(axis=1).min() >= 2  # the disc covers a few patches in every frame
    amf = _amf_from_track(meta["track"], cov, 4, np.random.default_rng(0))
    c = mt.amf_direction_cosines(amf, meta["track"], cov, patch=4)
    assert len(c) > 20
    assert mt.cos_to_unit(c.mean()) == pytest.approx(1.0)
    assert mt.cos_to_unit(mt.amf_direction_cosines(-amf, meta["track"], cov, patch=4).mean()) == pytest.approx(0.0)
    zero = mt.amf_direction_cosines(np.zeros_like(amf), meta["track"], cov, patch=4)
    assert mt.cos_to_unit(zero.mean()) == pytest.approx(0.5)  # a zero vector counts as cos 0


def test_amf_direction_skips_small_shifts():
    frames, _, meta = ev.directional_clip("right", "red", speed=0.5)  # 0.5 px/frame: 8 frames per patch
    cov = mt.patch_coverage(frames, 4)
    c = mt.amf_direction_cosines(_amf_from_track(meta["track"], cov, 4), meta["track"], cov, patch=4)
    pairs = sum(1 for i in range(8) for j in range(i + 1, 8) if abs(j - i) * 0.5 >= 4)
    assert pairs == 0 and len(c) == 0


# --- (d) MF-LK ------------------------------------------------------------------------------------
def test_mf_from_tracks_known_answers():
    base = np.stack([_linear(start=(x, y), step=(1.0, 0.5)) for x in (4, 8) for y in (6, 12)])  # [4, 8, 2]
    assert mflk.mf_from_tracks(base, base) == pytest.approx(1.0)
    assert mflk.mf_from_tracks(base[:, ::-1], base) == pytest.approx(-1.0)
    static = np.repeat(base[:, :1], 8, axis=1)
    assert mflk.mf_from_tracks(static, base) == 0.0  # nothing moves in the render
    assert math.isnan(mflk.mf_from_tracks(base, static))  # nothing to compare with
    # best match per generated track: one good reference track among bad ones is enough
    mixed_ref = np.concatenate([base[:1], base[1:, ::-1]])
    assert mflk.mf_from_tracks(base, mixed_ref) == pytest.approx(1.0)


@needs_cv2
def test_mf_lk_of_clip_with_itself_is_one():
    for family in ("linear", "arc", "zigzag"):
        frames, _, _ = data.make_clip(5, trajectory=family, background="black")
        assert mflk.mf_lk(frames, frames) > 0.98


@needs_cv2
def test_mf_lk_follows_direction_not_appearance():
    right = ev.directional_clip("right", "red")[0]
    assert mflk.mf_lk(ev.directional_clip("right", "blue", speed=1.5, offset=4.0)[0], right) > 0.9
    assert mflk.mf_lk(ev.directional_clip("left", "red")[0], right) < -0.5
    assert abs(mflk.mf_lk(ev.directional_clip("down", "red")[0], right)) < 0.3


@needs_cv2
def test_lk_tracks_follow_the_disc():
    frames, _, meta = data.make_clip(2, trajectory="linear", background="black")
    tr = mflk.moving_tracks(mflk.lk_tracks(frames))
    assert len(tr) >= 10
    true_step = np.diff(meta["track"], axis=0)
    assert np.abs(np.diff(tr, axis=1).mean(axis=0) - true_step).max() < 0.5


# --- (e) search -----------------------------------------------------------------------------------
def _uniform_amf(dx, dy, f=8, s=64):
    k = np.arange(f)
    a = np.zeros((f, f, s, 2))
    a[..., 0] = (k[None, :] - k[:, None])[..., None] * dx
    a[..., 1] = (k[None, :] - k[:, None])[..., None] * dy
    return a


def test_top1_accuracy_on_known_descriptors():
    from motionlib.descriptor import motion_descriptor

    dirs = list(ev.DIRECTIONS)
    refs = np.stack([motion_descriptor(_uniform_amf(*ev.DIRECTIONS[d]), (8, 8)) for d in dirs])
    queries = np.stack([motion_descriptor(_uniform_amf(*(0.5 * np.array(ev.DIRECTIONS[d]))), (8, 8)) for d in dirs])
    acc, sim = mt.top1_accuracy(refs, queries, dirs, dirs)
    assert acc == 1.0 and sim.shape == (4, 4)
    assert mt.top1_accuracy(refs, queries, dirs, dirs[1:] + dirs[:1])[0] == 0.0


# --- model side (random_shapes: conftest) -----------------------------------------------------------
def test_search_descriptor_is_the_catalogues(random_shapes):
    """eval skips the ρ optimisation for search: the stored descriptor depends on the reference AMF only."""
    from motionlib.catalog import descriptor_of
    from motionlib.learn import learn

    frames = ev.directional_clip("up", "yellow")[0]
    asset = learn(random_shapes, data.to_model_range(frames), seed=1, steps=2, opt_steps=1).asset
    assert np.allclose(ev._descriptor(random_shapes, frames), descriptor_of(asset), atol=1e-6)


def test_load_eval_model_from_checkpoint(tmp_path, random_shapes):
    from safetensors.torch import save_file

    tr, enc = random_shapes.transformer, random_shapes.text_encoder
    tensors = {}
    for prefix, bump in (("ema.", 1.0), ("model.", 2.0)):
        for name, mod in (("transformer", tr), ("text_encoder", enc)):
            for k, v in mod.state_dict().items():
                tensors[f"{prefix}{name}.{k}"] = (v + bump).contiguous()
    tensors["opt.0.step"] = torch.tensor(3.0)
    ck = tmp_path / "checkpoints" / "step-0000042"
    ck.mkdir(parents=True)
    save_file(tensors, str(ck / "state.safetensors"), metadata={"step": "42"})
    (ck / "state.json").write_text("{}")
    key = "proj_out.weight"
    for arg in (tmp_path, ck, ck / "state.safetensors"):  # run dir, checkpoint dir, file
        model, info = ev.load_eval_model(arg)
        assert info["kind"] == "checkpoint" and info["step"] == 42
        assert torch.equal(model.transformer.state_dict()[key], tr.state_dict()[key] + 1.0)
    model, _ = ev.load_eval_model(ck, ema=False)
    assert torch.equal(model.transformer.state_dict()[key], tr.state_dict()[key] + 2.0)
    with pytest.raises(FileNotFoundError):
        ev.load_eval_model(tmp_path / "nowhere")


@pytest.mark.slow
def test_quick_eval_smoke_through_cli(tmp_path, capsys):
    """`motionlib eval --random --quick` end to end, cut to 3 denoising steps and 1 Adam step; with
    --gradient local --reuse, which the z_t baseline (no local gradient) must leave out, and --no-inject."""
    from helpers import cli

    out = tmp_path / "ev"
    code, stdout, stderr = cli(capsys, "eval", "--random", "--quick", "--steps", "3", "--opt-steps", "1", "--gradient",
                               "local", "--reuse", "--no-inject", "--out", str(out), "--json")
    assert code == 0, stderr
    res = json.loads(stdout)
    assert set(res) >= {"generation", "amf", "transfer", "search", "checks", "pictures", "seconds"}
    assert set(res["transfer"]["families"]) == {"linear"}
    renders = res["transfer"]["families"]["linear"]["renders"]
    # seed 0: the four methods; the learn seed: zero-shot only (the learn-seed split)
    assert {r["method"] for r in renders} == set(ev.METHODS) and len(renders) == 5
    assert [r["method"] for r in renders if r["learn_seed"]] == ["zero_shot"]
    assert all("direction_blob" in r and not r["seen_prompt"] for r in renders)
    z = res["transfer"]["zero_shot"]
    assert z["renders"] == 1 and set(z["split"]) == {"learn_seed", "other_seeds", "seen_prompts", "unseen_prompts"}
    assert z["split"]["learn_seed"]["renders"] == 1 and "seed_gap" in res["transfer"]
    assert 0 <= z["no_disc"] <= z["undefined"] <= z["renders"]
    assert all({"segment_direction", "shape", "max_jump", "present"} <= set(r) for r in renders)
    assert res["transfer"]["worst_family_segment"] == res["transfer"]["families"]["linear"]["zero_shot"]["segment_direction"]
    assert {c["metric"] for c in res["checks"]} >= {"transfer.worst_family_segment", "transfer.steady"}
    assert 0.0 <= res["amf"]["score"] <= 1.0 and res["search"]["queries"] == 4
    for p in res["pictures"].values():
        assert (out / p.split("/")[-1]).stat().st_size > 1000
    config = json.loads((out / "eval.json").read_text())["config"]
    assert config["quick"] is True
    assert config["overrides"] == {"opt_steps": 1, "gradient": "local", "reuse": True, "inject": False}


def _render(method, seed, seg, jump=0.05, present=True, learn_seed=False):
    return {"method": method, "seed": seed, "learn_seed": learn_seed, "seen_prompt": False, "direction": seg,
            "segment_direction": seg, "shape": seg, "max_jump": jump, "present": present, "no_disc": False,
            "direction_blob": seg, "mf_lk": None}


def test_trajectory_summary_worst_trajectory_mean_and_seed_spread():
    fams = {}
    for fam, (s0, s1) in {"linear": (1.0, 0.6), "reversal": (0.2, 0.0)}.items():
        renders = [_render("zero_shot", 0, s0), _render("zero_shot", 1, s1), _render("plain", 0, 0.1),
                   _render("zero_shot", ev.LEARN_SEED, 0.9, learn_seed=True)]
        fams[fam] = {"renders": renders, **ev.transfer_summary(renders, mf_on=False)}
    assert fams["linear"]["zero_shot"]["segment_direction"] == pytest.approx(0.8)  # the learn seed left out
    out = ev.trajectory_summary(fams)
    assert out["worst_family_segment"] == pytest.approx(0.1)
    assert out["family_mean_segment"] == pytest.approx(0.45)
    assert out["seed_means"] == {0: pytest.approx(0.6), 1: pytest.approx(0.3)}
    assert out["seed_spread"] == pytest.approx(0.3)


def test_steady_and_present_count_every_render():
    renders = [_render("zero_shot", 0, 0.5, jump=0.1), _render("zero_shot", 1, 0.5, jump=0.3, present=False),
               _render("plain", 0, 0.0, jump=float("nan")), _render("plain", 1, 0.0, jump=0.2)]
    out = ev.transfer_summary(renders, mf_on=False)
    assert out["zero_shot"]["steady"] == 0.5 and out["zero_shot"]["present"] == 0.5
    assert out["plain"]["steady"] == 0.5  # a render without a track is not steady; 0.2 exactly is
    assert out["steady"] == 0.5


def test_smoothness_of_the_training_clips_themselves():
    """The (a) smoothness metric on the data: straight tracks fit a quadratic, zigzags do not."""
    res = ev.data_smoothness(n=40)
    fams = res["smooth_rms_px_data_by_family"]
    assert fams["linear"] < 0.2 and fams["static"] < 0.2
    assert fams["zigzag"] > 3 * fams["linear"]
    assert 0 < res["smooth_rms_px_data"] < max(fams.values())


def test_step_cosines_agree_with_direction_agreement():
    ref = _reversal(turn=3)
    gen = _linear(step=(0.0, 2.0))
    gen[5] = np.nan
    cos = mt.step_cosines(gen, ref)
    assert cos.shape == (7,) and np.isnan(cos[4]) and np.isnan(cos[5])  # steps into and out of the unknown frame
    assert list(cos[:3]) == [1.0, 1.0, 1.0] and cos[3] == -1.0
    d, used = mt.direction_agreement(gen, ref)
    assert d == pytest.approx(np.nanmean(cos)) and used == int(np.isfinite(cos).sum())
