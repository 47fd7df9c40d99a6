"""Catalogue tests: fast, offline, everything under tmp_path."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import faiss
import numpy as np
import pytest
import sqlalchemy as sa

from motionlib.store import (
    DESCRIPTOR_VERSION, CorruptBlob, ImportRejected, InvalidName, Library, LibraryError, MotionExists, MotionNotFound,
    migrate, open_engine,
)
from motionlib.store.db import alembic_config, current_revision, head_revision

from helpers import DIM, add, asset_file, meta, vec



@pytest.fixture(autouse=True)
def _no_env(monkeypatch, catalogue_db):
    """Every test runs on SQLite and on PostgreSQL (``catalogue_db`` in conftest sets $MOTIONLIB_DB_URL)."""
    monkeypatch.delenv("MOTIONLIB_HOME", raising=False)


#: for the few tests about SQLite itself (its file, its pragmas)
sqlite_only = pytest.mark.parametrize("catalogue_db", ["sqlite"], indirect=True)


def db_url(tmp_path, catalogue_db) -> str:
    return catalogue_db or f"sqlite:///{tmp_path / 'blank.db'}"


@pytest.fixture
def lib(tmp_path):
    with Library(tmp_path / "home") as lib:
        yield lib


# -- schema --------------------------------------------------------------------------------------
def test_migrate_blank_db_schema(tmp_path, catalogue_db):
    engine = open_engine(db_url(tmp_path, catalogue_db))
    migrate(engine)
    insp = sa.inspect(engine)
    assert {"motions", "motion_tags", "renders", "alembic_version"} <= set(insp.get_table_names())
    cols = {c["name"] for c in insp.get_columns("motions")}
    assert cols >= {"id", "name", "created_at", "model_name", "model_source", "config_hash", "family",
                    "latent_frames", "latent_rows", "latent_cols", "source_sha256", "source_name", "source_fps",
                    "source_frames", "source_width", "source_height", "params_json", "loss_json", "blob_sha256",
                    "blob_bytes", "thumb_png", "thumb_gif", "descriptor", "descriptor_version", "check_score",
                    "weights_fingerprint", "lineage_json"}
    assert {c["name"] for c in insp.get_columns("renders")} >= {
        "id", "motion_id", "motion_name", "prompt", "seed", "steps", "strength", "output_path", "seconds",
        "created_at", "image_sha256", "image_preview"}
    assert {c["name"] for c in insp.get_columns("motion_tags")} == {"motion_id", "tag"}
    assert any(ix["unique"] and ix["column_names"] == ["name"] for ix in insp.get_indexes("motions"))
    assert current_revision(engine) == "0005" == head_revision()
    migrate(engine)  # idempotent
    if catalogue_db:  # PostgreSQL: a serial id, never reused
        assert insp.get_columns("motions")[0]["autoincrement"] is True
        engine.dispose()
        return
    with engine.connect() as c:  # ids are never reused (the descriptor index is keyed by id)
        assert "AUTOINCREMENT" in c.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name='motions'").scalar()
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30000
    migrate(engine)  # idempotent
    engine.dispose()


def test_models_match_migrations(tmp_path, catalogue_db):
    """Autogenerate must find nothing to do: models.py and the migration history agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    from motionlib.store.models import TABLES

    engine = open_engine(db_url(tmp_path, catalogue_db))
    migrate(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, SQLModel.metadata)

    def foreign_table(d):  # tables other code may have registered on the global SQLModel.metadata
        return not isinstance(d, list) and d[0] == "add_table" and d[1].name not in TABLES

    ours = [d for d in diffs if not foreign_table(d)]
    assert ours == []
    engine.dispose()
    assert alembic_config().get_main_option("script_location").endswith("migrations")


@sqlite_only
def test_library_defaults_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "envhome"))
    with Library() as lib:
        assert lib.home == (tmp_path / "envhome").resolve()
        assert (lib.home / "motionlib.db").exists()
    monkeypatch.setenv("MOTIONLIB_DB_URL", f"sqlite:///{tmp_path / 'other.db'}")
    with Library() as lib:
        assert lib.db_url.endswith("other.db")
    assert (tmp_path / "other.db").exists()


