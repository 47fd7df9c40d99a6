"""Use a stored motion inside your own diffusers pipeline (docs/diffusers.md); runs offline in seconds.

    python examples/diffusers_attach.py [OUT_FOLDER]   (default: a new temporary folder)

It learns a motion on the tiny CogVideoX-5B-architecture preset (random weights: the frames are noise,
the point is the plumbing), builds a plain diffusers ``CogVideoXPipeline`` from that model's components,
renders with ``motionlib.attach``, and checks the latents are exactly ``motionlib.apply``'s.

With the real model, the same lines read:

    pipe = CogVideoXPipeline.from_pretrained("THUDM/CogVideoX-5b", torch_dtype=torch.bfloat16).to("cuda")
    with motionlib.attach(pipe, "squat", library=Library()) as handle:   # or a .safetensors file
        video = pipe(prompt="a robot squatting", generator=torch.Generator().manual_seed(0)).frames[0]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import CogVideoXPipeline  # noqa: E402

import motionlib  # noqa: E402
from motionlib.apply import apply  # noqa: E402
from motionlib.asset import MotionAsset  # noqa: E402
from motionlib.learn import learn  # noqa: E402
from motionlib.models import load_model  # noqa: E402
from motionlib.video import read_video, write_video  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    model = load_model("tiny-5b", device="cpu")  # with real weights: load_model("cogvideox-5b")
    s = model.spec
    clip, _ = read_video(HERE / "disc_left.mp4", s.num_frames, s.height, s.width)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="motionlib-attach-"))
    out.mkdir(parents=True, exist_ok=True)
    motion_file = learn(model, clip, seed=0, opt_steps=2).asset.save(out / "left.safetensors")

    # your own pipeline: here built from the tiny model's parts (a real one: from_pretrained, see above)
    pipe = CogVideoXPipeline(tokenizer=model.tokenizer, text_encoder=model.text_encoder, vae=model.vae,
                             transformer=model.transformer, scheduler=model.new_scheduler())
    pipe.set_progress_bar_config(disable=True)
    # the motion's geometry and text length; the model's sampling settings (a real pipeline's defaults
    # are CogVideoX-5B's: 49 frames of 480x720 and 226 text tokens)
    call = dict(num_frames=s.num_frames, height=s.height, width=s.width, max_sequence_length=s.text_len,
                num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                use_dynamic_cfg=s.use_dynamic_cfg)

    with motionlib.attach(pipe, motion_file, strength=1.0, inject=True) as handle:
        video = pipe(prompt="a red ball", generator=torch.Generator().manual_seed(0), output_type="pt",
                     **call).frames[0]
        latents = pipe(prompt="a red ball", generator=torch.Generator().manual_seed(0), output_type="latent",
                       **call).frames
    print("guided steps (pipeline timestep -> stored timestep):", handle.used)
    print("attached:", handle.attached)  # removed on leaving the with block

    same = torch.equal(latents, apply(model, MotionAsset.load(motion_file), "a red ball", seed=0, output="latent"))
    print("same latents as motionlib.apply:", same)
    print("wrote", write_video(video, out / "attached.mp4", fps=s.fps))


if __name__ == "__main__":
    main()
