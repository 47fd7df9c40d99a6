import numpy as np
import pytest
import torch

from motionlib.descriptor import DESCRIPTOR_DIM, DESCRIPTOR_VERSION, motion_descriptor


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
    assert DESCRIPTOR_VERSION == 1
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


def test_spatial_layout_matters():
    a = motion_descriptor(_amf(5, 8, 12, LEFT_HALF_LEFT), (8, 12))
    b = motion_descriptor(_amf(5, 6, 9, LEFT_HALF_LEFT), (6, 9))
    c = motion_descriptor(_amf(5, 8, 12, RIGHT_HALF_LEFT), (8, 12))
    assert cos(a, c) < cos(a, b) - 0.3


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
