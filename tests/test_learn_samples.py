"""learn over several generations at once (samples, prompts), the shift regularisers, the typed
guidance parameters an asset records, and learn's early-stop progress event (tiny presets)."""

import json

import pytest
import torch

import motionlib.guidance as guidance_mod
from motionlib.asset import MotionAsset
from motionlib.errors import ParameterError
from motionlib.guidance import GuidanceParams, guidance_loss
from motionlib.injection import reference_kv
from motionlib.learn import LearnResult, learn, reference_motion
from motionlib.rho import Parametrised, base_rho, shifted
from motionlib.sampling import prepare

from helpers import LEFT, noise_clip


KW = dict(steps=6, opt_steps=2)


# --- batched generations -------------------------------------------------------------------------
def test_generation_zero_of_a_batch_is_the_one_sample_run(tiny5b):
    one = prepare(tiny5b, "a red ball", seed=5)
    three = prepare(tiny5b, "a red ball", seed=5, samples=3, prompts=["a", "b"])
    assert three.init_noise.shape[0] == 3 and torch.equal(three.init_noise[:1], one.init_noise)
    assert torch.equal(three.init_noise[1:2], prepare(tiny5b, "x", seed=6).init_noise)
    assert three.prompts == ["a", "b", "a"] and three.cond_embeds.shape[0] == 3
    assert torch.equal(three.cond_embeds[1:2], prepare(tiny5b, "b", seed=0).cond_embeds)
    with pytest.raises(ParameterError, match="samples"):
        prepare(tiny5b, "x", samples=0)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["tiny-5b", "tiny-2b"])
def test_batched_loss_is_the_mean_of_the_single_runs(family, tiny5b, tiny2b):
    """Eq. (8) on N generations in one batched pass == the mean of N one-generation passes (with KV
    injection of each generation's own noised reference)."""
    m = tiny5b if family == "tiny-5b" else tiny2b
    params = GuidanceParams.from_spec(m.spec, samples=2)
    ref = reference_motion(m, noise_clip(m), blocks=params.blocks, temperature=params.temperature)
    prompts = ["a red ball", "a blue cube"]
    batch = prepare(m, "", seed=3, samples=2, prompts=prompts)
    t = batch.timesteps[1]

    def loss(run):
        kv = reference_kv(run, ref.latent, t, params.inject_blocks)
        return guidance_loss(run, run.init_noise, t, {"rho": run.base, "inject": kv}, ref, params)

    singles = [loss(prepare(m, p, seed=3 + i)) for i, p in enumerate(prompts)]
    assert float(loss(batch)) == pytest.approx(float(torch.stack(singles).mean()), rel=1e-4)
    assert float(singles[0]) != pytest.approx(float(singles[1]), rel=1e-3)  # the two really differ


@pytest.mark.slow
def test_one_batched_forward_per_adam_step(tiny5b, monkeypatch):
    calls = []
    real = tiny5b.family.forward

    def counting(tr, x, text, t, controls, *a, **kw):
        if controls.capture and torch.is_grad_enabled():  # an optimisation pass (not the reference, not injection)
            calls.append(x.shape[0])
        return real(tr, x, text, t, controls, *a, **kw)

    monkeypatch.setattr(tiny5b.family, "forward", counting)
    learn(tiny5b, noise_clip(tiny5b), seed=1, samples=3, **KW)
    n_guided = guidance_mod.guided_step_count(6, tiny5b.spec.guidance.guided_fraction)
    assert calls == [3] * (n_guided * KW["opt_steps"])


@pytest.mark.slow
def test_asset_records_samples_prompts_and_seeds(tiny5b, tmp_path):
    result = learn(tiny5b, noise_clip(tiny5b), seed=4, samples=2, prompts=["a red ball", "a blue ball", "a cat"], **KW)
    assert isinstance(result, LearnResult) and result.preview is None
    path = result.asset.save(tmp_path / "m.safetensors")
    back = MotionAsset.load(path)
    assert back.params["samples"] == 2 and back.guidance.samples == 2
    assert back.params["prompts"] == ["a red ball", "a blue ball"] and back.params["seeds"] == [4, 5]


@pytest.mark.slow
def test_transfer_ignores_samples(tiny5b):
    from motionlib.learn import transfer

    video, losses = transfer(tiny5b, noise_clip(tiny5b), "a red ball", seed=1, samples=3, output="latent", **KW)
    assert video.shape[0] == 1 and losses


