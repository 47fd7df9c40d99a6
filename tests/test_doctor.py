"""``doctor`` on the catalogue: orphans and temp files found and repaired (rows never deleted), and each
file's embedded hash checked through the caller (the CLI's doctor is in test_cli.py, test_integrity.py
and test_weights.py)."""

from __future__ import annotations

import os
import time

import pytest

from helpers import add, asset_file
from motionlib.store import Library


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, catalogue_db):
    """Every test runs on SQLite and on PostgreSQL (``catalogue_db`` in conftest sets $MOTIONLIB_DB_URL)."""
    monkeypatch.delenv("MOTIONLIB_HOME", raising=False)


@pytest.fixture
def lib(tmp_path):
    with Library(tmp_path / "home") as lib:
        yield lib


def test_doctor_finds_and_repairs_orphans_and_temp_files(lib, tmp_path):
    add(lib, tmp_path, "keep", seed=1, thumbs=True)
    # a killed learn: blob stored, no row; plus a half-written temp file
    sha, _ = lib.blobs.put(asset_file(tmp_path, b"orphaned asset", "o.bin"))
    orphan = lib.blobs.path(sha)
    tmp_file = orphan.parent / f"{orphan.name}.tmpdeadbeef"
    tmp_file.write_bytes(b"partial")
    young = lib.home / "thumbs" / "x.png.tmp1234"
    young.write_bytes(b"in flight")
    old = time.time() - 3600
    os.utime(tmp_file, (old, old))
    lib.index.sidecar_path.unlink()

    rep = lib.doctor()
    assert rep.orphan_blobs == [orphan]
    assert set(rep.temp_files) == {tmp_file, young}
    assert rep.index_stale and not rep.ok
    assert rep.missing_blobs == rep.corrupt_blobs == [] and rep.missing_thumbnails == []
    assert orphan.exists() and tmp_file.exists()  # no repair without repair=True

    rep = lib.doctor(repair=True)
    assert not orphan.exists() and not tmp_file.exists()
    assert young.exists() and any("x.png.tmp1234" in s for s in rep.skipped)
    assert lib.index.sidecar_path.exists()
    assert lib.asset_path("keep").exists() and lib.thumb_path("keep").exists()

    lib.doctor(repair=True, grace_seconds=0)
    assert not young.exists()
    lib.thumb_path("keep").unlink()
    rep = lib.doctor()
    assert [n for n, _ in rep.missing_thumbnails] == ["keep"] and "thumbnail" in str(rep)
    lib.thumb_path("keep").write_bytes(b"x")
    assert lib.doctor().ok


def test_doctor_asks_the_caller_to_check_each_file(lib, tmp_path):
    """The store never reads asset files: ``check_content`` says True (hash ok), False (no hash) or raises."""
    from motionlib.errors import MotionlibError

    for name, seed in (("good", 1), ("old", 2), ("bad", 3)):
        add(lib, tmp_path, name, seed=seed)
    verdicts = {lib.asset_path("good"): True, lib.asset_path("old"): False}

    def check(path):
        if path not in verdicts:
            raise MotionlibError(f"{path}: damaged: content does not match its hash")
        return verdicts[path]

    rep = lib.doctor(check_content=check)
    assert rep.damaged_content == [("bad", "damaged: content does not match its hash")] and rep.unverified == ["old"]
    assert rep.needs_attention == ["motion 'bad': asset file is damaged (damaged: content does not match its hash); "
                                   "re-learn it or remove the motion"]
    assert any("'old'" in n for n in rep.notes()) and "note: motion 'old'" in str(rep)
    assert lib.doctor().ok  # without a checker only the catalogue checksums are verified
