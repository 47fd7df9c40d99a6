"""The "shapes-i2v" demo model: shapes made image-to-video the CogVideoX-I2V way.

CogVideoX-5B-I2V is CogVideoX-5B whose patch embedding takes twice the latent channels: the noisy
latents, then the first frame's VAE latents followed by zero latent frames (``image_condition`` of the
CogVideoX adapter). shapes-i2v does the same over shapes' lossless pixel-unshuffle codec: 12 + 12 = 24
input channels, 12 out. ``widen`` builds it from a shapes transformer with the new input channels of the
patch embedding initialised to **zero**, so before fine-tuning it computes exactly what shapes computes,
whatever the image. ``python -m motionlib.demo.train --i2v --init shapes.safetensors`` fine-tunes it.

Weights: a ``shapes-i2v.safetensors`` (metadata ``model: shapes-i2v`` and the spec with
``conditioning: i2v``), or a shapes ``shapes.safetensors`` (text-to-video), which is widened on load.
No trained shapes-i2v weights are bundled unless ``DEFAULT_I2V_WEIGHTS`` exists: ``load_model("shapes-i2v")``
then raises ``WeightsMissing`` naming the command that trains them (it does not fall back to the
widened shapes weights, which would render as shapes and ignore the image).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import WeightsMissing
from .spec import DEFAULT_I2V_WEIGHTS, SHAPES_I2V_SPEC, SHAPES_SPEC

PATCH_KEY = "patch_embed.proj.weight"  # the patch embedding's conv: [hidden, in_channels, p, p]
TRAIN_HINT = ("python -m motionlib.demo.train --i2v --init motionlib/demo/weights/shapes.safetensors "
              "--out RUN, then --weights RUN")


def widen(t2v_transformer):
    """A shapes-i2v transformer equal to `t2v_transformer` (a shapes one) with zero weights on the image
    channels of its patch embedding: its output does not depend on the image until it is trained."""
    from .model import build_transformer

    state = dict(t2v_transformer.state_dict())
    w = state[PATCH_KEY]
    state[PATCH_KEY] = torch.cat([w, torch.zeros_like(w)], dim=1)
    i2v = build_transformer(SHAPES_I2V_SPEC).to(w.device)
    i2v.load_state_dict(state, strict=True)
    return i2v


def weights_conditioning(path: str | Path) -> str:
    """"i2v" for shapes-i2v weights, "t2v" for shapes ones (read from the file's metadata spec)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    spec = json.loads(meta.get("spec") or "{}")
    return spec.get("conditioning", "t2v")


def load_i2v_weights(text_encoder, transformer, path: str | Path):
    """Load shapes-i2v weights, or shapes weights widened (zero image channels), into a shapes-i2v text
    encoder and transformer; returns the transformer to use (the same one, or a widened copy)."""
    from .model import build_transformer, load_weights

    if weights_conditioning(path) == "i2v":
        load_weights(text_encoder, transformer, path)
        return transformer
    t2v = build_transformer(SHAPES_SPEC)
    load_weights(text_encoder, t2v, path)
    return widen(t2v)


def build_shapes_i2v(weights: str | Path | None = None, seed: int = 0, *, pretrained: bool = True):
    """(tokenizer, text_encoder, codec, transformer, scheduler) of shapes-i2v.

    `weights`: shapes-i2v weights, or shapes weights (widened). None: ``DEFAULT_I2V_WEIGHTS``, which must
    exist (``WeightsMissing`` otherwise). `pretrained=False`: seeded random shapes weights, widened."""
    from .model import build_shapes

    tok, enc, codec, t2v, sched = build_shapes(seed=seed, pretrained=False)
    transformer = widen(t2v)
    if pretrained:
        path = Path(weights) if weights is not None else DEFAULT_I2V_WEIGHTS
        if not path.is_file():
            if weights is not None:
                raise WeightsMissing(f"shapes-i2v weights not found: {weights}")
            raise WeightsMissing(f"no trained shapes-i2v weights are installed ({DEFAULT_I2V_WEIGHTS}); train "
                                 f"them with: {TRAIN_HINT} (motionlib eval --model shapes-i2v --weights RUN)")
        transformer = load_i2v_weights(enc, transformer, path)
    for m in (enc, transformer, codec):
        m.eval()
    return tok, enc, codec, transformer, sched


def shapes_i2v_model(weights: str | Path | None = None, device: str | torch.device = "cpu", seed: int = 0,
                     pretrained: bool = True):
    """A ready ``motionlib.models.Model`` (fp32) of shapes-i2v, without the registry."""
    from .model import ready_model

    return ready_model(SHAPES_I2V_SPEC, build_shapes_i2v(weights, seed, pretrained=pretrained), device)
