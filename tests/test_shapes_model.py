"""The shapes demo model: data, codec, tokenizer, builder and the training script (fast, CPU)."""

import json
from pathlib import Path
import warnings

import numpy as np
import pytest
import torch

from motionlib.demo import data
from motionlib.demo.codec import PixelShuffleCodec
from motionlib.demo.text import WordEmbeddingEncoder, build_tokenizer, warn_unknown


# --- data --------------------------------------------------------------------------------------
@pytest.mark.parametrize("color", list(data.COLORS))
def test_clip_colour_and_black_background(color):
    frames, prompt, meta = data.make_clip(1, color=color, background="black", trajectory="static")
    assert frames.shape == (8, 3, 32, 32) and frames.dtype == np.uint8
    x, y = np.round(meta["track"][0]).astype(int)
    assert tuple(frames[0, :, y, x]) == data.COLORS[color]  # disc centre has the named colour
    corner = frames[:, :, 0, 0]
    assert (corner < 60).all()
    dist = np.hypot(*(np.mgrid[0:32, 0:32][::-1] - meta["track"][0][:, None, None]))
    assert (frames[0][:, dist > meta["radius"] + 1] < 60).all()  # everything off the disc is dark
    assert prompt == f"a {color} circle on a black background"


def test_textured_background_is_dim_and_static():
    frames, prompt, meta = data.make_clip(3, background="textured", trajectory="linear")
    assert prompt.endswith("on a textured background")
    dist = np.hypot(*(np.mgrid[0:32, 0:32][::-1][:, None] - meta["track"][:, :, None, None].transpose(1, 0, 2, 3)))
    off = dist > meta["radius"] + 1  # [F, H, W]
    both = off[0] & off[-1]
    assert np.array_equal(frames[0][:, both], frames[-1][:, both])  # the texture does not move
    bg = frames[0][:, off[0]]
    assert bg.max() < 110 and bg.std() > 2  # dim, and not flat


