"""motionlib.attach (issue 27): a stored motion inside a user's own diffusers pipeline.

Equivalence: attach + ``pipe(...)`` gives apply's latents bit for bit (tiny-5b RoPE, tiny-2b additive
sin-cos, tiny-wan), and after removal the pipeline renders plain generation's. Composition with
diffusers' group offloading, model CPU offload (accelerate hooks, re-applied after every call),
FirstBlockCache and a peft LoRA. One test per refusal. The example script runs.
"""

import copy
import os
import subprocess
import sys
import warnings
from dataclasses import replace

import pytest
import torch

import motionlib
from motionlib.apply import apply
from motionlib.attach import Approximate, AttachError
from motionlib.errors import ParameterError
from motionlib.guidance import guided_step_count
from motionlib.learn import learn
from motionlib.sampling import generate

from helpers import ROOT, noise_clip

pytestmark = pytest.mark.slow  # each test learns or loads a tiny preset and runs a pipeline (the file: ~50 s)

PRESETS = ("tiny-5b", "tiny-2b", "tiny-wan")
PROMPT = "a red ball"


@pytest.fixture(scope="module")
def models():
    """This module's own tiny models (tests here add hooks and adapters to copies of their parts)."""
    from motionlib.models import load_model

    return {name: load_model(name, device="cpu") for name in PRESETS}


@pytest.fixture(scope="module")
def assets(models):
    """One small learn per preset (spec's 6 steps, half of them guided, one Adam step each)."""
    return {name: learn(m, noise_clip(m), seed=1, opt_steps=1).asset for name, m in models.items()}


def is_wan(m) -> bool:
    return m.spec.embedding == "wan"


def diffusers_processors(transformer) -> None:
    """Give every attn1 diffusers' own processor again (motionlib's forward installs its own), so the
    pipeline's unguided passes run diffusers' code, as in a user's pipeline."""
    from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    blocks = getattr(transformer, "transformer_blocks", None) or transformer.blocks
    for block in blocks:
        block.attn1.set_processor(WanAttnProcessor() if hasattr(transformer, "blocks") else CogVideoXAttnProcessor2_0())


def make_pipe(m, transformer=None, scheduler=None):
    """The family's diffusers pipeline on the model's components (the parity tests' construction)."""
    from diffusers import CogVideoXPipeline, WanPipeline

    cls = WanPipeline if is_wan(m) else CogVideoXPipeline
    tr = transformer if transformer is not None else m.transformer
    diffusers_processors(tr)
    pipe = cls(tokenizer=m.tokenizer, text_encoder=m.text_encoder, vae=m.vae, transformer=tr,
               scheduler=scheduler if scheduler is not None else m.new_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe, m, steps=None, seed=3, **kw):
    """pipe(...) with everything apply holds equal; latents in motionlib's layout [B, F', C, h, w]."""
    s = m.spec
    extra = {} if is_wan(m) else {"use_dynamic_cfg": s.use_dynamic_cfg}
    out = pipe(PROMPT, num_frames=kw.pop("num_frames", s.num_frames), height=s.height, width=s.width,
               num_inference_steps=steps or s.num_inference_steps, guidance_scale=s.guidance_scale,
               generator=torch.Generator().manual_seed(seed), output_type="latent",
               max_sequence_length=kw.pop("max_sequence_length", s.text_len), **extra, **kw).frames
    return out.permute(0, 2, 1, 3, 4) if is_wan(m) else out


def with_transformer(m, transformer):
    return type(m)(**{**m.__dict__, "transformer": transformer, "placement": dict(m.placement)})