# -- CRUD ----------------------------------------------------------------------------------------
def test_add_get_list_rename_tag_remove(lib, tmp_path):
    m = add(lib, tmp_path, "waves", seed=1, tags=["Sea", "slow"], thumbs=True)
    add(lib, tmp_path, "orbit", seed=2, model_name="cogvideox-2b", family="posemb", tags=["camera"])
    got = lib.get("waves")
    assert got.id == m.id and got.tags == ["sea", "slow"]
    assert got.source_name == "clip.mp4" and got.family == "rope" and got.latent_cols == 8
    assert json.loads(got.params_json) == {"steps": 10, "lr": 0.003} and got.loss == [1.0, 0.5, 0.25]
    assert got.created_at.tzinfo is not None
    assert json.loads(json.dumps(got.summary()))["tags"] == ["sea", "slow"]
    assert np.allclose(got.descriptor_array(), vec(1))
    assert got.thumb_png == f"thumbs/{got.blob_sha256}.png" and lib.thumb_path(got).is_file()
    assert lib.asset_path("waves").read_bytes() == b"asset:waves:1"

    assert [x.name for x in lib.list()] == ["orbit", "waves"]
    assert [x.name for x in lib.list(tag="sea")] == ["waves"]
    assert [x.name for x in lib.list(tag="SEA")] == ["waves"]
    assert [x.name for x in lib.list(model="cogvideox-2b")] == ["orbit"]
    assert [x.name for x in lib.list(model="local")] == ["orbit", "waves"]
    assert lib.list(tag="camera", model="tiny-5b") == []
    assert lib.model_names() == sorted({x.model_name for x in lib.list()})

    with pytest.raises(MotionNotFound, match="did you mean 'waves'"):
        lib.get("wavs")

    lib.rename("waves", "ocean")
    assert lib.get("ocean").id == m.id
    with pytest.raises(MotionNotFound):
        lib.get("waves")
    with pytest.raises(MotionExists):
        lib.rename("ocean", "orbit")
    with pytest.raises(InvalidName):
        lib.rename("ocean", "../evil")

    assert lib.tag("ocean", add=["calm"], remove=["slow"]).tags == ["calm", "sea"]
    assert [x.name for x in lib.list(tag="slow")] == []

    blob = lib.asset_path("ocean")
    png = lib.thumb_path("ocean")
    lib.remove("ocean")
    assert not blob.exists() and not png.exists()
    assert [x.name for x in lib.list()] == ["orbit"]
    with pytest.raises(MotionNotFound):
        lib.remove("ocean")


def test_remove_keeps_shared_blob(lib, tmp_path):
    add(lib, tmp_path, "one", seed=1, content=b"same bytes")
    add(lib, tmp_path, "two", seed=2, content=b"same bytes")
    assert lib.get("one").blob_sha256 == lib.get("two").blob_sha256
    lib.remove("one")
    assert lib.asset_path("two").read_bytes() == b"same bytes"
    lib.remove("two")
    assert list(lib.blobs.iter_shas()) == []


def test_duplicate_refused_and_force_replaces(lib, tmp_path):
    first = add(lib, tmp_path, "waves", seed=1, tags=["a"])
    old_blob = lib.asset_path("waves")
    with pytest.raises(MotionExists, match="force=True"):
        add(lib, tmp_path, "waves", seed=2)
    assert lib.get("waves").id == first.id
    assert len(list(lib.blobs.iter_shas())) == 1  # the refused asset was not stored
    second = add(lib, tmp_path, "waves", seed=3, force=True, tags=["b"])
    got = lib.get("waves")
    assert got.id == second.id != first.id and got.tags == ["b"]
    assert lib.asset_path("waves").read_bytes() == b"asset:waves:3"
    assert not old_blob.exists()  # unreferenced old blob collected
    assert len(lib.list()) == 1
    assert lib.search(vec(3), k=1)[0][0].id == second.id


