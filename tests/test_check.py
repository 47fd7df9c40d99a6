"""`learn --check` (issue 24): the AMF agreement score against a naive reading of its definition, and
the score through the CLI into the catalogue (show, list --json)."""

import math

import pytest
import torch

from motionlib.check import amf_agreement, pair_motion

from helpers import LEFT, cli, cli_json


def _naive(ref_amf, ref_conf, amf, conf, threshold, min_shift=0.5):
    """The definition written out with loops: per frame pair i < j, the confidence-weighted mean
    displacement over tokens at or above the threshold, for each AMF; the mean cosine over the pairs whose
    reference mean is at least min_shift long (a render pair that does not move scores 0)."""
    f, _, s, _ = ref_amf.shape

    def mean(a, c, i, j):
        tot, vec = 0.0, [0.0, 0.0]
        for k in range(s):
            w = float(c[i, j, k])
            if w >= threshold:
                tot += w
                vec[0] += w * float(a[i, j, k, 0])
                vec[1] += w * float(a[i, j, k, 1])
        return (vec[0] / tot, vec[1] / tot) if tot > 0 else (0.0, 0.0)

    cos = []
    for i in range(f):
        for j in range(i + 1, f):
            u, v = mean(ref_amf, ref_conf, i, j), mean(amf, conf, i, j)
            nu, nv = math.hypot(*u), math.hypot(*v)
            if nu < min_shift:
                continue
            cos.append(0.0 if nv == 0 else (u[0] * v[0] + u[1] * v[1]) / (nu * nv))
    return (sum(cos) / len(cos) if cos else float("nan")), len(cos)


def _amf(seed, f=5, s=12):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-3, 4, (f, f, s, 2), generator=g).float(), torch.rand(f, f, s, generator=g))


@pytest.mark.parametrize("seed", range(4))
def test_amf_agreement_matches_the_naive_definition(seed):
    ref, ref_c = _amf(seed)
    got, got_c = _amf(seed + 100)
    score, pairs = amf_agreement(ref, ref_c, got, got_c, threshold=0.3)
    want, want_pairs = _naive(ref, ref_c, got, got_c, 0.3)
    assert pairs == want_pairs and score == pytest.approx(want, abs=1e-6)


def test_amf_agreement_known_answers():
    ref, conf = _amf(0)
    assert amf_agreement(ref, conf, ref, conf, threshold=0.0)[0] == pytest.approx(1.0)  # the same motion
    assert amf_agreement(ref, conf, -ref, conf, threshold=0.0)[0] == pytest.approx(-1.0)  # the other way
    assert amf_agreement(ref, conf, torch.zeros_like(ref), conf, threshold=0.0)[0] == 0.0  # a still render
    score, pairs = amf_agreement(torch.zeros_like(ref), conf, ref, conf, threshold=0.0)
    assert math.isnan(score) and pairs == 0  # a reference that does not move has nothing to agree with
    # tokens under the threshold do not count: a render that agrees only on them scores as still
    low = conf * 0.1
    assert pair_motion(ref, low, threshold=0.5).abs().sum() == 0


@pytest.mark.slow
def test_learn_check_scores_and_stores(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    monkeypatch.setenv("MOTIONLIB_MODEL", "tiny-5b")
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    got = cli_json(capsys, "learn", str(LEFT), "--name", "left", "--check", "--steps", "4", "--opt-steps", "1")
    score = got["check_score"]
    assert score is None or -1.0 <= score <= 1.0
    assert cli_json(capsys, "show", "left")["check_score"] == score
    assert cli_json(capsys, "list")[0]["check_score"] == score
    cli_json(capsys, "learn", str(LEFT), "--name", "plain", "--steps", "4", "--opt-steps", "1")
    assert cli_json(capsys, "show", "plain")["check_score"] is None
    code, out, _ = cli(capsys, "show", "plain")
    assert code == 0 and "not checked" in out