# --- equivalence ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_attach_equals_apply_bit_for_bit(name, models, assets):
    m, asset = models[name], assets[name]
    pipe = make_pipe(m)
    plain = generate(m, PROMPT, seed=3, output="latent")
    cases = [({}, None), ({"inject": False}, None), ({"strength": 0.5}, None), ({}, 4), ({}, 9)]
    for kw, steps in cases:
        diffusers_processors(m.transformer)
        with motionlib.attach(pipe, asset, **kw) as handle:
            first = render(pipe, m, steps)
            second = render(pipe, m, steps)  # a second call inside the same attach
        want = apply(m, asset, PROMPT, seed=3, steps=steps, output="latent", **kw)
        assert torch.equal(first, want), (name, kw, steps)
        assert torch.equal(second, want), (name, kw, steps)
        assert not torch.equal(first, plain)
        n = guided_step_count(steps or m.spec.num_inference_steps, asset.guidance.guided_fraction)
        assert len(handle.calls) == 2 and handle.used is handle.calls[-1] and len(handle.used) == n
        for t, stored in handle.used:  # apply's rule: the stored ρ_t nearest in timestep
            assert stored == min(asset.timesteps, key=lambda s: (abs(s - t), s))
    assert not handle.attached
    assert torch.equal(render(pipe, m), plain)  # after exit: plain generation


@pytest.mark.filterwarnings("ignore:There are modules")  # diffusers on casting Wan with .to(bfloat16)
def test_bf16_attach_equals_apply(assets):
    """In bfloat16 too (on the CPU), where Wan's pipeline still draws float32 noise: prepare_latents
    gives it to the reference pass as apply's run has it."""
    from motionlib.models import load_model

    for name in PRESETS:
        m = load_model(name, device="cpu", dtype=torch.bfloat16)
        pipe = make_pipe(m)
        with motionlib.attach(pipe, assets[name]):
            got = render(pipe, m)
        assert torch.equal(got, apply(m, assets[name], PROMPT, seed=3, output="latent")), name


def test_handle_records_removal_restores_everything(models, assets):
    m, asset = models["tiny-2b"], assets["tiny-2b"]
    pipe = make_pipe(m)
    procs = [b.attn1.processor for b in m.transformer.transformer_blocks]
    handle = motionlib.attach(pipe, asset)
    assert handle.attached and handle.used == [] and "attached" in repr(handle)
    render(pipe, m)
    assert handle.used == [(999, 999), (832, 832), (666, 666)] and handle.used == [(t, t) for t in asset.timesteps]
    render(pipe, m, steps=4)
    assert [t for t, _ in handle.used] == [999, 749] and len(handle.calls) == 2
    handle.remove()
    handle.remove()  # idempotent
    assert not handle.attached and "removed" in repr(handle)
    assert [b.attn1.processor for b in m.transformer.transformer_blocks] == procs
    assert "prepare_latents" not in pipe.__dict__ and "encode_prompt" not in pipe.__dict__
    registry = getattr(m.transformer.patch_embed, "_diffusers_hook", None)
    assert registry is None or not registry.hooks
    assert torch.equal(render(pipe, m), generate(m, PROMPT, seed=3, output="latent"))
    # removed early, inside its with block: the rest renders plain
    with motionlib.attach(pipe, asset) as early:
        early.remove()
        assert torch.equal(render(pipe, m), generate(m, PROMPT, seed=3, output="latent"))


