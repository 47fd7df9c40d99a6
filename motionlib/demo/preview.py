"""Render a few generations of the shapes model to a PNG contact sheet (one row per prompt).

    python -m motionlib.demo.preview --weights DIR/shapes.safetensors --out preview.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..video import to_uint8

DEFAULT_PROMPTS = tuple(f"a {c} circle on a black background" for c in ("red", "green", "blue", "yellow")) + (
    "a red circle on a textured background",)
PREVIEW_CLIP_SEED = 434_343  # first frames of image-to-video previews (not a training or eval seed)


def first_frames(prompts=DEFAULT_PROMPTS) -> list:
    """A first frame (PIL) per DEFAULT_PROMPTS-style prompt, of its colour and background, for an
    image-to-video model's previews: the first frames of seeded procedural clips."""
    from motionlib.image import first_frame

    from . import data

    out = []
    for i, p in enumerate(prompts):
        colour = next((c for c in data.COLORS if c in p), "red")
        background = "textured" if "textured" in p else "black"
        frames = data.make_clip(PREVIEW_CLIP_SEED + i, color=colour, background=background)[0]
        out.append(first_frame(data.to_model_range(frames)))
    return out


def contact_sheet(videos: list[torch.Tensor], scale: int = 3, gap: int = 2):
    """videos: [F, 3, H, W] in [0, 1] -> PIL image, one row per video, frames left to right."""
    from PIL import Image

    f, _, h, w = videos[0].shape
    sheet = np.full((len(videos) * (h * scale + gap) + gap, f * (w * scale + gap) + gap, 3), 128, np.uint8)
    for r, v in enumerate(videos):
        arr = to_uint8(v)  # [F, H, W, 3]
        arr = arr.repeat(scale, 1).repeat(scale, 2)
        for k in range(f):
            y, x = gap + r * (h * scale + gap), gap + k * (w * scale + gap)
            sheet[y:y + h * scale, x:x + w * scale] = arr[k]
    return Image.fromarray(sheet)


def render(model, prompts=DEFAULT_PROMPTS, seed: int = 0, steps: int | None = None,
           guidance_scale: float | None = None) -> list[torch.Tensor]:
    """One generation per prompt; an image-to-video model starts each from ``first_frames(prompts)``."""
    from motionlib.sampling import generate

    images = first_frames(prompts) if model.spec.conditioning == "i2v" else [None] * len(prompts)
    return [generate(model, p, seed=seed + i, steps=steps, guidance_scale=guidance_scale, image=im)
            for i, (p, im) in enumerate(zip(prompts, images))]


def save_preview(model, path: str | Path, **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        contact_sheet(render(model, **kwargs)).save(path)
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="shapes.safetensors (default: the bundled weights)")
    ap.add_argument("--out", default="shapes_preview.png")
    ap.add_argument("--prompt", action="append", help="repeatable; default: the four colours + textured")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance-scale", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    from .model import shapes_model

    model = shapes_model(a.weights)
    out = save_preview(model, a.out, prompts=tuple(a.prompt or DEFAULT_PROMPTS), seed=a.seed, steps=a.steps,
                       guidance_scale=a.guidance_scale)
    print(out)


if __name__ == "__main__":
    main()
