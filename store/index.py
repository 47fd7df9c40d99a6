"""The descriptor index: an in-memory faiss index over the catalogue's descriptors, kept on disk as a cache.

Index type (chosen by measurement, see BENCHMARKS.md section "Descriptor search"):

* up to ``flat_max`` (20,000) descriptors: ``IndexIDMap2(IndexFlatIP)``, an exact search;
* above: ``index_factory(d, "IDMap2,PQ{d/2}x4fs,RFlat", METRIC_INNER_PRODUCT)``: a 4-bit product-quantised
  fast scan (``IndexPQFastScan``) proposes ``k_factor * k`` candidates and ``IndexRefineFlat`` re-ranks
  them with the exact float32 inner product, so the scores are exact and only the candidate set is
  approximate. (HNSW and IVF were measured too; on these descriptors they were slower at the same
  recall.)

Vectors are L2-normalised float32, so the inner product is the cosine similarity. Ids are motion ids:
SQLite AUTOINCREMENT never reuses one, and an id always denotes the same descriptor.

Freshness: ``sync(source)`` compares the catalogue's signature, (number of motion rows, largest motion
id), with the one the in-memory index was built from. Because ids only grow and are never reused, equal
signatures mean equal id sets, so a search costs one cheap query when nothing changed. Otherwise the
index catches up: rows with ids above the largest id seen are added; if the row count still differs,
rows were removed and the id sets are diffed. Removed ids leave an exact index at once; the approximate
index cannot remove ids, so they are filtered out at query time ("dead" ids) and the index is rebuilt
from its own vectors once there are many of them.

Files (under ``<home>/index``): ``descriptors-v{version}.faiss`` (the index) and
``descriptors-v{version}.json`` (sidecar: the signature the file was saved at, skipped and dead ids, a
checksum of the file's ids). Both are written atomically, the sidecar last, so a crash leaves either the
old pair, or no sidecar (-> rebuilt from the DB). The file is a snapshot that may lag the catalogue: it
is saved after a rebuild and when ``max(save_min, save_fraction * size)`` changes accumulated, and a
loaded snapshot catches up from the DB like the in-memory index does. A missing, unreadable or
mismatched file, or one of another descriptor version or format, is rebuilt from the DB.

One file on purpose (over 400 lines): it is essentially one class, ``DescriptorIndex``, whose state (the
faiss index, the catalogue signature and high-water mark it reflects, skipped and dead ids, the size the
PQ was trained on, the changes not saved yet) is read and written together by ``sync``, the maintenance
steps, ``search`` and the file's save and load; split over modules, each part would reach into the
others' private state. The helpers before it (``as_descriptor``, ``normalise``, ``pq_factory``, the
``CatalogueSource`` protocol, ``IndexState``) are its vocabulary. The catalogue side of the bridge
(``CatalogueSource`` on the database, and search over the rows) is ``store.search``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from motionlib.fsutil import atomic_write, fsync_dir, sha256_file

from .layout import index_file, index_sidecar

__all__ = ["DescriptorIndex", "IndexState", "CatalogueSource", "normalise", "as_descriptor", "pq_factory",
           "FLAT_MAX", "K_FACTOR"]

log = logging.getLogger("motionlib.store")

SIDECAR_FORMAT = 3  # 3: the sidecar holds the index file's sha256, so ``check`` needs no faiss
FLAT_MAX = 20_000  # exact flat search up to this many descriptors (~2 ms at 20k, 408-d, one core)
K_FACTOR = 32  # candidates per result the fast scan proposes for exact re-ranking
PQ_MIN = 16  # a 4-bit PQ needs at least 16 training vectors
TRAIN_MAX = 16_384  # PQ training sample (faiss uses at most 256 points per centroid anyway)
REFIT_GROWTH = 2.0  # retrain the PQ when the index has grown this much since it was trained
POSTFILTER_MAX = 1024  # up to this many excluded ids: search k + excluded and filter; above: exact restricted


class _LazyFaiss:
    """faiss, imported on first use: catalogue commands that never search or build an index skip it."""

    def __getattr__(self, name: str):
        import faiss as module

        globals()["faiss"] = module
        return getattr(module, name)


faiss = _LazyFaiss()
#: A faiss index (``IndexIDMap2`` over a flat or refined PQ index). Untyped: faiss's SWIG stubs type
#: ``downcast_index`` as the base ``Index`` and miss ``SearchParameters``' keywords.
FaissIndex = Any


def as_descriptor(vec) -> np.ndarray:
    """A finite, non-zero 1-D float32 vector (raises ValueError otherwise)."""
    arr = np.asarray(vec, dtype=np.float32).reshape(-1)
    if arr.size == 0:
        raise ValueError("descriptor is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError("descriptor contains NaN or inf")
    if not np.any(arr):
        raise ValueError("descriptor is all zeros")
    return arr


def normalise(mat: np.ndarray) -> np.ndarray:
    mat = np.ascontiguousarray(np.atleast_2d(mat), dtype=np.float32).copy()
    faiss.normalize_L2(mat)
    return mat


def pq_factory(dim: int) -> str:
    """The faiss factory string of the approximate index for ``dim``-d descriptors (2 dims per 4-bit code)."""
    m = dim // 2 if dim % 2 == 0 else dim
    return f"IDMap2,PQ{m}x4fs,RFlat"


def _kind(index: FaissIndex) -> str:
    return "flat" if isinstance(faiss.downcast_index(index.index), faiss.IndexFlat) else "pq"


def _ids_sha(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()[:32]


class CatalogueSource(Protocol):
    """What the index reads from the catalogue, all within one read transaction (a consistent snapshot).

    A row is ``(motion id, descriptor bytes or None)``; None marks a row that cannot be indexed (no
    descriptor, or one of another descriptor version).
    """

    def signature(self) -> tuple[int, int]:
        """(number of motion rows, largest motion id or 0)."""

    def rows_after(self, motion_id: int) -> list[tuple[int, bytes | None]]:
        """Every row with an id above ``motion_id``."""

    def rows(self, ids: Iterable[int] | None) -> list[tuple[int, bytes | None]]:
        """The rows of ``ids``; every row when None."""

    def ids(self) -> set[int]:
        """Every motion id."""


@dataclass
class IndexState:
    """What ``DescriptorIndex.check`` found about the file: ``usable`` or why not (``reason``)."""

    usable: bool
    reason: str
    behind: bool = False  # usable, but saved before the latest catalogue changes (search catches up)

    @property
    def fresh(self) -> bool:
        return self.usable and not self.behind

    @property
    def needs_full_rebuild(self) -> bool:
        return not self.usable


class DescriptorIndex:
    """The catalogue's descriptor index for one descriptor version. Thread-unsafe, like ``Library``."""

    def __init__(self, folder: Path, version: int, *, flat_max: int = FLAT_MAX, k_factor: float = K_FACTOR,
                 save_min: int = 64, save_fraction: float = 0.02, postfilter_max: int = POSTFILTER_MAX,
                 compact_min: int = 64):
        self.folder = Path(folder)
        self.version = int(version)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.flat_max = int(flat_max)
        self.k_factor = float(k_factor)
        self.save_min = int(save_min)
        self.save_fraction = float(save_fraction)
        self.postfilter_max = int(postfilter_max)
        self.compact_min = int(compact_min)  # dead ids tolerated (or 1% of the index, up to postfilter_max / 2)
        self.unload()

    # -- in-memory state -----------------------------------------------------------------------
    def unload(self) -> None:
        """Forget the in-memory index (the next ``sync`` loads the file or rebuilds)."""
        self.index: FaissIndex | None = None
        self.loaded = False
        self._sig: tuple[int, int] | None = None  # catalogue signature the index reflects
        self._hw = 0  # largest motion id seen (indexed or skipped)
        self._skipped: set[int] = set()  # motion ids in the catalogue that are not indexed
        self._dead: set[int] = set()  # ids still in the approximate index but no longer in the catalogue
        self._trained_on = 0  # vectors the PQ was trained on
        self._unsaved = 0  # changes since the file was saved
        self._must_save = False  # a rebuild or restructure happened since the file was saved
        self._save_failed = False

    @property
    def kind(self) -> str | None:
        """"flat" (exact), "pq" (fast scan + exact re-rank) or None (empty)."""
        return None if self.index is None else _kind(self.index)

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def __len__(self) -> int:
        """Searchable descriptors."""
        return self.ntotal - len(self._dead)

    @property
    def signature(self) -> tuple[int, int] | None:
        return self._sig

    def id_array(self) -> np.ndarray:
        """Motion ids in the index's internal order (dead ones included)."""
        if self.index is None:
            return np.zeros(0, dtype=np.int64)
        return faiss.vector_to_array(self.index.id_map)

    # -- files ---------------------------------------------------------------------------------
    @property
    def faiss_path(self) -> Path:
        return self.folder / index_file(self.version)

    @property
    def sidecar_path(self) -> Path:
        return self.folder / index_sidecar(self.version)

    def read_sidecar(self) -> dict | None:
        try:
            data = json.loads(self.sidecar_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _read_sidecar_checked(self) -> tuple[dict | None, str]:
        """The sidecar and "" if it describes an index of this version and format, else why not."""
        side = self.read_sidecar()
        if side is None:
            return None, "index sidecar is missing or unreadable"
        if side.get("version") != self.version:
            return side, f"index was built for descriptor version {side.get('version')}, not {self.version}"
        if side.get("format") != SIDECAR_FORMAT:
            return side, f"index was saved in format {side.get('format')}, not {SIDECAR_FORMAT}"
        return side, ""

    def _read(self) -> tuple[FaissIndex | None, dict | None, str]:
        side, reason = self._read_sidecar_checked()
        if reason or side is None or not side.get("count"):
            return None, side, reason  # a valid, empty index has no .faiss file
        try:
            index = faiss.read_index(str(self.faiss_path))
        except Exception:  # faiss raises RuntimeError on missing or truncated files
            return None, side, "index file is missing or unreadable"
        if (not isinstance(index, faiss.IndexIDMap2) or index.d != side.get("dim")
                or index.ntotal != side.get("count") or _kind(index) != side.get("kind")
                or _ids_sha(faiss.vector_to_array(index.id_map)) != side.get("ids_sha")):
            return None, side, "index file does not match its sidecar"
        return index, side, ""

    def save(self) -> None:
        """Write the in-memory index and its sidecar (atomically, the sidecar last)."""
        index = self.index
        count, max_id = self._sig or (0, 0)
        side = {
            "format": SIDECAR_FORMAT,
            "version": self.version,
            "kind": self.kind,
            "dim": None if index is None else int(index.d),
            "count": self.ntotal,
            "ids_sha": _ids_sha(self.id_array()),
            "db_count": int(count),
            "db_max_id": int(max_id),
            "high_water": int(self._hw),
            "trained_on": int(self._trained_on),
            "skipped": sorted(self._skipped),
            "dead": sorted(self._dead),
        }
        # Sidecar last: a crash in between leaves no sidecar -> rebuilt from the DB.
        self.sidecar_path.unlink(missing_ok=True)
        if index is not None and index.ntotal:
            atomic_write(self.faiss_path, lambda p: faiss.write_index(index, str(p)))
            side["file_sha"] = sha256_file(self.faiss_path)[0]
        else:
            self.faiss_path.unlink(missing_ok=True)
        atomic_write(self.sidecar_path, json.dumps(side))
        fsync_dir(self.folder)
        self._unsaved = 0
        self._must_save = False

    def _save_quietly(self) -> None:
        if self._save_failed:
            return
        try:
            self.save()
        except OSError as exc:  # e.g. a read-only home: keep searching the in-memory index
            self._save_failed = True
            log.warning("cannot save the descriptor index (%s); searching without saving it", exc)

    def mark_stale(self) -> None:
        """Drop the sidecar so the next load rebuilds the index from the catalogue."""
        try:
            self.sidecar_path.unlink(missing_ok=True)
        except OSError:
            pass

    def _load(self) -> bool:
        index, side, reason = self._read()
        if reason or side is None:
            return False
        self.unload()
        self.index = index
        self.loaded = True
        self._sig = (int(side.get("db_count", 0)), int(side.get("db_max_id", 0)))
        self._hw = int(side.get("high_water", 0))
        self._skipped = set(int(i) for i in side.get("skipped") or ())
        self._dead = set(int(i) for i in side.get("dead") or ())
        self._trained_on = int(side.get("trained_on", 0))
        return True

    def check(self, signature: tuple[int, int]) -> IndexState:
        """State of the file on disk against the catalogue's ``signature`` (the in-memory index is not used).

        Reads the sidecar and hashes the index file against it; faiss is not loaded."""
        side, reason = self._read_sidecar_checked()
        if reason or side is None:
            return IndexState(False, reason)
        if side.get("count"):
            try:
                sha = sha256_file(self.faiss_path)[0]
            except OSError:
                return IndexState(False, "index file is missing or unreadable")
            if sha != side.get("file_sha"):
                return IndexState(False, "index file does not match its sidecar")
        if (side.get("db_count"), side.get("db_max_id")) != tuple(signature):
            return IndexState(True, "the saved index predates the latest catalogue changes; the next search "
                                    "catches up from the catalogue", behind=True)
        return IndexState(True, "index is up to date")

    # -- building ------------------------------------------------------------------------------
    def _decode(self, rows: Iterable[tuple[int, bytes | None]], dim: int | None
                ) -> tuple[list[int], list[np.ndarray], int | None]:
        ids: list[int] = []
        vecs: list[np.ndarray] = []
        for mid, blob in rows:
            mid = int(mid)
            self._hw = max(self._hw, mid)
            try:
                v = as_descriptor(np.frombuffer(blob, dtype="<f4")) if blob is not None else None
            except (ValueError, TypeError):
                v = None
            if v is None or (dim is not None and v.size != dim):
                self._skipped.add(mid)
                continue
            dim = v.size if dim is None else dim
            ids.append(mid)
            vecs.append(v)
        return ids, vecs, dim

    def _new_index(self, vecs: np.ndarray) -> FaissIndex:
        n, dim = vecs.shape
        if n > max(self.flat_max, PQ_MIN - 1):
            index = faiss.index_factory(dim, pq_factory(dim), faiss.METRIC_INNER_PRODUCT)
            refine = faiss.downcast_index(index.index)
            faiss.downcast_index(refine.base_index).pq.cp.min_points_per_centroid = 1  # no warnings when small
            sample = vecs
            if n > TRAIN_MAX:
                sample = vecs[np.sort(np.random.default_rng(0).choice(n, TRAIN_MAX, replace=False))]
            index.train(sample)
            self._trained_on = n
            return index
        self._trained_on = 0
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def _fill(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Replace the index by one of the right kind holding exactly ``vecs`` (normalised) under ``ids``."""
        self._dead = set()
        if len(ids) == 0:
            self.index = None
            self._trained_on = 0
            return
        index = self._new_index(vecs)
        index.add_with_ids(vecs, np.asarray(ids, dtype=np.int64))
        self.index = index

    def build(self, ids, vectors) -> None:
        """Make the in-memory index hold ``vectors`` [n, d] (normalised here) under motion ``ids`` (no DB, no
        file): what a rebuild from the catalogue makes, for benchmarks and tools."""
        self.unload()
        vecs = normalise(np.asarray(vectors, dtype=np.float32))
        ids = np.asarray(ids, dtype=np.int64)
        self._fill(ids, vecs)
        self._hw = int(ids.max()) if len(ids) else 0
        self._sig = (len(ids), self._hw)
        self.loaded = True

    def _rebuild(self, source: CatalogueSource, sig: tuple[int, int]) -> None:
        self.unload()
        ids, vecs, dim = self._decode(source.rows(None), None)
        self._fill(np.asarray(ids, dtype=np.int64),
                   normalise(np.stack(vecs)) if vecs else np.zeros((0, dim or 1), np.float32))
        self._sig = sig
        self.loaded = True

    def _vectors(self) -> np.ndarray:
        """Every stored (normalised) vector, in internal order."""
        assert self.index is not None, "no index to read vectors from"
        inner = faiss.downcast_index(self.index.index)
        flat = inner if isinstance(inner, faiss.IndexFlat) else faiss.downcast_index(inner.refine_index)
        return flat.reconstruct_n(0, flat.ntotal)

    def _restructure(self, *, retrain: bool) -> None:
        """Rebuild from the index's own vectors without the dead ids; the kind follows the size."""
        ids = self.id_array()
        keep = ~np.isin(ids, np.fromiter(self._dead, np.int64, len(self._dead)))
        ids, vecs = ids[keep], self._vectors()[keep]
        n = len(ids)
        if not retrain and self.kind == "pq" and n > max(self.flat_max, PQ_MIN - 1):
            index = faiss.clone_index(self.index)  # keeps the trained PQ
            index.reset()
            index.add_with_ids(vecs, ids)
            self.index, self._dead = index, set()
        else:
            self._fill(ids, vecs)
        self._must_save = True  # structural work is worth saving at once

    def _add_rows(self, rows: Iterable[tuple[int, bytes | None]]) -> None:
        ids, vecs, _ = self._decode(rows, None if self.index is None else self.index.d)
        if not vecs:
            return
        if ids and self.index is not None and len(set(ids) & self._dead):  # an id never comes back; be safe
            self._restructure(retrain=False)
        if self.index is None:
            self._fill(np.asarray(ids, dtype=np.int64), normalise(np.stack(vecs)))
        else:
            self.index.add_with_ids(normalise(np.stack(vecs)), np.asarray(ids, dtype=np.int64))
        self._unsaved += len(ids)

    def _drop(self, ids: set[int]) -> None:
        if not ids or self.index is None:
            return
        if self.kind == "flat":
            self.index.remove_ids(np.asarray(sorted(ids), dtype=np.int64))
        else:
            self._dead |= ids
        self._unsaved += len(ids)
        if len(self) == 0:
            self.index, self._dead, self._trained_on = None, set(), 0

    def _maintain(self) -> None:
        n = len(self)
        kind = self.kind
        if kind == "flat" and n > max(self.flat_max, PQ_MIN - 1):
            self._restructure(retrain=True)  # grew past the exact range
        elif kind == "pq" and (n <= self.flat_max // 2 or n > REFIT_GROWTH * self._trained_on):
            self._restructure(retrain=True)  # shrank well below it, or the PQ was trained on far fewer
        elif kind == "pq" and len(self._dead) > min(self.postfilter_max // 2,
                                                    max(self.compact_min, self.ntotal // 100)):
            self._restructure(retrain=False)  # too many dead ids to filter cheaply

    def _spot_check(self, source: CatalogueSource, n: int = 16) -> bool:
        """A loaded file still describes this catalogue: up to ``n`` of its ids, spread from the oldest to the
        newest, have the same descriptors in the DB where they still exist (this catches a catalogue replaced
        under a kept index folder, whose ids would denote other motions)."""
        ids = np.sort(self.id_array())
        if self._dead:
            ids = ids[~np.isin(ids, np.fromiter(self._dead, np.int64, len(self._dead)))]
        if len(ids) == 0:
            return True
        assert self.index is not None  # it holds ids
        picks = np.unique(ids[np.linspace(0, len(ids) - 1, min(n, len(ids))).round().astype(int)])
        for mid, blob in source.rows(picks.tolist()):  # rows removed since are absent: the catch-up drops them
            if blob is None:
                return False
            try:
                want = normalise(as_descriptor(np.frombuffer(blob, dtype="<f4")))[0]
            except (ValueError, TypeError):
                return False
            have = self.index.reconstruct(int(mid))
            if want.shape != have.shape or not np.allclose(want, have, atol=1e-5):
                return False
        return True

    def sync(self, source: CatalogueSource, *, force_rebuild: bool = False) -> str:
        """Bring the in-memory index up to date with the catalogue; returns what it did: "fresh" (nothing
        to do), "loaded" (from the file, then caught up), "synced" (caught up) or "rebuilt" (from the DB)."""
        count, max_id = source.signature()
        sig = (int(count), int(max_id))
        if not force_rebuild and self.loaded and self._sig == sig:
            return "fresh"
        action = "synced"
        if force_rebuild or not self.loaded:
            if not force_rebuild and self._load() and self._spot_check(source):
                action = "loaded"
            else:
                self._rebuild(source, sig)
                if force_rebuild:
                    self.save()  # an explicit rebuild (doctor --repair) reports a failure to save
                else:
                    self._save_quietly()
                return "rebuilt"
        if self._sig != sig:
            self._catch_up(source, sig)
        self._maintain()
        if self._must_save or self._unsaved > max(self.save_min, self.save_fraction * self.ntotal):
            self._save_quietly()
        return action

    def _catch_up(self, source: CatalogueSource, sig: tuple[int, int]) -> None:
        self._add_rows(source.rows_after(self._hw))
        if len(self) + len(self._skipped) != sig[0]:
            # Rows were removed (or, on a database whose ids are not assigned in commit order, appeared
            # below the high-water mark): diff the id sets.
            db_ids = source.ids()
            have = set(self.id_array().tolist())
            self._drop((have - self._dead) - db_ids)
            self._skipped &= db_ids
            missing = db_ids - have - self._skipped
            if missing:
                self._add_rows(source.rows(missing))
        self._sig = sig

    # -- search --------------------------------------------------------------------------------
    @staticmethod
    def _selector(allowed: AbstractSet[int] | None, excluded: set[int]) -> tuple[Any, list]:
        keep: list = []
        sel = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.fromiter(allowed, np.int64, len(allowed)))
            keep.append(sel)
        if excluded:
            batch = faiss.IDSelectorBatch(np.fromiter(excluded, np.int64, len(excluded)))
            notsel = faiss.IDSelectorNot(batch)
            keep += [batch, notsel]
            sel = notsel if sel is None else faiss.IDSelectorAnd(sel, notsel)
            keep.append(sel)
        return sel, keep

    def search(self, query, k: int, allowed: AbstractSet[int] | None = None, blocked: AbstractSet[int] | None = None
               ) -> list[tuple[int, float]]:
        """The ``k`` nearest (id, cosine similarity), best first; only ids in ``allowed`` (when given) and
        not in ``blocked``."""
        index = self.index
        if index is None or k <= 0:
            return []
        q = as_descriptor(query)
        if q.size != index.d:
            raise ValueError(f"query descriptor has {q.size} values but the index holds {index.d}-d descriptors")
        q = normalise(q)
        if allowed is not None:
            if not allowed:
                return []
            k = min(k, len(allowed))
        excluded = self._dead | set(blocked or ())
        if self.kind == "flat":
            k = min(k, index.ntotal)
            if allowed is None and not excluded:
                scores, ids = index.search(q, k)
            else:
                sel, _keep = self._selector(allowed, excluded)
                scores, ids = index.search(q, k, params=faiss.SearchParameters(sel=sel))
            return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

        k = min(k, len(self))
        if k <= 0:
            return []
        n_out = len(excluded) + (max(0, len(self) - len(allowed)) if allowed is not None else 0)
        if n_out <= self.postfilter_max:
            # Post-filter: ask for k + n_out (at most n_out results can be excluded) with a candidate pool of
            # k_factor * k live candidates besides the excluded ones, then filter.
            k2 = min(index.ntotal, k + n_out)
            params = faiss.IndexRefineSearchParameters(k_factor=max(1.0, (self.k_factor * k + n_out) / k2))
            scores, ids = index.search(q, k2, params=params)
            hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0])
                    if i >= 0 and int(i) not in excluded and (allowed is None or int(i) in allowed)]
            if len(hits) >= k:
                return hits[:k]
        return self._search_restricted(q, k, allowed, excluded)

    def _search_restricted(self, q: np.ndarray, k: int, allowed: AbstractSet[int] | None, excluded: set[int]
                           ) -> list[tuple[int, float]]:
        """Exact search over the allowed, non-excluded vectors only (the re-rank storage, with a selector)."""
        assert self.index is not None, "search checks that there is an index"
        flat = faiss.downcast_index(faiss.downcast_index(self.index.index).refine_index)
        sel, _keep = self._selector(allowed, excluded)
        translated = faiss.IDSelectorTranslated(self.index.id_map, sel)
        scores, pos = flat.search(q, min(k, flat.ntotal), params=faiss.SearchParameters(sel=translated))
        id_map = self.id_array()
        return [(int(id_map[p]), float(s)) for p, s in zip(pos[0], scores[0]) if p >= 0]