def test_motion_from_file_catalogue_and_local_folder(models, assets, tmp_path, monkeypatch):
    from diffusers import CogVideoXPipeline

    from motionlib.catalog import store_asset
    from motionlib.models import load_model
    from motionlib.store import Library

    m, asset = models["tiny-5b"], assets["tiny-5b"]
    path = asset.save(tmp_path / "squat.safetensors")
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    with Library(tmp_path / "lib") as lib:
        store_asset(lib, asset, "squat")
        pipe = make_pipe(m)
        with motionlib.attach(pipe, "squat", library=lib):
            by_name = render(pipe, m)
    pipe = make_pipe(m)
    with motionlib.attach(pipe, "squat", library=tmp_path / "lib"):
        by_folder = render(pipe, m)
    with motionlib.attach(pipe, path):
        by_file = render(pipe, m)
    from_file = type(asset).load(path)
    want = apply(m, from_file, PROMPT, seed=3, output="latent")
    assert torch.equal(by_name, want) and torch.equal(by_folder, want) and torch.equal(by_file, want)
    with pytest.raises(AttachError, match="library="):
        motionlib.attach(pipe, "squat")
    # a pipeline built from a local folder (diffusers' from_pretrained), against apply on that folder
    make_pipe(m).save_pretrained(tmp_path / "cog")
    loaded = CogVideoXPipeline.from_pretrained(tmp_path / "cog")
    loaded.set_progress_bar_config(disable=True)
    folder_model = load_model(str(tmp_path / "cog"), device="cpu")
    with motionlib.attach(loaded, asset):
        got = render(loaded, m)
    s = m.spec  # the folder's spec has CogVideoX-5B's defaults (50 steps): hold the tiny ones
    assert (folder_model.spec.use_dynamic_cfg, folder_model.spec.text_len) == (s.use_dynamic_cfg, s.text_len)
    want = apply(folder_model, asset, PROMPT, seed=3, steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                 output="latent")
    assert torch.equal(got, want)


# --- composition with diffusers' memory features and hooks ---------------------------------------------
@pytest.mark.parametrize("level", ["block_level", "leaf_level"])
def test_group_offloading(level, models, assets):
    from diffusers.hooks import apply_group_offloading

    for name in ("tiny-5b", "tiny-2b"):
        m, asset = models[name], assets[name]
        want = apply(m, asset, PROMPT, seed=3, output="latent")
        plain = generate(m, PROMPT, seed=3, output="latent")
        tr = copy.deepcopy(m.transformer)
        pipe = make_pipe(m, tr)
        cpu = torch.device("cpu")
        kw = {"num_blocks_per_group": 1} if level == "block_level" else {}
        apply_group_offloading(tr, onload_device=cpu, offload_device=cpu, offload_type=level, **kw)
        with motionlib.attach(pipe, asset):
            assert torch.equal(render(pipe, m), want), (name, level)
            assert torch.equal(render(pipe, m), want), (name, level)
        assert torch.equal(render(pipe, m), plain)


def test_model_cpu_offload_reapplied_every_call(models, assets):
    """enable_model_cpu_offload's accelerate hooks (explicit CPU device here) are removed and re-added
    after every call; attached before or after them, every call renders apply's, and removal leaves them."""
    for name in PRESETS:
        m, asset = models[name], assets[name]
        want = apply(m, asset, PROMPT, seed=3, output="latent")
        plain = generate(m, PROMPT, seed=3, output="latent")
        for attach_first in (False, True):
            tr = copy.deepcopy(m.transformer)
            pipe = make_pipe(m, tr)
            if attach_first:
                handle = motionlib.attach(pipe, asset)
            pipe.enable_model_cpu_offload(device="cpu")
            if not attach_first:
                handle = motionlib.attach(pipe, asset)
            for _ in range(2):
                assert torch.equal(render(pipe, m), want), (name, attach_first)
                assert hasattr(pipe.transformer, "_hf_hook")
            handle.remove()
            assert hasattr(pipe.transformer, "_hf_hook")  # offload's hook is still there
            assert torch.equal(render(pipe, m), plain) and torch.equal(render(pipe, m), plain)
            pipe.remove_all_hooks()


