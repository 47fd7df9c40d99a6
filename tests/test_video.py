"""Fast, offline tests for motionlib.video (reading/writing clips) and motionlib.synthetic."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from motionlib import video
from motionlib.synthetic import moving_disc
from motionlib.video import VideoError, VideoInfo, probe, read_video, to_uint8, write_video

try:
    import decord  # noqa: F401

    HAVE_DECORD = True
except Exception:
    HAVE_DECORD = False

DIRECTIONS = {"right": (3.0, 0.0), "left": (-3.0, 0.0), "down": (0.0, 3.0), "up": (0.0, -3.0)}


def _red_centroids(frames_uint8: np.ndarray) -> np.ndarray:
    """(x, y) centroid of the red disc in each frame of a uint8 [F, H, W, 3] clip."""
    r, g, b = (frames_uint8[..., c].astype(int) for c in range(3))
    mask = (r > 160) & (g < 110) & (b < 110)
    out = []
    for m in mask:
        ys, xs = np.nonzero(m)
        assert len(xs) > 20, "disc not found in a frame"
        out.append((xs.mean(), ys.mean()))
    return np.array(out)


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    """read_video output ([-1, 1], [F,3,H,W]) -> uint8 [F,H,W,3]."""
    return to_uint8((x + 1) / 2)


def _ramp(n: int, height: int = 32, width: int = 64) -> np.ndarray:
    """A grey clip whose frame k has brightness 8*k, so a frame's index can be read off its mean."""
    return np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 8, height * width * 3).reshape(n, height, width, 3)


@pytest.fixture
def no_decord(monkeypatch):
    """Make `import decord` fail, forcing the PyAV fallback."""
    monkeypatch.setitem(sys.modules, "decord", None)


@pytest.fixture
def pyav_calls(monkeypatch):
    """Record calls to the PyAV reader (to know which backend decoded a clip)."""
    calls = []
    real = video._read_frames_pyav

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(video, "_read_frames_pyav", spy)
    return calls


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_mp4_roundtrip_keeps_frames_and_motion(tmp_path, direction):
    frames = moving_disc(16, 64, 96, velocity=DIRECTIONS[direction], background="texture", seed=1)
    out = write_video(frames, tmp_path / "new" / "sub" / "clip.mp4", fps=8)  # parent folders are created
    assert out == tmp_path / "new" / "sub" / "clip.mp4" and out.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.mp4"]  # no temp file left behind

    info = probe(out)
    assert info == VideoInfo(path=str(out), fps=8.0, frame_count=16, width=96, height=64)
    assert info.duration == pytest.approx(2.0)

    x, rinfo = read_video(out, 16, 64, 96, sampling="start")
    assert rinfo == info
    assert x.shape == (16, 3, 64, 96) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.4 and x.max() > 0.6
    back = _as_uint8(x)
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 4  # crf 18: close to lossless

    c = _red_centroids(back)
    dx, dy = DIRECTIONS[direction]
    assert np.polyfit(np.arange(16), c[:, 0], 1)[0] == pytest.approx(dx, abs=0.3)
    assert np.polyfit(np.arange(16), c[:, 1], 1)[0] == pytest.approx(dy, abs=0.3)


@pytest.mark.slow
def test_same_frames_write_the_same_bytes(tmp_path):
    """Issue 25: equal frames give equal files, 10 writes (one after another and from threads at once)
    while another process loads the CPU, at a size where x264 would pick several frame threads (their
    scheduling made bytes differ)."""
    import subprocess

    load = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 60: pass"])
    try:
        _write_ten_times(tmp_path)
    finally:
        load.kill()
        load.wait()
    gifs = set()
    for i in range(3):
        p = write_video(torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)), tmp_path / f"g{i}.gif")
        gifs.add(p.read_bytes())
    assert len(gifs) == 1


