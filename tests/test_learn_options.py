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


def _only_block_sees_rho(model, block: int, others=None):
    """A processor class whose other blocks get ρ's tables detached: the naive 'local' gradient.
    With `others` (q_cos, q_sin, k_cos, k_sin), the other blocks use those tables instead."""
    def other(tables):
        return tuple(t.detach() for t in (tables if others is None else others))

    if model.spec.embedding == "wan":
        from motionlib.families.wan import WanMotionProcessor, _Rope

        class Only(WanMotionProcessor):
            def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
                if self.index != block and isinstance(rotary_emb, _Rope):
                    names = ("q_cos", "q_sin", "k_cos", "k_sin")
                    tables = other(tuple(getattr(rotary_emb, f) for f in names))
                    rotary_emb = dataclasses.replace(rotary_emb, **dict(zip(names, tables)))
                return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)

        return Only, WanMotionProcessor, model.transformer.blocks
    from motionlib.families.cogvideox import MotionAttnProcessor

    class Only(MotionAttnProcessor):
        def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None,
                     image_rotary_emb=None, controls=None):
            if self.index != block and image_rotary_emb is not None:
                image_rotary_emb = other(image_rotary_emb)
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask,
                                    image_rotary_emb, controls)

    return Only, MotionAttnProcessor, model.transformer.transformer_blocks


def _perturbed(model, seed: int):
    """(run, ρ tables perturbed by 0.05 x N(0, 1) from `seed`) at the first of 10 steps."""
    run = prepare(model, "a red disc", seed=0, steps=10)
    rho = Parametrised(run.base, "table")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in rho.params():
            v.add_(0.05 * torch.randn(v.shape, generator=gen))
    return run, rho


def _rho_grads(model, params, *, checkpointing=True, processor=None, prefix=None, seed=1):
    """Gradients of eq. (8) w.r.t. a perturbed ρ table at the first guided step (`seed`: the perturbation)."""
    video = _video(model)
    ref = reference_motion(model, video, blocks=params.blocks, temperature=params.temperature)
    run, rho = _perturbed(model, seed)
    t = run.timesteps[0]
    latents = run.init_noise * run.scheduler.init_noise_sigma
    try:
        if processor is not None:
            cls, _, blocks = processor
            for i, b in enumerate(blocks):
                b.attn1.set_processor(cls(i))
        with torch.enable_grad():
            loss = guidance_loss(run, latents, t, {"rho": rho.rho(), "inject": {}, "prefix": prefix}, ref, params,
                                 checkpointing=checkpointing)
            loss.backward()
    finally:
        if processor is not None:  # back to the family's own processors
            _, base, blocks = processor
            for i, b in enumerate(blocks):
                b.attn1.set_processor(base(i))
    return [v.grad.clone() for v in rho.params()], float(loss.detach())


@pytest.mark.slow
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


def _perturbed_tables(model, seed):
    """The ρ tables _rho_grads uses for `seed` (q_cos, q_sin, k_cos, k_sin)."""
    return tuple(v.detach() for v in _perturbed(model, seed)[1].rho().rope())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-5b", "tiny-wan"])
def test_reuse_runs_the_blocks_before_once_under_the_first_rho(name, tiny5b, tinywan):
    """reuse: the first pass fills the cache and equals 'local'; a later pass under another ρ equals
    a naive forward whose earlier blocks see the first ρ and whose guidance block sees the new one."""
    model = tiny5b if name == "tiny-5b" else tinywan
    local = dataclasses.replace(GuidanceParams.from_spec(model.spec), gradient="local")
    (block,) = local.blocks
    prefix: dict = {}
    g_first, loss_first = _rho_grads(model, local, prefix=prefix)
    g_local, loss_local = _rho_grads(model, local)
    assert "carry" in prefix and loss_first == loss_local
    assert all(torch.equal(a, b) for a, b in zip(g_first, g_local))
    g_reused, loss_reused = _rho_grads(model, local, prefix=prefix, seed=2)
    naive = _only_block_sees_rho(model, block, others=_perturbed_tables(model, 1))
    g_naive, loss_naive = _rho_grads(model, GuidanceParams.from_spec(model.spec), checkpointing=False,
                                     processor=naive, seed=2)
    assert loss_reused == pytest.approx(loss_naive, rel=1e-6)
    for a, c in zip(g_reused, g_naive):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-8)
    _, loss_fresh = _rho_grads(model, local, seed=2)  # not the pass that reruns the earlier blocks
    assert loss_fresh != loss_reused