def test_meta_validation(lib, tmp_path):
    with pytest.raises(LibraryError, match="missing required key"):
        lib.add_motion("x", asset_file=asset_file(tmp_path, b"x"), meta={"model_name": "m"}, descriptor=vec(0))
    with pytest.raises(LibraryError, match="family"):
        add(lib, tmp_path, "x", family="conv")
    with pytest.raises(LibraryError, match="descriptor"):
        lib.add_motion("x", asset_file=asset_file(tmp_path, b"x"), meta=meta(), descriptor=np.zeros(DIM))
    add(lib, tmp_path, "ok", seed=0, weird_key=5)
    assert lib.get("ok").params["weird_key"] == 5
    with pytest.raises(LibraryError, match="values"):
        lib.add_motion("y", asset_file=asset_file(tmp_path, b"y"), meta=meta(), descriptor=vec(1, dim=DIM + 1))
    assert lib.names() == ["ok"]


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "", "x" * 65, ".", "..", ".hidden", "-x", "a b",
                                 "naïve", "a\x00b"])
@pytest.mark.slow
def test_invalid_names(lib, tmp_path, bad):
    with pytest.raises(InvalidName) as e:
        lib.add_motion(bad, asset_file=asset_file(tmp_path, b"x"), meta=meta(), descriptor=vec(0))
    assert "\n" not in str(e.value)
    assert list(lib.blobs.iter_shas()) == [] and lib.names() == []


def test_valid_names(lib):
    for ok in ["a", "A.b-c_d", "9lives", "x" * 64]:
        assert lib.validate_name(ok) == ok


# -- blobs ---------------------------------------------------------------------------------------
def test_blob_layout_and_corruption(lib, tmp_path):
    m = add(lib, tmp_path, "waves", seed=1, content=b"0123456789" * 100)
    p = lib.asset_path("waves")
    assert p == lib.home / "blobs" / m.blob_sha256[:2] / f"{m.blob_sha256}.safetensors"
    assert m.blob_bytes == 1000
    assert list(lib.blobs.root.rglob("*.tmp*")) == []
    data = bytearray(p.read_bytes())
    data[500] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptBlob) as e:
        lib.asset_path("waves")
    assert "waves" in str(e.value) and str(p) in str(e.value) and e.value.motion == "waves"
    assert lib.asset_path("waves", verify=False) == p
    with pytest.raises(CorruptBlob):
        lib.export("waves", tmp_path / "out.safetensors")
    rep = lib.doctor()
    assert rep.corrupt_blobs == ["waves"] and not rep.ok
    p.unlink()
    with pytest.raises(CorruptBlob, match="missing"):
        lib.asset_path("waves", verify=False)
    assert lib.doctor(repair=True).missing_blobs == ["waves"]
    assert lib.names() == ["waves"]  # doctor never deletes rows


def test_export(lib, tmp_path):
    add(lib, tmp_path, "waves", seed=1)
    out = tmp_path / "out"
    out.mkdir()
    dest = lib.export("waves", out)
    assert dest == out / "waves.safetensors" and dest.read_bytes() == b"asset:waves:1"
    with pytest.raises(LibraryError, match="overwrite=True"):
        lib.export("waves", dest)
    assert lib.export("waves", dest, overwrite=True) == dest
    with pytest.raises(LibraryError, match="does not exist"):
        lib.export("waves", tmp_path / "nope" / "x.safetensors")


