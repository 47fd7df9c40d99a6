"""Image-to-video (issue 29) on the tiny presets tiny-5b-i2v and tiny-wan-i2v: bit-exact plain generation
against diffusers' CogVideoXImageToVideoPipeline and WanImageToVideoPipeline, loading a saved pipeline
folder, the geometry refusals, identity motion, learn / apply with an image, conditioning checks."""

import numpy as np
import pytest
import torch
from PIL import Image

from motionlib.errors import ParameterError
from motionlib.models import load_model, resolve_spec
from motionlib.sampling import generate

from helpers import noise_clip

I2V = ["tiny-5b-i2v", "tiny-wan-i2v"]


def picture(width=80, height=48, seed=0) -> Image.Image:
    """A seeded random RGB picture (another size than the tiny presets' 96x64 unless asked)."""
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(height, width, 3) * 255).astype(np.uint8))


@pytest.fixture(scope="module", autouse=True)
def _wan_i2v_prompt_clean():
    """diffusers 0.42's WanImageToVideoPipeline calls ftfy unguarded when ftfy is not installed (WanPipeline,
    whose cleaning motionlib uses, skips it): give it WanPipeline's own cleaning for these tests."""
    from diffusers.pipelines.wan import pipeline_wan, pipeline_wan_i2v

    with pytest.MonkeyPatch.context() as mp:
        if not hasattr(pipeline_wan_i2v, "ftfy"):
            mp.setattr(pipeline_wan_i2v, "prompt_clean", pipeline_wan.prompt_clean)
        yield


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name, device="cpu") for name in I2V}


