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


def main() -> None:
    for name, velocity in DIRECTIONS.items():
        frames = moving_disc(
            NUM_FRAMES, HEIGHT, WIDTH, velocity=velocity, radius=12, color=(220, 40, 40), background="texture", seed=0
        )
        out = write_video(frames, HERE / f"disc_{name}.mp4", fps=FPS)
        print(f"wrote {out.relative_to(HERE.parent)} ({out.stat().st_size // 1024 + 1} KB)")


if __name__ == "__main__":
    main()
