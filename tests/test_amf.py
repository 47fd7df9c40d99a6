"""motion_flow / amf_loss against naive per-head implementations of the paper's equations."""

import math

import pytest
import torch

from motionlib.amf import amf_loss, motion_flow, patch_coords


def naive_attention(q, k, F, S, tau):
    """Eq. (3) with the official head handling: per-head logits, mean over heads, ×τ, softmax per key frame."""
    H, N, d = q.shape
    logits = torch.stack([q[h] @ k[h].T / math.sqrt(d) for h in range(H)]).mean(0)  # [N, N]
    A = torch.empty(F, F, S, S, dtype=logits.dtype)
    for i in range(F):
        for j in range(F):
            A[i, j] = torch.softmax(tau * logits[i * S:(i + 1) * S, j * S:(j + 1) * S], dim=-1)
    return A


def naive_soft(q, k, F, rows, cols, tau):
    """Eq. (7): Δ[(u,v)] = Σ_(u',v') A[(u,v),(u',v')]·(u'−u, v'−v), (dx, dy) = (column, row)."""
    S = rows * cols
    A = naive_attention(q, k, F, S, tau)
    out = torch.zeros(F, F, S, 2, dtype=q.dtype)
    for i in range(F):
        for j in range(F):
            for s in range(S):
                y, x = divmod(s, cols)
                for s2 in range(S):
                    y2, x2 = divmod(s2, cols)
                    out[i, j, s, 0] += A[i, j, s, s2] * (x2 - x)
                    out[i, j, s, 1] += A[i, j, s, s2] * (y2 - y)
    return out


