"""Typer options shared by several commands, and the longer help texts of learn's options.

OFFLOAD and VAE_TILING: every command that loads a model (learn, apply, transfer, generate, search);
CHECKPOINTING: learn and transfer; the *_HELP texts: learn's faster-learning options (eval's guidance
overrides of the same names say "see learn --help") and RETARGET_HELP (apply's --frames/--height/--width). Imports only typer.
"""

from __future__ import annotations

import typer

OFFLOAD = typer.Option(  # learn, apply, transfer, generate, search
    "auto", "--offload", envvar="MOTIONLIB_OFFLOAD",
    help="Where the model's parts wait between uses: 'none' (all on the GPU: fastest; the text encoder is "
         "freed after encoding when that makes it fit), 'model' (one part at a time on the GPU), 'sequential' "
         "(the transformer's blocks stream to the GPU: least memory, slowest), 'auto' (the fastest that fits "
         "the free memory).")
VAE_TILING = typer.Option(
    "auto", "--vae-tiling", envvar="MOTIONLIB_VAE_TILING",
    help="VAE tiling and slicing: 'on' (less memory), 'off', 'auto' (off when it fits).")
CHECKPOINTING = typer.Option(  # learn and transfer
    "auto", "--checkpointing",
    help="Activation checkpointing of the optimisation passes: 'on' (least memory), 'off' (about 20% "
         "faster learn on CogVideoX-5B), 'auto' (off when the activations fit in free memory).")


IMAGE_HELP = ("First frame of an image-to-video model (PNG, JPEG, WebP or BMP): resized to the model's size as its "
              "diffusers pipeline does (the command says when it does).")

GRADIENT_HELP = ("How ρ gets its gradient: 'full' (default: through every block up to the guidance block, as in the "
                 "paper) or 'local' (the blocks before it run without gradients, so ρ is steered only through the "
                 "guidance block's own RoPE: much cheaper passes, but on the shapes demo zero-shot direction "
                 "agreement fell from 0.60 to 0.35, 64 renders; RoPE models only). See docs/learning-options.md.")
AMF_WINDOW_HELP = ("Match only frame pairs at most this many latent frames apart (FastVMT's windowed AMF): less AMF "
                   "work, but motion between distant frames is no longer supervised. Default: all pairs.")
OPT_STEPS_END_HELP = ("Adam steps at the last guided step, linear from --opt-steps at the first (e.g. --opt-steps 8 "
                      "--opt-steps-end 2: more early, when ρ moves most; fewer late). Default: --opt-steps throughout.")
REUSE_HELP = ("With --gradient local: run the blocks before the guidance block once per guided step (under that "
              "step's starting ρ) instead of once per Adam step, so an Adam step costs the guidance block alone "
              "(shapes: 0.36 zero-shot agreement vs 0.60, about local's). See docs/learning-options.md.")
RETARGET_HELP = ("Render at this {what} instead of the motion's own (pixels; frames for --frames): the stored motion is "
                 "retargeted, its position shifts resampled and rescaled to the new token grid (shift and "
                 "shared-shift motions only; a 'table' motion is refused). Not exact: on shapes (learnt at 8x32x32) "
                 "the direction held at 48x48 (8/8 renders) but the disc went missing in some frame in 5 of 8; at "
                 "12 frames only the net drift held. See docs/retarget.md. Default: the motion's.")
OPT_TOL_HELP = ("End a guided step's Adam loop once one step lowers the AMF loss by less than this fraction "
                "(e.g. 0.05): saves passes where the loss has plateaued (shapes: 0.37 zero-shot agreement vs 0.60). "
                "Default 0: always run every step.")