def test_removal_clobbers_no_wrapper_added_since(models, assets):
    """HookRegistry.remove_hook of a module's last hook restores the forward it saved: had attach's
    patch-embedding hook been removed that way, an accelerate hook added over it since would be dropped.
    Removal leaves it (and attach's hook passes through from then on)."""
    from accelerate.hooks import ModelHook, add_hook_to_module

    m, asset = models["tiny-2b"], assets["tiny-2b"]
    tr = copy.deepcopy(m.transformer)
    pipe = make_pipe(m, tr)
    with motionlib.attach(pipe, asset):
        add_hook_to_module(tr.patch_embed, ModelHook())
        wrapped = tr.patch_embed.forward
        assert torch.equal(render(pipe, m), apply(m, asset, PROMPT, seed=3, output="latent"))
    assert tr.patch_embed.forward is wrapped and hasattr(tr.patch_embed, "_hf_hook")
    assert torch.equal(render(pipe, m), generate(m, PROMPT, seed=3, output="latent"))
    with motionlib.attach(pipe, asset):  # and attaching again works over it
        assert torch.equal(render(pipe, m), apply(m, asset, PROMPT, seed=3, output="latent"))


SKIPPING = {"tiny-5b": 0.7, "tiny-2b": 0.4, "tiny-wan": 0.1}  # FBC thresholds that skip on these random weights


def test_first_block_cache(models, assets):
    from diffusers import FirstBlockCacheConfig

    for name in PRESETS:
        m, asset = models[name], assets[name]
        want = apply(m, asset, PROMPT, seed=3, output="latent")
        tr = copy.deepcopy(m.transformer)
        pipe = make_pipe(m, tr)
        tr.enable_cache(FirstBlockCacheConfig(threshold=0.0))  # computes every block: attach alone's result
        with motionlib.attach(pipe, asset):
            assert torch.equal(render(pipe, m), want), name
        tr.disable_cache()
        tr.enable_cache(FirstBlockCacheConfig(threshold=SKIPPING[name]))  # skips the later blocks on some steps
        alone = render(pipe, m)
        with motionlib.attach(pipe, asset, strength=0.0, inject=False):
            assert torch.equal(render(pipe, m), alone), name
        tr.disable_cache()
        assert not torch.equal(alone, generate(m, PROMPT, seed=3, output="latent"))  # the cache did skip


