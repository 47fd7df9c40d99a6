"""shapes-i2v (issue 29 part 4): shapes widened the CogVideoX-I2V way, its trainer and its eval."""

import json

import numpy as np
import pytest
import torch

from motionlib.demo import data
from motionlib.demo.metrics import psnr
from motionlib.demo.shapes_i2v import PATCH_KEY, shapes_i2v_model, widen
from motionlib.demo.spec import DEFAULT_I2V_WEIGHTS, DEFAULT_WEIGHTS, SHAPES_I2V_SPEC, SHAPES_SPEC
from motionlib.errors import WeightsMissing
from motionlib.image import first_frame

needs_shapes = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no bundled shapes weights")


@pytest.fixture(scope="module")
def pair():
    from motionlib.demo.model import shapes_model

    return shapes_model(), shapes_i2v_model(DEFAULT_WEIGHTS)


def _clip_image(seed=5, **kw):
    frames, prompt, meta = data.make_clip(seed, **kw)
    return frames, prompt, first_frame(data.to_model_range(frames))


def test_spec_is_shapes_geometry_with_i2v_conditioning():
    from motionlib.models import known_models, resolve_spec

    s = SHAPES_I2V_SPEC
    assert s.conditioning == "i2v" and resolve_spec("shapes-i2v") == s and "shapes-i2v" in known_models()
    for k in ("num_frames", "height", "width", "grid", "heads", "head_dim", "num_layers", "guidance", "embedding"):
        assert getattr(s, k) == getattr(SHAPES_SPEC, k)
    assert s.config_hash() != SHAPES_SPEC.config_hash()  # a shapes motion cannot drive it, nor the reverse


def test_psnr_against_a_naive_loop():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
    se = 0.0
    for v, w in zip(a.flat, b.flat):
        se += (float(v) - float(w)) ** 2
    want = 10 * np.log10(255.0 ** 2 / (se / a.size))
    assert abs(psnr(a, b) - want) < 1e-9
    assert psnr(a, a) == 100.0 and psnr(a, a, cap=50) == 50.0
    with pytest.raises(ValueError):
        psnr(a, b[:1])


@needs_shapes
def test_zero_init_forward_equals_shapes_whatever_the_image(pair):
    """The widened model's forward with any image latents is the shapes forward; nonzero image weights change it
    (so the comparison can fail)."""
    from motionlib.transformer import Controls

    shapes, i2v = pair
    w = i2v.transformer.state_dict()[PATCH_KEY]
    assert w.shape[1] == 24 and torch.count_nonzero(w[:, 12:]) == 0
    assert torch.equal(w[:, :12], shapes.transformer.state_dict()[PATCH_KEY])
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(2, 8, 12, 16, 16, generator=g)
    image = {"latents": torch.randn(2, 8, 12, 16, 16, generator=g)}
    emb = shapes.encode_prompt(["a red circle on a black background"] * 2)
    t = torch.tensor([500, 500])
    fam = shapes.family
    with torch.no_grad():
        a = fam.forward(shapes.transformer, lat, emb, t, Controls(fam.base_rho(shapes)))
        b = fam.forward(i2v.transformer, lat, emb, t, Controls(fam.base_rho(i2v)), image=image)
        other = widen(shapes.transformer)
        other.state_dict()[PATCH_KEY][:, 12:].normal_(generator=g)
        c = fam.forward(other, lat, emb, t, Controls(fam.base_rho(i2v)), image=image)
    assert torch.allclose(a, b, atol=1e-6, rtol=0) and not torch.allclose(a, c, atol=1e-3)