@pytest.mark.slow
def test_reuse_learns_and_needs_the_local_gradient(tiny5b):
    asset = learn(tiny5b, _video(tiny5b), prompt="a red disc", steps=10, gradient="local", reuse=True).asset
    assert asset.params["reuse"] is True
    assert all(step[-1] < step[0] for step in asset.losses)
    with pytest.raises(ParameterError, match="reuse needs gradient='local'"):
        GuidanceParams.from_spec(tiny5b.spec, reuse=True)


@pytest.mark.slow
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


@pytest.mark.slow
def test_windowed_learn_supervises_only_the_window(tiny5b):
    params = GuidanceParams.from_spec(tiny5b.spec, amf_window=1)
    ref = reference_motion(tiny5b, _video(tiny5b), blocks=params.blocks, temperature=params.temperature)
    run = prepare(tiny5b, "a red disc", seed=0, steps=10)
    latents = run.init_noise * run.scheduler.init_noise_sigma
    t = run.timesteps[0]
    with torch.no_grad():
        loss = guidance_loss(run, latents, t, {"rho": run.base, "inject": {}}, ref, params)
        # by hand: the full AMF, eq. (8) over the window's pairs
        from motionlib.transformer import Controls

        controls = Controls(rho=run.base, capture=params.blocks, stop_at=max(params.blocks))
        tiny5b.family.forward(tiny5b.transformer, run.scheduler.scale_model_input(latents, t), run.cond_embeds, t.expand(1),
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


@pytest.mark.slow
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



@pytest.mark.slow
def test_cli_learn_options_are_recorded_and_bad_ones_refused(home, capsys):
    cli_json(capsys, "learn", str(LEFT), "--name", "fast", "--gradient", "local", "--reuse", "--amf-window", "1",
             "--opt-steps-end", "1", "--opt-tol", "0.05")
    params = cli_json(capsys, "show", "fast")["params"]
    assert (params["gradient"], params["reuse"], params["amf_window"], params["opt_steps_end"],
            params["opt_tol"]) == ("local", True, 1, 1, 0.05)
    code, _, err = cli(capsys, "learn", str(LEFT), "--name", "x", "--reuse")
    assert code == 1 and "reuse needs gradient='local'" in err and "Traceback" not in err
    code, _, err = cli(capsys, "learn", str(LEFT), "--name", "x", "--gradient", "partial")
    assert code == 1 and "--gradient must be one of full, local" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "learn", str(LEFT), "--name", "x", "--gradient", "local", "--model", "tiny-2b")
    assert code == 1 and "Error: gradient='local' does not apply to tiny-2b" in err and "Traceback" not in err


def test_recorded_quality_per_option_and_its_seed_spread(tmp_path):
    """benchmarks.learn: sweep --json records -> means with every render counted (no score: 0), per-seed
    means, their range."""
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
    assert r["direction"]["defined"] == 3 and r["direction"]["mean"] == pytest.approx(0.3 / 4)
    assert r["direction"]["per_seed"] == pytest.approx({"0": 0.3, "1": -0.15})
    assert r["direction"]["seed_spread"] == pytest.approx(0.45)
    assert r["direction_blob"]["seed_spread"] == pytest.approx(0.3 - 0.0)
    (headers, rows), notes = quality_table(tmp_path / "q.json")
    # the default: per seed 0.8 and 0.1 (mean 0.45, spread 0.7), so local's 0.075 is within it
    assert rows[1] == ['{"gradient": "local"}', "0.075 (3/4 with a disc track)", "0.450", "yes", "0.150", "0.300", "15 s"]
    assert rows[0][0] == "default" and rows[0][3] == "yes" and rows[2][3] == "no"  # -0.375 < 0.45 - 0.7
    assert "test run" in notes[0]


def test_quality_summary_counts_every_render_and_the_seed_spread():
    """A render without a disc track counts 0 (motionlib eval's rule); learn-seed renders and other
    methods are left out; the spread is the range of the per-seed means."""
    from benchmarks.learn import quality_summary

    renders = [{"method": "zero_shot", "seed": 0, "learn_seed": False, "direction": 0.8, "direction_blob": 0.6},
               {"method": "zero_shot", "seed": 0, "learn_seed": False, "direction": None, "direction_blob": 0.2},
               {"method": "zero_shot", "seed": 1, "learn_seed": False, "direction": 0.5, "direction_blob": 0.5},
               {"method": "zero_shot", "seed": 7, "learn_seed": True, "direction": -1.0, "direction_blob": -1.0},
               {"method": "plain", "seed": 1, "direction": -1.0, "direction_blob": -1.0}]
    q = quality_summary({"overrides": {"opt_tol": 0.05}, "renders": renders})
    assert q["renders"] == 3 and q["direction"]["defined"] == 2
    assert q["direction"]["mean"] == pytest.approx((0.8 + 0.0 + 0.5) / 3)
    assert q["direction"]["per_seed"] == {"0": pytest.approx(0.4), "1": pytest.approx(0.5)}
    assert q["direction"]["seed_spread"] == pytest.approx(0.1)
    assert q["direction_blob"]["mean"] == pytest.approx(1.3 / 3)


