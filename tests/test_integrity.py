"""Assets that prove their integrity: content hash, finite values, full disk, renders that survive
catalogue changes (issue 19), and the one atomic-write helper."""

import dataclasses
import errno
import json
import os
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save
from helpers import LEFT, cli, cli_json

from benchmarks.reliability import make_asset
from motionlib.asset import VERSION, AssetError, MotionAsset
from motionlib.fsutil import NoSpaceLeft, atomic_copy, atomic_write, sha256_file
from motionlib.integrity import (CONTENT_KEY, HEADER_KEY, DamagedAsset, UnverifiedAsset, check_file, read_header,
                                 seal)


def _header(data: bytes):
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _rebuild(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def _older(data: bytes, version: int) -> bytes:
    """The same motion as an older format wrote it: 16-bit AMF offsets and confidence (versions 1
    and 2), version 2 sealed with its hashes, version 1 without."""
    from safetensors.torch import load

    header, _ = _header(data)
    meta = json.loads(header["__metadata__"]["motionlib"])
    for k in (CONTENT_KEY, HEADER_KEY):
        meta.pop(k, None)
    meta["version"] = version
    tensors = load(data)
    for k, v in tensors.items():
        if k.startswith("ref.amf."):
            tensors[k] = v.to(torch.int16)
        elif k.startswith("ref.conf.") and v.dtype == torch.uint8:
            tensors[k] = (v.float() / 255).to(torch.float16)
    out = save(tensors, metadata={"motionlib": json.dumps(meta)})
    return seal(out) if version >= 2 else out


def _version1(data: bytes) -> bytes:
    return _older(data, 1)


def _state(home: Path) -> tuple:
    """Rows and every file a write could leave behind (blobs, thumbnails, staging)."""
    from motionlib.store import Library

    with Library(home) as lib:
        names = lib.names()
        renders = len(lib.renders())
    files = sorted(str(p.relative_to(home)) for sub in ("blobs", "thumbs", "tmp") for p in (home / sub).rglob("*"))
    return names, renders, files


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    return make_asset(3).save(tmp_path_factory.mktemp("asset") / "good.safetensors").read_bytes()


# --- fsutil ---------------------------------------------------------------------------------------
def test_atomic_write_and_copy(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    atomic_write(target, b"hello")
    assert target.read_bytes() == b"hello" and oct(target.stat().st_mode & 0o777) != "0o600"
    assert atomic_write(tmp_path / "b.txt", lambda p: p.write_text("via path")) is not None
    assert atomic_write(tmp_path / "c.bin", lambda f: f.write(b"via stream"), stream=True) == len(b"via stream")
    assert (tmp_path / "b.txt").read_text() == "via path" and (tmp_path / "c.bin").read_bytes() == b"via stream"
    sha, n = atomic_copy(target, tmp_path / "copy.bin")
    assert (sha, n) == sha256_file(target) and n == 5
    assert sha256_file(target, start=1, end=3)[1] == 2

    def fails(p):
        Path(p).write_bytes(b"partial")
        raise RuntimeError("writer broke")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "d.bin", fails)
    assert not (tmp_path / "d.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_full_disk_is_one_error_and_leaves_nothing(tmp_path):
    def full(p):
        Path(p).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    atomic_write(tmp_path / "keep.bin", b"old")
    with pytest.raises(NoSpaceLeft) as e:
        atomic_write(tmp_path / "keep.bin", full)
    assert str(e.value).startswith(f"no space left on {tmp_path}") and "\n" not in str(e.value)
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"] and (tmp_path / "keep.bin").read_bytes() == b"old"


# --- the content hash -----------------------------------------------------------------------------
def test_saved_asset_carries_hashes_that_load_verifies(good_bytes, tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(good_bytes)
    meta = read_header(path).meta
    header, body = _header(good_bytes)
    assert meta["version"] == VERSION == 3
    # version 3: 8-bit AMF offsets and confidence
    assert {header[k]["dtype"] for k in header if k.startswith("ref.amf.")} == {"I8"}
    assert {header[k]["dtype"] for k in header if k.startswith("ref.conf.")} == {"U8"}
    import hashlib

    assert meta[CONTENT_KEY] == hashlib.sha256(body).hexdigest()  # SHA-256 of the tensor data section
    assert check_file(path) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sealed file loads without any warning
        MotionAsset.load(path)
    # one flipped data byte
    bad = bytearray(good_bytes)
    bad[-100] ^= 0x01
    (tmp_path / "flip.safetensors").write_bytes(bytes(bad))
    # two tensors' places swapped: the data section (and its hash) unchanged, the header hash catches it
    names = sorted(k for k in header if k.startswith("rho."))
    swapped = json.loads(json.dumps(header))
    a, b = names[0], names[1]
    swapped[a]["data_offsets"], swapped[b]["data_offsets"] = swapped[b]["data_offsets"], swapped[a]["data_offsets"]
    (tmp_path / "swap.safetensors").write_bytes(_rebuild(swapped, body))
    # a learn parameter edited
    edited = json.loads(json.dumps(header))
    m = json.loads(edited["__metadata__"]["motionlib"])
    m["params"]["inject_blocks"] = []
    edited["__metadata__"]["motionlib"] = json.dumps(m)
    (tmp_path / "edit.safetensors").write_bytes(_rebuild(edited, body))
    for name in ("flip", "swap", "edit"):
        with pytest.raises(DamagedAsset, match="damaged: content does not match its hash") as e:
            MotionAsset.load(tmp_path / f"{name}.safetensors")
        assert str(e.value).startswith(str(tmp_path / f"{name}.safetensors"))
        with pytest.raises(DamagedAsset):
            check_file(tmp_path / f"{name}.safetensors")


def test_version_1_files_load_with_a_warning(good_bytes, tmp_path):
    old = tmp_path / "old.safetensors"
    old.write_bytes(_version1(good_bytes))
    assert check_file(old) is False
    with pytest.warns(UnverifiedAsset, match="no content hash"):
        a = MotionAsset.load(old)
    b = MotionAsset.load(make_asset(3).save(tmp_path / "new.safetensors"))
    assert all(torch.equal(a.tensors()[k], v) for k, v in b.tensors().items())
    # a version-2 file whose hashes were removed is not an old file: it is damaged
    header, body = _header(good_bytes)
    m = json.loads(header["__metadata__"]["motionlib"])
    del m[CONTENT_KEY], m[HEADER_KEY]
    header["__metadata__"]["motionlib"] = json.dumps(m)
    (tmp_path / "stripped.safetensors").write_bytes(_rebuild(header, body))
    with pytest.raises(DamagedAsset, match="hash is missing"):
        MotionAsset.load(tmp_path / "stripped.safetensors")


def test_version_2_files_load_as_they_are(good_bytes, tmp_path):
    v2 = tmp_path / "v2.safetensors"
    v2.write_bytes(_older(good_bytes, 2))
    header, _ = _header(v2.read_bytes())
    assert {header[k]["dtype"] for k in header if k.startswith(("ref.amf.", "ref.conf."))} == {"I16", "F16"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = MotionAsset.load(v2)
    assert check_file(v2) is True
    b = MotionAsset.load(_write(tmp_path / "v3.safetensors", good_bytes))
    for blk in b.blocks:
        assert torch.equal(a.ref_amf[blk], b.ref_amf[blk])
        assert (a.ref_confidence[blk] - b.ref_confidence[blk]).abs().max() <= 1e-3  # fp16 of k/255 vs k/255
    assert a.tensors().keys() == b.tensors().keys()
    assert all(torch.equal(a.tensors()[k], v) for k, v in b.tensors().items())  # saved again: the same bytes


def test_confidence_and_amf_quantisation_against_a_naive_rounding():
    from motionlib.asset import amf_dtype, dequantise_confidence, quantise_confidence
    from motionlib.models.tiny import tiny_spec

    p = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    p[:3] = torch.tensor([0.0, 1.0, 0.5])
    q = quantise_confidence(p)
    naive = torch.tensor([int(x * 255 + 0.5) for x in p.tolist()], dtype=torch.uint8)
    assert q.dtype == torch.uint8 and torch.equal(q, naive)
    assert (dequantise_confidence(q) - p).abs().max() <= 0.5 / 255 + 1e-7
    assert dequantise_confidence(p.half()).dtype == torch.float32  # version 2: float16 read as it is
    spec = tiny_spec("rope")
    assert amf_dtype(spec) == "I8"
    big = dataclasses.replace(spec, height=129 * spec.patch_size * spec.spatial_compression)
    assert big.grid[1] == 129 and amf_dtype(big) == "I16"  # an offset of 128 would not fit int8


def _with_nan(good_bytes: bytes, tensor: str, value: float, *, version: int = 3) -> bytes:
    """A file of `version` whose `tensor` holds `value`, hashed as if it had been written that way."""
    if version < 3:
        good_bytes = _older(good_bytes, 2)
    header, _ = _header(good_bytes)
    tensors = load_file_bytes(good_bytes)
    tensors[tensor] = tensors[tensor].clone()
    tensors[tensor].view(-1)[7] = value
    meta = json.loads(header["__metadata__"]["motionlib"])
    for k in (CONTENT_KEY, HEADER_KEY):
        meta.pop(k)
    data = save(tensors, metadata={"motionlib": json.dumps(meta)})
    return seal(data) if version >= 2 else _version1(seal(data))


def load_file_bytes(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data)


@pytest.mark.parametrize("tensor,value", [("rho.900.q_cos", float("nan")), ("ref.latent", float("inf")),
                                          ("ref.conf.2", float("-inf"))])
def test_non_finite_values_are_refused(good_bytes, tmp_path, tensor, value):
    for version in (3, 2, 1) if tensor != "ref.conf.2" else (2, 1):  # version 3 confidence is uint8
        p = tmp_path / f"nan-{version}.safetensors"
        p.write_bytes(_with_nan(good_bytes, tensor, value, version=version))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnverifiedAsset)
            with pytest.raises(AssetError, match=f"tensor {tensor} holds NaN or Inf"):
                MotionAsset.load(p)
    asset = make_asset(3)
    asset.rho_delta[900]["q_cos"][0, 0] = 1e6  # beyond float16
    with pytest.raises(AssetError, match="rho.900.q_cos holds NaN or Inf"):
        asset.save(tmp_path / "never.safetensors")
    assert list(tmp_path.glob("never*")) == [] and [p for p in tmp_path.iterdir() if ".tmp" in p.name] == []


# --- the CLI: import, export, doctor --------------------------------------------------------------
def _one_error_line(code, err, expect):
    assert code == 1, err
    assert "Traceback" not in err
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and expect in lines[0], err


def test_import_rejects_damage_and_nan_and_leaves_the_catalogue_alone(home, capsys, tmp_path, good_bytes):
    cli_json(capsys, "import", str(_write(tmp_path / "ok.safetensors", good_bytes)), "--name", "ok")
    before = _state(home)
    flip = bytearray(good_bytes)
    flip[-3] ^= 0x40
    code, _, err = cli(capsys, "import", str(_write(tmp_path / "flip.safetensors", bytes(flip))))
    _one_error_line(code, err, "flip.safetensors is not a valid motion asset: damaged: content does not match its hash")
    code, _, err = cli(capsys, "import", str(_write(tmp_path / "nan.safetensors",
                                                    _with_nan(good_bytes, "rho.800.k_sin", float("nan")))))
    _one_error_line(code, err, "nan.safetensors is not a valid motion asset: tensor rho.800.k_sin holds NaN or Inf")
    assert str(home) not in err  # the staged copy is never named
    assert _state(home) == before


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_old_format_imports_with_a_warning_and_exports_sealed(home, capsys, tmp_path, good_bytes):
    old = _write(tmp_path / "old.safetensors", _version1(good_bytes))
    code, out, err = cli(capsys, "import", str(old), "--name", "old")
    assert code == 0, err
    warned = [x for x in err.splitlines() if x.startswith("Warning:")]
    assert len(warned) == 1 and "old.safetensors: motion format version 1 carries no content hash" in warned[0], err
    code, out, err = cli(capsys, "--json", "doctor")
    report = json.loads(out)
    assert code == 0 and report["ok"] and any("'old'" in n and "content hash" in n for n in report["notes"])
    exported = cli_json(capsys, "export", "old", str(tmp_path / "out.safetensors"))
    assert exported["sealed"] is True
    out_file = Path(exported["file"])
    assert check_file(out_file) is True and read_header(out_file).meta["version"] == 2  # same tensors, hashed
    assert load_file(str(out_file)).keys() == load_file(str(old)).keys()
    assert all(torch.equal(load_file(str(out_file))[k], v) for k, v in load_file(str(old)).items())
    code, _, err = cli(capsys, "import", str(out_file), "--name", "again")
    assert code == 0 and "Warning" not in err, err
    again = cli_json(capsys, "export", "again", str(tmp_path / "again.safetensors"))
    assert again["sealed"] is False and Path(again["file"]).read_bytes() == out_file.read_bytes()


def test_doctor_verifies_every_embedded_hash(home, capsys, tmp_path, good_bytes):
    """A damaged file that entered the catalogue without validation (the Python API) is found."""
    from motionlib.store import Library

    cli_json(capsys, "import", str(_write(tmp_path / "ok.safetensors", good_bytes)), "--name", "ok")
    flip = bytearray(good_bytes)
    flip[-9] ^= 0x01
    with Library(home) as lib:
        meta = dict(model_name="tiny-5b", family="rope", latent_frames=3, latent_rows=4, latent_cols=6)
        lib.add_motion("bad", asset_file=_write(tmp_path / "bad.safetensors", bytes(flip)), meta=meta,
                       descriptor=lib.get("ok").descriptor_array())
    code, out, _ = cli(capsys, "--json", "doctor")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert report["problems"] == ["motion 'bad': asset file is damaged (damaged: content does not match its hash); "
                                  "re-learn it or remove the motion"]


# --- full disk ------------------------------------------------------------------------------------
@pytest.fixture
def full_disk(monkeypatch):
    """From now on every file write fails as on a full disk (at its fsync, the point every durable
    write of motionlib goes through)."""

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    def start():
        monkeypatch.setattr(os, "fsync", fsync)

    return start


@pytest.mark.slow
def test_full_disk_learn_import_export(home, capsys, tmp_path, good_bytes, full_disk):
    cli_json(capsys, "import", str(_write(tmp_path / "ok.safetensors", good_bytes)), "--name", "ok")
    before = _state(home)
    dest = tmp_path / "out"
    dest.mkdir()
    full_disk()
    code, _, err = cli(capsys, "-q", "learn", str(LEFT), "--name", "new", "--steps", "4")
    _one_error_line(code, err, f"no space left on {home}")
    code, _, err = cli(capsys, "import", str(tmp_path / "ok.safetensors"), "--name", "ok2")
    _one_error_line(code, err, f"no space left on {home}")
    assert _state(home) == before  # no row, no blob, no thumbnail, no staging left
    code, _, err = cli(capsys, "export", "ok", str(dest / "x.safetensors"))
    _one_error_line(code, err, f"no space left on {dest}")
    assert list(dest.iterdir()) == []


def _mount_tmpfs(path: Path, size: str) -> bool:
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_really_full_filesystem(tmp_path, monkeypatch, capsys, good_bytes):
    """The same on a real full filesystem (a small tmpfs; skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "2m"):
        pytest.skip("cannot mount a small tmpfs here (needs root on Linux)")
    try:
        lib_home = disk / "lib"
        monkeypatch.setenv("MOTIONLIB_HOME", str(lib_home))
        monkeypatch.setenv("MOTIONLIB_MODEL", "tiny-5b")
        cli_json(capsys, "import", str(_write(tmp_path / "ok.safetensors", good_bytes)), "--name", "ok")
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk to the last byte
            for size in (1 << 16, 1 << 10, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        before = _state(lib_home)
        code, _, err = cli(capsys, "-q", "learn", str(LEFT), "--name", "new", "--steps", "4")
        _one_error_line(code, err, "no space left on")
        code, _, err = cli(capsys, "import", str(tmp_path / "ok.safetensors"), "--name", "ok2")
        _one_error_line(code, err, "no space left on")
        code, _, err = cli(capsys, "export", "ok", str(disk / "x.safetensors"))
        _one_error_line(code, err, f"no space left on {disk}")
        assert _state(lib_home) == before and not (disk / "x.safetensors").exists()
        assert [p.name for p in disk.iterdir() if ".tmp" in p.name] == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# --- learn that diverges --------------------------------------------------------------------------
@pytest.mark.slow
def test_learn_that_diverges_stops_naming_the_step_and_stores_nothing(home, capsys, monkeypatch):
    import motionlib.guidance as guidance

    real, calls = guidance.guidance_loss, []

    def loss(*a, **k):
        calls.append(1)
        out = real(*a, **k)
        return out * float("nan") if len(calls) == 3 else out

    monkeypatch.setattr(guidance, "guidance_loss", loss)
    code, _, err = cli(capsys, "-q", "learn", str(LEFT), "--name", "nan", "--opt-steps", "2")
    _one_error_line(code, err, "diverged at guided step 2/")
    assert "Adam step 1/2: the AMF loss is nan; nothing was stored" in err
    assert _state(home) == ([], 0, [])


def test_rho_beyond_float16_is_a_divergence(tiny5b, monkeypatch):
    import motionlib.guidance as guidance
    from motionlib.learn import learn

    real = guidance.Parametrised.stored
    monkeypatch.setattr(guidance.Parametrised, "stored",
                        lambda self: {k: v * 1e9 for k, v in real(self).items()})
    clip = torch.zeros(tiny5b.spec.num_frames, 3, tiny5b.spec.height, tiny5b.spec.width)
    with pytest.raises(guidance.Diverged, match=r"guided step 1/\d+ \(timestep \d+\), ρ is not finite in float16"):
        learn(tiny5b, clip, opt_steps=1, steps=4)


# --- renders survive catalogue changes ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("change", [["rm", "left"], ["rename", "left", "moved"]])
def test_apply_survives_the_motion_changing_while_it_renders(home, capsys, tmp_path, change):
    """Two processes: an apply that holds at the start of its render (a file tells the test), and
    this one, which runs `motionlib rm`/`rename` meanwhile."""
    cli_json(capsys, "learn", str(LEFT), "--name", "left", "--steps", "4")
    started, go = tmp_path / "render-started", tmp_path / "go-on"
    script = (
        "import pathlib, time, motionlib.apply as a\n"
        "real = a.apply\n"
        "def held(*args, **kw):\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        f"    while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\n"
        "    return real(*args, **kw)\n"
        "a.apply = held\n"
        "from motionlib.cli.main import main; main()\n")
    env = {**os.environ, "MOTIONLIB_HOME": str(home), "MOTIONLIB_MODEL": "tiny-5b"}
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-c", script, "--json", "apply", "left", "a red ball", "-o", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not started.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    cli_json(capsys, *change)
    go.touch()
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert out.stat().st_size > 0 and json.loads(stdout)["recorded"] is False
    warned = [x for x in stderr.splitlines() if x.startswith("Warning:")]
    assert warned == ["Warning: the render could not be recorded: motion 'left' was removed or renamed while it "
                      "rendered"], stderr
    assert _state(home)[1] == 0  # no render row