@needs_shapes
def test_zero_init_i2v_generation_equals_shapes_generation(pair):
    from motionlib.sampling import generate

    shapes, i2v = pair
    _, prompt, image = _clip_image()
    a = generate(shapes, prompt, seed=3, steps=4)
    b = generate(i2v, prompt, seed=3, steps=4, image=image)
    assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_image_condition_is_the_trainers_image_latents():
    """The adapter's image_condition (what generation feeds it, as for tiny-5b-i2v: the first frame's latents, then
    zero frames) is exactly what the trainer gives each clip; a dropped image is all zeros."""
    from motionlib.demo.train import image_latents

    model = shapes_i2v_model(pretrained=False)
    frames, _, image = _clip_image(9)
    cond = model.image_condition(image, [None, torch.Generator().manual_seed(1)])["latents"]
    z0 = model.vae.encode(data.to_model_range(frames)[None].permute(0, 2, 1, 3, 4)).latent_dist.mode()
    z0 = z0.permute(0, 2, 1, 3, 4)
    want = image_latents(torch.cat([z0, z0]), torch.tensor([True, True]))
    assert cond.shape == (2, 8, 12, 16, 16) and torch.allclose(cond, want, atol=1e-6, rtol=0)
    assert torch.count_nonzero(cond[:, 1:]) == 0 and torch.count_nonzero(cond[:, 0]) > 0
    dropped = image_latents(torch.cat([z0, z0]), torch.tensor([True, False]))
    assert torch.equal(dropped[0], want[0]) and torch.count_nonzero(dropped[1]) == 0


@needs_shapes
def test_loading_without_trained_weights_says_so_and_weights_load(tmp_path, pair):
    from safetensors.torch import save_file

    from motionlib.demo.model import weights_metadata
    from motionlib.models import load_model

    if not DEFAULT_I2V_WEIGHTS.is_file():
        with pytest.raises(WeightsMissing, match="--i2v"):
            load_model("shapes-i2v", device="cpu")
    with pytest.raises(WeightsMissing):
        shapes_i2v_model(tmp_path / "nowhere.safetensors")
    _, i2v = pair
    state = {f"transformer.{k}": v.clone() for k, v in i2v.transformer.state_dict().items()}
    state[f"transformer.{PATCH_KEY}"][:, 12:] = 0.5  # trained image channels
    state.update({f"text_encoder.{k}": v for k, v in i2v.text_encoder.state_dict().items()})
    path = tmp_path / "shapes-i2v.safetensors"
    save_file(state, str(path), metadata=weights_metadata(SHAPES_I2V_SPEC))
    loaded = shapes_i2v_model(path)
    assert torch.equal(loaded.transformer.state_dict()[PATCH_KEY], state[f"transformer.{PATCH_KEY}"])
    assert loaded.spec == SHAPES_I2V_SPEC


@needs_shapes
@pytest.mark.slow
def test_train_i2v_from_shapes_checkpoint_resume_export(tmp_path):
    from safetensors import safe_open

    from motionlib.demo import train

    threads = torch.get_num_threads()
    common = ["--out", str(tmp_path), "--minutes", "5", "--batch-size", "2", "--threads", "0", "--val-size", "2",
              "--no-preview", "--log-every", "1", "--warmup", "2"]
    try:
        assert train.main(common + ["--i2v", "--init", str(DEFAULT_WEIGHTS), "--image-drop-prob", "0.5",
                                    "--max-steps", "2"]) == 0
        st = json.loads((train.latest_checkpoint(tmp_path) / "state.json").read_text())
        assert st["step"] == 2 and st["args"]["i2v"] is True and st["args"]["image_drop_prob"] == 0.5
        assert train.main(common + ["--max-steps", "4", "--resume"]) == 0  # the run's recipe: --i2v, its init
    finally:
        torch.set_num_threads(threads)
    log = (tmp_path / "train.log").read_text()
    assert "resumed from" in log and "shapes-i2v training" in log.split("resumed from")[1]
    st = json.loads((train.latest_checkpoint(tmp_path) / "state.json").read_text())
    assert st["step"] == 4 and st["samples_seen"] == 8
    weights = tmp_path / "shapes-i2v.safetensors"
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
        assert f.get_slice(f"transformer.{PATCH_KEY}").get_shape()[1] == 24
    assert meta["model"] == "shapes-i2v" and json.loads(meta["spec"])["conditioning"] == "i2v"
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["model"] == "shapes-i2v" and card["conditioning"] == "i2v" and card["steps"] == 4
    assert card["recipe"]["init"].startswith("shapes.safetensors (--init)") and card["data"]["image_drop_prob"] == 0.5
    assert "continued_from" in card  # the shapes card it started from
    model = shapes_i2v_model(weights)
    assert model.spec == SHAPES_I2V_SPEC
    # a few steps moved the image channels off zero: it is no longer shapes
    assert torch.count_nonzero(model.transformer.state_dict()[PATCH_KEY][:, 12:]) > 0
    # what `motionlib eval --model shapes-i2v --weights RUN` loads: the run's export, or a checkpoint's EMA
    from motionlib.demo.eval import load_eval_model
    from motionlib.errors import ModelError

    _, info = load_eval_model(tmp_path, name="shapes-i2v")
    assert info["kind"] == "weights" and info["weights"].endswith("shapes-i2v.safetensors")
    ck = train.latest_checkpoint(tmp_path)
    m, info = load_eval_model(ck, name="shapes-i2v")
    assert info["kind"] == "checkpoint" and m.spec == SHAPES_I2V_SPEC
    with pytest.raises(ModelError, match="does not hold shapes weights"):  # an i2v checkpoint is not shapes
        load_eval_model(ck, name="shapes")


