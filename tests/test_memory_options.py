"""Memory options: the automatic choice against fake free memory, where offloaded components live
after each phase, the out-of-memory message, the CLI options, and the GPU memory table's code path."""

import json

import pytest
import torch

from motionlib import memory
from motionlib.memory import LADDER, Setting

GiB = 2**30
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def real5b():
    """CogVideoX-5B's real architecture on the meta device (parameter counts, nothing allocated)."""
    from motionlib.models.architecture import T5_XXL_LAYERS, architecture_model

    return architecture_model("cogvideox-5b", "meta", text_layers=T5_XXL_LAYERS)


def test_weights_are_the_real_parameter_counts(real5b):
    w = memory.Weights.of(real5b)
    assert w.transformer == pytest.approx(2 * 5.570e9, rel=2e-3)  # bf16
    assert w.text_encoder == pytest.approx(2 * 4.762e9, rel=2e-3)  # T5-XXL encoder
    assert w.block * 42 == pytest.approx(w.blocks, rel=1e-6) and w.blocks < w.transformer


@pytest.mark.slow
@pytest.mark.parametrize("job", memory.JOBS)
def test_auto_takes_the_fastest_setting_that_fits(real5b, job):
    peaks = memory.plan(real5b, job, free=None, device=CUDA).peaks
    previous = -1
    for gb in (4, 8, 12, 16, 20, 24, 32, 40, 48, 80, 141):
        p = memory.plan(real5b, job, free=gb * GiB, device=CUDA)
        rank = LADDER.index(p.setting)
        faster = LADDER[:rank]
        if p.fits:
            assert p.peak <= memory.FIT * gb * GiB
            assert all(peaks[s] > memory.FIT * gb * GiB for s in faster), (gb, p.setting)  # none faster fits
        else:  # nothing fits: the smallest, and the dim line says so
            assert p.peak == min(peaks.values()) and "no setting fits" in p.line()
        assert previous == -1 or rank <= previous  # more memory never picks a slower setting
        previous = rank
    assert memory.plan(real5b, job, free=141 * GiB, device=CUDA).setting == Setting("none", False)


def test_cogvideox_5b_learn_fits_a_24_gb_card_without_full_offload(real5b):
    p = memory.plan(real5b, "learn", free=int(23.5 * GiB), device=CUDA)
    assert p.fits and p.setting == Setting("text", True) and p.peak <= 22e9
    assert "text encoder freed after encoding" in p.line() and "estimated from parameter counts" in p.line()


def test_forced_options_restrict_the_choice(real5b):
    free = 24 * GiB
    assert memory.plan(real5b, "learn", "none", "auto", free=free, device=CUDA).setting == Setting("text", True)
    assert memory.plan(real5b, "learn", "model", "off", free=free, device=CUDA).setting == Setting("model", False)
    assert memory.plan(real5b, "learn", "auto", "off", free=free, device=CUDA).setting.vae_tiling is False
    assert memory.plan(real5b, "learn", "sequential", "auto", free=free, device=CUDA).setting.offload == "sequential"
    with pytest.raises(memory.ParameterError, match="offload must be one of"):
        memory.plan(real5b, "learn", "gpu", free=free, device=CUDA)


def test_on_a_cpu_auto_means_no_offload(real5b):
    p = memory.plan(real5b, "learn", free=None, device=torch.device("cpu"))
    assert p.setting == Setting("none", False) and p.line() == "memory: cpu, offload none, VAE tiling off"


def test_a_measured_table_replaces_the_estimates_and_orders_by_time(real5b, tmp_path):
    free = 24 * GiB
    rows = {"none/untiled": {"peak": int(30e9), "seconds": 10.0},
            "none/tiled": {"peak": int(20e9), "seconds": 12.0},
            "text/untiled": {"peak": int(19e9), "seconds": 11.0},  # measured faster than none/tiled
            "text/tiled": {"peak": int(18e9), "seconds": 13.0},
            "model/untiled": {"failed": "out of memory"}}
    path = tmp_path / "memory_table.json"
    path.write_text(json.dumps({"meta": {}, "models": {"cogvideox-5b": {"learn": rows}}}))
    table = memory.measured_table(path)
    p = memory.plan(real5b, "learn", free=free, table=table, device=CUDA)
    # not every allowed setting has a time: the ladder order stands, and none/tiled (20 GB) fits
    assert p.setting == Setting("none", True) and p.peak == int(20e9) and "measured" in p.line()
    assert "estimated" not in p.line()
    p = memory.plan(real5b, "learn", "none", "auto", free=free, table=table, device=CUDA)
    assert p.setting == Setting("text", False)  # every allowed one timed: text/untiled is fastest that fits
    assert Setting("model", False) in p.measured and p.peaks[Setting("model", False)] > 1e15


