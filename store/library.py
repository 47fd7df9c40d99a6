"""``Library``: the motion catalogue API (SQLite/SQLModel rows + content-addressed blobs + faiss index).

Layout under ``home``::

    motionlib.db                      catalogue (unless db_url points elsewhere)
    blobs/<sha[:2]>/<sha>.safetensors motion assets, named by content hash
    thumbs/<sha>.png|.gif             thumbnails, named by the asset's hash
    index/descriptors-v<N>.faiss|json descriptor index (a cache, rebuilt from the DB)
    tmp/                              staging for imports

Crash safety of ``add_motion``: blob (durable) -> thumbnails (atomic) -> one DB transaction ->
in-memory index (a cache that catches up from the DB on the next search, see ``store.index``). A
crash leaves at worst an unreferenced blob or a ``*.tmp*`` file, which ``doctor(repair=True)``
removes. No file path is ever derived from a motion name; everything written lives inside ``home``,
except ``export``'s explicit destination.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import platformdirs
from sqlalchemy import case, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from sqlmodel import Session, select

from ..families import FAMILIES
from .blobs import TMP_MARKER, BlobStore, atomic_copy
from .db import migrate, open_engine, write_engine
from .errors import (CorruptBlob, ImportRejected, InvalidName, LibraryError, MotionExists, MotionNotFound,
                     RenderNotFound)
from .index import DescriptorIndex, as_descriptor
from .models import Motion, MotionSummary, MotionTag, Render

__all__ = ["Library", "Report", "DESCRIPTOR_VERSION", "REQUIRED_META", "COLUMN_META", "FAMILIES"]

log = logging.getLogger("motionlib.store")

DESCRIPTOR_VERSION = 1
NAME_MAX = 64
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
THUMB_KINDS = ("png", "gif")

#: meta keys that become Motion columns, with their types
COLUMN_META: dict[str, type] = {
    "model_name": str, "model_source": str, "config_hash": str, "family": str,
    "latent_frames": int, "latent_rows": int, "latent_cols": int,
    "source_sha256": str, "source_name": str, "source_fps": float, "source_frames": int,
    "source_width": int, "source_height": int, "descriptor_version": int, "created_at": datetime,
}
REQUIRED_META = ("model_name", "family", "latent_frames", "latent_rows", "latent_cols")


@dataclass
class Report:
    """What ``Library.doctor`` found (and, with repair, did). Rows are never deleted by doctor."""

    orphan_blobs: list[Path] = field(default_factory=list)
    orphan_thumbnails: list[Path] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)
    missing_blobs: list[str] = field(default_factory=list)  # motion names
    corrupt_blobs: list[str] = field(default_factory=list)  # motion names
    missing_thumbnails: list[tuple[str, str]] = field(default_factory=list)  # (motion, relative path)
    other_descriptor_versions: list[str] = field(default_factory=list)  # motions not searchable now
    index_stale: bool = False
    index_reason: str = ""
    index_note: str = ""  # informational (e.g. the saved index lags the catalogue), not a problem
    repaired: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing at all was found."""
        return not self.problems()

    @property
    def needs_attention(self) -> list[str]:
        """Findings repair cannot fix: rows whose files are missing or corrupt."""
        out = [f"motion '{n}': asset file is missing; re-learn/re-import it or remove the motion"
               for n in self.missing_blobs]
        out += [f"motion '{n}': asset file is corrupt; re-learn/re-import it or remove the motion"
                for n in self.corrupt_blobs]
        out += [f"motion '{n}': thumbnail {p} is missing" for n, p in self.missing_thumbnails]
        out += [f"motion '{n}': descriptor is of another version; not searchable until re-described"
                for n in self.other_descriptor_versions]
        return out

    def problems(self) -> list[str]:
        out = [f"orphan blob (no motion row): {p}" for p in self.orphan_blobs]
        out += [f"orphan thumbnail (no motion row): {p}" for p in self.orphan_thumbnails]
        out += [f"temp file left behind: {p}" for p in self.temp_files]
        out += self.needs_attention
        if self.index_stale:
            out.append(f"search index: {self.index_reason}")
        return out

    def __str__(self) -> str:
        lines = self.problems() or ["library is healthy"]
        if self.index_note:
            lines.append(f"note: search index: {self.index_note}")
        lines += [f"repaired: {r}" for r in self.repaired]
        lines += [f"skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


def _default_home() -> Path:
    env = os.environ.get("MOTIONLIB_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("motionlib"))


def _coerce(key: str, value: Any, typ: type) -> Any:
    if value is None:
        return None
    try:
        if typ is datetime:
            return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if typ is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise LibraryError(f"meta key '{key}' should be {typ.__name__}, got {value!r}") from None


def _float_lists(obj: Any) -> Any:
    """Loss history as nested lists of floats (per guided step, per optimisation step)."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [_float_lists(x) for x in obj]
    return float(obj)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path, datetime)):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in params_json")


class _Source:
    """The catalogue as ``DescriptorIndex.sync`` reads it (``store.index.CatalogueSource``), inside one
    read session. Rows of another descriptor version come back with a None descriptor."""

    CHUNK = 5000  # ids per IN (...) list

    #: one plain statement, run on every search: SQLite answers count(*) from its smallest index and
    #: max(id) from the primary key
    SIGNATURE = f"SELECT (SELECT count(*) FROM {Motion.__tablename__}), (SELECT max(id) FROM {Motion.__tablename__})"

    def __init__(self, session: Session, version: int):
        self.conn = session.connection()  # Core statements in the session's transaction (no ORM overhead)
        self.version = version

    @property
    def desc(self):
        return case((Motion.descriptor_version == self.version, Motion.descriptor), else_=None)

    def signature(self) -> tuple[int, int]:
        count, max_id = self.conn.exec_driver_sql(self.SIGNATURE).one()
        return int(count), int(max_id or 0)

    def rows_after(self, motion_id: int) -> list[tuple[int, bytes | None]]:
        stmt = select(Motion.id, self.desc).where(Motion.id > motion_id).order_by(Motion.id)
        return [(int(i), d) for i, d in self.conn.execute(stmt).all()]

    def rows(self, ids: Iterable[int] | None) -> list[tuple[int, bytes | None]]:
        if ids is None:
            return [(int(i), d) for i, d in self.conn.execute(select(Motion.id, self.desc)).all()]
        ids = sorted(int(i) for i in ids)
        out: list[tuple[int, bytes | None]] = []
        for j in range(0, len(ids), self.CHUNK):
            stmt = select(Motion.id, self.desc).where(Motion.id.in_(ids[j:j + self.CHUNK]))
            out += [(int(i), d) for i, d in self.conn.execute(stmt).all()]
        return out

    def ids(self) -> set[int]:
        return set(self.conn.execute(select(Motion.id)).scalars().all())


class Library:
    """The motion catalogue. Thread-unsafe per instance; safe across processes sharing one home."""

    def __init__(self, home: Path | str | None = None, db_url: str | None = None, *,
                 descriptor_version: int = DESCRIPTOR_VERSION):
        self.home = (Path(home).expanduser() if home is not None else _default_home()).resolve()
        for sub in ("blobs", "thumbs", "index", "tmp"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or os.environ.get("MOTIONLIB_DB_URL") or f"sqlite:///{self.home / 'motionlib.db'}"
        self.descriptor_version = int(descriptor_version)
        self.blobs = BlobStore(self.home / "blobs")
        self.thumbs_dir = self.home / "thumbs"
        self.index = DescriptorIndex(self.home / "index", self.descriptor_version)
        self._model_cache: dict[tuple, frozenset[int]] = {}
        self.engine = open_engine(self.db_url)
        self._write = write_engine(self.engine)
        try:
            migrate(self.engine)
        except Exception as exc:
            self.engine.dispose()
            raise LibraryError(f"could not open or upgrade the catalogue at {self.db_url}: {exc}") from exc

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self.index.unload()
        self.engine.dispose()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Library(home={str(self.home)!r})"

    def _read_session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _write_session(self) -> Session:
        return Session(self._write, expire_on_commit=False)

    # -- names ---------------------------------------------------------------------------------
    @staticmethod
    def validate_name(name: str, *, what: str = "motion name") -> str:
        """Return ``name`` if acceptable, else raise InvalidName saying why."""
        rule = f"use 1-{NAME_MAX} letters, digits, '-', '_' or '.', starting with a letter or digit"
        if not isinstance(name, str) or not name:
            raise InvalidName(f"{what} is empty; {rule}")
        if len(name) > NAME_MAX:
            raise InvalidName(f"{what} is {len(name)} characters long; the limit is {NAME_MAX}")
        if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
            raise InvalidName(f"{what} {name!r} contains a path separator; {rule}")
        if name in (".", ".."):
            raise InvalidName(f"{what} {name!r} is reserved; {rule}")
        if not _NAME_RE.match(name) or not name.isascii():
            bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
            if bad:
                raise InvalidName(f"{what} {name!r} contains {''.join(bad)!r}; {rule}")
            raise InvalidName(f"{what} {name!r} must start with a letter or digit; {rule}")
        return name

    def _clean_tags(self, tags: Iterable[str]) -> list[str]:
        if isinstance(tags, str):
            tags = [tags]
        out = []
        for t in tags:
            t = self.validate_name(str(t).strip().lower(), what="tag")
            if t not in out:
                out.append(t)
        return out

    # -- meta ----------------------------------------------------------------------------------
    def _meta_to_columns(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(meta, Mapping):
            raise LibraryError(f"meta must be a dict, got {type(meta).__name__}")
        missing = [k for k in REQUIRED_META if meta.get(k) is None]
        if missing:
            raise LibraryError(f"meta is missing required key(s): {', '.join(missing)}")
        cols: dict[str, Any] = {}
        params: dict[str, Any] = {}
        for key, value in meta.items():
            if key in COLUMN_META:
                cols[key] = _coerce(key, value, COLUMN_META[key])
            elif key not in ("params", "loss"):
                params[key] = value  # unknown (or library-owned) keys are kept, in params_json
        if cols["family"] not in FAMILIES:
            raise LibraryError(f"meta 'family' must be one of {', '.join(FAMILIES)}, got {cols['family']!r}")
        if cols.get("source_name"):
            cols["source_name"] = PureWindowsPath(cols["source_name"]).name  # file name only
        extra = meta.get("params") or {}
        if not isinstance(extra, Mapping):
            raise LibraryError("meta 'params' must be a dict of the learn parameters")
        params.update(extra)
        loss = meta.get("loss")
        loss = [] if loss is None else _float_lists(loss)
        try:
            cols["params_json"] = json.dumps(params, sort_keys=True, default=_jsonable)
        except (TypeError, ValueError) as exc:
            raise LibraryError(f"meta params cannot be stored as JSON: {exc}") from None
        cols["loss_json"] = json.dumps(loss)
        return cols

    def _check_dim(self, version: int, dim: int) -> None:
        with self._read_session() as s:
            blob = s.exec(select(Motion.descriptor).where(Motion.descriptor_version == version,
                                                          Motion.descriptor.is_not(None)).limit(1)).first()
        if blob is not None and len(blob) // 4 != dim:
            raise LibraryError(f"descriptor has {dim} values but this library's version-{version} "
                               f"descriptors have {len(blob) // 4}; bump the descriptor version")

    # -- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._read_session() as s:
            return list(s.exec(select(Motion.name).order_by(Motion.name)).all())

    def model_names(self) -> list[str]:
        """The distinct models the stored motions were learnt with."""
        with self._read_session() as s:
            return list(s.exec(select(Motion.model_name).distinct().order_by(Motion.model_name)).all())

    def exists(self, name: str) -> bool:
        with self._read_session() as s:
            return s.exec(select(Motion.id).where(Motion.name == name)).first() is not None

    def _not_found(self, name: str) -> MotionNotFound:
        close = difflib.get_close_matches(str(name), self.names(), n=1, cutoff=0.6)
        return MotionNotFound(name, close[0] if close else None)

    def get(self, name: str) -> Motion:
        with self._read_session() as s:  # one query: the row joined with its tags
            stmt = select(Motion).where(Motion.name == name).options(joinedload(Motion.tag_rows))
            m = s.exec(stmt).unique().first()
        if m is None:
            raise self._not_found(name)
        return m

    def list(self, tag: str | None = None, model: str | None = None) -> list[MotionSummary]:
        """Motions sorted by name; ``tag`` filters by tag, ``model`` by model_name or model_source.

        Rows are ``MotionSummary``: every column but params/loss JSON and the descriptor, plus tags
        (two plain queries, no ORM objects); ``get(name)`` returns the full ``Motion``."""
        conds = []
        if tag is not None:
            conds.append(Motion.id.in_(select(MotionTag.motion_id).where(MotionTag.tag == tag.strip().lower())))
        if model is not None:
            conds.append(or_(Motion.model_name == model, Motion.model_source == model))
        cols = MotionSummary.columns()
        with self._read_session() as s:
            rows = s.exec(select(*(getattr(Motion, c) for c in cols)).where(*conds).order_by(Motion.name)).all()
            tag_stmt = select(MotionTag.motion_id, MotionTag.tag).order_by(MotionTag.motion_id, MotionTag.tag)
            if conds:
                tag_stmt = tag_stmt.where(MotionTag.motion_id.in_(select(Motion.id).where(*conds)))
            tags: dict[int, list[str]] = {}
            for mid, t in s.exec(tag_stmt).all():
                tags.setdefault(mid, []).append(t)
        out = []
        for r in rows:
            m = MotionSummary(*r)
            m.tags = tags.get(m.id, [])
            out.append(m)
        return out

    def thumb_path(self, motion: Motion | MotionSummary | str, kind: str = "png") -> Path | None:
        m = self.get(motion) if isinstance(motion, str) else motion
        rel = {"png": m.thumb_png, "gif": m.thumb_gif}.get(kind)
        return self.home / rel if rel else None

    def asset_path(self, name: str, verify: bool = True) -> Path:
        """Path of the motion's safetensors blob; with verify, its sha256 is checked (CorruptBlob)."""
        m = self.get(name)
        if verify:
            return self.blobs.verify(m.blob_sha256, motion=m.name)
        p = self.blobs.path(m.blob_sha256)
        if not p.is_file():
            raise CorruptBlob(f"motion '{m.name}': asset file {p} is missing; run doctor, then re-learn or "
                              "re-import it", path=p, motion=m.name, expected=m.blob_sha256)
        return p

    # -- writing -------------------------------------------------------------------------------
    def _put_thumbs(self, sha: str, thumbnails: Mapping[str, Path] | None) -> dict[str, str]:
        rel: dict[str, str] = {}
        for kind, src in (thumbnails or {}).items():
            if kind not in THUMB_KINDS:
                raise LibraryError(f"unknown thumbnail kind {kind!r}; expected keys {', '.join(THUMB_KINDS)}")
            if src is None:
                continue
            src = Path(src)
            if not src.is_file():
                raise LibraryError(f"thumbnail file not found: {src}")
            dst = self.thumbs_dir / f"{sha}.{kind}"  # named by the blob's sha, never by the user's name
            atomic_copy(src, dst)
            rel[kind] = dst.relative_to(self.home).as_posix()
        return rel

    def _gc_sha(self, sha: str) -> None:
        """Delete the blob and thumbnails of ``sha`` if no row references it any more."""
        with self._read_session() as s:
            n = s.exec(select(func.count()).select_from(Motion).where(Motion.blob_sha256 == sha)).one()
        if n:
            return
        self.blobs.delete(sha)
        for kind in THUMB_KINDS:
            (self.thumbs_dir / f"{sha}.{kind}").unlink(missing_ok=True)

    def add_motion(self, name: str, *, asset_file: Path, meta: Mapping[str, Any], descriptor,
                   thumbnails: Mapping[str, Path] | None = None, tags: Iterable[str] = (),
                   force: bool = False) -> Motion:
        """Store a learned motion. See ``COLUMN_META``/``REQUIRED_META`` for the meta keys.

        Thumbnail files are copied (the caller's files are left in place). With ``force`` an
        existing motion of that name is replaced in the same transaction.
        """
        self.validate_name(name)
        tag_list = self._clean_tags(tags)
        cols = self._meta_to_columns(meta)
        try:
            desc = as_descriptor(descriptor)
        except ValueError as exc:
            raise LibraryError(f"bad descriptor for '{name}': {exc}") from None
        version = cols.pop("descriptor_version", None) or self.descriptor_version
        self._check_dim(version, desc.size)
        if not force and self.exists(name):
            raise MotionExists(name)  # fail fast, before copying anything

        sha, nbytes = self.blobs.put(Path(asset_file))  # 1. durable blob
        rel = self._put_thumbs(sha, thumbnails)  # 2. thumbnails

        replaced: Motion | None = None
        try:  # 3. one transaction
            with self._write_session() as s:
                old = s.exec(select(Motion).where(Motion.name == name)).first()
                if old is not None:
                    if not force:
                        raise MotionExists(name)
                    replaced = old
                    s.delete(old)
                    s.flush()  # the DELETE must reach the DB before the INSERT of the same name
                motion = Motion(name=name, blob_sha256=sha, blob_bytes=nbytes, thumb_png=rel.get("png"),
                                thumb_gif=rel.get("gif"), descriptor=desc.astype("<f4").tobytes(),
                                descriptor_version=version, **cols)
                motion.tag_rows = [MotionTag(tag=t) for t in tag_list]
                s.add(motion)
                try:
                    s.commit()
                except IntegrityError:
                    raise MotionExists(name) from None
        except BaseException:
            self._gc_sha(sha)
            raise
        # A concurrent doctor/remove may have collected the blob between steps 1 and 3: re-put.
        if not self.blobs.exists(sha):
            self.blobs.put(Path(asset_file))
        if any(not (self.home / r).exists() for r in rel.values()):
            self._put_thumbs(sha, thumbnails)
        if replaced is not None and replaced.blob_sha256 != sha:
            self._gc_sha(replaced.blob_sha256)
        self._refresh_index()  # 4. cache
        return motion

    def remove(self, name: str) -> Motion:
        """Delete the motion's row (renders keep its name); its files go when nothing else uses them."""
        with self._write_session() as s:
            m = s.exec(select(Motion).where(Motion.name == name)).first()
            if m is None:
                raise self._not_found(name)
            s.delete(m)
            s.commit()
        self._gc_sha(m.blob_sha256)
        self._refresh_index()
        return m

    def rename(self, old: str, new: str) -> Motion:
        self.validate_name(new)
        with self._write_session() as s:
            m = s.exec(select(Motion).where(Motion.name == old)).first()
            if m is None:
                raise self._not_found(old)
            if old == new:
                return m
            if s.exec(select(Motion.id).where(Motion.name == new)).first() is not None:
                raise MotionExists(new)
            m.name = new
            s.add(m)
            s.exec(update(Render).where(Render.motion_id == m.id).values(motion_name=new))
            try:
                s.commit()
            except IntegrityError:
                raise MotionExists(new) from None
        return self.get(new)

    def tag(self, name: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Motion:
        add_l, rm_l = self._clean_tags(add), self._clean_tags(remove)
        with self._write_session() as s:
            m = s.exec(select(Motion).where(Motion.name == name)).first()
            if m is None:
                raise self._not_found(name)
            have = {t.tag for t in m.tag_rows}
            m.tag_rows = [t for t in m.tag_rows if t.tag not in rm_l]
            m.tag_rows.extend(MotionTag(tag=t) for t in add_l if t not in have and t not in rm_l)
            s.add(m)
            s.commit()
        return self.get(name)

    def export(self, name: str, dest: Path | str, *, overwrite: bool = False) -> Path:
        """Copy the (verified) asset to ``dest`` (a file, or a folder -> ``<folder>/<name>.safetensors``)."""
        dest = Path(dest).expanduser()
        if dest.is_dir():
            dest = dest / f"{self.validate_name(name)}.safetensors"
        if not dest.parent.is_dir():
            raise LibraryError(f"cannot export to {dest}: folder {dest.parent} does not exist")
        if dest.exists() and not overwrite:
            raise LibraryError(f"{dest} already exists; pass overwrite=True to replace it")
        m = self.get(name)
        src = self.blobs.verify(m.blob_sha256, motion=m.name)
        sha, _ = atomic_copy(src, dest)
        if sha != m.blob_sha256:
            raise CorruptBlob(f"motion '{m.name}': asset file {src} changed while exporting; run doctor",
                              path=src, motion=m.name, expected=m.blob_sha256, actual=sha)
        return dest

    def import_file(self, path: Path | str, *, name: str, validate: Callable[[Path], dict],
                    descriptor_fn: Callable[[Path, dict], Any],
                    thumbnails_fn: Callable[[Path, dict, Path], Mapping[str, Path]] | None = None,
                    force: bool = False, tags: Iterable[str] = ()) -> Motion:
        """Import a motion asset made elsewhere. Nothing in the file is executed by the library.

        The file is first copied into ``<home>/tmp`` and every callback sees only that copy:
        ``validate(copy) -> meta`` (raise to reject), ``descriptor_fn(copy, meta) -> vector``,
        ``thumbnails_fn(copy, meta, workdir) -> {"png": path, "gif": path}`` (optional; failures
        only lose the thumbnails). Rejections raise ImportRejected.
        """
        self.validate_name(name)
        path = Path(path).expanduser()
        if not path.exists():
            raise ImportRejected(f"{path}: no such file")
        if not path.is_file():
            raise ImportRejected(f"{path}: not a regular file")
        if not force and self.exists(name):
            raise MotionExists(name)
        work = Path(tempfile.mkdtemp(prefix="import-", suffix=TMP_MARKER, dir=self.home / "tmp"))
        try:
            staged = work / "asset.safetensors"
            shutil.copyfile(path, staged)
            try:
                meta = validate(staged)
            except Exception as exc:
                raise ImportRejected(f"{path.name} is not a valid motion asset: {exc}") from exc
            if not isinstance(meta, Mapping):
                raise ImportRejected(f"{path.name}: the validator returned {type(meta).__name__}, not a dict")
            meta = dict(meta)
            meta.setdefault("imported_from", path.name)
            try:
                self._meta_to_columns(meta)
            except LibraryError as exc:
                raise ImportRejected(f"{path.name}: {exc}") from None
            try:
                desc = as_descriptor(descriptor_fn(staged, meta))
            except Exception as exc:
                raise ImportRejected(f"{path.name}: could not compute its descriptor: {exc}") from exc
            thumbs: Mapping[str, Path] = {}
            if thumbnails_fn is not None:
                try:
                    thumbs = thumbnails_fn(staged, meta, work) or {}
                except Exception as exc:  # cosmetic: import without thumbnails
                    log.warning("thumbnails for %s failed (%s); importing without them", path.name, exc)
            return self.add_motion(name, asset_file=staged, meta=meta, descriptor=desc, thumbnails=thumbs,
                                   tags=tags, force=force)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -- renders -------------------------------------------------------------------------------
    def record_render(self, name: str | None, *, prompt: str, output_path: Path | str, seed: int | None = None,
                      steps: int | None = None, strength: float | None = None,
                      seconds: float | None = None) -> Render:
        """Log a render made with motion ``name`` (None: no motion)."""
        motion_id = self.get(name).id if name is not None else None
        r = Render(motion_id=motion_id, motion_name=name, prompt=prompt, seed=seed, steps=steps,
                   strength=strength, output_path=str(output_path), seconds=seconds)
        with self._write_session() as s:
            s.add(r)
            s.commit()
        return r

    def renders(self, name: str | None = None, limit: int | None = None) -> list[Render]:
        """Renders newest first, optionally only those of motion ``name`` (also after it was removed)."""
        stmt = select(Render).order_by(Render.created_at.desc(), Render.id.desc())
        if name is not None:
            stmt = stmt.where(Render.motion_name == name)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read_session() as s:
            return list(s.exec(stmt).all())

    def render(self, render_id: int) -> Render:
        """One render by id (RenderNotFound if there is none)."""
        with self._read_session() as s:
            r = s.get(Render, int(render_id))
        if r is None:
            raise RenderNotFound(render_id)
        return r

    # -- search --------------------------------------------------------------------------------
    def _sync_index(self, force_rebuild: bool = False) -> str:
        with self._read_session() as s:
            return self.index.sync(_Source(s, self.descriptor_version), force_rebuild=force_rebuild)

    def _refresh_index(self) -> None:
        """After a catalogue write: update the in-memory index if this Library has one (cheap: the new rows
        only), or build the index if it has no file yet (e.g. the first motion). Otherwise the saved index
        just lags the catalogue and the next search catches up."""
        if not (self.index.loaded or not self.index.sidecar_path.exists()):
            return
        try:
            self._sync_index()
        except Exception as exc:  # the index is a cache: never fail a catalogue write for it
            log.warning("descriptor index update failed (%s); it will be caught up or rebuilt on next use", exc)
            self.index.unload()

    def rebuild_index(self) -> int:
        """Rebuild the index from the catalogue and save it; returns the number of searchable descriptors."""
        self._sync_index(force_rebuild=True)
        return len(self.index)

    def _model_ids(self, s: Session, model: str) -> frozenset[int]:
        """Ids of searchable motions of ``model`` (model_name or model_source), cached per catalogue state."""
        key = (self.index.signature, model)
        ids = self._model_cache.get(key)
        if ids is None:
            ids = frozenset(s.exec(select(Motion.id).where(
                Motion.descriptor_version == self.descriptor_version, Motion.descriptor.is_not(None),
                or_(Motion.model_name == model, Motion.model_source == model))).all())
            if len(self._model_cache) >= 16:
                self._model_cache.clear()
            self._model_cache[key] = ids
        return ids

    def search(self, descriptor, k: int = 5, model: str | None = None,
               exclude: str | Iterable[str] | None = None) -> list[tuple[Motion, float]]:
        """Nearest motions by cosine similarity of descriptors, best first.

        The index stays in memory between calls; each call checks the catalogue's (row count, largest id)
        and catches up on changes (see ``store.index``)."""
        excl = [exclude] if isinstance(exclude, str) else list(exclude or ())
        with self._read_session() as s:  # one read transaction: the hits' rows exist
            self.index.sync(_Source(s, self.descriptor_version))
            allowed = self._model_ids(s, model) if model is not None else None
            blocked = set(s.exec(select(Motion.id).where(Motion.name.in_(excl))).all()) if excl else None
            try:
                hits = self.index.search(descriptor, k, allowed, blocked)
            except ValueError as exc:
                raise LibraryError(f"cannot search: {exc}") from None
            if not hits:
                return []
            stmt = select(Motion).where(Motion.id.in_([i for i, _ in hits])).options(joinedload(Motion.tag_rows))
            rows = {m.id: m for m in s.exec(stmt).unique().all()}
        return [(rows[i], score) for i, score in hits if i in rows]

    # -- health --------------------------------------------------------------------------------
    def _temp_entries(self) -> list[Path]:
        out: list[Path] = []
        for sub in ("blobs", "thumbs", "index", "tmp"):
            root = self.home / sub
            if root.is_dir():
                out += [p for p in root.rglob(f"*{TMP_MARKER}*")
                        if not any(TMP_MARKER in part for part in p.relative_to(root).parts[:-1])]
        return sorted(out)

    def doctor(self, repair: bool = False, *, grace_seconds: float = 60.0, verify: bool = True) -> Report:
        """Check files against rows. With repair: remove orphan blobs/thumbnails, remove temp files
        older than ``grace_seconds`` (younger ones may belong to a running learn/import), rebuild the
        index. Rows are never deleted; rows with missing/corrupt files are only reported."""
        rep = Report()
        with self._read_session() as s:
            rows = s.exec(select(Motion.name, Motion.blob_sha256, Motion.thumb_png, Motion.thumb_gif,
                                 Motion.descriptor_version, Motion.descriptor.is_not(None))).all()
            signature = _Source(s, self.descriptor_version).signature()
        used = {r[1] for r in rows}
        searchable = any(dv == self.descriptor_version and has for *_, dv, has in rows)
        for name, sha, png, gif, dv, _ in rows:
            try:
                if verify:
                    self.blobs.verify(sha, motion=name)
                elif not self.blobs.exists(sha):
                    raise CorruptBlob("missing", path=self.blobs.path(sha))
            except CorruptBlob as exc:
                (rep.corrupt_blobs if exc.actual else rep.missing_blobs).append(name)
            for rel in (png, gif):
                if rel and not (self.home / rel).is_file():
                    rep.missing_thumbnails.append((name, rel))
            if dv != self.descriptor_version:
                rep.other_descriptor_versions.append(name)
        rep.orphan_blobs = [self.blobs.path(sha) for sha in self.blobs.iter_shas() if sha not in used]
        for p in sorted(self.thumbs_dir.glob("*.*")):
            stem, _, ext = p.name.partition(".")
            if ext in THUMB_KINDS and stem not in used:
                rep.orphan_thumbnails.append(p)
        rep.temp_files = self._temp_entries()
        state = self.index.check(signature)
        # an index not built yet for a library with nothing to search is not a problem
        stale = not state.usable and (searchable or self.index.sidecar_path.exists())
        rep.index_stale, rep.index_reason = stale, (state.reason if stale else "")
        rep.index_note = state.reason if state.behind else ""

        if repair:
            for p in rep.orphan_blobs:
                self._gc_sha(p.name.split(".")[0])  # re-checks references right before deleting
                if not p.exists():
                    rep.repaired.append(f"removed orphan blob {p}")
            for p in rep.orphan_thumbnails:
                if p.exists():
                    self._gc_sha(p.name.split(".")[0])
                if not p.exists():
                    rep.repaired.append(f"removed orphan thumbnail {p}")
            now = time.time()
            for p in rep.temp_files:
                try:
                    age = now - p.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age < grace_seconds:
                    rep.skipped.append(f"{p} is only {age:.0f}s old (may belong to a running learn/import); "
                                       "re-run later or pass grace_seconds=0")
                    continue
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                rep.repaired.append(f"removed temp file {p}")
            n = self.rebuild_index()
            rep.repaired.append(f"rebuilt the search index ({n} descriptors)")
        return rep