@pytest.mark.slow
def test_quick_i2v_eval_through_cli_on_random_weights(tmp_path, capsys):
    from helpers import cli

    out = tmp_path / "ev"
    code, stdout, stderr = cli(capsys, "eval", "--model", "shapes-i2v", "--random", "--quick", "--steps", "3",
                               "--opt-steps", "1", "--out", str(out), "--json")
    assert code == 0, stderr
    res = json.loads(stdout)
    r = res["i2v"]
    assert len(r["renders"]) == 2 and {x["method"] for x in r["renders"]} == {"plain", "zero_shot"}
    for x in r["renders"]:
        assert x["offset_px"] >= 6 and x["first_frame_psnr"] is not None and x["colour"] != "red"
    assert r["first_frame_renders"] == 2 and r["plain"]["renders"] == r["zero_shot"]["renders"] == 1
    assert abs(r["first_frame_psnr"] - np.mean([x["first_frame_psnr"] for x in r["renders"]])) < 1e-4
    assert {c["metric"] for c in res["checks"]} == {"first_frame_psnr", "zero_shot.direction", "plain.direction"}
    assert (out / "i2v.png").stat().st_size > 1000 and json.loads((out / "eval.json").read_text())["config"]["quick"]


def test_preview_first_frames_match_their_prompts():
    from motionlib.demo.preview import DEFAULT_PROMPTS, first_frames

    images = first_frames()
    assert len(images) == len(DEFAULT_PROMPTS) and all(im.size == (32, 32) for im in images)
    for im, prompt in zip(images, DEFAULT_PROMPTS):
        arr = np.asarray(im)
        colour = next(c for c in data.COLORS if c in prompt)
        assert (arr == np.array(data.COLORS[colour], np.uint8)).all(-1).any()  # the disc's centre colour
    assert first_frames() is not images and all(np.array_equal(a, b) for a, b in
                                                zip(map(np.asarray, images), map(np.asarray, first_frames())))


def test_a_weights_files_card_is_its_named_card_else_the_folders(tmp_path):
    """--init finds the card of the run it continues: NAME.card.json (the bundled shapes-i2v.card.json sits
    beside shapes' card.json) before the folder's card.json."""
    from motionlib.demo.train import card_beside

    weights = tmp_path / "shapes-i2v.safetensors"
    (tmp_path / "card.json").write_text("{}")
    assert card_beside(weights) == tmp_path / "card.json"
    (tmp_path / "shapes-i2v.card.json").write_text("{}")
    assert card_beside(weights) == tmp_path / "shapes-i2v.card.json"
    assert card_beside(tmp_path / "shapes.safetensors") == tmp_path / "card.json"