# --- typed guidance parameters -------------------------------------------------------------------
def test_guidance_params_from_an_older_record_take_the_defaults(tiny5b):
    rec = {"blocks": [1], "inject_blocks": [0], "lr_start": 0.1, "prompt": "x", "seed": 3}
    g = GuidanceParams.from_dict(rec)
    assert g.blocks == (1,) and g.inject_blocks == (0,) and g.lr_start == 0.1
    assert g.samples == 1 and g.shift_grid == 0 and g.frame_shift is False and g.inject is True
    full = GuidanceParams.from_spec(tiny5b.spec, samples=2, parametrisation="shift", shift_grid=2)
    assert GuidanceParams.from_dict(json.loads(json.dumps(full.to_dict()))) == full
    with pytest.raises(ParameterError, match="unknown guidance parameter"):
        GuidanceParams.from_spec(tiny5b.spec, sample=2)


@pytest.mark.parametrize("bad, match", [
    (dict(samples=0), "samples"), (dict(parametrisation="shift", shift_grid=-1), "shift_grid"),
    (dict(parametrisation="shift", smoothness=-1.0), "smoothness"),
    (dict(parametrisation="table", frame_shift=True), "need parametrisation='shift'"),
])
def test_bad_guidance_values_are_parameter_errors(tiny5b, bad, match):
    with pytest.raises(ParameterError, match=match):
        GuidanceParams.from_spec(tiny5b.spec, **bad)