def test_seeded_and_deterministic():
    a = data.make_clip(7)
    b = data.make_clip(np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    frames, prompts, metas = data.sample_batch(np.random.default_rng(0), 6, vary_words=True)
    assert frames.shape == (6, 8, 3, 32, 32) and len(prompts) == len(metas) == 6


@pytest.mark.parametrize("kind", data.TRAJECTORIES)
def test_tracks_follow_trajectory_family(kind):
    for seed in range(5):
        frames, _, meta = data.make_clip(seed, trajectory=kind, background="black")
        track = meta["track"]
        r = meta["radius"]
        assert (track >= r - 1e-6).all() and (track <= 31 - r + 1e-6).all()  # disc inside the frame
        measured = data.centroid_track(frames)
        assert np.abs(measured - track).max() < 0.35  # pixels agree with the recorded track
        steps = np.diff(track, axis=0)
        speed = np.linalg.norm(steps, axis=1)
        if kind == "static":
            assert speed.max() == 0
        elif kind == "linear":
            assert np.allclose(steps, steps[0], atol=1e-6) and speed[0] > 0.3
        elif kind == "arc":
            # equal steps along a circle: constant speed, constant non-zero turning
            assert np.allclose(speed, speed[0], atol=1e-6)
            turn = steps[:-1, 0] * steps[1:, 1] - steps[:-1, 1] * steps[1:, 0]  # z of the 2D cross product
            assert (np.sign(turn) == np.sign(turn[0])).all() and abs(turn[0]) > 1e-3
        elif kind == "zigzag":
            d = np.asarray(meta["params"]["direction"])
            along = steps @ d
            perp = steps @ np.array([-d[1], d[0]])
            assert (along > 0).all() and np.allclose(along, along[0], atol=1e-6)
            assert (np.abs(perp) > 1e-3).all()  # sideways every frame ...
            assert (np.diff(np.sign(perp[perp != 0])) != 0).any()  # ... both ways
        elif kind == "speed_change":
            d = np.asarray(meta["params"]["direction"])
            assert (steps @ d >= -1e-9).all()  # one direction
            assert speed.max() - speed.min() > 0.5  # the speed changes
        elif kind in ("reversal", "l_turn"):
            (turn,) = meta["params"]["turns"]
            assert 2 <= turn <= len(track) - 3  # at least two steps on each side of the turn
            d1 = steps[:turn] / speed[:turn, None]
            d2 = steps[turn:] / speed[turn:, None]
            assert np.allclose(d1, d1[0], atol=1e-6) and np.allclose(d2, d2[0], atol=1e-6)  # straight segments
            cos = float(d1[0] @ d2[0])
            if kind == "reversal":
                assert cos == pytest.approx(-1.0, abs=1e-6)  # back along the same line
            else:
                assert abs(cos) <= np.cos(np.pi / 4) + 1e-6  # turned by 45..135 degrees
            assert [tuple(s) for s in data.segments(meta, len(track))] == [(0, turn), (turn, len(track) - 1)]


def test_turn_frames_cover_the_allowed_range():
    rng = np.random.default_rng(0)
    seen = {data.turn_frame(rng, 8) for _ in range(400)}
    assert seen == {2, 3, 4, 5}  # every frame from 2 to F-3, and no other
    with pytest.raises(ValueError, match="5 frames"):
        data.turn_frame(rng, 4)


def test_segments_of_each_family():
    n = 8
    assert data.segments({"trajectory": "linear", "params": {}}, n) == [(0, 7)]
    assert data.segments({"trajectory": "zigzag", "params": {}}, n) == [(0, 7)]  # scored on its drift
    assert data.segments({"trajectory": "arc", "params": {}}, n) == [(k, k + 1) for k in range(7)]
    assert data.segments({"trajectory": "reversal", "params": {"turns": [3]}}, n) == [(0, 3), (3, 7)]


def test_prompts_well_formed():
    tok_words = set(build_tokenizer(12).get_vocab())
    _, prompts, _ = data.sample_batch(np.random.default_rng(1), 40, vary_words=True)
    for p in prompts:
        words = p.split()
        assert len(words) == 7 and words[-1] == "background" and words[1] in data.COLORS
        assert words[2] in data.SHAPE_WORDS and words[5] in data.BACKGROUNDS
        assert set(words) <= tok_words


# --- codec ---------------------------------------------------------------------------------------
def test_codec_exact_round_trip():
    codec = PixelShuffleCodec(2)
    x = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    post = codec.encode(x).latent_dist
    z = post.mode()
    assert z.shape == (2, 12, 8, 16, 16) and torch.equal(post.sample(), z)
    assert torch.equal(codec.decode(z).sample, x)
    assert codec.config.scaling_factor == 1.0 and codec.dtype == torch.float32
    codec.enable_tiling()
    codec.enable_slicing()
    assert next(codec.parameters()).requires_grad is False
    assert sum(p.numel() for p in codec.parameters() if p.requires_grad) == 0


# --- text ----------------------------------------------------------------------------------------
def test_tokenizer_unknown_word_warns_not_crash():
    tok = build_tokenizer(12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = tok(["a purple circle, on a black background!"], padding="max_length", max_length=12,
                  truncation=True, return_tensors="pt").input_ids
    assert any("purple" in str(w.message) for w in caught)
    assert ids.shape == (1, 12) and ids[0, 1].item() == tok.unk_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        known = tok(["A Red circle on a black background."], padding="max_length", max_length=12,
                    return_tensors="pt").input_ids  # case and punctuation are ignored, no warning
        assert warn_unknown("a red circle") == []
    assert tok.unk_token_id not in known[0].tolist() and known[0, -1].item() == tok.pad_token_id == 0
    empty = tok([""], padding="max_length", max_length=12, return_tensors="pt").input_ids
    assert empty[0, 0].item() == tok.eos_token_id and (empty[0, 1:] == 0).all()
    enc = WordEmbeddingEncoder(len(tok), 64, 12)
    assert enc(ids)[0].shape == (1, 12, 64)


# --- model (random_shapes: conftest) -------------------------------------------------------------
def test_spec():
    from motionlib.demo.model import SHAPES_SPEC

    s = SHAPES_SPEC
    assert (s.name, s.embedding, s.source) == ("shapes", "rope", "builtin:shapes")
    assert s.latent_frames == 8 and s.grid == (8, 8, 8)
    assert max(s.guidance.blocks) < s.num_layers and max(s.guidance.inject_blocks) < s.num_layers


def test_build_shapes_without_weights_forward(random_shapes):
    from motionlib.demo.model import build_shapes
    from motionlib.rho import base_rho
    from motionlib.sampling import generate
    from motionlib.transformer import Controls

    tok, enc, codec, tr, sched = build_shapes(pretrained=False)
    assert tr.config.in_channels == tr.config.out_channels == 12
    m = random_shapes
    frames, prompt, _ = data.make_clip(0)
    z = m.encode_video(data.to_model_range(frames))
    assert z.shape == m.latent_shape() == (1, 8, 12, 16, 16)
    assert torch.equal(m.decode(z), (data.to_model_range(frames) + 1) / 2)
    emb = m.encode_prompt([prompt])
    t = torch.tensor([500])
    out = m.family.forward(m.transformer, torch.randn(z.shape), emb, t, Controls(rho=base_rho(m)), checkpointing=False)
    assert out.shape == z.shape and torch.isfinite(out).all()
    video = generate(m, prompt, steps=2, guidance_scale=2.0)
    assert video.shape == (8, 3, 32, 32)


# --- training ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_smoke_checkpoint_and_resume(tmp_path, capsys):
    from safetensors import safe_open

    from motionlib.demo import train
    from motionlib.demo.model import load_weights, build_shapes

    threads = torch.get_num_threads()
    common = ["--out", str(tmp_path), "--minutes", "5", "--batch-size", "2", "--threads", "0",
              "--val-size", "2", "--no-preview", "--log-every", "1", "--warmup", "2"]
    try:
        assert train.main(common + ["--max-steps", "3"]) == 0
        ck = train.latest_checkpoint(tmp_path)
        assert ck is not None and ck.name == "step-0000003"
        st = json.loads((ck / "state.json").read_text())
        assert st["step"] == 3 and st["samples_seen"] == 6 and st["cpu_s"] > 0
        with safe_open(str(ck / "state.safetensors"), "pt") as f:
            keys = set(f.keys())
        assert any(k.startswith("model.") for k in keys) and any(k.startswith("ema.") for k in keys)
        assert any(k.startswith("opt.") for k in keys) and "rng.torch" in keys
        assert train.main(common + ["--max-steps", "5", "--resume"]) == 0
        st = json.loads((train.latest_checkpoint(tmp_path) / "state.json").read_text())
        assert st["step"] == 5 and st["samples_seen"] == 10
        assert "resumed from" in (tmp_path / "train.log").read_text()
    finally:
        torch.set_num_threads(threads)
    weights = tmp_path / "shapes.safetensors"
    assert weights.stat().st_size <= 20 * 2**20
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["steps"] == 5 and card["samples_seen"] == 10 and card["recipe"]["init"] == "adaLN-Zero"
    assert card["data"]["trajectories"]["reversal"] > 0 and card["cpu_minutes"] >= 0
    _, enc, _, tr, _ = build_shapes(pretrained=False)
    load_weights(enc, tr, weights)
    capsys.readouterr()
    try:  # the fixed validation set's loss of exported weights, as the training history records it
        assert train.main(["--out", str(tmp_path / "unused"), "--val-only", "--init", str(weights), "--val-size", "2",
                           "--threads", "0"]) == 0
    finally:
        torch.set_num_threads(threads)
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["val_size"] == 2 and 0 < got["val_loss"] < 10 and not (tmp_path / "unused").exists()
    # a run that starts from those weights names them and carries their card as its history
    second = tmp_path / "second"
    try:
        assert train.main([*common[:1], str(second), *common[2:], "--max-steps", "2", "--init", str(weights)]) == 0
    finally:
        torch.set_num_threads(threads)
    card2 = json.loads((second / "card.json").read_text())
    assert card2["recipe"]["init"] == "shapes.safetensors (--init)" and card2["steps"] == 2
    assert card2["continued_from"]["steps"] == 5 and "spec" not in card2["continued_from"]


def test_resume_keeps_the_runs_recipe_unless_a_flag_is_given_again():
    """A bare ``--resume`` once restarted a lr-1e-4 run at the default 1e-3: the checkpoint's recipe now wins."""
    from motionlib.demo import train

    argv = ["--out", "/tmp/run", "--resume", "--threads", "2", "--warmup", "7"]
    stored = vars(train.parse_args(["--out", "/old", "--lr", "1e-4", "--warmup", "50", "--seed", "19",
                                    "--minutes", "90", "--init", "w.safetensors", "--threads", "1"]))
    stored = {k: str(v) if isinstance(v, Path) else v for k, v in stored.items()}  # as state.json has them
    assert train.explicit_flags(argv) == {"out", "resume", "threads", "warmup"}
    a, notes = train.resumed_args(train.parse_args(argv), stored, train.explicit_flags(argv))
    assert (a.lr, a.seed, a.minutes, a.init) == (1e-4, 19, 90, Path("w.safetensors"))  # the run's recipe
    assert (a.warmup, a.threads, a.out) == (7, 2, Path("/tmp/run"))  # given again / operational
    assert notes == ["--warmup 7 given: overrides the run's 50"]
    a, notes = train.resumed_args(train.parse_args(argv[:3]), {**stored, "init": None}, {"out", "resume"})
    assert a.init is None and a.warmup == 50 and notes == []


def test_a_second_trainer_on_the_same_out_is_refused(tmp_path, capsys):
    """Two trainers on one --out interleaved their checkpoints once: the second now stops at once, naming the first."""
    import os

    from motionlib.demo import train
    from motionlib.fsutil import Busy, exclusive_lock

    with exclusive_lock(tmp_path / ".train.lock", "--out"):  # what a live trainer holds
        assert train.main(["--out", str(tmp_path), "--resume", "--threads", "0", "--max-steps", "1"]) == 2
        assert f"in use by another process (pid {os.getpid()})" in capsys.readouterr().err
        with pytest.raises(Busy):
            with exclusive_lock(tmp_path / ".train.lock", "--out"):
                pass
    with exclusive_lock(tmp_path / ".train.lock", "--out"):  # released when its holder is done
        pass
    assert not (tmp_path / "train.log").exists()  # the refused trainer wrote nothing


def test_a_stopped_trainer_does_not_count_the_pause():
    from motionlib.demo.train import step_seconds

    paused = {"flag": False}
    assert step_seconds(3.0, 2.5, paused) == 3.0  # a normal step counts its wall time
    paused["flag"] = True  # SIGCONT arrived during this step: it took 600 s of wall time, mostly stopped
    assert step_seconds(600.0, 2.5, paused) == 2.5 and paused["flag"] is False
    paused["flag"] = True
    assert step_seconds(600.0, 0.0, paused) == 0.0  # nothing typical known yet: the pause counts nothing


def test_validation_set_is_fixed_whatever_the_seed_and_mix(monkeypatch):
    from types import SimpleNamespace

    from motionlib.demo import train

    frames, prompts = train.validation_clips(14)
    fams = [data.make_clip(train.VAL_SEED + i, trajectory=f)[2]["trajectory"]
            for i, f in zip(range(14), train.VAL_TRAJECTORIES * 2)]
    assert fams == list(train.VAL_TRAJECTORIES) * 2  # every family, round robin
    monkeypatch.setattr(data, "TRAJECTORY_PROBS", (0, 0, 0, 0, 1.0, 0, 0))  # another data mix
    again, prompts2 = train.validation_clips(14)
    assert np.array_equal(frames, again) and prompts == prompts2
    vals = []
    for seed in (0, 13):  # the trainer's validation tensors do not follow --seed or --textured-prob
        a = train.parse_args(["--out", "unused", "--seed", str(seed), "--textured-prob", str(0.1 * seed),
                              "--val-size", "7"])
        tr = SimpleNamespace(a=a, latents=lambda f: torch.as_tensor(f, dtype=torch.float32),
                             ids=lambda p: list(p), device=torch.device("cpu"))
        vals.append(train.Trainer._make_val(tr, 7))
    assert torch.equal(vals[0]["z0"], vals[1]["z0"]) and torch.equal(vals[0]["noise"], vals[1]["noise"])
    assert vals[0]["ids"] == vals[1]["ids"]


@pytest.mark.slow
def test_sweep_tool_runs_and_parses_overrides(capsys):
    from motionlib.demo import sweep

    assert sweep.parse_overrides(["parametrisation=shift", "lr_start=0.3", "blocks=[2]"]) == {
        "parametrisation": "shift", "lr_start": 0.3, "blocks": [2]}
    with pytest.raises(SystemExit):
        sweep.parse_overrides(["lr_start"])
    assert sweep.main(["opt_steps=1", "--families", "linear", "--clips", "1", "--colours", "green",
                       "--seeds", "0", "--steps", "3", "--learn-seed"]) == 0
    out = capsys.readouterr().out
    assert "linear #0" in out and "overall" in out and "largest-blob direction" in out
    assert "optimised learn render" in out and "zero-shot, learn seed" in out and "scored 0" in out


@pytest.mark.slow
def test_sweep_new_knobs_and_block_table(capsys, tmp_path):
    from motionlib.demo import sweep

    res = tmp_path / "sweep.json"
    assert sweep.main(["opt_steps=1", "samples=2", "shift_grid=2", "frame_shift=true", "smoothness=0.1",
                       "--prompts", "a red circle on a black background,a blue circle on a black background",
                       "--families", "linear", "--clips", "1", "--colours", "green", "--seeds", "0",
                       "--steps", "3", "--json", str(res)]) == 0
    got = json.loads(res.read_text())
    assert got["overrides"]["samples"] == 2 and got["zero_shot"]["renders"] == 1
    assert sweep.main(["--block-table", "--amf-only", "--candidates", "2,3", "--amf-clips", "2"]) == 0
    out = capsys.readouterr().out
    assert "| 2,3 |" in out and "blocks [2]: AMF direction agreement" in out
