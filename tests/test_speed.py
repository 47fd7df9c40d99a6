"""Cheaper optimisation passes (issue #13): local gradient, windowed AMF, Adam step rules."""

import dataclasses
import math

import pytest
import torch

from motionlib.amf import amf_loss, motion_flow, patch_coords, window_mask
from motionlib.errors import ParameterError
from motionlib.guidance import GuidanceParams, adam_step_count, guidance_loss, plateaued
from motionlib.learn import learn, reference_motion, transfer
from motionlib.rho import Parametrised
from motionlib.sampling import prepare
from motionlib.synthetic import moving_disc
from helpers import LEFT, cli, cli_json


@pytest.fixture(scope="module")
def tinywan():
    from motionlib.models import load_model

    return load_model("tiny-wan", device="cpu")


def _video(model):
    """A disc moving right and a little down, [F, 3, H, W] in [-1, 1]."""
    s = model.spec
    frames = moving_disc(s.num_frames, s.height, s.width, velocity=(1.5, 0.5), radius=max(2, s.height // 5))
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def _only_block_sees_rho(model, block: int):
    """A processor class whose other blocks get ρ's tables detached: the naive 'local' gradient."""
    if model.spec.family == "wan":
        from motionlib.families.wan import WanMotionProcessor, _Rope

        class Only(WanMotionProcessor):
            def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
                if self.index != block and isinstance(rotary_emb, _Rope):
                    rotary_emb = dataclasses.replace(rotary_emb, **{f: getattr(rotary_emb, f).detach()
                                                                    for f in ("q_cos", "q_sin", "k_cos", "k_sin")})
                return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)

        return Only, WanMotionProcessor, model.transformer.blocks
    from motionlib.families.cogvideox import MotionAttnProcessor

    class Only(MotionAttnProcessor):
        def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None,
                     image_rotary_emb=None, controls=None):
            if self.index != block and image_rotary_emb is not None:
                image_rotary_emb = tuple(t.detach() for t in image_rotary_emb)
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask,
                                    image_rotary_emb, controls)

    return Only, MotionAttnProcessor, model.transformer.transformer_blocks


def _rho_grads(model, params, *, checkpointing=True, processor=None):
    """Gradients of eq. (8) w.r.t. a perturbed ρ table at the first guided step."""
    video = _video(model)
    ref = reference_motion(model, video, blocks=params.blocks, temperature=params.temperature)
    run = prepare(model, "a red disc", seed=0, steps=10)
    rho = Parametrised(run.base, "table")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for v in rho.params():
            v.add_(0.05 * torch.randn(v.shape, generator=gen))
    t = run.timesteps[0]
    latents = run.init_noise * run.scheduler.init_noise_sigma
    try:
        if processor is not None:
            cls, _, blocks = processor
            for i, b in enumerate(blocks):
                b.attn1.set_processor(cls(i))
        with torch.enable_grad():
            loss = guidance_loss(run, latents, t, {"rho": rho.rho(), "inject": {}}, ref, params,
                                 checkpointing=checkpointing)
            loss.backward()
    finally:
        if processor is not None:  # back to the family's own processors
            _, base, blocks = processor
            for i, b in enumerate(blocks):
                b.attn1.set_processor(base(i))
    return [v.grad.clone() for v in rho.params()], float(loss.detach())


@pytest.mark.parametrize("name", ["tiny-5b", "tiny-wan"])
def test_local_gradient_is_the_guidance_blocks_own_rope(name, tiny5b, tinywan):
    model = tiny5b if name == "tiny-5b" else tinywan
    full = GuidanceParams.from_spec(model.spec)
    local = dataclasses.replace(full, gradient="local")
    (block,) = full.blocks
    assert block > 0  # otherwise local and full are the same pass
    g_local, loss_local = _rho_grads(model, local)
    g_local_nockpt, _ = _rho_grads(model, local, checkpointing=False)
    g_naive, loss_naive = _rho_grads(model, full, checkpointing=False,
                                     processor=_only_block_sees_rho(model, block))
    g_full, loss_full = _rho_grads(model, full)
    # same forward values: the loss is the same number whichever way the gradient flows
    assert loss_local == pytest.approx(loss_naive, rel=1e-6) and loss_full == pytest.approx(loss_naive, rel=1e-6)
    for a, b, c in zip(g_local, g_local_nockpt, g_naive):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-8)
    # and it is not the full gradient (the blocks before the guidance block carry ρ's effect too)
    diff = sum(float((a - f).abs().sum()) for a, f in zip(g_local, g_full))
    assert diff > 1e-3 * sum(float(f.abs().sum()) for f in g_full)


def test_local_gradient_still_lowers_the_loss_and_is_recorded(tiny5b):
    asset = learn(tiny5b, _video(tiny5b), prompt="a red disc", steps=10, gradient="local").asset
    assert asset.params["gradient"] == "local"
    for step in asset.losses:
        assert step[-1] < step[0]


