import pytest
import torch

from motionlib._compat import check_diffusers
from motionlib.models import known_models, load_model, resolve_spec


def test_presets_and_real_specs():
    names = list(known_models())
    assert {"tiny-5b", "tiny-2b", "cogvideox-5b", "cogvideox-2b"} <= set(names)
    five = resolve_spec("THUDM/CogVideoX-5b")
    assert five.embedding == "rope" and five.grid == (13, 30, 45) and five.guidance.blocks == (20,)
    assert five.scheduler == "dpm" and five.use_dynamic_cfg and five.dtype == "bfloat16"
    two = resolve_spec("cogvideox-2b")
    assert two.embedding == "posemb" and two.guidance.blocks == (15,) and two.scheduler == "ddim" and two.dtype == "float16"
    assert resolve_spec("tiny-2b").embedding == "posemb"


def test_unknown_model_message(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        resolve_spec("nope")
    with pytest.raises(ValueError, match="not a diffusers pipeline folder"):
        resolve_spec(str(tmp_path))


def test_diffusers_version_guard():
    assert check_diffusers("0.42.1") == "0.42.1"
    for bad in ("0.31.0", "0.43.0", "1.0.0"):
        with pytest.raises(RuntimeError, match="tested with diffusers"):
            check_diffusers(bad)
    check_diffusers()  # the installed one is in range


@pytest.mark.slow
def test_from_pretrained_local_folder(tiny5b, tmp_path):
    """The real loading path (CogVideoXPipeline.from_pretrained) on a saved tiny pipeline."""
    from diffusers import CogVideoXPipeline

    from motionlib.sampling import generate

    m = tiny5b
    CogVideoXPipeline(tokenizer=m.tokenizer, text_encoder=m.text_encoder, vae=m.vae,
                      transformer=m.transformer, scheduler=m.scheduler).save_pretrained(tmp_path / "cog")
    loaded = load_model(str(tmp_path / "cog"), device="cpu")
    assert loaded.spec.grid == m.spec.grid and loaded.spec.embedding == "rope"
    assert loaded.spec.guidance.blocks[0] < loaded.spec.num_layers
    a = generate(m, "x", seed=1, steps=3, output="latent")
    b = generate(loaded, "x", seed=1, steps=3, output="latent")
    assert torch.equal(a, b)


@pytest.mark.slow
def test_offload_and_tiling_options():
    """The Python API's options (where components live after each phase: tests/test_memory_options.py)."""
    m = load_model("tiny-2b", device="cpu", offload=True, vae_tiling=True)
    assert m.offload == "model" and m.vae.use_tiling and m.plan.setting.key == "model/tiled"
    assert set(m.placement.values()) == {"cpu"}
    from motionlib.sampling import generate

    assert generate(m, "x", steps=2).shape[0] == m.spec.num_frames
    assert m.placement == {"text_encoder": "cpu", "vae": "device", "transformer": "cpu"}  # the last one used
    plain = load_model("tiny-2b", device="cpu")
    assert plain.offload == "none" and not plain.vae.use_tiling and set(plain.placement.values()) == {"device"}