def pipeline(m):
    """The family's diffusers image-to-video pipeline over the model's own components."""
    from diffusers import CogVideoXImageToVideoPipeline, WanImageToVideoPipeline

    if m.spec.embedding == "wan":
        pipe = WanImageToVideoPipeline(tokenizer=m.tokenizer, text_encoder=m.text_encoder, vae=m.vae,
                                       scheduler=m.new_scheduler(), image_processor=m.image_processor,
                                       image_encoder=m.image_encoder, transformer=m.transformer)
    else:
        pipe = CogVideoXImageToVideoPipeline(tokenizer=m.tokenizer, text_encoder=m.text_encoder, vae=m.vae,
                                             transformer=m.transformer, scheduler=m.new_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_latents(m, image, prompt, seed, steps=None, output_type="latent"):
    s = m.spec
    kw = {"use_dynamic_cfg": s.use_dynamic_cfg} if s.embedding != "wan" else {}
    out = pipeline(m)(image=image, prompt=prompt, num_frames=s.num_frames, height=s.height, width=s.width,
                      num_inference_steps=steps or s.num_inference_steps, guidance_scale=s.guidance_scale,
                      generator=torch.Generator().manual_seed(seed), output_type=output_type,
                      max_sequence_length=s.text_len, **kw).frames
    if output_type == "latent" and s.embedding == "wan":
        out = out.permute(0, 2, 1, 3, 4)  # WanPipeline keeps channels first; motionlib latent frames first
    return out


def test_specs():
    five = resolve_spec("cogvideox-5b-i2v")
    assert five.source == "THUDM/CogVideoX-5b-I2V" and five.conditioning == "i2v" and five.fixed_geometry
    assert five.embedding == "rope" and five.grid == (13, 30, 45)
    for name, size in (("wan2.1-i2v-14b-480p", (480, 832)), ("wan2.1-i2v-14b-720p", (720, 1280))):
        s = resolve_spec(name)
        assert s.conditioning == "i2v" and not s.fixed_geometry and (s.height, s.width) == size
        assert s.heads == 40 and s.num_layers == 40 and "untested" in s.description
    assert resolve_spec("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers").name == "wan2.1-i2v-14b-480p"
    assert resolve_spec("tiny-5b").conditioning == "t2v"


def test_text_to_video_specs_store_and_hash_as_before():
    """The new keys are written only for image-to-video, so t2v assets keep their bytes and hashes."""
    s = resolve_spec("tiny-5b")
    # exactly the keys (in the order) a spec was stored with before image-to-video existed
    assert list(s.to_dict()) == ["name", "family", "source", "num_frames", "height", "width", "temporal_compression",
                                 "spatial_compression", "patch_size", "text_len", "heads", "head_dim", "num_layers",
                                 "dtype", "scheduler", "num_inference_steps", "guidance_scale", "use_dynamic_cfg",
                                 "fps", "guidance", "description"]
    i2v = resolve_spec("tiny-5b-i2v")
    assert i2v.to_dict()["conditioning"] == "i2v" and i2v.to_dict()["fixed_geometry"] is True
    assert type(i2v).from_dict(i2v.to_dict()) == i2v and type(s).from_dict(s.to_dict()) == s
    # the same geometry and architecture, another conditioning: another hash
    from dataclasses import replace

    assert replace(i2v, conditioning="t2v", fixed_geometry=False, name="tiny-5b",
                   source="builtin:tiny-5b", description=s.description) == s
    assert i2v.config_hash() != s.config_hash()
    # a t2v hash is the formula it had before conditioning existed (a naive re-computation)
    import hashlib
    import json

    keys = ("family", "num_frames", "height", "width", "temporal_compression", "spatial_compression", "patch_size",
            "text_len", "heads", "head_dim", "num_layers")
    old = json.dumps({k: s.to_dict()[k] for k in keys}, sort_keys=True)
    assert s.config_hash() == hashlib.sha256(old.encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", I2V)
def test_plain_generation_matches_diffusers_i2v_pipeline(models, name):
    m = models[name]
    image = picture()
    want = pipeline_latents(m, image, "a red ball", seed=3)
    got = generate(m, "a red ball", seed=3, image=image, output="latent")
    assert got.shape == m.latent_shape()
    assert torch.equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("name", I2V)
def test_decoded_video_matches_diffusers_i2v_pipeline(models, name):
    m = models[name]
    image = picture(96, 64, seed=2)
    want = pipeline_latents(m, image, "a cat", seed=1, steps=2, output_type="pt")[0]
    got = generate(m, "a cat", seed=1, steps=2, image=image)
    torch.testing.assert_close(got, want.float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", I2V)
def test_the_image_conditions_the_generation(models, name):
    m = models[name]
    a = generate(m, "x", seed=0, steps=2, image=picture(seed=0), output="latent")
    b = generate(m, "x", seed=0, steps=2, image=picture(seed=1), output="latent")
    assert not torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("name", I2V)
def test_saved_pipeline_folder_loads(models, name, tmp_path):
    """The real loading path (the I2V pipeline's from_pretrained) on a saved tiny pipeline."""
    m = models[name]
    pipeline(m).save_pretrained(tmp_path / "pipe")
    loaded = load_model(str(tmp_path / "pipe"), device="cpu")
    s = loaded.spec
    assert s.conditioning == "i2v" and s.embedding == m.spec.embedding
    assert s.fixed_geometry == m.spec.fixed_geometry
    if s.embedding != "wan":  # CogVideoX folders carry their size; Wan ones take WanPipeline's default
        assert s.grid == m.spec.grid
    else:
        loaded = load_model(str(tmp_path / "pipe"), device="cpu", num_frames=m.spec.num_frames,
                            height=m.spec.height, width=m.spec.width)
    image = picture()
    # against the I2V pipeline on the loaded components, bit for bit; against the fresh model, close (loading
    # moves diffusers' own Wan forward by ~1e-6: its time embedding differs from a fresh model's, tests/test_wan.py)
    got = generate(loaded, "x", seed=1, steps=3, image=image, output="latent")
    assert torch.equal(got, pipeline_latents(loaded, image, "x", seed=1, steps=3))
    torch.testing.assert_close(got, generate(m, "x", seed=1, steps=3, image=image, output="latent"), atol=1e-4, rtol=0)


def test_fixed_geometry_is_refused_by_name():
    from motionlib.models import check_geometry

    s = resolve_spec("tiny-5b-i2v")
    assert check_geometry(s) == s
    for kw in ({"num_frames": 13}, {"height": 32}, {"width": 64}):
        with pytest.raises(ParameterError, match="learnt positional embeddings for one size"):
            check_geometry(s, **kw)
    with pytest.raises(ParameterError, match="one size"):
        load_model("cogvideox-5b-i2v", device="cpu", height=240)
    assert check_geometry(resolve_spec("tiny-wan-i2v"), num_frames=13).num_frames == 13  # Wan: any size


def test_conditioning_is_checked(models, tiny5b):
    with pytest.raises(ParameterError, match="tiny-5b-i2v is an image-to-video model"):
        generate(models["tiny-5b-i2v"], "x", steps=1)
    with pytest.raises(ParameterError, match="tiny-5b is a text-to-video model and takes no image"):
        generate(tiny5b, "x", steps=1, image=picture())


def test_first_frame_round_trips_a_clip_frame(models):
    from motionlib.image import first_frame

    m = models["tiny-5b-i2v"]
    clip = (torch.randint(0, 256, (m.spec.num_frames, 3, m.spec.height, m.spec.width)).float() / 127.5 - 1)
    im = first_frame(clip)
    assert im.size == (m.spec.width, m.spec.height) and im.mode == "RGB"
    back = torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(back, clip[0], atol=1e-6)


def test_noise_clip_helper_fits(models):
    m = models["tiny-wan-i2v"]
    assert noise_clip(m).shape == (m.spec.num_frames, 3, m.spec.height, m.spec.width)


@pytest.fixture(scope="module")
def learnt(models):
    """A motion learnt on each I2V preset from a noise clip (the learn conditioned on its first frame)."""
    from motionlib.learn import learn

    return {name: learn(m, noise_clip(m), seed=1).asset for name, m in models.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", I2V)
def test_identity_motion_equals_plain_i2v(models, learnt, name):
    """Strength 0 without injection is plain image-to-video generation, bit for bit."""
    from motionlib.apply import apply

    m, image = models[name], picture(seed=4)
    plain = generate(m, "a blue cube", seed=5, image=image, output="latent")
    same = apply(m, learnt[name], "a blue cube", seed=5, image=image, strength=0.0, inject=False, output="latent")
    assert torch.equal(plain, same)
    moved = apply(m, learnt[name], "a blue cube", seed=5, image=image, output="latent")
    assert not torch.equal(plain, moved)


@pytest.mark.slow
@pytest.mark.parametrize("name", I2V)
def test_learn_conditions_on_the_clip_first_frame(models, learnt, name, tmp_path):
    """learn without an image equals learn with the clip's first frame; another image learns another ρ; the
    asset records i2v in its header and keeps it through a file."""
    from motionlib.asset import MotionAsset
    from motionlib.image import first_frame
    from motionlib.learn import learn

    m = models[name]
    clip = noise_clip(m)
    given = learn(m, clip, seed=1, image=first_frame(clip)).asset
    a = learnt[name]
    assert all(torch.equal(a.rho_delta[t][k], given.rho_delta[t][k]) for t in a.timesteps for k in a.rho_delta[t])
    other = learn(m, clip, seed=1, image=picture(seed=9)).asset
    assert not all(torch.equal(a.rho_delta[t][k], other.rho_delta[t][k]) for t in a.timesteps for k in a.rho_delta[t])
    assert a.conditioning == "i2v"
    a.save(tmp_path / "m.safetensors")
    from motionlib.asset import inspect

    assert inspect(tmp_path / "m.safetensors")["spec"]["conditioning"] == "i2v"
    assert MotionAsset.load(tmp_path / "m.safetensors").conditioning == "i2v"


@pytest.mark.slow
def test_t2v_and_i2v_motions_refuse_each_other(models, learnt, tiny5b):
    from motionlib.apply import apply
    from motionlib.asset import AssetError
    from motionlib.learn import learn

    t2v = learn(tiny5b, noise_clip(tiny5b), seed=1).asset
    assert t2v.conditioning == "t2v"
    with pytest.raises(AssetError, match="text-to-video motion .* cannot drive tiny-5b-i2v, an image-to-video"):
        apply(models["tiny-5b-i2v"], t2v, "x", image=picture(), steps=1)
    with pytest.raises(AssetError, match="image-to-video motion .* cannot drive tiny-5b, a text-to-video model"):
        apply(tiny5b, learnt["tiny-5b-i2v"], "x", steps=1)
    with pytest.raises(AssetError, match="cannot drive tiny-wan-i2v"):
        apply(models["tiny-wan-i2v"], learnt["tiny-5b-i2v"], "x", image=picture(), steps=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", I2V)
def test_transfer_with_an_image(models, name):
    from motionlib.learn import transfer

    m = models[name]
    video, losses = transfer(m, noise_clip(m), "x", seed=2, steps=2, output="latent", image=picture())
    assert video.shape == m.latent_shape() and losses


# --- the command line ----------------------------------------------------------------------------
@pytest.fixture
def png(tmp_path):
    path = tmp_path / "first.png"
    picture(80, 48, seed=3).save(path)
    return path


@pytest.mark.slow
def test_cli_learn_and_apply_with_an_image(cli_home, capsys, png, tmp_path):
    from helpers import LEFT, cli, cli_json

    code, _, err = cli(capsys, "learn", str(LEFT), "--name", "walk", "--model", "tiny-5b-i2v", "--steps", "2")
    assert code == 0, err
    assert "starts from the clip's first frame" in err
    code, _, err = cli(capsys, "apply", "walk", "a robot", "--steps", "2", "-o", str(tmp_path / "a.mp4"))
    assert code == 1 and err.count("\n") == 1
    assert "motion 'walk' is an image-to-video motion (tiny-5b-i2v): give its first frame with --image" in err
    code, _, err = cli(capsys, "apply", "walk", "a robot", "--steps", "2", "--image", str(png),
                       "-o", str(tmp_path / "a.mp4"))
    assert code == 0, err
    assert "the image is 80x48; tiny-5b-i2v takes 96x64: it is stretched (aspect ratio not kept)" in err
    assert (tmp_path / "a.mp4").is_file()
    done = cli_json(capsys, "generate", "x", "--model", "tiny-5b-i2v", "--steps", "1", "--image", str(png),
                    "-o", str(tmp_path / "g.mp4"))
    assert (tmp_path / "g.mp4").is_file() and done["output"].endswith("g.mp4")
    done = cli_json(capsys, "transfer", str(LEFT), "x", "--model", "tiny-wan-i2v", "--steps", "1",
                    "-o", str(tmp_path / "t.mp4"))
    assert (tmp_path / "t.mp4").is_file()
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"motion": "walk", "prompt": "a", "seed": 1, "output": "b1.mp4", "steps": 1}\n'
                    f'{{"motion": "walk", "prompt": "b", "seed": 2, "output": "b2.mp4", "steps": 1, "image": "{png}"}}\n')
    res = cli_json(capsys, "apply-batch", str(jobs), "--in-process", "--image", str(png))
    assert res["done"] == 2, res
    assert (tmp_path / "b1.mp4").is_file() and (tmp_path / "b2.mp4").is_file()
    from motionlib.store import Library

    assert all(r.image_sha256 for r in Library(tmp_path / "lib").renders("walk"))  # batch renders record it too
    jobs.write_text('{"motion": "walk", "prompt": "a", "seed": 1, "output": "b3.mp4", "image": "gone.png"}\n')
    code, out, err = cli(capsys, "apply-batch", str(jobs), "--in-process")
    assert code == 1 and "gone.png does not exist" in err and not (tmp_path / "b3.mp4").exists()


@pytest.mark.slow
def test_cli_refuses_images_by_name(cli_home, capsys, png, tmp_path):
    from helpers import LEFT, cli

    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    cases = [
        (("generate", "x", "--model", "tiny-5b-i2v", "--steps", "1"),
         "tiny-5b-i2v is an image-to-video model: give its first frame with --image"),
        (("generate", "x", "--model", "tiny-5b", "--image", str(png)),
         "--image is for image-to-video models; tiny-5b is a text-to-video model"),
        (("generate", "x", "--model", "tiny-5b-i2v", "--image", str(not_image)),
         f"{not_image} cannot be read as an image"),
        (("generate", "x", "--model", "tiny-5b-i2v", "--image", str(tmp_path / "none.png")),
         "none.png does not exist"),
        (("generate", "x", "--model", "tiny-5b-i2v", "--image", str(tmp_path)), "is not a file"),
        (("learn", str(LEFT), "--name", "n", "--model", "tiny-5b", "--image", str(png)),
         "tiny-5b is a text-to-video model"),
        (("learn", str(LEFT), "--name", "n", "--model", "tiny-5b-i2v", "--height", "32"),
         "learnt positional embeddings for one size"),
    ]
    for args, message in cases:
        code, out, err = cli(capsys, *args, "-o", str(tmp_path / "x.mp4")) if args[0] == "generate" else \
            cli(capsys, *args)
        assert code == 1 and message in err and err.count("\n") == 1, (args, err)
        assert not (tmp_path / "x.mp4").exists()


def test_image_probing(tmp_path):
    from motionlib.image import ImageError, MAX_IMAGE_PIXELS, image_from_bytes, load_image

    gif = tmp_path / "a.gif"
    picture().save(gif)
    with pytest.raises(ImageError, match="cannot be read as an image"):
        load_image(gif)  # not one of the formats read
    frames = [picture(seed=i) for i in range(2)]
    anim = tmp_path / "anim.webp"
    frames[0].save(anim, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="holds 2 frames"):
        load_image(anim)
    big = tmp_path / "big.png"
    Image.new("L", (8193, 8192)).save(big)
    assert 8193 * 8192 > MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="at most"):
        load_image(big)
    with pytest.raises(ImageError, match="the upload cannot be read"):
        image_from_bytes(b"\x89PNG\r\n\x1a\n garbage")
    jpg = tmp_path / "a.jpg"
    picture().convert("L").save(jpg)
    assert load_image(jpg).mode == "RGB" and load_image(jpg).size == (80, 48)


# --- motionlib.attach on the diffusers image-to-video pipelines -------------------------------------------
def _diffusers_processors(transformer) -> None:
    """diffusers' own attn1 processors again (motionlib's forward installs its own), as in a user's pipeline."""
    from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    wan = hasattr(transformer, "blocks")
    for block in (transformer.blocks if wan else transformer.transformer_blocks):
        block.attn1.set_processor(WanAttnProcessor() if wan else CogVideoXAttnProcessor2_0())


@pytest.mark.slow
@pytest.mark.parametrize("name", I2V)
def test_attach_equals_apply_on_i2v_pipelines(models, learnt, name):
    """attach + the I2V pipeline gives apply's latents bit for bit (injection, strength, other step counts);
    after removal the pipeline renders plain I2V generation's."""
    import motionlib
    from motionlib.apply import apply

    m, asset, image = models[name], learnt[name], picture(seed=6)
    plain = generate(m, "a red ball", seed=3, image=image, output="latent")
    for kw, steps in (({}, None), ({"inject": False}, None), ({"strength": 0.5}, 4)):
        _diffusers_processors(m.transformer)
        pipe = pipeline(m)
        with motionlib.attach(pipe, asset, **kw) as handle:
            got = _attached_render(pipe, m, image, steps)
        want = apply(m, asset, "a red ball", seed=3, steps=steps, image=image, output="latent", **kw)
        assert torch.equal(got, want), (name, kw, steps)
        assert handle.used and not torch.equal(got, plain)
    _diffusers_processors(m.transformer)
    assert torch.equal(_attached_render(pipeline(m), m, image, None), plain)


def _attached_render(pipe, m, image, steps):
    s = m.spec
    kw = {"use_dynamic_cfg": s.use_dynamic_cfg} if s.embedding != "wan" else {}
    out = pipe(image=image, prompt="a red ball", num_frames=s.num_frames, height=s.height, width=s.width,
               num_inference_steps=steps or s.num_inference_steps, guidance_scale=s.guidance_scale,
               generator=torch.Generator().manual_seed(3), output_type="latent", max_sequence_length=s.text_len,
               **kw).frames
    return out.permute(0, 2, 1, 3, 4) if s.embedding == "wan" else out


@pytest.mark.slow
def test_attach_refuses_the_other_conditioning(models, learnt, tiny5b):
    import motionlib
    from diffusers import CogVideoXPipeline

    from motionlib.attach import AttachError
    from motionlib.learn import learn

    with pytest.raises(AttachError, match="an image-to-video motion .* a CogVideoXPipeline is a text-to-video"):
        motionlib.attach(CogVideoXPipeline(tokenizer=tiny5b.tokenizer, text_encoder=tiny5b.text_encoder,
                                           vae=tiny5b.vae, transformer=tiny5b.transformer,
                                           scheduler=tiny5b.new_scheduler()), learnt["tiny-5b-i2v"])
    t2v = learn(tiny5b, noise_clip(tiny5b), seed=1, opt_steps=1).asset
    with pytest.raises(AttachError, match="a text-to-video motion .* is an image-to-video pipeline"):
        motionlib.attach(pipeline(models["tiny-5b-i2v"]), t2v)


# --- the catalogue and the web app ---------------------------------------------------------------------
def test_preview_png_is_small_and_the_same_bytes():
    from motionlib.image import preview_png

    a, b = preview_png(picture(400, 240)), preview_png(picture(400, 240))
    assert a == b and a.startswith(b"\x89PNG")
    assert Image.open(__import__("io").BytesIO(a)).size == (96, 58)


@pytest.mark.slow
def test_render_records_its_first_frame(cli_home, capsys, png, tmp_path):
    """apply --image records the image's sha256 and a small preview; show lists it beside the render."""
    import hashlib

    from helpers import LEFT, cli, cli_json
    from motionlib.store import Library

    code, _, err = cli(capsys, "learn", str(LEFT), "--name", "walk", "--model", "tiny-5b-i2v", "--steps", "2")
    assert code == 0, err
    code, _, err = cli(capsys, "apply", "walk", "a robot", "--steps", "2", "--image", str(png),
                       "-o", str(tmp_path / "a.mp4"))
    assert code == 0, err
    lib = Library(tmp_path / "lib")
    (r,) = lib.renders("walk")
    assert r.image_sha256 == hashlib.sha256(png.read_bytes()).hexdigest()
    assert Image.open(__import__("io").BytesIO(r.image_preview)).size == (80, 48)  # already under 96 px
    shown = cli_json(capsys, "show", "walk")
    assert shown["asset"]["conditioning"] == "i2v" and shown["renders"][0]["image_sha256"] == r.image_sha256
    code, out, _ = cli(capsys, "show", "walk")
    assert "image-to-video" in out and f"first frame sha256 {r.image_sha256[:16]}" in out


@pytest.mark.slow
def test_web_render_takes_an_image_upload(tmp_path, models, png):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from helpers import LEFT
    from motionlib.catalog import learn_motion
    from motionlib.store import Library
    from motionlib.web import Settings, create_app

    lib = Library(tmp_path / "lib")
    learn_motion(lib, models["tiny-5b-i2v"], LEFT, "walk", steps=2, opt_steps=1)
    app = create_app(lib, Settings(allow_render=True, max_upload_bytes=200_000))
    app.state.core.models.models["tiny-5b-i2v"] = models["tiny-5b-i2v"]
    form = {"motion": "walk", "prompt": "a robot", "seed": "1", "steps": "2", "strength": "1"}
    with TestClient(app) as web:
        assert 'enctype="multipart/form-data"' in web.get("/render").text
        r = web.post("/render", data=form, follow_redirects=False)
        assert r.status_code == 400 and "upload its first frame" in r.text
        r = web.post("/render", data=form, files={"image": ("notes.png", b"hello", "image/png")},
                     follow_redirects=False)
        assert r.status_code == 415 and "notes.png cannot be read as an image" in r.text
        assert str(tmp_path) not in r.text
        r = web.post("/render", data=form, files={"image": ("big.png", b"x" * 200_001, "image/png")},
                     follow_redirects=False)
        assert r.status_code == 413
        r = web.post("/render", data=form, files={"image": ("first.png", png.read_bytes(), "image/png")},
                     follow_redirects=False)
        assert r.status_code == 303, r.text
        job_id = int(r.headers["location"].rsplit("/", 1)[1])
        done = app.state.core.queue.wait(job_id, timeout=120)
        assert done.status == "done", done.error
        job = web.get(f"/api/jobs/{job_id}").json()
        assert job.get("first_frame") is None and len(job["image_sha256"]) == 64  # the image itself stays private
        rid = job["result"]["render_id"]
        page = web.get("/motions/walk").text
        assert f'src="/renders/{rid}/first-frame.png"' in page
        frame = web.get(f"/renders/{rid}/first-frame.png")
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"
        assert frame.content == lib.render(rid).image_preview


def test_models_lists_the_conditioning(capsys):
    from helpers import cli_json

    rows = {d["name"]: d for d in cli_json(capsys, "models")}
    assert {n for n, d in rows.items() if d["conditioning"] == "i2v"} == {
        "tiny-5b-i2v", "tiny-wan-i2v", "cogvideox-5b-i2v", "wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p", "shapes-i2v"}
    assert rows["tiny-5b"]["conditioning"] == "t2v"
    from motionlib.demo.spec import DEFAULT_I2V_WEIGHTS

    assert rows["shapes-i2v"]["offline"] == DEFAULT_I2V_WEIGHTS.is_file()  # offline once its weights are bundled
