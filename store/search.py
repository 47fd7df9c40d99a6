"""The bridge between the catalogue and its descriptor index (``store.index``), and search.

``CatalogueSearch`` owns a library's ``DescriptorIndex`` (opened on first use, so numpy and faiss load
only then) and keeps it in step with the rows: ``sync`` on every search (one cheap query when nothing
changed), ``refresh`` after a catalogue write, ``rebuild`` for doctor. ``DatabaseSource`` is what the
index reads, inside one read transaction.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from sqlalchemy import case, or_
from sqlalchemy.orm import joinedload
from sqlmodel import Session, col, select

from .errors import LibraryError
from .layout import index_sidecar
from .models import TAG_ROWS, Motion, motion_ids

if TYPE_CHECKING:
    from .index import DescriptorIndex

__all__ = ["CatalogueSearch", "DatabaseSource"]

log = logging.getLogger("motionlib.store")


class DatabaseSource:
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


class CatalogueSearch:
    """A library's descriptor index, kept in step with its catalogue; thread-unsafe, like ``Library``.

    ``read_session()`` opens a read session on the catalogue; ``folder`` holds the index files; ``version``
    is the library's descriptor version."""

    def __init__(self, read_session: Callable[[], Session], folder: Path, version: int):
        self._read_session = read_session
        self.folder = folder
        self.version = int(version)
        self._index: DescriptorIndex | None = None  # built on first use: numpy and faiss load only then
        self._model_cache: dict[tuple, frozenset[int]] = {}

    @property
    def index(self) -> DescriptorIndex:
        """The faiss index of descriptors (store.index), opened on first use."""
        if self._index is None:
            from .index import DescriptorIndex

            self._index = DescriptorIndex(self.folder, self.version)
        return self._index

    def close(self) -> None:
        """Forget the in-memory index (if it was ever opened)."""
        if self._index is not None:
            self._index.unload()

    def source(self, session: Session) -> DatabaseSource:
        """The catalogue as the index reads it, inside ``session``."""
        return DatabaseSource(session, self.version)

    def sync(self, force_rebuild: bool = False) -> str:
        """Catch the index up with the catalogue (see ``DescriptorIndex.sync`` for what it returns)."""
        with self._read_session() as s:
            return self.index.sync(self.source(s), force_rebuild=force_rebuild)

    def refresh(self, *, build: bool = True) -> None:
        """After a catalogue write: update the in-memory index if there is one (cheap: the new rows
        only), or, with ``build``, build the index if it has no file yet (e.g. the first motion). Otherwise
        the saved index just lags the catalogue and the next search catches up."""
        loaded = self._index is not None and self._index.loaded
        if not (loaded or (build and not (self.folder / index_sidecar(self.version)).exists())):
            return
        try:
            self.sync()
        except Exception as exc:  # the index is a cache: never fail a catalogue write for it
            log.warning("descriptor index update failed (%s); it will be caught up or rebuilt on next use", exc)
            self.index.unload()

    def rebuild(self) -> int:
        """Rebuild the index from the catalogue and save it; returns the number of searchable descriptors."""
        self.sync(force_rebuild=True)
        return len(self.index)

    def _model_ids(self, s: Session, model: str) -> frozenset[int]:
        """Ids of searchable motions of ``model`` (model_name or model_source), cached per catalogue state."""
        key = (self.index.signature, model)
        ids = self._model_cache.get(key)
        if ids is None:
            ids = frozenset(motion_ids(s.exec(select(Motion.id).where(
                Motion.descriptor_version == self.version, col(Motion.descriptor).is_not(None),
                or_(col(Motion.model_name) == model, col(Motion.model_source) == model))).all()))
            if len(self._model_cache) >= 16:
                self._model_cache.clear()
            self._model_cache[key] = ids
        return ids

    def search(self, descriptor, k: int = 5, model: str | None = None,
               exclude: str | Iterable[str] | None = None) -> list[tuple[Motion, float]]:
        """Nearest motions by cosine similarity of descriptors, best first (``Library.search``)."""
        excl = [exclude] if isinstance(exclude, str) else list(exclude or ())
        with self._read_session() as s:  # one read transaction: the hits' rows exist
            self.index.sync(self.source(s))
            allowed = self._model_ids(s, model) if model is not None else None
            blocked = motion_ids(s.exec(select(Motion.id).where(col(Motion.name).in_(excl))).all()) if excl else None
            try:
                hits = self.index.search(descriptor, k, allowed, blocked)
            except ValueError as exc:
                raise LibraryError(f"cannot search: {exc}") from None
            if not hits:
                return []
            stmt = select(Motion).where(col(Motion.id).in_([i for i, _ in hits])).options(joinedload(TAG_ROWS))
            rows = {m.id: m for m in s.exec(stmt).unique().all()}
        return [(rows[i], score) for i, score in hits if i in rows]
