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

import builtins
import difflib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, cast

import platformdirs
from sqlalchemy import ColumnElement, case, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, joinedload
from sqlmodel import Session, col, select

from motionlib.versions import DESCRIPTOR_VERSION  # the one definition, importable without numpy or torch
from motionlib.models.spec import EMBEDDINGS as FAMILIES  # the values of the catalogue column "family"
from motionlib.fsutil import TMP_MARKER, NoSpaceLeft, atomic_copy, no_space_is_an_error

from .blobs import BlobStore
from .doctor import Report
from .db import lock, migrate, open_engine, write_engine
from . import layout
from .layout import index_sidecar
from .errors import (CorruptBlob, ImportRejected, InvalidName, LibraryError, MotionExists, MotionNotFound,
                     RenderNotFound)
from .models import Motion, MotionSummary, MotionTag, Render

if TYPE_CHECKING:
    from .index import DescriptorIndex

__all__ = ["Library", "Report", "DESCRIPTOR_VERSION", "REQUIRED_META", "COLUMN_META", "FAMILIES"]

log = logging.getLogger("motionlib.store")

NAME_MAX = 64
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: ``Motion.tag_rows`` as the ORM attribute it is at class level (SQLModel types it as the list of rows)
_TAG_ROWS = cast("QueryableAttribute[Any]", Motion.tag_rows)


def _ids(rows: Iterable[int | None]) -> set[int]:
    """Motion ids read back from the catalogue (``Motion.id`` is typed optional only before an insert)."""
    return {i for i in rows if i is not None}


#: meta keys that become Motion columns, with their types
COLUMN_META: dict[str, type] = {
    "model_name": str, "model_source": str, "config_hash": str, "family": str,
    "latent_frames": int, "latent_rows": int, "latent_cols": int,
    "source_sha256": str, "source_name": str, "source_fps": float, "source_frames": int,
    "source_width": int, "source_height": int, "descriptor_version": int, "created_at": datetime,
    "check_score": float, "weights_fingerprint": str,
}
THUMB_KINDS = ("png", "gif")
REQUIRED_META = ("model_name", "family", "latent_frames", "latent_rows", "latent_cols")


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


def _as_descriptor(vec):
    from .index import as_descriptor

    return as_descriptor(vec)


def _numpy():
    """numpy if something imported it already (then a value may be a numpy one), else None: the
    catalogue commands never import it themselves."""
    return sys.modules.get("numpy")


def _float_lists(obj: Any) -> Any:
    """Loss history as nested lists of floats (per guided step, per optimisation step)."""
    np = _numpy()
    if np is not None and isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [_float_lists(x) for x in obj]
    return float(obj)


def _jsonable(obj: Any) -> Any:
    np = _numpy()
    if np is not None and isinstance(obj, np.ndarray):
        return obj.tolist()
    if np is not None and isinstance(obj, np.generic):
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
        stmt = select(Motion.id, self.desc).where(col(Motion.id) > motion_id).order_by(col(Motion.id))
        return [(int(i), d) for i, d in self.conn.execute(stmt).all()]

    def rows(self, ids: Iterable[int] | None) -> list[tuple[int, bytes | None]]:
        if ids is None:
            return [(int(i), d) for i, d in self.conn.execute(select(Motion.id, self.desc)).all()]
        ids = sorted(int(i) for i in ids)
        out: list[tuple[int, bytes | None]] = []
        for j in range(0, len(ids), self.CHUNK):
            stmt = select(Motion.id, self.desc).where(col(Motion.id).in_(ids[j:j + self.CHUNK]))
            out += [(int(i), d) for i, d in self.conn.execute(stmt).all()]
        return out

    def ids(self) -> set[int]:
        return set(self.conn.execute(select(Motion.id)).scalars().all())


#: ``describe(asset_file) -> descriptor or None``: re-describes a stored motion from its asset file
Describe = Callable[[Path], Any]
#: ``progress(done, total, name)`` while stored motions are re-described
RedescribeProgress = Callable[[int, int, str], None]


