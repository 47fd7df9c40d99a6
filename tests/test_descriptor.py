import subprocess
import sys

import numpy as np
import pytest
import torch

from motionlib.descriptor import (
    DESCRIPTOR_DIM, DESCRIPTOR_VERSION, NoMotionError, described_motion, motion_descriptor, motion_strength,
)


def _amf(num_latent, rows, cols, velocity):
    """Hard AMF where patch (r, c) moves velocity(r, c, rows, cols) patches per latent step."""
    v = torch.zeros(rows, cols, 2)
    for r in range(rows):
        for c in range(cols):
            v[r, c] = torch.tensor(velocity(r, c, rows, cols), dtype=torch.float32)
    i = torch.arange(num_latent)
    gap = (i[None, :] - i[:, None]).float()
    return gap[:, :, None, None] * v.reshape(1, 1, rows * cols, 2)


LEFT = lambda r, c, R, C: (-1, 0)  # noqa: E731
RIGHT = lambda r, c, R, C: (1, 0)  # noqa: E731
UP = lambda r, c, R, C: (0, -1)  # noqa: E731
LEFT_HALF_LEFT = lambda r, c, R, C: (-1, 0) if c < C / 2 else (0, 0)  # noqa: E731
RIGHT_HALF_LEFT = lambda r, c, R, C: (-1, 0) if c >= C / 2 else (0, 0)  # noqa: E731


def cos(a, b):
    return float(np.dot(a, b))  # unit vectors


def test_shape_dtype_norm():
    d = motion_descriptor(_amf(5, 6, 9, LEFT), (6, 9))
    assert d.shape == (DESCRIPTOR_DIM,) and d.dtype == np.float32
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(d).all()


def test_same_motion_different_grid_and_frames():
    for vel in (LEFT, UP, LEFT_HALF_LEFT):
        a = motion_descriptor(_amf(3, 8, 12, vel), (8, 12))
        b = motion_descriptor(_amf(5, 6, 9, vel), (6, 9))
        assert cos(a, b) > 0.9, vel


def test_numpy_input_matches_torch():
    amf = _amf(4, 3, 5, LEFT_HALF_LEFT)
    np.testing.assert_allclose(motion_descriptor(amf, (3, 5)), motion_descriptor(amf.numpy(), (3, 5)))


def test_opposite_and_perpendicular():
    left = motion_descriptor(_amf(5, 6, 9, LEFT), (6, 9))
    right = motion_descriptor(_amf(3, 8, 12, RIGHT), (8, 12))
    up = motion_descriptor(_amf(5, 6, 9, UP), (6, 9))
    assert cos(left, right) < 0
    assert cos(left, right) < -0.9
    assert cos(left, up) < 0.1


def test_spatial_layout_matters_less_than_direction():
    """Where the motion is counts a little (the local part); which way it goes counts most."""
    a = motion_descriptor(_amf(5, 8, 12, LEFT_HALF_LEFT), (8, 12))
    b = motion_descriptor(_amf(5, 6, 9, LEFT_HALF_LEFT), (6, 9))
    c = motion_descriptor(_amf(5, 8, 12, RIGHT_HALF_LEFT), (8, 12))
    opposite = motion_descriptor(_amf(5, 8, 12, lambda r, c, R, C: (1, 0) if c < C / 2 else (0, 0)), (8, 12))
    assert cos(a, b) > 0.99 > cos(a, c) + 0.03
    assert cos(a, c) > 0.8 and cos(a, opposite) < -0.8


def test_zero_motion_and_single_frame():
    z = motion_descriptor(torch.zeros(4, 4, 12, 2), (3, 4))
    assert z.shape == (DESCRIPTOR_DIM,) and not np.isnan(z).any() and (z == 0).all()
    one = motion_descriptor(torch.zeros(1, 1, 12, 2), (3, 4))
    assert (one == 0).all()


def test_bad_grid_raises():
    with pytest.raises(ValueError):
        motion_descriptor(torch.zeros(3, 3, 12, 2), (3, 5))


def _amf_path(num_latent, rows, cols, velocity, path):
    """Like _amf but patch positions follow path(t) * velocity (path(t) in latent steps)."""
    base = _amf(2, rows, cols, velocity)[0, 1]  # [S, 2] displacement of one step
    x = torch.tensor([float(path(t, num_latent)) for t in range(num_latent)])
    return (x[None, :] - x[:, None])[:, :, None, None] * base


def test_resolution_normalised_to_frame_fraction():
    # 2 patches right + 1 down on a 8x16 grid is the same on-screen motion as 1 + 1 on 8x8
    a = motion_descriptor(_amf(5, 8, 16, lambda r, c, R, C: (2, 1)), (8, 16))
    b = motion_descriptor(_amf(5, 8, 8, lambda r, c, R, C: (1, 1)), (8, 8))
    c = motion_descriptor(_amf(5, 8, 16, lambda r, c, R, C: (1, 1)), (8, 16))
    assert cos(a, b) > 0.99
    assert cos(a, c) < 0.97


