"""The GPU benchmark's code path, on a CPU: the real architectures built from configs in code
(counted on the meta device, nothing allocated) and the measured runs on a tiny model."""

import pytest
import torch


@pytest.mark.parametrize("name,params,rope", [("cogvideox-5b", 5.570e9, True), ("cogvideox-2b", 1.694e9, False)])
def test_architecture_model_is_the_real_size(name, params, rope):
    from benchmarks.gpu import architecture_model

    m = architecture_model(name, "meta")
    n = sum(p.numel() for p in m.transformer.parameters())
    assert abs(n - params) / params < 1e-3  # CogVideoX-5B: 5.57 B, 2B: 1.69 B transformer parameters
    assert m.transformer.config.use_rotary_positional_embeddings is rope
    assert m.transformer.config.sample_frames == 49 and m.spec.grid == (13, 30, 45)
    assert sum(p.numel() for p in m.vae.parameters()) > 2e8  # the real VAE config (~216 M)


def test_model_runs_on_a_tiny_model(tiny5b):
    from benchmarks.gpu import model_runs

    res = model_runs(tiny5b, steps=2, pairs=1)
    assert set(res["single"]) == {"generate", "apply", "learn", "official-style learn"}
    for seconds, peak in res["single"].values():
        assert seconds > 0 and peak is None  # peak memory is measured on CUDA only
    assert res["apply/generate"].ratio > 0 and res["learn/official"].ratio > 0


def test_section_says_not_measured_without_a_gpu(monkeypatch):
    from benchmarks import gpu
    from benchmarks.common import Config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    sec = gpu.run(Config(quick=True))
    assert sec.status == "not measured" and "no GPU" in sec.headline