class Library:
    """The motion catalogue. Thread-unsafe per instance; safe across processes sharing one home.

    ``describe`` (see ``Describe``; the CLI passes ``motionlib.catalog.describe_file``) lets the library
    migrate descriptors: when opened, motions described with another ``descriptor_version`` are
    re-described from their asset files (``progress`` is told about each one). Without it such motions
    stay unsearchable until a library with ``describe`` opens the catalogue; a warning says so.
    """

    def __init__(self, home: Path | str | None = None, db_url: str | None = None, *,
                 descriptor_version: int = DESCRIPTOR_VERSION, describe: Describe | None = None,
                 progress: RedescribeProgress | None = None):
        self.home = (Path(home).expanduser() if home is not None else _default_home()).resolve()
        try:
            for sub in layout.FOLDERS:
                (self.home / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LibraryError(f"cannot use {self.home} as the library folder: {exc.strerror or exc}") from exc
        self.db_url = db_url or os.environ.get("MOTIONLIB_DB_URL") or f"sqlite:///{self.home / layout.DATABASE}"
        self.descriptor_version = int(descriptor_version)
        self.blobs_dir = self.home / layout.BLOBS
        self.thumbs_dir = self.home / layout.THUMBS
        self.index_dir = self.home / layout.INDEX
        self.tmp_dir = self.home / layout.TMP
        self.renders_dir = self.home / layout.RENDERS
        self.blobs = BlobStore(self.blobs_dir)
        self._index: DescriptorIndex | None = None  # built on first use: numpy and faiss load only then
        self._model_cache: dict[tuple, frozenset[int]] = {}
        self.engine = open_engine(self.db_url)
        self._write = write_engine(self.engine)
        try:
            migrate(self.engine)
        except Exception as exc:
            self.engine.dispose()
            raise LibraryError(f"could not open or upgrade the catalogue at {self.db_url}: {exc}") from exc
        with self._read_session() as s:  # one cheap query: stops at the first stale row
            stale = s.exec(select(Motion.id).where(Motion.descriptor_version != self.descriptor_version)
                           .limit(1)).first() is not None
        if stale and describe is not None:
            self.redescribe(describe, progress)
        elif stale:
            log.warning("%d motion(s) have descriptors of another version and are not searchable; open the "
                        "library with describe= (the motionlib CLI does) to re-describe them",
                        len(self.stale_descriptors()))

    @property
    def index(self) -> DescriptorIndex:
        """The faiss index of descriptors (store.index), opened on first use."""
        if self._index is None:
            from .index import DescriptorIndex

            self._index = DescriptorIndex(self.index_dir, self.descriptor_version)
        return self._index

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._index is not None:
            self._index.unload()
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

    def check_new_name(self, name: str, *, force: bool = False) -> str:
        """``name`` if a new motion may be stored under it: valid (InvalidName) and, unless ``force``
        (replace), not taken (MotionExists). The one check learn, import and add_motion share; callers
        run it before long work, and ``add_motion`` re-checks inside its transaction."""
        self.validate_name(name)
        if not force and self.exists(name):
            raise MotionExists(name)
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
                                                          col(Motion.descriptor).is_not(None)).limit(1)).first()
        if blob is not None and len(blob) // 4 != dim:
            raise LibraryError(f"descriptor has {dim} values but this library's version-{version} "
                               f"descriptors have {len(blob) // 4}; bump the descriptor version")

    # -- descriptor versions -------------------------------------------------------------------
    def stale_descriptors(self) -> list[str]:
        """Names of the motions whose descriptor is of another version than this library's."""
        with self._read_session() as s:
            return list(s.exec(select(Motion.name).where(Motion.descriptor_version != self.descriptor_version)
                               .order_by(col(Motion.id))).all())

    def redescribe(self, describe: Describe, progress: RedescribeProgress | None = None) -> int:
        """Re-describe every motion of another descriptor version from its (verified) asset file.

        One transaction per motion, so an interrupted migration resumes where it stopped. A motion
        whose file is missing or corrupt is skipped with a warning (``doctor`` reports it). Returns
        the number of motions re-described; the index is rebuilt when it is more than zero."""
        with self._read_session() as s:
            rows = s.exec(select(Motion.id, Motion.name, Motion.blob_sha256)
                          .where(Motion.descriptor_version != self.descriptor_version).order_by(col(Motion.id))).all()
        done = 0
        for j, (mid, name, sha) in enumerate(rows):
            if progress is not None:
                progress(j, len(rows), name)
            try:
                vec = describe(self.blobs.verify(sha, motion=name))
                blob = None if vec is None else _as_descriptor(vec).astype("<f4").tobytes()
            except (CorruptBlob, ValueError) as exc:
                log.warning("cannot re-describe motion '%s' (%s); it stays unsearchable, see doctor", name, exc)
                continue
            with self._write_session() as s:
                s.exec(update(Motion).where(col(Motion.id) == mid)
                       .values(descriptor=blob, descriptor_version=self.descriptor_version))
                s.commit()
            done += 1
        if progress is not None and rows:
            progress(len(rows), len(rows), "")
        if done:
            self._sync_index(force_rebuild=True)
        return done

    # -- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._read_session() as s:
            return list(s.exec(select(Motion.name).order_by(Motion.name)).all())

    def model_names(self) -> list[str]:
        """The distinct models the stored motions were learnt with."""
        with self._read_session() as s:
            return list(s.exec(select(Motion.model_name).distinct().order_by(Motion.model_name)).all())

    def searchable_models(self) -> list[tuple[str, str | None]]:
        """Distinct (model_name, model_source) of the motions search can rank (current descriptors)."""
        with self._read_session() as s:
            return [(name, source) for name, source in s.exec(
                select(Motion.model_name, Motion.model_source).distinct()
                .where(Motion.descriptor_version == self.descriptor_version, col(Motion.descriptor).is_not(None))
                .order_by(col(Motion.model_name), col(Motion.model_source))).all()]

    def exists(self, name: str) -> bool:
        with self._read_session() as s:
            return s.exec(select(Motion.id).where(Motion.name == name)).first() is not None

    def _not_found(self, name: str) -> MotionNotFound:
        close = difflib.get_close_matches(str(name), self.names(), n=1, cutoff=0.6)
        return MotionNotFound(name, close[0] if close else None)

    def get(self, name: str) -> Motion:
        with self._read_session() as s:  # one query: the row joined with its tags
            stmt = select(Motion).where(Motion.name == name).options(joinedload(_TAG_ROWS))
            m = s.exec(stmt).unique().first()
        if m is None:
            raise self._not_found(name)
        return m

    def list(self, tag: str | None = None, model: str | None = None) -> list[MotionSummary]:
        """Motions sorted by name; ``tag`` filters by tag, ``model`` by model_name or model_source.

        Rows are ``MotionSummary``: every column but params/loss JSON and the descriptor, plus tags.
        Two SQL queries on a plain connection: no ORM objects, no session (10,000 rows in tens of ms);
        ``get(name)`` returns the full ``Motion``."""
        motion, motion_tag = Motion.__table__.c, MotionTag.__table__.c  # type: ignore[attr-defined]
        conds: builtins.list[ColumnElement[bool]] = []
        if tag is not None:
            conds.append(motion.id.in_(select(motion_tag.motion_id).where(motion_tag.tag == tag.strip().lower())))
        if model is not None:
            conds.append(or_(motion.model_name == model, motion.model_source == model))
        stmt = select(*(motion[c] for c in MotionSummary.columns())).where(*conds).order_by(motion.name)
        tag_stmt = select(motion_tag.motion_id, motion_tag.tag).order_by(motion_tag.motion_id, motion_tag.tag)
        if conds:
            tag_stmt = tag_stmt.where(motion_tag.motion_id.in_(select(motion.id).where(*conds)))
        with self.engine.connect() as conn:  # one read transaction: rows and tags agree
            rows = conn.execute(stmt).all()
            tags: dict[int, builtins.list[str]] = {}
            for mid, t in conn.execute(tag_stmt):
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
        # In a write transaction holding the blob's lock, so that no add_motion of the same bytes can
        # commit between the count and the deletion (add_motion checks the file under the same lock).
        with self._write_session() as s:
            lock(s.connection(), f"blob:{sha}")
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
        existing motion of that name is replaced in the same transaction. ``descriptor=None`` stores
        a motion that search cannot rank (its clip showed no motion).
        """
        self.check_new_name(name, force=force)  # fail fast, before copying anything
        tag_list = self._clean_tags(tags)
        cols = self._meta_to_columns(meta)
        try:
            desc = None if descriptor is None else _as_descriptor(descriptor)
        except ValueError as exc:
            raise LibraryError(f"bad descriptor for '{name}': {exc}") from None
        version = cols.pop("descriptor_version", None) or self.descriptor_version
        if desc is not None:
            self._check_dim(version, desc.size)

        with no_space_is_an_error(self.home):  # a full disk: NoSpaceLeft, and nothing half-stored
            sha, nbytes = self.blobs.put(Path(asset_file))  # 1. durable blob
            replaced: Motion | None = None
            try:
                rel = self._put_thumbs(sha, thumbnails)  # 2. thumbnails
                with self._write_session() as s:  # 3. one transaction
                    old = s.exec(select(Motion).where(Motion.name == name).with_for_update()).first()
                    if old is not None:
                        if not force:
                            raise MotionExists(name)
                        replaced = old
                        s.delete(old)
                        s.flush()  # the DELETE must reach the DB before the INSERT of the same name
                    motion = Motion(name=name, blob_sha256=sha, blob_bytes=nbytes, thumb_png=rel.get("png"),
                                    thumb_gif=rel.get("gif"),
                                    descriptor=None if desc is None else desc.astype("<f4").tobytes(),
                                    descriptor_version=version, **cols)
                    motion.tag_rows = [MotionTag(tag=t) for t in tag_list]  # type: ignore[call-arg]  # motion_id: set by the relationship
                    s.add(motion)
                    try:
                        s.flush()
                    except IntegrityError:
                        raise MotionExists(name) from None
                    # A concurrent remove/doctor may have collected the blob (same bytes, another motion)
                    # between steps 1 and 3: under the blob's lock, put back what is missing, then commit.
                    lock(s.connection(), f"blob:{sha}")
                    if not self.blobs.exists(sha):
                        self.blobs.put(Path(asset_file))
                    if any(not (self.home / r).exists() for r in rel.values()):
                        self._put_thumbs(sha, thumbnails)
                    try:
                        s.commit()
                    except IntegrityError:
                        raise MotionExists(name) from None
            except BaseException:
                self._gc_sha(sha)  # nothing half-stored: no row, so the blob and thumbnails go
                raise
        if replaced is not None and replaced.blob_sha256 != sha:
            self._gc_sha(replaced.blob_sha256)
        self._refresh_index()  # 4. cache
        return motion

    def remove(self, name: str) -> Motion:
        """Delete the motion's row (renders keep its name); its files go when nothing else uses them."""
        return self.remove_many([name])[0]

    def remove_many(self, names: Iterable[str]) -> builtins.list[Motion]:
        """``remove`` for several motions in one transaction: all of them, or none when one is missing."""
        names = list(dict.fromkeys(names))
        with self._write_session() as s:
            rows = {m.name: m for m in s.exec(select(Motion).where(col(Motion.name).in_(names)).with_for_update()).all()}
            missing = [n for n in names if n not in rows]
            if missing:
                raise self._not_found(missing[0])
            for m in rows.values():
                s.delete(m)
            s.commit()
        for m in rows.values():
            self._gc_sha(m.blob_sha256)
        self._refresh_index(build=False)
        return [rows[n] for n in names]

    def rename(self, old: str, new: str) -> Motion:
        self.validate_name(new)
        with self._write_session() as s:
            m = s.exec(select(Motion).where(Motion.name == old).with_for_update()).first()
            if m is None:
                raise self._not_found(old)
            if old == new:
                return m
            if s.exec(select(Motion.id).where(Motion.name == new)).first() is not None:
                raise MotionExists(new)
            m.name = new
            s.add(m)
            s.exec(update(Render).where(col(Render.motion_id) == m.id).values(motion_name=new))
            try:
                s.commit()
            except IntegrityError:
                raise MotionExists(new) from None
        return self.get(new)

    def tag(self, name: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Motion:
        add_l, rm_l = self._clean_tags(add), self._clean_tags(remove)
        with self._write_session() as s:
            m = s.exec(select(Motion).where(Motion.name == name).with_for_update()).first()
            if m is None:
                raise self._not_found(name)
            have = {t.tag for t in m.tag_rows}
            m.tag_rows = [t for t in m.tag_rows if t.tag not in rm_l]
            m.tag_rows.extend(MotionTag(tag=t) for t in add_l  # type: ignore[call-arg]  # motion_id: set by the relationship
                              if t not in have and t not in rm_l)
            s.add(m)
            s.commit()
        return self.get(name)

    def export(self, name: str, dest: Path | str, *, overwrite: bool = False) -> Path:
        """Copy the (verified) asset to ``dest`` (a file, or a folder -> ``<folder>/<name>.safetensors``)."""
        m = self.get(name)
        dest = Path(dest).expanduser()
        if dest.is_dir():
            dest = dest / f"{m.name}.safetensors"  # a stored name is valid: no path separators
        if not dest.parent.is_dir():
            raise LibraryError(f"cannot export to {dest}: folder {dest.parent} does not exist")
        if dest.exists() and not overwrite:
            raise LibraryError(f"{dest} already exists; pass overwrite=True to replace it")
        src = self.blobs.verify(m.blob_sha256, motion=m.name)
        try:
            sha, _ = atomic_copy(src, dest)
        except OSError as exc:
            raise LibraryError(f"cannot export to {dest}: {exc.strerror or exc}") from exc
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
        ``validate(copy) -> meta`` (raise to reject), ``descriptor_fn(copy, meta) -> vector`` (or None),
        ``thumbnails_fn(copy, meta, workdir) -> {"png": path, "gif": path}`` (optional; failures
        only lose the thumbnails). Rejections raise ImportRejected.
        """
        self.check_new_name(name, force=force)
        path = Path(path).expanduser()
        if not path.exists():
            raise ImportRejected(f"{path}: no such file")
        if not path.is_file():
            raise ImportRejected(f"{path}: not a regular file")
        with no_space_is_an_error(self.tmp_dir):
            return self._import(path, name, validate, descriptor_fn, thumbnails_fn, force, tags)

    def _import(self, path: Path, name: str, validate, descriptor_fn, thumbnails_fn, force: bool, tags) -> Motion:
        work = Path(tempfile.mkdtemp(prefix="import-", suffix=TMP_MARKER, dir=self.tmp_dir))
        try:
            staged = work / "asset.safetensors"
            try:
                atomic_copy(path, staged)
            except NoSpaceLeft:
                raise
            except OSError as exc:
                raise ImportRejected(f"{path}: cannot read it ({exc.strerror or exc})") from exc
            try:
                meta = validate(staged)
            except Exception as exc:  # the validator's verdict, whatever its type; named after the user's file
                why = str(exc).replace(f"{staged}: ", "").replace(str(staged), path.name)
                raise ImportRejected(f"{path.name} is not a valid motion asset: {why}") from exc
            if not isinstance(meta, Mapping):
                raise ImportRejected(f"{path.name}: the validator returned {type(meta).__name__}, not a dict")
            meta = dict(meta)
            meta.setdefault("imported_from", path.name)
            try:
                self._meta_to_columns(meta)
            except LibraryError as exc:
                raise ImportRejected(f"{path.name}: {exc}") from None
            try:
                desc = descriptor_fn(staged, meta)  # None: a motion search cannot rank (no motion)
                desc = None if desc is None else _as_descriptor(desc)
            except Exception as exc:
                raise ImportRejected(f"{path.name}: could not compute its descriptor: {exc}") from exc
            thumbs: Mapping[str, Path] = {}
            if thumbnails_fn is not None:
                try:
                    thumbs = thumbnails_fn(staged, meta, work) or {}
                except NoSpaceLeft:
                    raise
                except Exception as exc:  # cosmetic: import without thumbnails
                    log.warning("thumbnails for %s failed (%s); importing without them", path.name, exc)
            return self.add_motion(name, asset_file=staged, meta=meta, descriptor=desc, thumbnails=thumbs,
                                   tags=tags, force=force)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -- renders -------------------------------------------------------------------------------
    def record_render(self, name: str | None, *, prompt: str, output_path: Path | str, seed: int | None = None,
                      steps: int | None = None, strength: float | None = None,
                      seconds: float | None = None, motion_id: int | None = None) -> Render:
        """Log a render made with motion ``name`` (None: no motion).

        ``motion_id`` (the row read when the render started) makes it record only if that very row
        still has that name: a motion removed, renamed or replaced meanwhile raises MotionNotFound."""
        with self._write_session() as s:  # the check and the insert in one write transaction
            if name is None:
                motion_id = None
            elif motion_id is None:
                motion_id = s.exec(select(Motion.id).where(Motion.name == name)).first()
            elif s.exec(select(Motion.name).where(Motion.id == motion_id)).first() != name:
                motion_id = None
            if name is not None and motion_id is None:
                s.rollback()
                raise self._not_found(name)
            r = Render(motion_id=motion_id, motion_name=name, prompt=prompt, seed=seed, steps=steps,
                       strength=strength, output_path=str(output_path), seconds=seconds)
            s.add(r)
            try:
                s.commit()
            except IntegrityError:  # the motion was removed by another process meanwhile
                if name is None:  # no motion, no foreign key: not that
                    raise
                raise self._not_found(name) from None
        return r

    def renders(self, name: str | None = None, limit: int | None = None) -> builtins.list[Render]:
        """Renders newest first, optionally only those of motion ``name`` (also after it was removed)."""
        stmt = select(Render).order_by(col(Render.created_at).desc(), col(Render.id).desc())
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

    def _refresh_index(self, *, build: bool = True) -> None:
        """After a catalogue write: update the in-memory index if this Library has one (cheap: the new rows
        only), or, with ``build``, build the index if it has no file yet (e.g. the first motion). Otherwise
        the saved index just lags the catalogue and the next search catches up."""
        loaded = self._index is not None and self._index.loaded
        if not (loaded or (build and not (self.index_dir / index_sidecar(self.descriptor_version)).exists())):
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
            ids = frozenset(_ids(s.exec(select(Motion.id).where(
                Motion.descriptor_version == self.descriptor_version, col(Motion.descriptor).is_not(None),
                or_(col(Motion.model_name) == model, col(Motion.model_source) == model))).all()))
            if len(self._model_cache) >= 16:
                self._model_cache.clear()
            self._model_cache[key] = ids
        return ids

    def search(self, descriptor, k: int = 5, model: str | None = None,
               exclude: str | Iterable[str] | None = None) -> builtins.list[tuple[Motion, float]]:
        """Nearest motions by cosine similarity of descriptors, best first.

        The index stays in memory between calls; each call checks the catalogue's (row count, largest id)
        and catches up on changes (see ``store.index``)."""
        excl = [exclude] if isinstance(exclude, str) else list(exclude or ())
        with self._read_session() as s:  # one read transaction: the hits' rows exist
            self.index.sync(_Source(s, self.descriptor_version))
            allowed = self._model_ids(s, model) if model is not None else None
            blocked = _ids(s.exec(select(Motion.id).where(col(Motion.name).in_(excl))).all()) if excl else None
            try:
                hits = self.index.search(descriptor, k, allowed, blocked)
            except ValueError as exc:
                raise LibraryError(f"cannot search: {exc}") from None
            if not hits:
                return []
            stmt = select(Motion).where(col(Motion.id).in_([i for i, _ in hits])).options(joinedload(_TAG_ROWS))
            rows = {m.id: m for m in s.exec(stmt).unique().all()}
        return [(rows[i], score) for i, score in hits if i in rows]

    # -- health --------------------------------------------------------------------------------
    def doctor(self, repair: bool = False, *, grace_seconds: float = 60.0, verify: bool = True,
               check_content: Callable[[Path], bool] | None = None,
               installed_weights: Callable[[str, str], str] | None = None) -> Report:
        """Check files against rows, and with repair fix what can be fixed (see ``store.doctor``)."""
        from .doctor import doctor

        return doctor(self, repair=repair, grace_seconds=grace_seconds, verify=verify, check_content=check_content,
                      installed_weights=installed_weights)
