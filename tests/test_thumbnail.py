import colorsys

import numpy as np
import pytest
import torch
from PIL import Image

from motionlib.thumbnail import (amf_animation, amf_thumbnail, flow_to_rgb, save_thumbnails,
                                 wheel_legend)


def _hsv(rgb):
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=float) / 255.0))


def _hue_gap(a, b):
    d = abs(_hsv(a)[0] - _hsv(b)[0]) * 360
    return min(d, 360 - d)


CARDINAL = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}


def test_zero_flow_is_white():
    out = flow_to_rgb(np.zeros((3, 4, 2)))
    assert out.dtype == np.uint8 and out.shape == (3, 4, 3)
    assert (out == 255).all()


def test_cardinal_directions_have_distinct_hues():
    rgb = {k: flow_to_rgb(np.array(v, float), max_magnitude=1.0) for k, v in CARDINAL.items()}
    names = list(rgb)
    for a in range(4):
        assert _hsv(rgb[names[a]])[1] > 0.9  # fully saturated at max magnitude
        for b in range(a + 1, 4):
            assert _hue_gap(rgb[names[a]], rgb[names[b]]) > 45, (names[a], names[b])
    # standard Middlebury code: rightward is red
    assert tuple(rgb["right"]) == (255, 0, 0)


def test_opposite_directions_roughly_complementary():
    r, l_ = (flow_to_rgb(np.array(CARDINAL[k], float), 1.0) for k in ("right", "left"))
    u, d = (flow_to_rgb(np.array(CARDINAL[k], float), 1.0) for k in ("up", "down"))
    assert 140 <= _hue_gap(r, l_) <= 180
    assert 130 <= _hue_gap(u, d) <= 180


def test_magnitude_scales_saturation():
    flows = np.array([[-0.25, 0], [-0.5, 0], [-1.0, 0]])
    sats = [_hsv(c)[1] for c in flow_to_rgb(flows)]  # normalised by the max (1.0)
    assert sats[0] < sats[1] < sats[2]
    assert sats[1] == pytest.approx(0.5, abs=0.05)
    assert sats[2] > 0.95
    # same direction keeps the same hue
    hues = [_hsv(c)[0] for c in flow_to_rgb(flows)]
    assert max(hues) - min(hues) < 0.03
    # explicit max magnitude: half of it is half saturated
    assert _hsv(flow_to_rgb(np.array([2.0, 0]), max_magnitude=4.0))[1] == pytest.approx(0.5, abs=0.05)


def test_wheel_legend():
    leg = wheel_legend(41)
    assert leg.shape == (41, 41, 3) and leg.dtype == np.uint8
    assert tuple(leg[20, 20]) == (255, 255, 255)
    # rim pixels show the colour of the matching direction (x right, y down)
    assert _hue_gap(leg[20, 39], flow_to_rgb(np.array([1.0, 0]), 1.0)) < 10
    assert _hue_gap(leg[20, 1], flow_to_rgb(np.array([-1.0, 0]), 1.0)) < 10
    assert _hue_gap(leg[1, 20], flow_to_rgb(np.array([0, -1.0]), 1.0)) < 10


def _left_amf(num_latent, rows, cols):
    i = torch.arange(num_latent)
    gap = (i[None, :] - i[:, None]).float()  # [F, F] = j - i
    amf = torch.zeros(num_latent, num_latent, rows * cols, 2)
    amf[..., 0] = -gap[:, :, None]
    return amf


def _frames(t=9, h=48, w=64):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_thumbnail_shows_leftward_colour_under_frame_0():
    frames = _frames()
    amf = _left_amf(5, 6, 8)
    img = amf_thumbnail(frames, amf, (6, 8))
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    w, h = img.size
    assert 5 * 64 <= w <= 5 * 64 + 200 and 2 * 48 <= h <= 2 * 48 + 100
    layout = img.info["layout"]
    left, top, right, bottom = layout["flows"][0]
    assert (right - left, bottom - top) == (64, 48)
    region = np.asarray(img)[top:bottom, left:right]
    expected = flow_to_rgb(np.array([-1.0, 0.0]))
    assert (region == expected).all()
    # top row really shows the reference frame 0
    fl, ft, fr, fb = layout["frames"][0]
    assert (np.asarray(img)[ft:fb, fl:fr] == frames[0]).all()
    # last column holds the legend (white centre), not a flow map
    ll, lt, lr, lb = layout["flows"][-1]
    assert (np.asarray(img)[(lt + lb) // 2, (ll + lr) // 2] >= 240).all()  # near-white centre
    assert not (np.asarray(img)[lt:lb, ll:lr] == expected).all()


def test_thumbnail_numpy_amf_and_column_subsampling():
    amf = _left_amf(13, 3, 4).numpy()
    img = amf_thumbnail(_frames(t=20, h=16, w=16), amf, (3, 4), max_columns=4)
    assert len(img.info["layout"]["flows"]) == 4
    assert img.size[0] < 4 * 16 + 100


def test_one_max_magnitude_for_whole_image():
    amf = _left_amf(3, 2, 2)
    amf[1, 2] *= 2  # second step moves twice as far
    img = amf_thumbnail(_frames(t=3, h=8, w=8), amf, (2, 2))
    lay = img.info["layout"]["flows"]
    a = np.asarray(img)
    c0 = a[lay[0][1] + 2, lay[0][0] + 2]
    c1 = a[lay[1][1] + 2, lay[1][0] + 2]
    assert _hsv(c0)[1] == pytest.approx(0.5, abs=0.05)
    assert _hsv(c1)[1] > 0.95


def test_animation_and_save_thumbnails(tmp_path):
    frames = _frames()
    amf = _left_amf(5, 6, 8)
    gif = tmp_path / "a.gif"
    amf_animation(frames, amf, (6, 8), gif, fps=5)
    with Image.open(gif) as im:
        assert im.n_frames == 4  # one per latent frame that has a successor
    png, gif2 = save_thumbnails(frames, amf, (6, 8), tmp_path / "t.png", tmp_path / "sub" / "t.gif")
    assert Image.open(png).size[0] > 0
    assert Image.open(gif2).n_frames == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "sub", "t.png"]  # no temp files


def test_bad_grid_raises():
    with pytest.raises(ValueError):
        amf_thumbnail(_frames(), _left_amf(3, 2, 2), (3, 3))
