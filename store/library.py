"""``Library``: the motion catalogue API (SQLite/SQLModel rows + content-addressed blobs + faiss index).

This module is the facade: ``Library`` holds the whole public API, opens the catalogue (and migrates its
descriptors), reads rows and writes motions; the other jobs live in their own modules and ``Library``'s
methods delegate to them: ``names`` (name and tag rules), ``meta`` (meta -> columns), ``search`` (the
descriptor index kept in step with the rows), ``imports`` (the import pipeline), ``renders`` (render
records), ``doctor`` (check and repair; it reads the library through public methods only). It is over 400
lines on purpose: every public method stays here with its docstring (this is the Python API's reference),
and the write path stays in one place, next to the sessions and locks it relies on.

Layout under ``home`` (the names are ``store.layout``'s)::

    motionlib.db                      catalogue (unless db_url points elsewhere)
    blobs/<sha[:2]>/<sha>.safetensors motion assets, named by content hash
    thumbs/<sha>.png|.gif             thumbnails, named by the asset's hash
    index/descriptors-v<N>.faiss|json descriptor index (a cache, rebuilt from the DB)
    tmp/                              work folders of learn, import and uploads
    renders/                          renders made by the web app

Crash safety of ``add_motion``: blob (durable) -> thumbnails (atomic) -> one DB transaction ->
in-memory index (a cache that catches up from the DB on the next search, see ``store.index``). A
crash leaves at worst an unreferenced blob or a ``*.tmp*`` file, which ``doctor(repair=True)``
removes. No file path is ever derived from a motion name; everything written lives inside ``home``,
except ``export``'s explicit destination.
"""

from __future__ import annotations

import builtins
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple

import platformdirs
from sqlalchemy import ColumnElement, func, or_, update
from sqlalchemy import select as core_select  # Core: sqlmodel's select() is typed up to 4 columns
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from sqlmodel import Session, col, select

from motionlib.fsutil import atomic_copy, no_space_is_an_error
from motionlib.versions import DESCRIPTOR_VERSION  # the one definition, importable without numpy or torch

from . import layout, names as naming, renders as render_log
from .blobs import BlobStore, is_sha256
from .db import lock, migrate, open_engine, write_engine
from .doctor import Report, doctor as check_library
from .errors import CorruptBlob, LibraryError, MotionExists, MotionNotFound
from .imports import import_file
from .meta import COLUMN_META, FAMILIES, REQUIRED_META, meta_to_columns
from .models import TAG_ROWS, Motion, MotionSummary, MotionTag, Render
from .search import CatalogueSearch

if TYPE_CHECKING:
    from .index import DescriptorIndex

__all__ = ["Library", "MotionFiles", "Describe", "RedescribeProgress", "DESCRIPTOR_VERSION", "REQUIRED_META",
           "COLUMN_META", "FAMILIES"]

log = logging.getLogger("motionlib.store")
NAME_MAX = naming.NAME_MAX  # importable from here as before (the rule lives in store.names)
THUMB_KINDS = layout.THUMB_KINDS
MAX_PREVIEW_BYTES = 256 * 1024  # a render's first-frame preview (a small PNG, motionlib.image.preview_png)


