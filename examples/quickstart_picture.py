"""Draw docs/quickstart.png: what the README quick start does, as one picture.

    python examples/quickstart_picture.py

Through the Python API, exactly what the quick-start commands run on the default model (`shapes`):
learn examples/shapes_left.mp4, then render "a green circle on a black background" zero-shot and
as a plain generation (same seed), and also for blue and yellow. Rows: the reference clip as the
model reads it, then per prompt the zero-shot render and the plain one, with the largest-blob
direction agreement with the reference (1 = same direction) in the label.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing


def main() -> int:
    import numpy as np

    from motionlib.apply import apply
    from motionlib.demo import eval as ev
    from motionlib.demo.metrics import max_jump, step_cosines
    from motionlib.demo.pictures import picture
    from motionlib.learn import learn
    from motionlib.models import load_model
    from motionlib.sampling import generate
    from motionlib.video import read_video

    model = load_model("shapes")
    s = model.spec
    clip, _ = read_video(HERE / "shapes_left.mp4", s.num_frames, s.height, s.width)
    reference = ev.to_uint8((clip + 1) / 2)
    ref_track = ev.blob_track(reference, disc_only=False)
    asset = learn(model, clip, seed=0).asset
    rows = [("reference: shapes_left.mp4", reference)]
    for colour in ("green", "blue", "yellow"):
        prompt = f"a {colour} circle on a black background"
        for label, video in (("zero-shot", apply(model, asset, prompt, seed=0)),
                             ("plain", generate(model, prompt, seed=0))):
            v = ev.to_uint8(video)
            d = ev.blob_direction(v, ref_track)
            track = ev.blob_track(v, disc_only=False)
            steps = step_cosines(track, ref_track)  # the quick-start goal: every step >= 0.5, no jump > 0.2
            worst = f"{np.nanmin(steps):.2f}" if np.isfinite(steps).any() else "n/a"
            label_d = f"dir {d:.2f}" if np.isfinite(d) else "dir n/a"
            rows.append((f"{label} {colour}: {label_d}, worst step {worst}, "
                         f"{int(np.isnan(steps).sum())} steps unscored, jump {max_jump(track):.2f}", v))
            print(rows[-1][0])
    out = HERE.parent / "docs" / "quickstart.png"
    picture(rows).save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