def _write_ten_times(tmp_path):
    import hashlib
    import re
    import threading

    g = torch.Generator().manual_seed(0)
    frames = torch.nn.functional.avg_pool2d(torch.rand(9, 3, 240, 320, generator=g), 5, 1, 2)
    digests: list[str] = []

    def write(i):
        p = write_video(frames, tmp_path / f"v{i}.mp4")
        digests.append(hashlib.sha256(p.read_bytes()).hexdigest())

    for i in range(5):
        write(i)
    threads = [threading.Thread(target=write, args=(10 + i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(digests) == 10 and len(set(digests)) == 1
    settings = re.findall(rb" threads=(\d+)", (tmp_path / "v0.mp4").read_bytes())  # x264's own record
    assert settings[:1] == [b"1"], settings


def test_gif_roundtrip(tmp_path):
    frames = moving_disc(10, 48, 64, velocity=(0, 2), background=(20, 20, 20))
    out = write_video(frames, tmp_path / "clip.gif", fps=8)
    assert out.read_bytes()[:6] == b"GIF89a"
    info = probe(out)
    assert (info.frame_count, info.width, info.height) == (10, 64, 48)
    assert info.fps == pytest.approx(8, abs=0.5)  # GIF delays are in 1/100 s: 8 fps is stored as 120 ms

    x, _ = read_video(out, 10, 48, 64, sampling="start")
    assert x.shape == (10, 3, 48, 64) and x.min() >= -1 and x.max() <= 1
    back = _as_uint8(x)
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 3
    c = _red_centroids(back)
    assert np.all(np.diff(c[:, 1]) == pytest.approx(2, abs=0.3))  # moves down 2 px/frame
    assert np.ptp(c[:, 0]) < 0.5


def test_write_float_tensor_with_odd_size_pads_to_even(tmp_path):
    frames = moving_disc(6, 33, 47, velocity=(1, 0), radius=6)
    t = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255  # [F, 3, H, W] in [0, 1]
    out = write_video(t, tmp_path / "odd.mp4", fps=12.5)
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (48, 34, 6)  # yuv420p needs even sizes
    assert info.fps == pytest.approx(12.5)
    x, _ = read_video(out, 6, 34, 48, sampling="start")
    back = _as_uint8(x)[:, :33, :47]
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 4


def test_write_replaces_existing_file_atomically(tmp_path, monkeypatch):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old contents")

    def crash(frames, path, fps):
        path.write_bytes(b"half a video")
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(video, "_write_mp4", crash)
    with pytest.raises(VideoError, match="cannot write .*clip.mp4: encoder exploded"):
        write_video(np.zeros((2, 8, 8, 3), np.uint8), target)
    assert target.read_bytes() == b"old contents"  # untouched by the failed write
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # temp file cleaned up

    monkeypatch.undo()
    write_video(np.zeros((2, 8, 8, 3), np.uint8), target)
    assert probe(target).frame_count == 2


# ---------------------------------------------------------------- sampling, resize


@pytest.mark.parametrize("backend", ["default", "pyav"])
def test_spread_and_start_sampling_pick_the_right_frames(tmp_path, backend, request):
    if backend == "pyav":
        request.getfixturevalue("no_decord")
    path = write_video(_ramp(30), tmp_path / "ramp.mp4")

    def indices(x):
        return (_as_uint8(x).reshape(len(x), -1).mean(axis=1) / 8).round().astype(int).tolist()

    x, info = read_video(path, 5, 32, 64, sampling="spread")
    assert info.frame_count == 30
    assert indices(x) == [0, 7, 14, 22, 29] == np.linspace(0, 29, 5).round().astype(int).tolist()
    x, _ = read_video(path, 5, 32, 64, sampling="start")
    assert indices(x) == [0, 1, 2, 3, 4]
    x, _ = read_video(path, 30, 32, 64)  # exactly as many frames as the clip has: all of them
    assert indices(x) == list(range(30))
    x, _ = read_video(path, 1, 32, 64)
    assert indices(x) == [0]


def test_resize_keeps_aspect_and_center_crops(tmp_path):
    # 64x128 (h x w): a disc in the middle, blue bands at the far left and right.
    frames = moving_disc(3, 64, 128, velocity=(0, 0), radius=16, start=(63.5, 31.5), background=(0, 0, 0))
    frames[:, :, :16] = (0, 0, 255)
    frames[:, :, -16:] = (0, 0, 255)
    path = write_video(frames, tmp_path / "wide.mp4")

    x, info = read_video(path, 3, 48, 48)  # scale 0.75 -> 48x96, keep the middle 48 columns
    assert (info.width, info.height) == (128, 64)
    assert x.shape == (3, 3, 48, 48)
    img = _as_uint8(x)[1].astype(int)
    assert (img[..., 2] > 128).sum() == 0  # the blue side bands were cropped away
    ys, xs = np.nonzero((img[..., 0] > 160) & (img[..., 1] < 110))
    assert xs.mean() == pytest.approx(23.5, abs=0.7) and ys.mean() == pytest.approx(23.5, abs=0.7)
    width, height = np.ptp(xs) + 1, np.ptp(ys) + 1
    assert width == pytest.approx(24, abs=2) and height == pytest.approx(24, abs=2)  # still round, not squashed

    x, _ = read_video(path, 1, 64, 32)  # tall target from a wide clip: cover height, crop the middle quarter
    img = _as_uint8(x)[0].astype(int)
    assert img.shape == (64, 32, 3)
    assert (img[..., 2] > 128).sum() == 0  # no blue: only the middle 32 of 128 columns survive
    assert (img[31:33, 1:-1, 0] > 160).all()  # the disc (32 px wide) fills the crop's width at its centre row
    assert img[:12].max() < 40 and img[-12:].max() < 40  # rows above/below the disc are kept (no vertical crop)


# ---------------------------------------------------------------- backends


@pytest.mark.skipif(not HAVE_DECORD, reason="decord not installed")
def test_decord_is_used_when_available(tmp_path, pyav_calls):
    path = write_video(_ramp(12), tmp_path / "ramp.mp4")
    read_video(path, 4, 32, 64)
    assert pyav_calls == []


def test_pyav_fallback_when_decord_missing(tmp_path, no_decord, pyav_calls):
    frames = moving_disc(12, 64, 96, velocity=(-2, 1), background="texture")
    path = write_video(frames, tmp_path / "clip.mp4")
    x, info = read_video(path, 6, 64, 96)
    assert len(pyav_calls) == 1
    assert info.frame_count == 12 and x.shape == (6, 3, 64, 96)
    idx = np.linspace(0, 11, 6).round().astype(int)
    assert np.abs(_as_uint8(x).astype(int) - frames[idx].astype(int)).mean() < 4


@pytest.mark.skipif(not HAVE_DECORD, reason="decord not installed")
def test_pyav_fallback_on_malformed_decord_output(tmp_path, pyav_calls):
    # decord quirk: for some small frame sizes (e.g. 32x48) it returns 4-channel frames / fails a size check.
    frames = moving_disc(5, 32, 48, velocity=(1, 0), radius=5)
    path = write_video(frames, tmp_path / "small.mp4")
    x, _ = read_video(path, 5, 32, 48)
    assert len(pyav_calls) == 1
    assert x.shape == (5, 3, 32, 48)
    assert np.abs(_as_uint8(x).astype(int) - frames.astype(int)).mean() < 4


@pytest.mark.parametrize("backend", ["default", "pyav"])
def test_container_without_frame_count(tmp_path, backend, request):
    # Matroska stores no frame count: probe counts packets instead.
    import av

    if backend == "pyav":
        request.getfixturevalue("no_decord")
    path = tmp_path / "ramp.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        for f in _ramp(11):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    info = probe(path)
    assert (info.frame_count, info.fps) == (11, 10.0)
    x, _ = read_video(path, 3, 32, 64)
    assert (_as_uint8(x).reshape(3, -1).mean(axis=1) / 8).round().tolist() == [0, 5, 10]


# ---------------------------------------------------------------- errors


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(VideoError) as exc:
        fn(*args, **kwargs)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("fn", [probe, lambda p: read_video(p, 4, 32, 32)])
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, fn):
    missing = tmp_path / "missing.mp4"
    assert _error(fn, missing) == f"no such file: {missing}"

    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    assert _error(fn, folder) == f"{folder} is a directory, not a video file"

    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert _error(fn, empty) == f"{empty} is empty (0 bytes)"

    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    msg = _error(fn, text)
    assert msg.startswith(f"{text} is not a video file")

    png = tmp_path / "picture.mp4"
    from PIL import Image

    Image.new("RGB", (32, 32), (255, 0, 0)).save(png, format="PNG")
    assert _error(fn, png) == f"{png} is a still image (png), not a video"

    srt = tmp_path / "subs.mp4"
    srt.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    assert _error(fn, srt).startswith(f"{srt} is not a video (it has no video stream")


@pytest.mark.parametrize("backend", ["default", "pyav"])
def test_too_few_frames(tmp_path, backend, request):
    if backend == "pyav":
        request.getfixturevalue("no_decord")
    path = write_video(_ramp(5), tmp_path / "clip.mp4")
    for sampling in ("spread", "start"):
        msg = _error(read_video, path, 9, 32, 64, sampling=sampling)
        assert msg == f"{path} has 5 frames; the model needs at least 9"
    assert read_video(path, 5, 32, 64)[0].shape[0] == 5


def test_bad_arguments(tmp_path):
    path = write_video(_ramp(3), tmp_path / "clip.mp4")
    assert "num_frames must be a positive integer, got 0" in _error(read_video, path, 0, 32, 32)
    assert "height must be a positive integer" in _error(read_video, path, 2, -1, 32)
    assert "width must be a positive integer, got 2.5" in _error(read_video, path, 2, 32, 2.5)
    assert "sampling must be one of spread, start, got 'middle'" in _error(read_video, path, 2, 32, 32, sampling="middle")

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    avi = tmp_path / "out.avi"
    assert _error(write_video, frames, avi) == f"cannot write {avi}: unsupported suffix '.avi' (use .mp4 or .gif)"
    assert not avi.exists()
    assert "fps must be a positive number, got 0" in _error(write_video, frames, tmp_path / "a.mp4", fps=0)
    assert "expected an array of shape [F, H, W, 3]" in _error(write_video, frames[0], tmp_path / "a.mp4")
    assert "no frames" in _error(write_video, frames[:0], tmp_path / "a.gif")
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "a.gif").exists()


# ---------------------------------------------------------------- helpers


def test_to_uint8_conversions():
    t = torch.tensor([0.0, 0.5, 1.0, 1.7, -0.3]).repeat(1, 3, 1, 1)  # [1, 3, 1, 5]
    a = to_uint8(t)
    assert a.shape == (1, 1, 5, 3) and a.dtype == np.uint8
    assert a[0, 0, :, 0].tolist() == [0, 128, 255, 255, 0]
    u = np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3)
    assert to_uint8(u) is not None and np.array_equal(to_uint8(u), u)
    assert np.array_equal(to_uint8(torch.from_numpy(u).permute(0, 3, 1, 2)), u)
    with pytest.raises(VideoError, match=r"\[F, 3, H, W\]"):
        to_uint8(torch.zeros(2, 8, 8, 3))


def test_moving_disc_is_deterministic_and_follows_xy_convention():
    a = moving_disc(5, 40, 60, velocity=(2, -1), background="texture", seed=3)
    assert a.shape == (5, 40, 60, 3) and a.dtype == np.uint8
    assert np.array_equal(a, moving_disc(5, 40, 60, velocity=(2, -1), background="texture", seed=3))
    assert not np.array_equal(a, moving_disc(5, 40, 60, velocity=(2, -1), background="texture", seed=4))
    c = _red_centroids(a)
    assert np.diff(c, axis=0) == pytest.approx(np.tile([2.0, -1.0], (4, 1)), abs=0.05)  # x right, y down
    assert c[2] == pytest.approx([29.5, 19.5], abs=0.05)  # default path is centred in the frame
    # the texture is static: a corner far from the disc is identical in every frame
    assert all(np.array_equal(a[0, :5, :5], f[:5, :5]) for f in a)
    assert a[0, :, :15].std() > 5  # not a flat colour
    b = moving_disc(2, 20, 20, velocity=(0, 0), start=(5, 5), radius=3, background=(1, 2, 3))
    assert b[0, 5, 5].tolist() == [230, 40, 40] and b[0, 15, 15].tolist() == [1, 2, 3]