# --- shift regularisers ----------------------------------------------------------------------------
def _naive_bilinear(cells: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[F, gr, gc, 3] -> [F, rows, cols, 3], align_corners bilinear written out."""
    f, gr, gc, _ = cells.shape
    out = torch.zeros(f, rows, cols, 3)
    for r in range(rows):
        y = r * (gr - 1) / (rows - 1) if rows > 1 else 0.0
        y0 = min(int(y), gr - 1)
        y1, wy = min(y0 + 1, gr - 1), y - int(y)
        for c in range(cols):
            x = c * (gc - 1) / (cols - 1) if cols > 1 else 0.0
            x0 = min(int(x), gc - 1)
            x1, wx = min(x0 + 1, gc - 1), x - int(x)
            out[:, r, c] = ((1 - wy) * (1 - wx) * cells[:, y0, x0] + (1 - wy) * wx * cells[:, y0, x1]
                            + wy * (1 - wx) * cells[:, y1, x0] + wy * wx * cells[:, y1, x1])
    return out


@pytest.mark.parametrize("family", ["tiny-5b", "tiny-2b"])
def test_coarse_and_frame_shifts(family, tiny5b, tiny2b):
    m = tiny5b if family == "tiny-5b" else tiny2b
    base = base_rho(m)
    grid = m.spec.grid
    frames, rows, cols = grid
    p = Parametrised(base, "shift", grid=grid, shift_grid=2, frame_shift=True)
    for k, v in p.rho().tensors.items():  # zero parameters: the base ρ bit for bit
        assert torch.equal(v.to(base.tensors[k].dtype), base.tensors[k])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for v in p.params():
            v.copy_(torch.randn(v.shape, generator=g))
    got = p.token_shifts()
    for name, cells in p.shift.items():
        want = _naive_bilinear(cells.detach(), rows, cols) + p.frame[name].detach()[:, None, None, :]
        assert torch.allclose(got[name], want.reshape(-1, 3), atol=1e-5)
    stored = p.stored()
    assert all(v.shape == (frames * rows * cols, 3) for v in stored.values())
    rebuilt = shifted(base, *stored.values())
    for k, v in p.rho().tensors.items():
        assert torch.allclose(v, rebuilt.tensors[k])


def test_roughness_is_zero_for_a_per_frame_field_and_matches_a_naive_sum(tiny5b):
    base = base_rho(tiny5b)
    grid = tiny5b.spec.grid
    frames, rows, cols = grid
    only_frame = Parametrised(base, "shift", grid=grid, shift_grid=1, frame_shift=True)
    with torch.no_grad():
        for v in only_frame.params():
            v.normal_()
    assert float(only_frame.roughness().detach()) == pytest.approx(0.0, abs=1e-10)
    free = Parametrised(base, "shift", grid=grid)
    with torch.no_grad():
        for v in free.params():
            v.normal_()
    want = 0.0
    for v in free.shift.values():
        f = v.detach().view(frames, rows, cols, 3)
        dx = [(f[t, r, c + 1] - f[t, r, c]).pow(2) for t in range(frames) for r in range(rows) for c in range(cols - 1)]
        dy = [(f[t, r + 1, c] - f[t, r, c]).pow(2) for t in range(frames) for r in range(rows - 1) for c in range(cols)]
        want += float(torch.stack(dx).mean()) + float(torch.stack(dy).mean())
    assert float(free.roughness().detach()) == pytest.approx(want, rel=1e-5)


@pytest.mark.slow
def test_learn_with_regularisers_and_apply(tiny5b):
    from motionlib.apply import apply

    asset = learn(tiny5b, noise_clip(tiny5b), seed=1, parametrisation="shift", shift_grid=2, frame_shift=True,
                  smoothness=0.5, **KW).asset
    g = asset.guidance
    assert (g.shift_grid, g.frame_shift, g.smoothness) == (2, True, 0.5)
    moved = [float(d["q_shift"].abs().max()) for d in asset.rho_delta.values()]
    assert max(moved) > 0
    assert apply(tiny5b, asset, "a red ball", seed=2, steps=6, output="latent").shape[0] == 1


# --- progress -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_learn_reports_why_it_stopped_early(tiny5b):
    from rich.console import Console

    from motionlib.cli.progress import EngineProgress
    from motionlib.progress import Stopped

    events = []
    learn(tiny5b, noise_clip(tiny5b), seed=1, progress=events.append, **KW)
    n = guidance_mod.guided_step_count(6, tiny5b.spec.guidance.guided_fraction)
    stop = events[-1]
    assert isinstance(stop, Stopped) and stop.step == n - 1 and stop.total == 6
    assert f"all {n} guided steps" in stop.reason
    console = Console(record=True, width=200, force_terminal=False)
    with EngineProgress(console) as bar:
        for e in events:
            bar(e)
    text = console.export_text()
    assert f"denoised {n - 1}/6, stopped" in text and "not needed" in text


# --- CLI ------------------------------------------------------------------------------------------
def test_parse_prompts(tmp_path):
    from motionlib.learn import parse_prompts

    f = tmp_path / "p.txt"
    f.write_text("a red ball\n\n  a cat \n")
    assert parse_prompts(str(f)) == ["a red ball", "a cat"]
    assert parse_prompts("a, b ,") == ["a", "b"] and parse_prompts(None) is None
    with pytest.raises(ParameterError, match="no prompt"):
        parse_prompts(" , ")


@pytest.mark.slow
def test_cli_learn_samples_and_prompts(tmp_path, monkeypatch, capsys):
    from motionlib.cli.main import main

    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    monkeypatch.setenv("MOTIONLIB_MODEL", "tiny-5b")
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    clip_path = LEFT
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red ball\n\na blue ball\n")

    def run(*args):
        try:
            main(["--json", "-q", *args])
            code = 0
        except SystemExit as e:
            code = e.code
        return code, capsys.readouterr()

    code, out = run("learn", str(clip_path), "--name", "multi", "--samples", "2", "--prompts", str(prompts),
                    "--steps", "4", "--opt-steps", "1", "--parametrisation", "shift", "--shift-grid", "2",
                    "--frame-shift")
    assert code in (0, None), out.err
    code, out = run("show", "multi")
    params = json.loads(out.out)["params"]
    assert params["samples"] == 2 and params["prompts"] == ["a red ball", "a blue ball"]
    assert params["shift_grid"] == 2 and params["frame_shift"] is True
    code, out = run("learn", str(clip_path), "--name", "bad", "--samples", "0")
    assert code == 1 and "samples" in out.err and "Traceback" not in out.err


def test_spec_shift_options_do_not_follow_a_run_to_the_table_parametrisation():
    """shapes' defaults hold frame_shift (a 'shift'-only option): `--parametrisation table` still works,
    while asking for frame_shift with 'table' explicitly is refused by name."""
    from motionlib.demo.spec import SHAPES_SPEC
    from motionlib.errors import ParameterError
    from motionlib.guidance import GuidanceParams

    assert SHAPES_SPEC.guidance.frame_shift and SHAPES_SPEC.guidance.parametrisation == "shift"
    g = GuidanceParams.from_spec(SHAPES_SPEC, parametrisation="table")
    assert g.parametrisation == "table" and not g.frame_shift and g.shift_grid == 0 and g.smoothness == 0
    assert g.samples == SHAPES_SPEC.guidance.samples and g.blocks == SHAPES_SPEC.guidance.blocks
    with pytest.raises(ParameterError, match="frame_shift need parametrisation='shift'"):
        GuidanceParams.from_spec(SHAPES_SPEC, parametrisation="table", frame_shift=True)
    assert GuidanceParams.from_spec(SHAPES_SPEC).frame_shift  # the default run keeps it