@pytest.mark.slow
@pytest.mark.parametrize("job,recorded", [("generate", "generate"), ("apply", "apply"), ("learn", "learn")])
def test_estimates_stay_above_what_was_measured(job, recorded):
    """The estimate above the weights >= the peak above the weights recorded on an H200
    (benchmarks/gpu_last.json: random-weight 5B/2B, VAE tiling on, no offload)."""
    from benchmarks.gpu import load_record
    from motionlib.models.architecture import architecture_model

    sec = load_record()
    for name in ("cogvideox-5b", "cogvideox-2b"):
        row = next(r for r in sec.rows if r[0] == name and r[1] == recorded)
        measured = float(row[3].split()[0]) * 1e9
        m = architecture_model(name, "meta")
        w = memory.Weights.of(m)
        est = memory.estimate(m.spec, w, m.dtype.itemsize, job, Setting("none", True))
        above = est - (w.text_encoder + w.vae + w.transformer)
        assert measured <= above <= 2 * measured, (name, job, above, measured)


# --- placement --------------------------------------------------------------------------------------
def _tracked(model, monkeypatch):
    """Record every .to() of each component; where each lives is read from those real calls."""
    where = {c: "device" if model.placement[c] == "device" else "cpu" for c in model.COMPONENTS}
    for name in model.COMPONENTS:
        module = getattr(model, name)
        real = module.to

        def to(*args, _name=name, _real=real, **kw):
            target = args[0] if args else kw.get("device")
            if target is not None and not isinstance(target, torch.dtype):
                # on this CPU both ends are "cpu": Model moves to its `device` object, back to the string
                where[_name] = "device" if target is model.device else "cpu"
            return _real(*args, **kw)

        monkeypatch.setattr(module, "to", to)
    return where


@pytest.mark.parametrize("level,after", [
    # where (text encoder, VAE, transformer) are after: encoding prompts, denoising, decoding
    ("model", [("device", "cpu", "cpu"), ("cpu", "cpu", "device"), ("cpu", "device", "cpu")]),
    ("text", [("cpu", "device", "device")] * 3),
    ("sequential", [("device", "cpu", "streamed"), ("cpu", "cpu", "streamed"), ("cpu", "device", "streamed")]),
    ("none", [("device", "device", "device")] * 3),
])
@pytest.mark.slow
def test_offload_keeps_components_off_the_device_between_uses(level, after, monkeypatch):
    from motionlib.models import load_model
    from motionlib.sampling import prepare, sample

    m = load_model("tiny-5b", device="cpu", offload=level)
    where = _tracked(m, monkeypatch)
    seen = []

    def snapshot():
        assert {c: where[c] for c in m.COMPONENTS if m.placement[c] != "streamed"} == \
            {c: m.placement[c] for c in m.COMPONENTS if m.placement[c] != "streamed"}  # record == real moves
        seen.append(tuple(m.placement[c] for c in m.COMPONENTS))

    run = prepare(m, "a red disc", steps=2)
    snapshot()
    latents = sample(run)
    snapshot()
    m.decode(latents)
    snapshot()
    assert seen == after