# -- import --------------------------------------------------------------------------------------
def test_import_file(lib, tmp_path):
    src = asset_file(tmp_path, b"SAFE-header-and-tensors", "incoming.safetensors")
    seen = []

    def validate(p: Path) -> dict:
        seen.append(p)
        assert p != src and lib.home in p.parents  # callbacks see a private copy inside home
        if not p.read_bytes().startswith(b"SAFE"):
            raise ValueError("bad safetensors header")
        return meta(name="ignored-original-name")

    m = lib.import_file(src, name="imported", validate=validate, descriptor_fn=lambda p, md: vec(7),
                        thumbnails_fn=lambda p, md, work: {"png": asset_file(work, b"png", "t.png")}, tags=["ext"])
    assert m.tags == ["ext"] and lib.asset_path("imported").read_bytes() == src.read_bytes()
    assert lib.thumb_path("imported").read_bytes() == b"png"
    assert lib.get("imported").params["imported_from"] == "incoming.safetensors"
    assert not seen[0].parent.exists()  # staging cleaned up
    assert list((lib.home / "tmp").iterdir()) == []

    bad = asset_file(tmp_path, b"EVIL", "bad.safetensors")
    with pytest.raises(ImportRejected, match="bad safetensors header"):
        lib.import_file(bad, name="bad", validate=validate, descriptor_fn=lambda p, md: vec(1))
    with pytest.raises(ImportRejected, match="no such file"):
        lib.import_file(tmp_path / "missing.safetensors", name="bad", validate=validate,
                        descriptor_fn=lambda p, md: vec(1))
    with pytest.raises(MotionExists):
        lib.import_file(src, name="imported", validate=validate, descriptor_fn=lambda p, md: vec(1))
    assert lib.names() == ["imported"] and len(list(lib.blobs.iter_shas())) == 1
    assert list((lib.home / "tmp").iterdir()) == []


# -- index & search ------------------------------------------------------------------------------
def test_search_nearest_first(lib, tmp_path):
    for i in range(6):
        add(lib, tmp_path, f"m{i}", seed=i, model_name="tiny-5b" if i % 2 == 0 else "tiny-2b")
    q = vec(3) + 0.05 * vec(100)
    res = lib.search(q, k=3)
    assert [m.name for m, _ in res][0] == "m3"
    scores = [s for _, s in res]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.95
    assert all(m.model_name == "tiny-5b" for m, _ in lib.search(q, k=3, model="tiny-5b"))
    assert len(lib.search(q, k=3, model="tiny-5b")) == 3
    assert "m3" not in [m.name for m, _ in lib.search(q, k=5, exclude="m3")]
    assert lib.search(q, k=10, model="nope") == []
    assert len(lib.search(q, k=100)) == 6
    with pytest.raises(LibraryError, match="values"):
        lib.search(vec(0, dim=3))


def _index_files(lib):
    return lib.index.faiss_path, lib.index.sidecar_path


def _side(lib):
    return json.loads(lib.index.sidecar_path.read_text())


