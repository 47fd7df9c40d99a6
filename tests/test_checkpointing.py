"""Activation checkpointing of the optimisation passes: a memory/time trade that leaves results
unchanged, chosen by an estimate that bounds what was measured, with a retry on CUDA OOM."""

import json
from pathlib import Path

import pytest
import torch

from motionlib import checkpointing as ckpt
from motionlib.learn import learn
from motionlib.synthetic import moving_disc

KW = dict(prompt="a red disc", seed=0, steps=4, guided_fraction=0.5, opt_steps=2)


def _video(spec):
    frames = moving_disc(spec.num_frames, spec.height, spec.width, velocity=(2.0, 0.0), radius=4)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def _same(a, b):
    assert a.timesteps == b.timesteps and a.losses == b.losses
    for t in a.timesteps:
        for n, v in a.rho_delta[t].items():
            assert torch.equal(v, b.rho_delta[t][n]), (t, n)


@pytest.mark.slow
def test_checkpointing_does_not_change_the_motion(tiny, monkeypatch):
    import motionlib.transformer as tr

    calls = []
    real = tr.checkpoint
    monkeypatch.setattr(tr, "checkpoint", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    video = _video(tiny.spec)
    on = learn(tiny, video, checkpointing="on", **KW).asset
    n_on = len(calls)
    off = learn(tiny, video, checkpointing="off", **KW).asset
    assert n_on > 0 and len(calls) == n_on  # "off" checkpoints no block
    _same(on, off)


def test_resolve_named_settings_and_auto_by_free_memory(tiny, monkeypatch):
    assert ckpt.resolve("on", tiny, (0,)) is True and ckpt.resolve("off", tiny, (0,)) is False
    assert ckpt.resolve(True, tiny, (0,)) is True
    with pytest.raises(ValueError, match="checkpointing must be one of"):
        ckpt.resolve("sometimes", tiny, (0,))
    need = ckpt.activation_bytes(tiny, 2)
    monkeypatch.setattr(ckpt, "free_bytes", lambda device: 4 * need)
    assert ckpt.resolve("auto", tiny, (1,)) is False  # fits in half the free memory (CPU margin)
    monkeypatch.setattr(ckpt, "free_bytes", lambda device: 3 * need)
    assert ckpt.resolve("auto", tiny, (1,)) is False  # blocks 0-1 kept: fits
    assert ckpt.resolve("auto", tiny, (1,), truncate=False) is True  # all 4 blocks kept: does not
    monkeypatch.setattr(ckpt, "free_bytes", lambda device: int(1.5 * need))
    assert ckpt.resolve("auto", tiny, (1,)) is True
    monkeypatch.setattr(ckpt, "free_bytes", lambda device: None)
    assert ckpt.resolve("auto", tiny, (1,)) is True  # unknown memory: the safe choice


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cogvideox-5b", "cogvideox-2b"])
def test_the_estimate_bounds_the_activations_measured_on_a_gpu(name):
    """activation_bytes >= (peak without - peak with checkpointing) of learn, as recorded on an H200
    by benchmarks.phases (benchmarks/gpu_phases.json), for the model's default guidance block."""
    from motionlib.models.architecture import architecture_model

    rec = json.loads((Path(__file__).parent.parent / "benchmarks" / "gpu_phases.json").read_text())["results"][name]
    measured = rec["learn, no activation checkpointing"]["peak"] - rec["learn"]["peak"]
    model = architecture_model(name, "meta")
    estimate = ckpt.activation_bytes(model, max(model.spec.guidance.blocks) + 1)
    assert measured <= estimate <= 1.3 * measured  # an upper bound, not a wild one


@pytest.mark.slow
def test_cuda_out_of_memory_without_checkpointing_retries_with_it(tiny, monkeypatch):
    import motionlib.guidance as guidance_mod

    real, calls = guidance_mod.guidance_loss, []

    def flaky(*a, checkpointing, **kw):
        calls.append(checkpointing)
        if not checkpointing:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*a, checkpointing=checkpointing, **kw)

    video = _video(tiny.spec)
    want = learn(tiny, video, checkpointing="on", **KW).asset
    monkeypatch.setattr(guidance_mod, "guidance_loss", flaky)
    with pytest.warns(RuntimeWarning, match="continuing with it on"):
        got = learn(tiny, video, checkpointing="off", **KW).asset
    assert calls[0] is False and all(calls[1:]) and len(calls) == 1 + 2 * 2  # one failed pass, then 2 x 2
    _same(got, want)


def test_out_of_memory_with_checkpointing_on_is_raised(tiny, monkeypatch):
    import motionlib.guidance as guidance_mod

    def oom(*a, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(guidance_mod, "guidance_loss", oom)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        learn(tiny, _video(tiny.spec), checkpointing="on", **KW)


@pytest.mark.slow
def test_learn_rejects_an_unknown_setting(tiny):
    with pytest.raises(ValueError, match="checkpointing must be one of auto, on, off"):
        learn(tiny, _video(tiny.spec), checkpointing="sometimes", **KW)


def test_guidance_takes_a_resolved_bool():
    from motionlib.guidance import Guidance, GuidanceParams

    with pytest.raises(TypeError, match="must be a bool"):
        Guidance(None, GuidanceParams(), checkpointing="auto")
