"""What byte-identical videos cost (issue 25): `write_video` encodes with one x264 thread; this times it
against x264's own thread choice at a real size, side by side, and checks that repeated writes match.

    python -m benchmarks.video_write [--frames 49 --height 480 --width 720 --pairs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

from .common import fmt_s, paired


def main(argv=None) -> int:
    import torch

    from motionlib import video

    ap = argparse.ArgumentParser(prog="python -m benchmarks.video_write", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--pairs", type=int, default=3)
    a = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    frames = torch.nn.functional.avg_pool2d(torch.rand(a.frames, 3, a.height, a.width, generator=g), 9, 1, 4)
    arr = video.to_uint8(frames)
    with tempfile.TemporaryDirectory() as d:
        one, auto = Path(d) / "one.mp4", Path(d) / "auto.mp4"
        digests = {"one": set(), "auto": set()}

        def write(path, threads, key):
            video._write_mp4(arr, path, 8.0, threads=threads)
            digests[key].add(hashlib.sha256(path.read_bytes()).hexdigest())

        p = paired(lambda: write(one, 1, "one"), lambda: write(auto, None, "auto"), n=a.pairs, warmup=1)
        sizes = one.stat().st_size, auto.stat().st_size
    print(f"{a.frames}x{a.height}x{a.width}: one x264 thread / x264's own choice = {p.text(2)}; "
          f"{fmt_s(p.a_s)} vs {fmt_s(p.b_s)}; files {sizes[0] / 1e6:.2f} MB vs {sizes[1] / 1e6:.2f} MB; "
          f"distinct files over {a.pairs + 1} writes: {len(digests['one'])} (one thread), "
          f"{len(digests['auto'])} (x264's choice)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