def exact_top(lib, q, k, *, model=None, exclude=()):
    """Reference: brute-force cosine top-k over the catalogue rows, in float64."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q)
    scored = []
    for name in lib.names():
        m = lib.get(name)
        if name in exclude or (model is not None and model not in (m.model_name, m.model_source)):
            continue
        v = m.descriptor_array().astype(np.float64)
        scored.append((float(v @ q / np.linalg.norm(v)), name))
    scored.sort(reverse=True)
    return [(n, s) for s, n in scored[:k]]


def assert_same(got, want):
    assert [m.name for m, _ in got] == [n for n, _ in want]
    assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def fill(lib, tmp_path, n, start=0):
    for i in range(start, start + n):
        add(lib, tmp_path, f"m{i:02d}", seed=i, model_name="tiny-5b" if i % 3 else "tiny-2b")


@pytest.mark.slow
@pytest.mark.parametrize("flat_max", [10_000, 8])
def test_search_equals_exact_search(lib, tmp_path, flat_max):
    lib.index.flat_max = flat_max
    fill(lib, tmp_path, 30)
    lib.search(vec(0), k=1)
    assert lib.index.kind == ("flat" if flat_max > 30 else "pq") and len(lib.index) == 30
    for j in range(5):
        q = vec(1000 + j)
        assert_same(lib.search(q, k=7), exact_top(lib, q, 7))
        assert_same(lib.search(q, k=4, model="tiny-2b"), exact_top(lib, q, 4, model="tiny-2b"))
        assert_same(lib.search(q, k=5, exclude=["m01", "m02"]), exact_top(lib, q, 5, exclude={"m01", "m02"}))
        assert_same(lib.search(q, k=50, model="tiny-5b", exclude="m04"),
                    exact_top(lib, q, 50, model="tiny-5b", exclude={"m04"}))
    # the exact restricted search (many ids filtered out) gives the same answers
    lib.index.postfilter_max = 2
    q = vec(2000)
    assert_same(lib.search(q, k=3, model="tiny-2b"), exact_top(lib, q, 3, model="tiny-2b"))
    assert_same(lib.search(q, k=3, exclude=["m00", "m01", "m02"]), exact_top(lib, q, 3, exclude={"m00", "m01", "m02"}))


@pytest.mark.slow
def test_approximate_index_reflects_remove_and_rename(lib, tmp_path):
    lib.index.flat_max = 8
    lib.index.k_factor = 1  # few candidates: the fast scan really chooses them
    lib.index.compact_min = 10
    fill(lib, tmp_path, 30)
    lib.search(vec(0), k=1)
    assert lib.index.kind == "pq"
    for name in ("m05", "m06", "m07"):
        lib.remove(name)
    assert len(lib.index._dead) == 3
    assert len(lib.index) == 27 and lib.index.ntotal == 30  # dead ids are filtered, not removed
    for seed in (5, 6, 7, 8):
        got = [m.name for m, _ in lib.search(vec(seed), k=30)]
        assert len(got) == 27 and not {"m05", "m06", "m07"} & set(got)
    assert lib.search(vec(8), k=1)[0][0].name == "m08"
    lib.rename("m08", "eight")
    assert lib.search(vec(8), k=1)[0][0].name == "eight"
    # dead ids survive a save + load (another Library instance reads the file)
    lib.index.save()
    with Library(lib.home) as other:
        other.index.flat_max = 8
        assert other._sync_index() == "loaded" and other.index._dead == lib.index._dead
        got = [m.name for m, _ in other.search(vec(6), k=30)]
        assert len(got) == 27 and "m06" not in got
    # enough dead ids -> rebuilt from the index's own vectors without them
    for i in range(9, 20):
        lib.remove(f"m{i:02d}")
    assert len(lib.index) == 16 and lib.index.ntotal < 30 and len(lib.index._dead) <= 10
    assert_same(lib.search(vec(3), k=16), exact_top(lib, vec(3), 16))
    # shrinking to half the exact range -> exact index again
    for i in range(20, 28):
        lib.remove(f"m{i:02d}")
    assert lib.index.kind == "flat" and len(lib.index) == 8


@pytest.mark.slow
def test_index_grows_from_exact_to_approximate_and_refits(lib, tmp_path):
    lib.index.flat_max = 16
    fill(lib, tmp_path, 16)
    assert lib.index.kind == "flat"
    fill(lib, tmp_path, 1, start=16)
    assert lib.index.kind == "pq" and lib.index._trained_on == 17
    assert _side(lib)["kind"] == "pq"  # a restructure is saved at once
    fill(lib, tmp_path, 18, start=17)  # 35 > 2 x 17: the PQ is retrained on all of them
    assert lib.index._trained_on == 35 and len(lib.index) == 35
    assert_same(lib.search(vec(20), k=5), exact_top(lib, vec(20), 5))


def test_search_keeps_the_index_in_memory(lib, tmp_path, monkeypatch):
    fill(lib, tmp_path, 3)
    lib.search(vec(1), k=1)
    monkeypatch.setattr(faiss, "read_index", lambda *a: pytest.fail("search re-read the index file"))
    assert lib._sync_index() == "fresh"
    assert lib.search(vec(2), k=1)[0][0].name == "m02"


def test_add_does_not_rewrite_the_index_file(lib, tmp_path):
    add(lib, tmp_path, "first", seed=100)  # no index file yet: built and saved
    assert _side(lib)["count"] == 1
    before = lib.index.faiss_path.stat().st_mtime_ns, lib.index.sidecar_path.read_text()
    fill(lib, tmp_path, 5)
    assert (lib.index.faiss_path.stat().st_mtime_ns, lib.index.sidecar_path.read_text()) == before
    assert len(lib.index) == 6 and lib.search(vec(4), k=1)[0][0].name == "m04"  # but the index has them
    lib.index.save_min = 2
    fill(lib, tmp_path, 3, start=5)  # more than save_min changes pending: saved (once, at 7)
    assert _side(lib)["count"] == 7
    # a Library whose index is not loaded leaves the file alone; the next search catches up
    with Library(lib.home) as other:
        add(other, tmp_path, "late", seed=200)
        assert not other.index.loaded and _side(lib)["count"] == 7
        assert other.search(vec(200), k=1)[0][0].name == "late"


def test_index_rebuilt_when_deleted(lib, tmp_path):
    fill(lib, tmp_path, 3)
    faiss_path, side = _index_files(lib)
    assert faiss_path.exists() and side.exists()
    faiss_path.unlink()
    side.unlink()
    assert lib.doctor().index_stale
    assert lib.search(vec(1), k=1)[0][0].name == "m01"  # the in-memory index does not need the files
    with Library(lib.home) as other:  # the next process rebuilds them from the DB
        assert other.search(vec(1), k=1)[0][0].name == "m01"
    assert faiss_path.exists() and _side(lib)["count"] == 3
    faiss_path.write_bytes(b"garbage")  # unreadable -> rebuilt
    assert lib.doctor().index_stale
    with Library(lib.home) as other:
        assert other._sync_index() == "rebuilt"
        assert other.search(vec(2), k=1)[0][0].name == "m02"
    assert lib.doctor().index_stale is False


def test_index_catches_up_with_other_writers(lib, tmp_path):
    add(lib, tmp_path, "m0", seed=0)
    assert lib.index.loaded
    saved = _side(lib)
    with Library(lib.home) as other:  # e.g. another process: adds a row "behind the back" of lib's index
        add(other, tmp_path, "m1", seed=1)
    assert _side(lib) == saved  # the file lags the catalogue: not a problem, search catches up
    rep = lib.doctor()
    assert not rep.index_stale and rep.ok and "predates" in rep.index_note and "note:" in str(rep)
    assert lib.search(vec(1), k=1)[0][0].name == "m1"
    assert lib.index.signature == (2, lib.get("m1").id)
    with Library(lib.home) as third:  # loads the lagging file and catches up from the DB
        assert third._sync_index() == "loaded" and len(third.index) == 2
    # rows removed behind its back are dropped too
    with lib._write_session() as s:
        s.exec(sa.delete(sa.table("motions", sa.column("name"))).where(sa.column("name") == "m1"))
        s.commit()
    assert [m.name for m, _ in lib.search(vec(1), k=5)] == ["m0"]
    rep = lib.doctor(repair=True)
    assert _side(lib)["db_count"] == 1 and lib.doctor().index_note == ""


@sqlite_only
def test_index_rebuilt_when_catalogue_replaced(tmp_path):
    """A new DB under a kept index folder reuses ids for other descriptors: the load spot check rebuilds."""
    home = tmp_path / "home"
    with Library(home) as lib:
        fill(lib, tmp_path, 3)
        lib.index.save()
    for p in home.glob("motionlib.db*"):
        p.unlink()
    with Library(home) as lib:
        for i in range(2):  # fewer rows: the file's newest id is gone, its older ones denote other motions
            add(lib, tmp_path, f"new{i}", seed=50 + i, content=f"new {i}".encode())
    with Library(home) as lib:
        assert lib._sync_index() == "rebuilt"
        assert lib.search(vec(51), k=1)[0][0].name == "new1"
        assert [m.name for m, _ in lib.search(vec(0), k=5)] == [n for n, _ in exact_top(lib, vec(0), 5)]


def test_index_rebuilt_when_version_differs(lib, tmp_path):
    add(lib, tmp_path, "m0", seed=0)
    side = lib.index.sidecar_path
    data = json.loads(side.read_text())
    data["version"] = 99
    side.write_text(json.dumps(data))
    rep = lib.doctor()
    assert rep.index_stale and "version" in rep.index_reason
    with Library(lib.home) as other:
        assert other.search(vec(0), k=1)[0][0].name == "m0"
    assert json.loads(side.read_text())["version"] == DESCRIPTOR_VERSION
    # a library using another descriptor version has its own index file and ignores these descriptors
    other_version = DESCRIPTOR_VERSION + 1
    with Library(lib.home, descriptor_version=other_version) as v2:
        assert v2.index.faiss_path.name == f"descriptors-v{other_version}.faiss"
        assert v2.search(vec(0), k=1) == []
        assert v2.doctor().other_descriptor_versions == ["m0"]


def test_index_failure_never_fails_a_write(lib, tmp_path, monkeypatch):
    add(lib, tmp_path, "m0", seed=0)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(lib.index, "sync", boom)
    add(lib, tmp_path, "m1", seed=1)  # the catalogue write succeeds anyway
    assert not lib.index.loaded  # the in-memory index was dropped
    monkeypatch.undo()
    assert lib.search(vec(1), k=1)[0][0].name == "m1"
    # a home where the index cannot be saved still searches (in memory)
    monkeypatch.setattr(lib.index, "save", lambda: (_ for _ in ()).throw(PermissionError("read-only")))
    lib.index.unload()
    lib.index.mark_stale()
    assert lib.search(vec(0), k=1)[0][0].name == "m0"
    with pytest.raises(PermissionError):
        lib.rebuild_index()  # an explicit rebuild says so


def test_list_returns_light_rows(lib, tmp_path):
    from motionlib.store.models import HEAVY_COLUMNS, Motion, MotionSummary

    assert MotionSummary.columns() == [c for c in Motion.__table__.columns.keys() if c not in HEAVY_COLUMNS]
    add(lib, tmp_path, "waves", seed=1, tags=["sea", "slow"], thumbs=True)
    add(lib, tmp_path, "orbit", seed=2, model_name="cogvideox-2b")
    rows = lib.list()
    assert [type(r) for r in rows] == [MotionSummary] * 2
    waves = rows[1]
    full = lib.get("waves")
    for c in MotionSummary.columns():
        assert getattr(waves, c) == getattr(full, c), c
    assert waves.tags == ["sea", "slow"] and rows[0].tags == []
    assert waves.created_at.tzinfo is not None and lib.thumb_path(waves) == lib.thumb_path(full)
    assert json.loads(json.dumps(waves.summary()))["tags"] == ["sea", "slow"]
    assert [r.tags for r in lib.list(tag="sea")] == [["sea", "slow"]]


# -- concurrency ---------------------------------------------------------------------------------
def _worker(home: str, proc: int, n: int, tmp: str) -> None:
    lib = Library(Path(home))
    for i in range(n):
        src = Path(tmp) / f"p{proc}-{i}.bin"
        src.write_bytes(f"proc {proc} asset {i}".encode())
        lib.add_motion(f"p{proc}-m{i}", asset_file=src, meta=meta(), descriptor=vec(proc * 100 + i))
    lib.close()


@pytest.mark.slow
def test_two_processes_add_concurrently(tmp_path):
    home = tmp_path / "shared"  # not created yet: both processes also race to migrate
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(home), p, 5, str(tmp_path))) for p in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with Library(home) as lib:
        names = lib.names()
        assert len(names) == 10 and set(names) == {f"p{p}-m{i}" for p in range(2) for i in range(5)}
        for n in names:
            lib.asset_path(n)
        assert lib.search(vec(104), k=1)[0][0].name == "p1-m4"
        assert lib.doctor().ok, str(lib.doctor())


# -- renders -------------------------------------------------------------------------------------
def test_record_render_and_renders(lib, tmp_path):
    add(lib, tmp_path, "waves", seed=1)
    r1 = lib.record_render("waves", prompt="a boat", seed=1, steps=20, strength=0.8,
                           output_path=tmp_path / "a.mp4", seconds=12.5)
    r2 = lib.record_render("waves", prompt="a car", output_path="b.mp4")
    lib.record_render(None, prompt="no motion", output_path="c.mp4")
    assert r1.id and r1.motion_id == lib.get("waves").id and r1.created_at.tzinfo is not None
    assert [r.id for r in lib.renders("waves")] == [r2.id, r1.id]
    assert len(lib.renders()) == 3 and len(lib.renders(limit=1)) == 1
    with pytest.raises(MotionNotFound):
        lib.record_render("nope", prompt="x", output_path="x.mp4")
    lib.rename("waves", "ocean")
    assert [r.id for r in lib.renders("ocean")] == [r2.id, r1.id]
    lib.remove("ocean")
    kept = lib.renders("ocean")
    assert [r.id for r in kept] == [r2.id, r1.id] and all(r.motion_id is None for r in kept)


def test_record_render_only_for_the_row_read_at_the_start(lib, tmp_path):
    """A render started with one motion row is recorded only if that very row still has the name."""
    row = add(lib, tmp_path, "waves", seed=1)
    lib.record_render("waves", prompt="kept", output_path="a.mp4", motion_id=row.id)
    lib.rename("waves", "ocean")
    with pytest.raises(MotionNotFound):
        lib.record_render("waves", prompt="renamed", output_path="b.mp4", motion_id=row.id)
    lib.rename("ocean", "waves")
    lib.remove("waves")
    add(lib, tmp_path, "waves", seed=2)  # another motion under the same name
    with pytest.raises(MotionNotFound):
        lib.record_render("waves", prompt="replaced", output_path="c.mp4", motion_id=row.id)
    assert [r.prompt for r in lib.renders()] == ["kept"]


def test_descriptor_versions_migrate_on_open(tmp_path, caplog):
    """Motions of an older descriptor version are re-described from their asset files, with progress."""
    home = tmp_path / "home"
    with Library(home, descriptor_version=1) as old:
        for i in range(3):
            add(old, tmp_path, f"m{i}", seed=i)
    with caplog.at_level("WARNING", logger="motionlib.store"):
        with Library(home, descriptor_version=2) as lib:  # no way to re-describe: said, never silent
            assert lib.search(vec(0), k=1) == [] and lib.stale_descriptors() == ["m0", "m1", "m2"]
    assert "3 motion(s) have descriptors of another version and are not searchable" in caplog.text

    def describe(path: Path):  # the asset's content is "asset:NAME:SEED"; m2's clip "showed no motion"
        seed = int(path.read_bytes().decode().split(":")[2])
        return None if seed == 2 else vec(100 + seed)

    seen = []
    with Library(home, descriptor_version=2, describe=describe, progress=lambda *a: seen.append(a)) as lib:
        assert lib.stale_descriptors() == []
        assert lib.search(vec(101), k=1)[0][0].name == "m1"
        assert [m.name for m, _ in lib.search(vec(100), k=5)] == ["m0", "m1"]  # m2 kept, unsearchable
        assert lib.get("m2").descriptor is None and lib.get("m2").descriptor_version == 2
        assert lib.doctor().ok
    assert seen == [(0, 3, "m0"), (1, 3, "m1"), (2, 3, "m2"), (3, 3, "")]
    with Library(home, descriptor_version=2, describe=lambda p: 1 / 0) as lib:  # nothing left to do
        assert len(lib.search(vec(100), k=5)) == 2


def test_a_motion_that_cannot_be_redescribed_stays_reported(tmp_path):
    home = tmp_path / "home"
    with Library(home, descriptor_version=1) as old:
        add(old, tmp_path, "m0", seed=0)
        old.blobs.path(old.get("m0").blob_sha256).write_bytes(b"tampered")
    with Library(home, descriptor_version=2, describe=lambda p: vec(0)) as lib:
        assert lib.stale_descriptors() == ["m0"]
        assert lib.doctor().other_descriptor_versions == ["m0"]