def test_local_gradient_refused_where_it_does_not_apply(tiny2b, tiny5b):
    with pytest.raises(ParameterError, match="additive position embedding"):
        GuidanceParams.from_spec(tiny2b.spec, gradient="local")
    with pytest.raises(ParameterError, match="z_t"):
        transfer(tiny5b, _video(tiny5b), "a red disc", steps=4, gradient="local")
    for bad, match in ((dict(gradient="partial"), "gradient must be"), (dict(amf_window=0), "amf_window"),
                       (dict(opt_steps_end=0), "opt_steps_end"), (dict(opt_tol=1.0), "opt_tol")):
        with pytest.raises(ParameterError, match=match):
            GuidanceParams.from_spec(tiny5b.spec, **bad)


def naive_windowed_flow(query, key, num_frames, height, width, temperature, window):
    """Eq. (3)/(7) pair by pair, float64, only for |i - j| <= window (others 0)."""
    heads, n, d = query.shape
    s = height * width
    coords = patch_coords(height, width, dtype=torch.float64)
    out = torch.zeros(num_frames, num_frames, s, 2, dtype=torch.float64)
    for i in range(num_frames):
        for j in range(num_frames):
            if abs(i - j) > window:
                continue
            qi = query[:, i * s:(i + 1) * s].double()
            kj = key[:, j * s:(j + 1) * s].double()
            logits = sum(qi[h] @ kj[h].T for h in range(heads)) / heads * temperature / math.sqrt(d)
            out[i, j] = logits.softmax(dim=-1) @ coords - coords
    return out


@pytest.mark.parametrize("window,chunk", [(1, None), (2, None), (1, 3 * 12 * 12), (4, 12 * 12)])
def test_windowed_amf_matches_the_paper_restricted_to_the_window(window, chunk):
    torch.manual_seed(0)
    heads, frames, h, w, d = 3, 6, 3, 4, 8
    q = torch.randn(heads, frames * h * w, d, dtype=torch.float64, requires_grad=True)
    k = torch.randn(heads, frames * h * w, d, dtype=torch.float64, requires_grad=True)
    kw = {} if chunk is None else {"max_chunk_elements": chunk}
    flow = motion_flow(q, k, num_frames=frames, height=h, width=w, temperature=2.0, window=window, **kw)
    naive = naive_windowed_flow(q, k, frames, h, w, 2.0, window)
    torch.testing.assert_close(flow, naive, rtol=1e-10, atol=1e-10)
    # eq. (8) over the window's pairs only, and its gradients
    ref = torch.randn(frames, frames, h * w, 2, dtype=torch.float64).round()
    pairs = window_mask(frames, window)[..., None]
    loss = amf_loss(flow, ref, pairs)
    sel = (ref != 0).any(-1) & pairs
    loss_naive = (naive - ref)[sel].pow(2).mean()
    g = torch.autograd.grad(loss, (q, k))
    g_naive = torch.autograd.grad(loss_naive, (q, k))
    torch.testing.assert_close(loss, loss_naive, rtol=1e-10, atol=1e-12)
    for a, b in zip(g, g_naive):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    # a window covering every pair is the paper's AMF
    everything = motion_flow(q, k, num_frames=frames, height=h, width=w, window=frames)
    torch.testing.assert_close(everything, motion_flow(q, k, num_frames=frames, height=h, width=w))
    hard, conf = motion_flow(q.detach(), k.detach(), num_frames=frames, height=h, width=w, hard=True,
                             return_confidence=True, window=window, **kw)
    hard_all, conf_all = motion_flow(q.detach(), k.detach(), num_frames=frames, height=h, width=w, hard=True,
                                     return_confidence=True)
    torch.testing.assert_close(hard, hard_all * pairs[..., None])
    torch.testing.assert_close(conf, conf_all * pairs)


def test_windowed_learn_supervises_only_the_window(tiny5b):
    params = GuidanceParams.from_spec(tiny5b.spec, amf_window=1)
    ref = reference_motion(tiny5b, _video(tiny5b), blocks=params.blocks, temperature=params.temperature)
    run = prepare(tiny5b, "a red disc", seed=0, steps=10)
    latents = run.init_noise * run.scheduler.init_noise_sigma
    t = run.timesteps[0]
    with torch.no_grad():
        loss = guidance_loss(run, latents, t, {"rho": run.base, "inject": {}}, ref, params)
        # by hand: the full AMF, eq. (8) over the window's pairs
        from motionlib.transformer import Controls, forward

        controls = Controls(rho=run.base, capture=params.blocks, stop_at=max(params.blocks))
        forward(tiny5b.transformer, run.scheduler.scale_model_input(latents, t), run.cond_embeds, t.expand(1),
                controls)
        (b,) = params.blocks
        q, k = controls.captured[("qk", b)]
        frames, rows, cols = tiny5b.spec.grid
        flow = motion_flow(q[0], k[0], num_frames=frames, height=rows, width=cols, temperature=params.temperature)
        by_hand = amf_loss(flow, ref.amf[b], window_mask(frames, 1)[..., None])
        everything = amf_loss(flow, ref.amf[b])
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)
    assert float(loss) != pytest.approx(float(everything), rel=1e-3)
    asset = learn(tiny5b, _video(tiny5b), prompt="a red disc", steps=10, amf_window=1).asset
    assert asset.params["amf_window"] == 1 and asset.losses[0][-1] < asset.losses[0][0]


