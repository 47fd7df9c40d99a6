"""The "shapes" demo model's spec and weights location, without torch (``motionlib models`` and the
CLI's default model read these; ``motionlib.demo.model`` builds the model)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..models.spec import GuidanceDefaults, ModelSpec

DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "shapes.safetensors"
# shapes-i2v's trained weights, once a training run is committed (docs/shapes-model-card.md, "shapes-i2v")
DEFAULT_I2V_WEIGHTS = Path(__file__).with_name("weights") / "shapes-i2v.safetensors"

SHAPES_GUIDANCE = GuidanceDefaults(
    # Issue 10, measured with `motionlib eval --no-zt` on the committed weights (24 zero-shot renders
    # per setting: 4 families x 3 unseen prompts x 2 other seeds, every render counted): block 2 with a
    # per-frame shift and 4 generations at once 0.575 (learn seed minus other seeds -0.11), block 3 with
    # 4 generations 0.374 (+0.13); block 2 has the best appendix-D AMF agreement of the 6 blocks.
    blocks=(2,),
    samples=4, frame_shift=True,
    # Chosen with `python -m motionlib.demo.sweep` (first weights; 3 families x 2 held-out clips x 4
    # zero-shot renders; the largest-blob direction agreement, 1 = the reference's direction):
    # - parametrisation: 'table' 0.07 (lr 0.05 -> 0.02) vs 'shift' 0.32 (lr 0.3 -> 0.1);
    # - shift lr 0.05 / 0.15 / 0.3 / 0.6 (each decaying to about a third): 0.16 / 0.23 / 0.32 / 0.13;
    # - at lr 0.3: opt_steps 10 / 20 / 30: 0.32 / 0.41 / 0.34; guided fraction 0.6: 0.19 (vs 0.4);
    #   confidence mask off: 0.11 (vs 0.15).
    parametrisation="shift", shift_lr=(0.3, 0.1),  # (also the default elsewhere, from this sweep)
    lr_start=0.05, lr_end=0.02,  # for the table parametrisation: the paper's 0.002 barely moves ρ here
    opt_steps=20, guided_fraction=0.4, temperature=2.0,
    inject_blocks=(0,),
    # flat black backgrounds tie the attention; at block 3 the disc's peak probability has median
    # 0.37 and the background's 95th percentile is 0.05-0.11 (motionlib eval), so 0.15 separates them
    confidence=0.15,
    latent_lr=(0.01, 0.005),  # z_t mode: 0.05 saturates the latent of this model
)


def shapes_spec() -> ModelSpec:
    return ModelSpec(
        name="shapes", embedding="rope", source="builtin:shapes",
        num_frames=8, height=32, width=32,
        temporal_compression=1, spatial_compression=2, patch_size=2,
        text_len=12, heads=4, head_dim=32, num_layers=6,
        dtype="float32", scheduler="ddim",
        num_inference_steps=30, guidance_scale=4.0, use_dynamic_cfg=False, fps=8,
        guidance=SHAPES_GUIDANCE,
        description="demo DiT (CogVideoX architecture, 3D RoPE, ~2.5M params) trained on procedural "
                    "moving discs (red/green/blue/yellow on black or dim textured backgrounds), 8x32x32",
    )


SHAPES_SPEC = shapes_spec()


def shapes_i2v_spec() -> ModelSpec:
    """shapes made image-to-video the CogVideoX-I2V way (``motionlib.demo.shapes_i2v``): the same geometry,
    blocks and guidance defaults; the first frame's latents enter on channels."""
    return replace(SHAPES_SPEC, name="shapes-i2v", source="builtin:shapes-i2v", conditioning="i2v",
                   description="the shapes demo DiT fine-tuned image-to-video (CogVideoX-I2V: the first "
                               "frame's latents on channels), 8x32x32")


SHAPES_I2V_SPEC = shapes_i2v_spec()
