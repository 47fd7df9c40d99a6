"""Write the small example clips in examples/ (a red disc moving left/right/up/down over a texture).

Run from anywhere: ``python examples/make_examples.py``. Deterministic: the same files every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from motionlib.synthetic import moving_disc  # noqa: E402
from motionlib.video import write_video  # noqa: E402

NUM_FRAMES, HEIGHT, WIDTH, FPS, SPEED = 24, 96, 144, 8, 2.5
DIRECTIONS = {"left": (-SPEED, 0.0), "right": (SPEED, 0.0), "up": (0.0, -SPEED), "down": (0.0, SPEED)}


def shapes_examples() -> None:
    """Clips in the demo model's own domain (8 frames of 32x32, enlarged x4 with visible pixels)."""
    import numpy as np

    from motionlib.demo.eval import directional_clip, reference_clip

    clips = {"shapes_left": directional_clip("left", "red")[0], "shapes_down": directional_clip("down", "green")[0],
             "shapes_arc": reference_clip("arc", colour="yellow")[0]}
    for name, frames in clips.items():
        big = np.asarray(frames).repeat(4, axis=2).repeat(4, axis=3).transpose(0, 2, 3, 1)
        out = write_video(np.ascontiguousarray(big), HERE / f"{name}.mp4", fps=FPS)
        print(f"wrote {out.relative_to(HERE.parent)} ({out.stat().st_size // 1024 + 1} KB)")


def first_frame_example() -> None:
    """A first frame for image-to-video on shapes-i2v: a green disc right of centre, low (32x32, enlarged x4)."""
    import numpy as np
    from PIL import Image

    from motionlib.demo import data

    track = np.array([[24.0, 20.0]])  # x, y in px of the 32x32 frame: room to move left
    frame = data.render(track, data.COLORS["green"], np.zeros((data.SIZE, data.SIZE, 3), np.uint8), data.RADIUS)[0]
    big = np.asarray(frame).transpose(1, 2, 0).repeat(4, axis=0).repeat(4, axis=1)
    out = HERE / "green_disc_start.png"
    Image.fromarray(np.ascontiguousarray(big)).save(out)
    print(f"wrote {out.relative_to(HERE.parent)} ({out.stat().st_size // 1024 + 1} KB)")


def main() -> None:
    shapes_examples()
    first_frame_example()
    for name, velocity in DIRECTIONS.items():
        frames = moving_disc(
            NUM_FRAMES, HEIGHT, WIDTH, velocity=velocity, radius=12, color=(220, 40, 40), background="texture", seed=0
        )
        out = write_video(frames, HERE / f"disc_{name}.mp4", fps=FPS)
        print(f"wrote {out.relative_to(HERE.parent)} ({out.stat().st_size // 1024 + 1} KB)")


if __name__ == "__main__":
    main()