def test_steady_motion_same_at_any_frame_count():
    a = motion_descriptor(_amf(3, 6, 9, LEFT), (6, 9))
    b = motion_descriptor(_amf(13, 6, 9, LEFT), (6, 9))
    assert cos(a, b) > 0.99


def test_time_profile_matters():
    steady = lambda t, n: t  # noqa: E731
    back_forth = lambda t, n: t if t <= (n - 1) / 2 else (n - 1) - t  # noqa: E731
    s = motion_descriptor(_amf_path(13, 6, 9, LEFT, steady), (6, 9))
    bf13 = motion_descriptor(_amf_path(13, 6, 9, LEFT, back_forth), (6, 9))
    bf9 = motion_descriptor(_amf_path(9, 8, 12, LEFT, back_forth), (8, 12))
    assert cos(bf13, bf9) > 0.9
    assert cos(s, bf13) < 0.5


@pytest.mark.slow
def test_one_version_and_the_store_gets_it_without_torch():
    from motionlib import store

    assert store.DESCRIPTOR_VERSION is DESCRIPTOR_VERSION
    code = "import sys, motionlib.store, motionlib.descriptor; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_overall_speed_does_not_matter():
    slow = motion_descriptor(_amf(8, 8, 8, lambda r, c, R, C: (0.5, 0.25)), (8, 8))
    fast = motion_descriptor(_amf(8, 8, 8, lambda r, c, R, C: (2.0, 1.0)), (8, 8))
    assert cos(slow, fast) > 0.99


def test_confidence_weighting_ignores_ties():
    """Half the patches move left with a clear match; the other half point anywhere with near-tied attention."""
    rng = np.random.default_rng(0)
    amf = _amf(8, 8, 8, LEFT).numpy()
    noisy = np.zeros(64, bool)
    noisy[rng.permutation(64)[:32]] = True
    amf[:, :, noisy] = rng.integers(-4, 5, size=(8, 8, 32, 2))
    conf = np.where(noisy, 0.05, 0.9)[None, None].repeat(8, 0).repeat(8, 1)
    clean = motion_descriptor(_amf(8, 8, 8, LEFT), (8, 8))
    weighted = motion_descriptor(amf, (8, 8), conf)
    assert cos(clean, weighted) > 0.95 > cos(clean, motion_descriptor(amf, (8, 8)))


def test_weighted_mean_velocity_against_a_loop():
    """The per-gap trend is the confidence-weighted mean displacement / gap (naive loop)."""
    from motionlib import descriptor as D

    rng = np.random.default_rng(1)
    amf = rng.integers(-2, 3, size=(5, 5, 6, 2)).astype(np.float64)
    conf = rng.uniform(0, 1, size=(5, 5, 6))
    a, w, rows, cols = D._inputs(amf, (2, 3), conf)
    for g in (1, 2, 4):
        v, wg = D._velocities(a, w, g)
        got = D._wmean(v, wg, axis=1)
        for i in range(5 - g):
            num = sum(conf[i, i + g, s] ** D.CONFIDENCE_POWER * amf[i, i + g, s] / [cols, rows] / g for s in range(6))
            den = sum(conf[i, i + g, s] ** D.CONFIDENCE_POWER for s in range(6))
            np.testing.assert_allclose(got[i], num / den)


def test_zigzag_differs_from_its_drift():
    steady = lambda t, n: t  # noqa: E731
    zig = _amf_path(9, 6, 9, RIGHT, steady).clone()
    up_down = torch.tensor([0.0, 1, 0, -1, 0, 1, 0, -1, 0])  # rows up and down every step
    zig[..., 1] += (up_down[None, :] - up_down[:, None])[:, :, None]
    line = motion_descriptor(_amf_path(9, 6, 9, RIGHT, steady), (6, 9))
    assert cos(line, motion_descriptor(zig, (6, 9))) < 0.8


def test_no_motion_is_named():
    with pytest.raises(NoMotionError, match=r"no motion found in clip.mp4 \(too short"):
        described_motion(torch.zeros(1, 1, 12, 2), (3, 4), what="clip.mp4")
    with pytest.raises(NoMotionError, match=r"no motion found in clip.mp4 \(the model sees it move 0.000%"):
        described_motion(torch.zeros(4, 4, 12, 2), (3, 4), what="clip.mp4")
    assert motion_strength(_amf(4, 3, 4, LEFT), (3, 4)) == pytest.approx(1 / 4)
    assert described_motion(_amf(4, 3, 4, LEFT), (3, 4)).shape == (DESCRIPTOR_DIM,)