def _default_home() -> Path:
    env = os.environ.get("MOTIONLIB_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("motionlib"))


def _as_descriptor(vec):
    """``store.index.as_descriptor``: numpy loads only once there is a descriptor to check."""
    from .index import as_descriptor

    return as_descriptor(vec)


#: ``describe(asset_file) -> descriptor or None``: re-describes a stored motion from its asset file
Describe = Callable[[Path], Any]
#: ``progress(done, total, name)`` while stored motions are re-described
RedescribeProgress = Callable[[int, int, str], None]


class MotionFiles(NamedTuple):
    """A motion's files and descriptor state, as ``doctor`` checks them (``Library.motion_files``)."""

    name: str
    blob_sha256: str
    thumb_png: str | None  # relative to the library home
    thumb_gif: str | None
    descriptor_version: int
    has_descriptor: bool


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
        self.engine = open_engine(self.db_url)
        self._write = write_engine(self.engine)
        self._search = CatalogueSearch(self._read_session, self.index_dir, self.descriptor_version)
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
        """The faiss index of descriptors (store.index), opened on first use (numpy and faiss load only then)."""
        return self._search.index

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self._search.close()
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
        """Return ``name`` if acceptable, else raise InvalidName saying why (the rule: ``store.names``)."""
        return naming.validate(name, what=what)

    def check_new_name(self, name: str, *, force: bool = False) -> str:
        """``name`` if a new motion may be stored under it: valid (InvalidName) and, unless ``force``
        (replace), not taken (MotionExists). The one check learn, import and add_motion share; callers
        run it before long work, and ``add_motion`` re-checks inside its transaction."""
        self.validate_name(name)
        if not force and self.exists(name):
            raise MotionExists(name)
        return name

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
        return MotionNotFound(name, naming.closest(name, self.names()))

    def get(self, name: str) -> Motion:
        with self._read_session() as s:  # one query: the row joined with its tags
            stmt = select(Motion).where(Motion.name == name).options(joinedload(TAG_ROWS))
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

    def lineage(self, motion: Motion | str) -> dict | None:
        """How an edited motion was derived (None for a learnt one): its operations, and its parents as
        recorded, each with ``current`` (its name in this catalogue now, which a rename changes) and
        ``removed`` (True once it is gone: the child keeps its own files and stays whole). A parent is
        found by its id, or, for an imported motion's lineage (ids of another catalogue), by its blob."""
        m = self.get(motion) if isinstance(motion, str) else motion
        lineage = m.lineage
        if lineage is None:
            return None
        parents = []
        with self._read_session() as s:
            for p in lineage.get("parents") or []:
                p = dict(p) if isinstance(p, dict) else {}
                pid, sha = p.get("id"), p.get("blob_sha256") or p.get("sha256")
                if isinstance(pid, int) and not isinstance(pid, bool):
                    now = s.exec(select(Motion.name).where(Motion.id == pid)).first()
                elif isinstance(sha, str):
                    now = s.exec(select(Motion.name).where(Motion.blob_sha256 == sha).order_by(col(Motion.id))).first()
                else:
                    now = None
                parents.append({**p, "current": now, "removed": now is None})
        return {"operations": list(lineage.get("operations") or []), "parents": parents}

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
            if kind not in layout.THUMB_KINDS:
                raise LibraryError(f"unknown thumbnail kind {kind!r}; expected keys {', '.join(layout.THUMB_KINDS)}")
            if src is None:
                continue
            src = Path(src)
            if not src.is_file():
                raise LibraryError(f"thumbnail file not found: {src}")
            dst = self.thumbs_dir / layout.thumb_file(sha, kind)  # by the blob's sha, never by the user's name
            atomic_copy(src, dst)
            rel[kind] = dst.relative_to(self.home).as_posix()
        return rel

    def gc_blob(self, sha: str) -> None:
        """Delete the blob and thumbnails of ``sha`` if no row references it any more (a no-op otherwise)."""
        # In a write transaction holding the blob's lock, so that no add_motion of the same bytes can
        # commit between the count and the deletion (add_motion checks the file under the same lock).
        with self._write_session() as s:
            lock(s.connection(), f"blob:{sha}")
            n = s.exec(select(func.count()).select_from(Motion).where(Motion.blob_sha256 == sha)).one()
            if n:
                return
            self.blobs.delete(sha)
            for kind in layout.THUMB_KINDS:
                (self.thumbs_dir / layout.thumb_file(sha, kind)).unlink(missing_ok=True)

    def add_motion(self, name: str, *, asset_file: Path, meta: Mapping[str, Any], descriptor,
                   thumbnails: Mapping[str, Path] | None = None, tags: Iterable[str] = (),
                   force: bool = False) -> Motion:
        """Store a learned motion. See ``COLUMN_META``/``REQUIRED_META`` for the meta keys.

        Thumbnail files are copied (the caller's files are left in place). With ``force`` an
        existing motion of that name is replaced in the same transaction. ``descriptor=None`` stores
        a motion that search cannot rank (its clip showed no motion).
        """
        self.check_new_name(name, force=force)  # fail fast, before copying anything
        tag_list = naming.clean_tags(tags)
        cols = meta_to_columns(meta)
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
                self.gc_blob(sha)  # nothing half-stored: no row, so the blob and thumbnails go
                raise
        if replaced is not None and replaced.blob_sha256 != sha:
            self.gc_blob(replaced.blob_sha256)
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
            self.gc_blob(m.blob_sha256)
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
        add_l, rm_l = naming.clean_tags(add), naming.clean_tags(remove)
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

        def add(staged: Path, meta: dict, descriptor: Any, thumbnails: Mapping[str, Path]) -> Motion:
            return self.add_motion(name, asset_file=staged, meta=meta, descriptor=descriptor, thumbnails=thumbnails,
                                   tags=tags, force=force)

        return import_file(path, tmp_dir=self.tmp_dir, validate=validate, descriptor_fn=descriptor_fn,
                           thumbnails_fn=thumbnails_fn, add=add)

    # -- renders -------------------------------------------------------------------------------
    def record_render(self, name: str | None, *, prompt: str, output_path: Path | str, seed: int | None = None,
                      steps: int | None = None, strength: float | None = None,
                      seconds: float | None = None, motion_id: int | None = None,
                      image_sha256: str | None = None, image_preview: bytes | None = None) -> Render:
        """Log a render made with motion ``name`` (None: no motion).

        ``motion_id`` (the row read when the render started) makes it record only if that very row
        still has that name: a motion removed, renamed or replaced meanwhile raises MotionNotFound.
        An image-to-video render records its first frame: the image file's sha256 and a small PNG preview."""
        if image_sha256 is not None and not is_sha256(image_sha256):
            raise ValueError(f"image_sha256 must be a sha256 hex digest, got {image_sha256!r}")
        if image_preview is not None and len(image_preview) > MAX_PREVIEW_BYTES:
            raise ValueError(f"image_preview is {len(image_preview)} bytes; at most {MAX_PREVIEW_BYTES}")
        with self._write_session() as s:  # the check and the insert in one write transaction
            return render_log.record(s, name, prompt=prompt, output_path=output_path, seed=seed, steps=steps,
                                     strength=strength, seconds=seconds, motion_id=motion_id,
                                     not_found=self._not_found, image_sha256=image_sha256,
                                     image_preview=image_preview)

    def renders(self, name: str | None = None, limit: int | None = None) -> builtins.list[Render]:
        """Renders newest first, optionally only those of motion ``name`` (also after it was removed)."""
        with self._read_session() as s:
            return render_log.newest(s, name, limit)

    def render(self, render_id: int) -> Render:
        """One render by id (RenderNotFound if there is none)."""
        with self._read_session() as s:
            return render_log.one(s, render_id)

    # -- search --------------------------------------------------------------------------------
    def _sync_index(self, force_rebuild: bool = False) -> str:
        """Catch the index up with the catalogue; what it did (see ``DescriptorIndex.sync``)."""
        return self._search.sync(force_rebuild=force_rebuild)

    def _refresh_index(self, *, build: bool = True) -> None:
        """After a catalogue write: update the in-memory index if this Library has one (cheap: the new rows
        only), or, with ``build``, build the index if it has no file yet (e.g. the first motion). Otherwise
        the saved index just lags the catalogue and the next search catches up."""
        self._search.refresh(build=build)

    def rebuild_index(self) -> int:
        """Rebuild the index from the catalogue and save it; returns the number of searchable descriptors."""
        return self._search.rebuild()

    def search(self, descriptor, k: int = 5, model: str | None = None,
               exclude: str | Iterable[str] | None = None) -> builtins.list[tuple[Motion, float]]:
        """Nearest motions by cosine similarity of descriptors, best first; ``model`` keeps only motions of
        that model_name or model_source, ``exclude`` leaves out motions of those names.

        The index stays in memory between calls; each call checks the catalogue's (row count, largest id)
        and catches up on changes (see ``store.index``)."""
        return self._search.search(descriptor, k, model, exclude)

    # -- health --------------------------------------------------------------------------------
    def motion_files(self) -> tuple[builtins.list[MotionFiles], tuple[int, int]]:
        """Every motion's files and descriptor state, and the catalogue's signature (row count, largest
        id: what the search index compares), read in one transaction (a consistent snapshot)."""
        with self._read_session() as s:
            rows = s.connection().execute(core_select(
                col(Motion.name), col(Motion.blob_sha256), col(Motion.thumb_png), col(Motion.thumb_gif),
                col(Motion.descriptor_version), col(Motion.descriptor).is_not(None))).all()
            signature = self._search.source(s).signature()
        return [MotionFiles(*r) for r in rows], signature

    def learnt_weights(self) -> builtins.list[tuple[str, str, str | None, str | None]]:
        """(name, model_name, model_source, weights_fingerprint) of every motion by name; the fingerprint
        is None for motions stored before motionlib recorded it (see ``motionlib.weights``)."""
        with self._read_session() as s:
            return [(n, m, src, fp) for n, m, src, fp in s.connection().execute(core_select(
                col(Motion.name), col(Motion.model_name), col(Motion.model_source),
                col(Motion.weights_fingerprint)).order_by(col(Motion.name))).all()]

    def doctor(self, repair: bool = False, *, grace_seconds: float = 60.0, verify: bool = True,
               check_content: Callable[[Path], bool] | None = None,
               installed_weights: Callable[[str, str], str] | None = None) -> Report:
        """Check files against rows, and with repair fix what can be fixed (see ``store.doctor``)."""
        return check_library(self, repair=repair, grace_seconds=grace_seconds, verify=verify,
                             check_content=check_content, installed_weights=installed_weights)