@pytest.mark.slow
def test_sequential_offload_streams_copies_and_never_moves_the_block_weights(monkeypatch):
    from motionlib.learn import learn
    from motionlib.memory import blocks_of
    from motionlib.models import load_model
    from motionlib.sampling import generate

    plain, seq = load_model("tiny-5b", device="cpu"), load_model("tiny-5b", device="cpu", offload="sequential")
    ptrs = [p.data_ptr() for p in blocks_of(seq.transformer).parameters()]
    calls = []
    real = torch.func.functional_call
    monkeypatch.setattr(torch.func, "functional_call", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    assert torch.equal(generate(plain, "x", seed=1, steps=2, output="latent"),
                       generate(seq, "x", seed=1, steps=2, output="latent"))
    assert len(calls) == 2 * seq.spec.num_layers  # every block call ran on copies
    from benchmarks.common import disc_video

    video = disc_video(seq.spec)
    kw = dict(prompt="a disc", seed=0, steps=2, guided_fraction=0.5, opt_steps=2)
    a, b = learn(plain, video, **kw).asset, learn(seq, video, **kw).asset  # gradients flow through the copies
    assert a.losses == b.losses
    assert [p.data_ptr() for p in blocks_of(seq.transformer).parameters()] == ptrs


def test_checkpointing_auto_is_on_under_sequential_offload():
    from motionlib import checkpointing as ckpt
    from motionlib.models import load_model

    m = load_model("tiny-5b", device="cpu", offload="sequential")
    assert ckpt.resolve("auto", m, (1,)) is True and ckpt.resolve("off", m, (1,)) is False


# --- out of memory ------------------------------------------------------------------------------
def test_out_of_memory_names_the_model_the_need_the_free_memory_and_what_fits(real5b):
    p = memory.plan(real5b, "learn", "none", "off", free=20 * GiB, device=CUDA)
    assert not p.fits
    real5b.plan = p
    try:
        with pytest.raises(memory.OutOfMemory) as e, memory.out_of_memory(real5b, "learn"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
    finally:
        real5b.plan = None
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, memory.MotionlibError)
    assert p.setting == Setting("text", False)  # nothing allowed fits: the smallest of --offload none
    assert msg.startswith("out of memory on cuda running learn with cogvideox-5b "
                          "(offload none (text encoder freed after encoding), VAE tiling off)")
    assert f"about {p.peak / 1e9:.1f} GB (estimated" in msg and "21.5 GB was free" in msg
    assert "--offload model --vae-tiling off would fit" in msg  # the fastest setting that fits 20 GiB


def test_cli_out_of_memory_is_one_line(monkeypatch, tmp_path, capsys):
    import motionlib.sampling as sampling
    from motionlib.cli.main import main

    def oom(*a, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    monkeypatch.setattr(sampling, "generate", oom)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10**9)  # 1 GB "free" on this CPU
    with pytest.raises(SystemExit) as e:
        main(["generate", "a cat", "--model", "tiny-5b", "-o", str(tmp_path / "g.mp4")])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("Error: out of memory on cpu running generate with tiny-5b (offload none, VAE tiling off)")
    assert "1.0 GB was free" in line


# --- CLI options ----------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,env,want", [
    (["generate", "a cat"], {}, ("generate", "auto", "auto")),
    (["generate", "a cat", "--offload", "model", "--vae-tiling", "on"], {}, ("generate", "model", "on")),
    (["generate", "a cat"], {"MOTIONLIB_OFFLOAD": "sequential", "MOTIONLIB_VAE_TILING": "off"},
     ("generate", "sequential", "off")),
    (["learn", "CLIP", "--name", "x", "--offload", "none"], {}, ("learn", "none", "auto")),
    (["transfer", "CLIP", "a cat", "--vae-tiling", "off"], {}, ("transfer", "auto", "off")),
    (["search", "CLIP", "--offload", "model"], {}, ("search", "model", "auto")),
])
def test_cli_memory_options_reach_load_model(argv, env, want, monkeypatch, tmp_path, capsys):
    import motionlib.models as models
    from motionlib.cli.main import main
    from tests.test_cli import LEFT

    got = {}

    class Stop(Exception):
        pass

    def fake_load(name, **kw):
        got.update(kw)
        raise Stop

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    monkeypatch.setattr(models, "load_model", fake_load)
    with pytest.raises(Stop):
        main(["-v", *[str(LEFT) if a == "CLIP" else a for a in argv], "--model", "tiny-5b"])
    assert (got["job"], got["offload"], got["vae_tiling"]) == want


@pytest.mark.slow
def test_cli_apply_passes_the_options_with_the_asset_geometry(monkeypatch, tmp_path, capsys):
    import motionlib.models as models
    from tests.test_cli import LEFT, cli

    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    assert cli(capsys, "-q", "learn", str(LEFT), "--name", "left", "--model", "tiny-5b", "--steps", "2")[0] == 0
    got, real = {}, models.load_model
    monkeypatch.setattr(models, "load_model", lambda name, **kw: got.update(kw) or real(name, **kw))
    code, _, err = cli(capsys, "apply", "left", "a cat", "-o", str(tmp_path / "a.mp4"), "--offload", "model",
                       "--vae-tiling", "off")
    assert code == 0, err
    assert (got["job"], got["offload"], got["vae_tiling"]) == ("apply", "model", "off")
    assert got["num_frames"] == 9 and got["height"] == 64
    assert "memory: cpu, offload model, VAE tiling off" in err


@pytest.mark.parametrize("flag", ["--offload", "--vae-tiling"])
def test_cli_rejects_an_unknown_memory_setting(flag, monkeypatch, tmp_path, capsys):
    from motionlib.cli.main import main

    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    with pytest.raises(SystemExit) as e:
        main(["generate", "a cat", "--model", "tiny-5b", flag, "maybe"])
    assert e.value.code == 1 and f"{flag} must be one of" in capsys.readouterr().err