def test_lora_through_diffusers(models, assets, tmp_path):
    """A LoRA loaded with pipe.load_lora_weights (peft): fused, attach equals apply on those weights bit
    for bit; unfused with attention_kwargs={"scale": s}, attach honours the scale on guided steps too."""
    from diffusers import CogVideoXPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    m, asset = models["tiny-5b"], assets["tiny-5b"]
    maker = copy.deepcopy(m.transformer)
    maker.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                 target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    CogVideoXPipeline.save_lora_weights(tmp_path / "lora", transformer_lora_layers=get_peft_model_state_dict(maker))
    tr = copy.deepcopy(m.transformer)
    pipe = make_pipe(m, tr)
    pipe.load_lora_weights(tmp_path / "lora", adapter_name="style")
    lora_model = with_transformer(m, tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OtherWeights: a LoRA changes the weights' fingerprint
        with motionlib.attach(pipe, asset):
            half = render(pipe, m, attention_kwargs={"scale": 0.5})
            full = render(pipe, m)
        pipe.fuse_lora(lora_scale=0.5)
        fused_half = apply(lora_model, asset, PROMPT, seed=3, output="latent")
        with motionlib.attach(pipe, asset):
            assert torch.equal(render(pipe, m), fused_half)
        pipe.unfuse_lora()
    torch.testing.assert_close(half, fused_half, atol=1e-4, rtol=0)  # the same maths, rounded apart
    assert (full - fused_half).abs().max() > 100 * (half - fused_half).abs().max()


# --- refusals: one each -----------------------------------------------------------------------------
def test_refuses_another_pipeline_class(models, assets):
    from diffusers import WanPipeline

    with pytest.raises(AttachError, match="learnt with tiny-5b, a CogVideoXPipeline model; a WanPipeline"):
        motionlib.attach(make_pipe(models["tiny-wan"]), assets["tiny-5b"])
    wan = make_pipe(models["tiny-wan"])
    two_experts = WanPipeline(**{**wan.components, "transformer_2": copy.deepcopy(wan.transformer)}, boundary_ratio=0.9)
    with pytest.raises(AttachError, match="two-expert .* Wan 2.2 pipelines are not supported"):
        motionlib.attach(two_experts, assets["tiny-wan"])


def test_refuses_another_family(models, assets):
    with pytest.raises(AttachError, match=r"learnt with tiny-2b \(posemb ρ\).*uses rope ρ"):
        motionlib.attach(make_pipe(models["tiny-5b"]), assets["tiny-2b"])


def test_refuses_another_transformer_shape(models, assets):
    asset = assets["tiny-5b"]
    other = replace(asset, spec=replace(asset.spec, num_layers=8, heads=4))
    with pytest.raises(AttachError, match="4 heads × 16, 8 layers, patch 2.*has 2 heads × 16, 4 layers"):
        motionlib.attach(make_pipe(models["tiny-5b"]), other)


def test_refuses_another_latent_grid(models, assets):
    m = models["tiny-wan"]
    pipe = make_pipe(m)
    with motionlib.attach(pipe, assets["tiny-wan"]):
        with pytest.raises(AttachError, match=r"learnt for 9×64×96 .* renders 13×64×96: pass num_frames=9"):
            render(pipe, m, num_frames=13)


def test_refuses_another_text_length(models, assets):
    m = models["tiny-5b"]
    pipe = make_pipe(m)
    with motionlib.attach(pipe, assets["tiny-5b"]):
        with pytest.raises(AttachError, match="text length 16; this call encodes 8 tokens: pass max_sequence_length=16"):
            render(pipe, m, max_sequence_length=8)


@pytest.mark.filterwarnings("ignore::motionlib.weights.OtherWeights")  # fusing adds to_qkv weights
def test_refuses_fused_qkv(models, assets):
    for name in ("tiny-5b", "tiny-wan"):
        m = models[name]
        pipe = make_pipe(m, copy.deepcopy(m.transformer))
        pipe.transformer.fuse_qkv_projections()
        with pytest.raises(AttachError, match="fused.*unfuse_qkv_projections"):
            motionlib.attach(pipe, assets[name])
        pipe.transformer.unfuse_qkv_projections()
        diffusers_processors(pipe.transformer)
        with motionlib.attach(pipe, assets[name]):  # fused after attaching: refused at the call
            pipe.transformer.fuse_qkv_projections()
            with pytest.raises(AttachError, match="fused|replaced after attach"):
                render(pipe, m)


def test_refuses_a_second_attach(models, assets):
    from diffusers import CogVideoXPipeline

    m, asset = models["tiny-5b"], assets["tiny-5b"]
    pipe = make_pipe(m)
    with motionlib.attach(pipe, asset):
        with pytest.raises(AttachError, match="already has a motion attached.*remove it first"):
            motionlib.attach(pipe, asset)
        sharing = CogVideoXPipeline(**pipe.components)  # another pipeline on the same transformer
        with pytest.raises(AttachError, match="already carries an attached motion"):
            motionlib.attach(sharing, asset)


def test_refuses_attention_skipping_cache_with_injection(models, assets):
    from diffusers import PyramidAttentionBroadcastConfig

    m, asset = models["tiny-5b"], assets["tiny-5b"]
    tr = copy.deepcopy(m.transformer)
    pipe = make_pipe(m, tr)
    tr.enable_cache(PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2,
                                                    spatial_attention_timestep_skip_range=(0, 1000),
                                                    current_timestep_callback=lambda: pipe.current_timestep))
    with pytest.raises(AttachError, match="pyramid attention broadcast skips attention.*inject=False"):
        motionlib.attach(pipe, asset)
    with pytest.warns(Approximate, match="approximates"):
        handle = motionlib.attach(pipe, asset, inject=False)
    with handle:
        approx = render(pipe, m)
    assert approx.isfinite().all() and len(handle.used) == 3