def naive_hard(q, k, F, rows, cols, tau):
    """Eq. (4): displacement to the argmax patch."""
    S = rows * cols
    A = naive_attention(q, k, F, S, tau)
    out = torch.zeros(F, F, S, 2)
    for i in range(F):
        for j in range(F):
            for s in range(S):
                m = int(A[i, j, s].argmax())
                out[i, j, s] = torch.tensor([m % cols - s % cols, m // cols - s // cols], dtype=torch.float32)
    return out


def naive_loss(pred, ref):
    """Eq. (8) as the official code: MSE over the components of vectors whose reference is non-zero."""
    total, count = 0.0, 0
    for idx in torch.nonzero(ref.norm(dim=-1) > 0):
        for c in range(2):
            total += float((pred[tuple(idx)][c] - ref[tuple(idx)][c]) ** 2)
            count += 1
    return total / count


@pytest.fixture
def qk():
    g = torch.Generator().manual_seed(0)
    H, F, rows, cols, d = 3, 3, 3, 4, 8
    q = torch.randn(H, F * rows * cols, d, generator=g, dtype=torch.float64)
    k = torch.randn(H, F * rows * cols, d, generator=g, dtype=torch.float64)
    return q, k, F, rows, cols


@pytest.mark.slow
@pytest.mark.parametrize("tau", [1.0, 2.0, 5.0])
def test_soft_matches_naive_eq7(qk, tau):
    q, k, F, rows, cols = qk
    got = motion_flow(q, k, num_frames=F, height=rows, width=cols, temperature=tau)
    want = naive_soft(q, k, F, rows, cols, tau)
    assert got.shape == (F, F, rows * cols, 2)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_hard_matches_naive_eq4(qk):
    q, k, F, rows, cols = qk
    got = motion_flow(q, k, num_frames=F, height=rows, width=cols, hard=True)
    assert torch.equal(got, naive_hard(q, k, F, rows, cols, 2.0))


def test_chunking_does_not_change_result(qk):
    q, k, F, rows, cols = qk
    whole = motion_flow(q, k, num_frames=F, height=rows, width=cols)
    chunked = motion_flow(q, k, num_frames=F, height=rows, width=cols, max_chunk_elements=1)
    torch.testing.assert_close(whole, chunked)


@pytest.mark.slow
def test_gradients_match_naive_through_checkpointed_chunks(qk):
    q, k, F, rows, cols = qk
    q1, k1 = q.clone().requires_grad_(), k.clone().requires_grad_()
    motion_flow(q1, k1, num_frames=F, height=rows, width=cols, max_chunk_elements=1).pow(2).sum().backward()
    q2, k2 = q.clone().requires_grad_(), k.clone().requires_grad_()
    naive_soft(q2, k2, F, rows, cols, 2.0).pow(2).sum().backward()
    torch.testing.assert_close(q1.grad, q2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(k1.grad, k2.grad, rtol=1e-4, atol=1e-6)


def shifted_qk(F, rows, cols, dx, dy, heads=2, d=64):
    """Frame j's content is frame 0's shifted by j·(dx, dy): each patch has a unique random code."""
    g = torch.Generator().manual_seed(1)
    code = torch.randn(heads, rows + 2 * F * abs(dy) + 2, cols + 2 * F * abs(dx) + 2, d, generator=g)
    q = torch.zeros(heads, F * rows * cols, d)
    oy, ox = F * abs(dy) + 1, F * abs(dx) + 1
    for j in range(F):
        for y in range(rows):
            for x in range(cols):
                # the content now at (x, y) in frame j came from (x - j·dx, y - j·dy) in frame 0
                q[:, j * rows * cols + y * cols + x] = code[:, oy + y - j * dy, ox + x - j * dx] * 4
    return q, q.clone()


@pytest.mark.parametrize("dx,dy", [(1, 0), (-1, 0), (0, 1), (1, -1)])
def test_hard_recovers_known_shift(dx, dy):
    F, rows, cols = 3, 6, 8
    q, k = shifted_qk(F, rows, cols, dx, dy)
    flow = motion_flow(q, k, num_frames=F, height=rows, width=cols, hard=True)
    coords = patch_coords(rows, cols)
    for i in range(F):
        for j in range(F):
            step = torch.tensor([dx * (j - i), dy * (j - i)], dtype=torch.float32)
            target = coords + step
            inside = ((target[:, 0] >= 0) & (target[:, 0] < cols) & (target[:, 1] >= 0) & (target[:, 1] < rows))
            assert inside.any()
            assert torch.equal(flow[i, j][inside], step.expand(int(inside.sum()), 2)), (i, j)


def test_soft_tends_to_hard_as_temperature_grows():
    F, rows, cols = 3, 4, 5
    q, k = shifted_qk(F, rows, cols, 1, 0, d=16)
    q = q / 4
    hard = motion_flow(q, k, num_frames=F, height=rows, width=cols, hard=True).double()
    errs = [(motion_flow(q, k, num_frames=F, height=rows, width=cols, temperature=t) - hard).abs().max().item()
            for t in (0.2, 1.0, 5.0, 20.0, 200.0)]
    assert errs == sorted(errs, reverse=True)
    assert errs[-1] < 1e-3 < errs[0]


def test_loss_matches_naive_eq8(qk):
    q, k, F, rows, cols = qk
    pred = motion_flow(q, k, num_frames=F, height=rows, width=cols)
    ref = motion_flow(q.flip(1), k, num_frames=F, height=rows, width=cols, hard=True)
    ref[0, 1, :3] = torch.tensor([0.0, 2.0])  # vectors with one zero component are still supervised
    assert (ref.norm(dim=-1) == 0).any() and (ref.norm(dim=-1) > 0).any()
    assert amf_loss(pred, ref).item() == pytest.approx(naive_loss(pred, ref), rel=1e-6)
    assert amf_loss(ref, ref).item() == 0.0


def test_loss_mask_and_all_static_reference(qk):
    q, k, F, rows, cols = qk
    pred = motion_flow(q, k, num_frames=F, height=rows, width=cols)
    zero = torch.zeros_like(pred)
    assert amf_loss(pred, zero).item() == 0.0  # nothing supervised
    ref = torch.ones_like(pred)
    mask = torch.zeros(F, F, rows * cols, dtype=torch.bool)
    mask[1, 2, 5] = True
    want = (pred[1, 2, 5] - 1).pow(2).mean().item()
    assert amf_loss(pred, ref, mask).item() == pytest.approx(want)


def test_rejects_bad_shapes():
    q = torch.randn(2, 10, 4)
    with pytest.raises(ValueError, match="tokens"):
        motion_flow(q, q, num_frames=3, height=2, width=2)
    with pytest.raises(ValueError, match="differ"):
        motion_flow(q, torch.randn(2, 10, 5), num_frames=5, height=1, width=2)


def test_any_frame_count():
    for F in (1, 2, 7):
        q = torch.randn(2, F * 6, 8)
        assert motion_flow(q, q, num_frames=F, height=2, width=3, hard=True).shape == (F, F, 6, 2)