# --- the GPU memory table's code path, on a CPU ---------------------------------------------------
@pytest.mark.slow
def test_memory_table_measures_every_job_and_setting_on_tiny_models(tmp_path):
    from benchmarks import gpu_memory
    from motionlib.models import load_model

    settings = [Setting("none", False), Setting("sequential", False)]
    build = lambda n: load_model(n, device="cpu", offload="model")  # noqa: E731
    saved = []
    table = gpu_memory.measure_table(["tiny-5b"], build, steps=1, settings=settings,
                                     progress=lambda t: saved.append(json.dumps(t)))
    assert len(saved) == 3 * 2 and not table.get("incomplete")
    results = table["models"]["tiny-5b"]
    assert list(results) == ["learn", "generate", "apply"]
    for by_setting in results.values():
        assert list(by_setting) == [s.key for s in settings]
        assert all(r["seconds"] > 0 and "peak" not in r for r in by_setting.values())  # peaks: CUDA only
    rows = gpu_memory.rows(table)
    assert len(rows) == 6 and all(r[3] == "n/a (CUDA only)" for r in rows)
    assert {r[4] for r in rows if r[2] == "none/untiled"} == {"1.00"}
    path = tmp_path / "memory_table.json"  # what --memory writes, read back as auto reads it
    path.write_text(json.dumps({"meta": {"device": "cpu"}, **table}))
    assert memory.measured_table(path)["models"]["tiny-5b"] == results
    assert gpu_memory.measure_table(["tiny-5b"], build, steps=1, budget_s=0.0) == {"models": {}, "incomplete": True}


@pytest.mark.slow
def test_card_table_marks_estimates():
    from benchmarks import gpu_memory

    rows, measured = gpu_memory.card_rows(models=("cogvideox-5b",), jobs=("learn",))
    assert not measured and [c.split(":")[0] for c in rows[0]] == [
        "cogvideox-5b", "learn", "sequential, tiled", "sequential, tiled", "none (text encoder freed), tiled",
        "none", "none"]
    assert rows[0][4] == "none (text encoder freed), tiled: 21.6 GB"


@pytest.mark.slow
def test_docs_memory_card_table_is_what_auto_picks():
    """docs/memory.md's table of what `auto` picks per card is what the code picks (and says whether measured)."""
    from pathlib import Path

    from benchmarks import gpu_memory

    page = (Path(__file__).resolve().parent.parent / "docs" / "memory.md").read_text(encoding="utf-8")
    rows, measured = gpu_memory.card_rows()
    for r in rows:
        assert "| " + " | ".join(r) + " |" in page, r
    assert ("Estimated, not yet measured" in page) is not measured


# --- VAE tiling on the tiny presets (issue 25) ----------------------------------------------------
def test_align_tiles_leaves_real_cogvideox_tiles_and_aligns_tiny_ones():
    from types import SimpleNamespace

    from motionlib.offload import align_tiles

    real = SimpleNamespace(tile_sample_min_height=240, tile_sample_min_width=360,
                           tile_overlap_factor_height=1 / 6, tile_overlap_factor_width=1 / 5)
    align_tiles(real, 8)
    assert (real.tile_overlap_factor_height, real.tile_overlap_factor_width) == (1 / 6, 1 / 5)
    tiny = SimpleNamespace(tile_sample_min_height=32, tile_sample_min_width=48,
                           tile_overlap_factor_height=1 / 6, tile_overlap_factor_width=1 / 5)
    align_tiles(tiny, 4)
    for tile, f in ((32, tiny.tile_overlap_factor_height), (48, tiny.tile_overlap_factor_width)):
        stride = int(tile * (1 - f))
        assert stride % 4 == 0 and int(tile // 4 * f) == tile // 4 - stride // 4  # whole latent pixels per tile


@pytest.mark.slow
@pytest.mark.parametrize("option", [["--vae-tiling", "on"], ["--offload", "model"]])
def test_learn_with_memory_options_on_tiny_5b(option, monkeypatch, tmp_path, capsys):
    """Used to stop with "size of tensor a (25) must match ... (24)": the tiled encode of the reference."""
    from helpers import LEFT, cli_json

    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    got = cli_json(capsys, "learn", str(LEFT), "--name", "a", "--model", "tiny-5b", *option,
                   "--steps", "4", "--opt-steps", "1")
    assert got["name"] == "a"


@pytest.mark.slow
def test_tiled_encode_has_the_untiled_latent_shape(tiny5b):
    from motionlib.offload import place

    s = tiny5b.spec
    video = torch.rand(s.num_frames, 3, s.height, s.width, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = tiny5b.encode_video(video)
    try:
        place(tiny5b, vae_tiling=True)
        assert tiny5b.vae.use_tiling
        tiled = tiny5b.encode_video(video)
    finally:
        place(tiny5b, vae_tiling=False)
    assert tiled.shape == plain.shape