def test_refuses_faster_cache_with_injection(models, assets):
    from diffusers import FasterCacheConfig

    m, asset = models["tiny-5b"], assets["tiny-5b"]
    pipe = make_pipe(m, copy.deepcopy(m.transformer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers: "FasterCache is a purely experimental feature"
        pipe.transformer.enable_cache(FasterCacheConfig(spatial_attention_block_skip_range=2, tensor_format="BFCHW",
                                                        current_timestep_callback=lambda: pipe.current_timestep,
                                                        attention_weight_callback=lambda _: 0.3))
    with pytest.raises(AttachError, match="FasterCache skips attention"):
        motionlib.attach(pipe, asset)
    with pytest.warns(Approximate, match="FasterCache"):
        motionlib.attach(pipe, asset, inject=False).remove()


def test_refuses_another_noise_schedule(models, assets):
    from diffusers import CogVideoXDDIMScheduler, UniPCMultistepScheduler

    m = models["tiny-5b"]
    cfg = m.scheduler.config
    for changed, match in [({"snr_shift_scale": 3.0}, "snr_shift_scale 1.0 .*3.0"),
                           ({"prediction_type": "epsilon"}, "prediction_type 'v_prediction'")]:
        pipe = make_pipe(m, scheduler=type(m.scheduler).from_config(cfg, **changed))
        with pytest.raises(AttachError, match=f"another noise schedule: {match}.*from_config"):
            motionlib.attach(pipe, assets["tiny-5b"])
    wan = models["tiny-wan"]
    pipe = make_pipe(wan, scheduler=UniPCMultistepScheduler.from_config(wan.scheduler.config, flow_shift=5.0))
    with pytest.raises(AttachError, match="flow shift 3.0 .*5.0"):
        motionlib.attach(pipe, assets["tiny-wan"])
    # another solver on the same schedule is mapped (DDIM for a motion learnt with DPM) ...
    pipe = make_pipe(m, scheduler=CogVideoXDDIMScheduler.from_config(cfg))
    with motionlib.attach(pipe, assets["tiny-5b"]) as handle:
        render(pipe, m)
    assert len(handle.used) == 3
    # ... and refused by strict=True, as is another step count
    with pytest.raises(AttachError, match="strict: .*scheduler CogVideoXDPMScheduler"):
        motionlib.attach(pipe, assets["tiny-5b"], strict=True)
    pipe = make_pipe(m)
    with motionlib.attach(pipe, assets["tiny-5b"], strict=True):
        render(pipe, m)
        with pytest.raises(AttachError, match="strict: .*6 steps; this call runs 4: pass num_inference_steps=6"):
            render(pipe, m, steps=4)
    with motionlib.attach(pipe, assets["tiny-5b"], strict=True):  # and another guidance scale
        with pytest.raises(AttachError, match=r"strict: .*guidance scale .*; this call uses 2\.5"):
            pipe(PROMPT, num_frames=m.spec.num_frames, height=m.spec.height, width=m.spec.width,
                 num_inference_steps=m.spec.num_inference_steps, guidance_scale=2.5, output_type="latent",
                 max_sequence_length=m.spec.text_len)


def test_refuses_bad_arguments_and_replaced_parts(models, assets):
    m, asset = models["tiny-5b"], assets["tiny-5b"]
    pipe = make_pipe(m)
    with pytest.raises(ParameterError, match="strength"):
        motionlib.attach(pipe, asset, strength=-1)
    with pytest.raises(AttachError, match="MotionAsset, a motion file or a catalogue name"):
        motionlib.attach(pipe, 3)
    with motionlib.attach(pipe, asset):
        diffusers_processors(m.transformer)  # someone replaced the processors
        with pytest.raises(AttachError, match="processors were replaced after attach"):
            render(pipe, m)


# --- the example -------------------------------------------------------------------------------------
def test_example_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "diffusers_attach.py"), str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "same latents as motionlib.apply: True" in out.stdout
    assert (tmp_path / "attached.mp4").stat().st_size > 0