def test_adam_step_rules():
    assert [adam_step_count(i, 5, 8, 2) for i in range(5)] == [8, 6, 5, 4, 2]  # 8, 6.5, 5, 3.5, 2 rounded
    assert [adam_step_count(i, 4, 5, None) for i in range(4)] == [5] * 4
    assert adam_step_count(0, 1, 7, 1) == 7
    assert not plateaued([1.0], 0.5) and not plateaued([1.0, 0.1], 0.0)
    assert plateaued([1.0, 0.95], 0.1) and not plateaued([1.0, 0.85], 0.1)
    assert plateaued([1.0, 1.2], 0.01)  # a rise is a plateau too


def test_step_rules_shape_the_learn(tiny5b):
    video = _video(tiny5b)
    ramp = learn(tiny5b, video, prompt="a red disc", steps=20, opt_steps=6, opt_steps_end=2).asset
    n = len(ramp.losses)
    assert [len(x) for x in ramp.losses] == [adam_step_count(i, n, 6, 2) for i in range(n)]
    tol = 0.12
    early = learn(tiny5b, video, prompt="a red disc", steps=20, opt_steps=5, opt_tol=tol).asset
    lengths = [len(x) for x in early.losses]
    assert min(lengths) < 5  # it did stop somewhere
    for step in early.losses:  # ... exactly at the first plateau, not before
        stops = [k for k in range(2, len(step) + 1) if plateaued(step[:k], tol)]
        assert (stops[0] == len(step)) if stops else len(step) == 5



def test_cli_learn_options_are_recorded_and_bad_ones_refused(home, capsys):
    cli_json(capsys, "learn", str(LEFT), "--name", "fast", "--gradient", "local", "--amf-window", "1",
             "--opt-steps-end", "1", "--opt-tol", "0.05")
    params = cli_json(capsys, "show", "fast")["params"]
    assert (params["gradient"], params["amf_window"], params["opt_steps_end"], params["opt_tol"]) == ("local", 1, 1, 0.05)
    code, _, err = cli(capsys, "learn", str(LEFT), "--name", "x", "--gradient", "partial")
    assert code == 1 and "--gradient must be one of full, local" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "learn", str(LEFT), "--name", "x", "--gradient", "local", "--model", "tiny-2b")
    assert code == 1 and "Error: gradient='local' does not apply to tiny-2b" in err and "Traceback" not in err


def test_recorded_quality_per_option_and_its_seed_spread(tmp_path):
    """benchmarks.learn: sweep --json records -> means over defined renders, per-seed means, their range."""
    import json

    from benchmarks.learn import quality_table, record_quality

    nan = float("nan")
    recs = [{"family": "linear", "clip": 0, "colour": "green", "seed": 0, "direction": 0.5, "direction_blob": 0.2},
            {"family": "linear", "clip": 0, "colour": "green", "seed": 1, "direction": nan, "direction_blob": 0.6},
            {"family": "arc", "clip": 0, "colour": "green", "seed": 0, "direction": 0.1, "direction_blob": -0.2},
            {"family": "arc", "clip": 0, "colour": "green", "seed": 1, "direction": -0.3, "direction_blob": 0.0},
            {"family": "linear", "clip": 0, "learn_s": 10.0}, {"family": "arc", "clip": 0, "learn_s": 20.0}]
    sweep = tmp_path / "local.json"
    sweep.write_text(json.dumps({"overrides": {"gradient": "local"}, "records": recs}))
    default = tmp_path / "full.json"
    default.write_text(json.dumps({"overrides": {}, "records": [dict(x, direction=x.get("direction", 0) + 0.5)
                                                                  for x in recs]}))
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps({"overrides": {"opt_tol": 0.5}, "records": [dict(x, direction=x.get("direction", 0) - 0.6)
                                                                            for x in recs]}))
    _, r, _ = record_quality([default, sweep, worse], "test run", out=tmp_path / "q.json")["results"]
    assert r["renders"] == 4 and r["learn_s"] == [10.0, 20.0]
    assert r["direction"]["defined"] == 3 and r["direction"]["mean"] == pytest.approx(0.1)
    assert r["direction"]["per_seed"] == pytest.approx({"0": 0.3, "1": -0.3})
    assert r["direction"]["seed_spread"] == pytest.approx(0.6)
    assert r["direction_blob"]["seed_spread"] == pytest.approx(0.3 - 0.0)
    (headers, rows), notes = quality_table(tmp_path / "q.json")
    # the default: direction 0.6 with the same 0.6 spread, so local's 0.1 is within it (0.1 >= 0.6 - 0.6)
    assert rows[1] == ['{"gradient": "local"}', "0.100 (3/4 defined)", "0.600", "yes", "0.150", "0.300", "15 s"]
    assert rows[0][0] == "default" and rows[0][3] == "yes" and rows[2][3] == "no"  # -0.5 < 0.6 - 0.6
    assert "test run" in notes[0]