def test_record_quality_joins_one_options_runs_over_other_seeds(tmp_path):
    import json

    from benchmarks.learn import record_quality

    def sweep(name, overrides, seed, score):
        p = tmp_path / name
        p.write_text(json.dumps({"overrides": overrides, "learns": [{"family": "arc", "clip": 0, "learn_s": 10.0}],
                                 "renders": [{"method": "zero_shot", "seed": seed, "learn_seed": False,
                                              "direction": score, "direction_blob": score}]}))
        return str(p)

    a, b = sweep("a.json", {}, 0, 0.2), sweep("b.json", {}, 2, 0.6)
    (r,) = record_quality([f"{a}+{b}"], "joined", out=tmp_path / "q.json")["results"]
    assert r["renders"] == 2 and r["direction"]["mean"] == pytest.approx(0.4) and r["learn_s"] == [10.0, 10.0]
    assert r["direction"]["seed_spread"] == pytest.approx(0.4)
    c = sweep("c.json", {"opt_tol": 0.05}, 2, 0.6)
    with pytest.raises(SystemExit, match="different overrides"):
        record_quality([f"{a}+{c}"], "bad", out=tmp_path / "q2.json")


def test_a_consistent_drop_on_every_seed_is_a_measured_loss():
    """benchmarks.learn.no_measured_loss: the spread rule, plus a paired check over render seeds."""
    from benchmarks.learn import no_measured_loss

    def rec(per_seed):
        vals = list(per_seed.values())
        return {"direction": {"mean": sum(vals) / len(vals), "per_seed": per_seed,
                              "seed_spread": max(vals) - min(vals)}}

    default = rec({"0": 0.5, "1": 0.7})
    assert no_measured_loss(default, rec({"0": 0.55, "1": 0.6}))      # lower on one seed only
    assert not no_measured_loss(default, rec({"0": 0.45, "1": 0.65}))  # within the spread, lower on both
    assert not no_measured_loss(default, rec({"0": 0.1, "1": 0.2}))    # beyond the spread


def test_the_learn_headline_reads_its_verdict_from_the_recorded_quality():
    from benchmarks.learn import quality_verdict

    def rec(overrides, per_seed):
        vals = list(per_seed.values())
        return {"overrides": overrides, "direction": {"mean": sum(vals) / len(vals), "per_seed": per_seed,
                                                      "seed_spread": max(vals) - min(vals)}}

    default = rec({}, {"0": 0.5, "1": 0.7})
    assert "not recorded" in quality_verdict([default])
    assert "every option judged on shapes (1) loses" in quality_verdict([default, rec({"opt_tol": 0.1}, {"0": 0.1, "1": 0.2})])
    assert '{"reuse": true}' in quality_verdict([default, rec({"reuse": True}, {"0": 0.55, "1": 0.6})])


@pytest.mark.slow
def test_reuse_skips_the_blocks_before_the_guidance_block_once_cached(tiny5b):
    """A filled cache really skips them (not run and thrown away): forward hooks count their calls in a
    pass without the cache and in one with it (the reference pass inside _rho_grads is the same in both)."""
    params = dataclasses.replace(GuidanceParams.from_spec(tiny5b.spec), gradient="local")
    (block,) = params.blocks
    blocks = tiny5b.transformer.transformer_blocks

    def counted(**kw) -> list[int]:
        calls = [0] * len(blocks)
        hooks = [b.register_forward_hook(lambda mod, args, out, i=i: calls.__setitem__(i, calls[i] + 1))
                 for i, b in enumerate(blocks)]
        try:
            _rho_grads(tiny5b, params, **kw)
        finally:
            for h in hooks:
                h.remove()
        return calls

    prefix: dict = {}
    _rho_grads(tiny5b, params, prefix=prefix)  # fills the cache
    plain, cached = counted(), counted(prefix=prefix, seed=2)
    assert [plain[i] - cached[i] for i in range(block + 1)] == [1] * block + [0]
