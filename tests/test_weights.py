"""Motions know their weights (issue 25, item 5): learn records a fingerprint of the transformer,
apply on other weights of the same architecture warns in one line, doctor lists such motions, and
motions from before the fingerprint read as "unknown weights" with their content hashes kept."""

import hashlib

import pytest
import torch

from helpers import LEFT, cli, cli_json
from motionlib.weights import SAMPLES, fingerprint, mismatch, short


def naive_fingerprint(module: torch.nn.Module) -> str:
    """The module docstring's definition, element by element in plain Python."""
    h = hashlib.sha256(b"motionlib-weights-v1")
    named = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    for name in sorted(named):
        t = named[name].detach()
        flat = t.reshape(-1).tolist()
        n = len(flat)
        k = min(n, SAMPLES)
        picks = [flat[int(torch.tensor(i * (n - 1) / max(k - 1, 1)).round())] for i in range(k)] if n else []
        values = torch.tensor(picks, dtype=t.dtype).to(torch.bfloat16).float() if t.is_floating_point() else \
            torch.tensor(picks, dtype=t.dtype)
        h.update(f"{name}:{tuple(t.shape)}:{values.dtype};".encode())
        h.update(values.numpy().tobytes())
    return h.hexdigest()


def small_net(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(70, 90), torch.nn.LayerNorm(90), torch.nn.Linear(90, 3))
    net.register_buffer("steps", torch.arange(5))
    return net


def test_fingerprint_is_the_definition():
    net = small_net()
    assert fingerprint(net, cached=False) == naive_fingerprint(net)


def test_same_weights_any_precision_same_fingerprint_and_changes_are_seen():
    net, same = small_net(0), small_net(0)
    fp = fingerprint(net)
    assert fingerprint(same) == fp
    assert fingerprint(small_net(0).to(torch.bfloat16)) == fp  # the bf16 copy of the same weights
    assert fingerprint(small_net(1)) != fp  # retrained
    tuned = small_net(0)
    with torch.no_grad():
        tuned[2].weight.mul_(1.05)  # a fine-tune of one layer
    assert fingerprint(tuned) != fp
    lora = small_net(0)
    lora.add_module("lora_A", torch.nn.Linear(70, 4, bias=False))  # an adapter adds its own parameters
    assert fingerprint(lora) != fp


def test_mismatch_line():
    a, b = "a" * 64, "b" * 64
    assert mismatch(None, b, "shapes") is None and mismatch(b, b, "shapes") is None
    line = mismatch(a, b, "shapes", "my clip.mp4", "squat")
    assert "\n" not in line and short(a) in line and short(b) in line
    assert "motionlib learn 'my clip.mp4' --name squat --model shapes --force" in line


@pytest.fixture
def lib(cli_home):
    """A fresh library, tiny-5b by default, tmp_path the working folder (conftest.cli_home)."""
    return cli_home


def finetuned(monkeypatch):
    """Make every load of a model return 'other weights of the same architecture' (a fine-tune)."""
    import motionlib.models as models

    real = models.load_model

    def load(*a, **k):
        m = real(*a, **k)
        with torch.no_grad():
            for p in m.transformer.parameters():
                p.add_(0.01)
        return m

    monkeypatch.setattr(models, "load_model", load)


@pytest.mark.slow
def test_learn_records_apply_warns_doctor_lists(lib, monkeypatch, capsys):
    from motionlib.models import load_model

    cli_json(capsys, "learn", str(LEFT), "--name", "left", "--steps", "4", "--opt-steps", "1")
    shown = cli_json(capsys, "show", "left")
    assert shown["weights_fingerprint"] == fingerprint(load_model("tiny-5b").transformer)
    code, out, err = cli(capsys, "apply", "left", "a disc", "--steps", "2", "-o", "same.mp4")
    assert code == 0 and "Warning" not in err
    assert cli_json(capsys, "doctor")["ok"]

    finetuned(monkeypatch)
    code, out, err = cli(capsys, "apply", "left", "a disc", "--steps", "2", "-o", "other.mp4")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "learnt with other tiny-5b weights" in warnings[0], err
    assert "motionlib learn disc_left.mp4 --name left --model tiny-5b --force" in warnings[0]
    code, out, err = cli(capsys, "doctor")
    assert code == 1 and "motion 'left': learnt with other tiny-5b weights" in out, out


@pytest.mark.slow
def test_batch_reports_other_weights(lib, monkeypatch, capsys):
    import json

    cli_json(capsys, "learn", str(LEFT), "--name", "left", "--steps", "4", "--opt-steps", "1")
    finetuned(monkeypatch)
    (lib / "jobs.jsonl").write_text(json.dumps({"motion": "left", "prompt": "a disc", "output": "b.mp4", "seed": 0,
                                                "steps": 2}) + "\n")
    code, out, err = cli(capsys, "--json", "apply-batch", "jobs.jsonl", "--in-process")
    assert code == 0, err
    (job,) = json.loads(out)["jobs"]
    assert "learnt with other tiny-5b weights" in job["warning"]


@pytest.mark.slow
def test_older_motions_have_unknown_weights_and_keep_their_hashes(lib, tmp_path, capsys):
    from benchmarks.reliability import make_asset

    asset = make_asset()  # a motion as files were written before the fingerprint: no "weights" key
    assert asset.weights is None
    path = asset.save(tmp_path / "old.safetensors")
    before = path.read_bytes()
    from motionlib.asset import MotionAsset, inspect

    assert "weights" not in inspect(path)
    assert MotionAsset.load(path).weights is None
    cli_json(capsys, "import", str(path), "--name", "old")
    shown = cli_json(capsys, "show", "old")
    assert shown["weights_fingerprint"] is None
    code, out, err = cli(capsys, "show", "old")
    assert "unknown (learnt before motionlib recorded the weights)" in out
    code, out, err = cli(capsys, "apply", "old", "a disc", "--steps", "2", "-o", "o.mp4")
    assert code == 0 and "Warning" not in err, err
    code, out, err = cli(capsys, "doctor")
    assert "unknown weights" in out and "'old'" in out
    code, out, err = cli(capsys, "export", "old", "back.safetensors")
    assert code == 0 and (tmp_path / "back.safetensors").read_bytes() == before


def test_a_bad_fingerprint_in_a_file_is_refused(tmp_path):
    from benchmarks.reliability import make_asset
    from motionlib.asset import AssetError, inspect

    asset = make_asset()
    asset.weights = "not hex"
    path = asset.save(tmp_path / "x.safetensors")
    with pytest.raises(AssetError, match="weights must be a 64-digit hex fingerprint"):
        inspect(path)
