"""The faiss descriptor index: a rebuildable cache of the ``motions.descriptor`` column.

Files (next to the DB, under ``<home>/index``):
  ``descriptors-v{version}.faiss``  an ``IndexIDMap2(IndexFlatIP(dim))`` keyed by motion id
  ``descriptors-v{version}.json``   sidecar: version, dim, count, max_id, fingerprint of the id set

The DB is the truth. The index is rebuilt when its files are missing or unreadable, or were built
for another descriptor version or dimension, and re-synced (ids diffed against the DB) when the
fingerprint of the id set no longer matches. Vectors are L2-normalised float32, so the inner
product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import faiss
import numpy as np

from .blobs import TMP_MARKER, fsync_dir

__all__ = ["DescriptorIndex", "IndexState", "fingerprint", "normalise", "as_descriptor"]

SIDECAR_FORMAT = 1


def fingerprint(ids: Iterable[int]) -> str:
    body = ",".join(str(i) for i in sorted(int(i) for i in ids))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


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


@dataclass
class IndexState:
    """What ``DescriptorIndex.check`` found: ``fresh`` or why not (``reason``)."""

    fresh: bool
    reason: str
    needs_full_rebuild: bool = False


class DescriptorIndex:
    def __init__(self, folder: Path, version: int):
        self.folder = Path(folder)
        self.version = int(version)
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def faiss_path(self) -> Path:
        return self.folder / f"descriptors-v{self.version}.faiss"

    @property
    def sidecar_path(self) -> Path:
        return self.folder / f"descriptors-v{self.version}.json"

    # -- persistence ---------------------------------------------------------------------------
    def read_sidecar(self) -> dict | None:
        try:
            data = json.loads(self.sidecar_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _read(self) -> tuple[faiss.Index | None, dict | None, str]:
        side = self.read_sidecar()
        if side is None:
            return None, None, "index sidecar is missing or unreadable"
        if side.get("version") != self.version or side.get("format") != SIDECAR_FORMAT:
            return None, side, f"index was built for descriptor version {side.get('version')}, not {self.version}"
        if not side.get("count"):
            return None, side, ""  # a valid, empty index has no .faiss file
        try:
            index = faiss.read_index(str(self.faiss_path))
        except Exception:  # faiss raises RuntimeError on missing or truncated files
            return None, side, "index file is missing or unreadable"
        if index.d != side.get("dim") or index.ntotal != side.get("count"):
            return None, side, "index file does not match its sidecar"
        return index, side, ""

    def _write_atomic(self, path: Path, writer: Callable[[Path], None]) -> None:
        tmp = path.with_name(f"{path.name}{TMP_MARKER}{secrets.token_hex(4)}")
        try:
            writer(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def save(self, index: faiss.Index | None, db_ids: Iterable[int], skipped: Iterable[int] = ()) -> None:
        db_ids = sorted(set(int(i) for i in db_ids))
        count = 0 if index is None else int(index.ntotal)
        side = {
            "format": SIDECAR_FORMAT,
            "version": self.version,
            "dim": None if index is None else int(index.d),
            "count": count,
            "max_id": max(db_ids) if db_ids else None,
            "fingerprint": fingerprint(db_ids),
            "skipped": sorted(int(i) for i in skipped),
        }
        # Sidecar last: a crash in between leaves a sidecar that no longer matches -> rebuild.
        self.sidecar_path.unlink(missing_ok=True)
        if index is not None and count:
            self._write_atomic(self.faiss_path, lambda p: faiss.write_index(index, str(p)))
        else:
            self.faiss_path.unlink(missing_ok=True)
        self._write_atomic(self.sidecar_path, lambda p: p.write_text(json.dumps(side, indent=1)))
        fsync_dir(self.folder)

    def mark_stale(self) -> None:
        """Drop the sidecar so the next use rebuilds the index (used when an update failed)."""
        try:
            self.sidecar_path.unlink(missing_ok=True)
        except OSError:
            pass

    # -- freshness -----------------------------------------------------------------------------
    def check(self, db_ids: Iterable[int]) -> IndexState:
        index, side, reason = self._read()
        if reason:
            return IndexState(False, reason, needs_full_rebuild=True)
        if side.get("fingerprint") != fingerprint(db_ids):
            return IndexState(False, "index is stale (its motion ids differ from the catalogue)")
        return IndexState(True, "index is up to date")

    @staticmethod
    def _ids_of(index: faiss.Index | None) -> set[int]:
        if index is None:
            return set()
        return set(int(i) for i in faiss.vector_to_array(index.id_map))

    def _build(self, rows: Iterable[tuple[int, bytes]], base: faiss.Index | None = None
               ) -> tuple[faiss.Index | None, list[int]]:
        index = base
        skipped: list[int] = []
        ids: list[int] = []
        vecs: list[np.ndarray] = []
        dim = None if index is None else index.d
        for mid, blob in rows:
            try:
                v = as_descriptor(np.frombuffer(blob, dtype="<f4"))
            except (ValueError, TypeError):
                skipped.append(int(mid))
                continue
            if dim is None:
                dim = v.size
            if v.size != dim:
                skipped.append(int(mid))
                continue
            ids.append(int(mid))
            vecs.append(v)
        if vecs:
            if index is None:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            index.add_with_ids(normalise(np.stack(vecs)), np.asarray(ids, dtype=np.int64))
        return index, skipped

    def ensure(self, db_ids: set[int], fetch: Callable[[set[int] | None], list[tuple[int, bytes]]],
               *, force_rebuild: bool = False) -> tuple[faiss.Index | None, str]:
        """Return a fresh index, rebuilding or re-syncing it from ``fetch`` first if needed.

        ``fetch(None)`` returns every (id, descriptor) of this version; ``fetch(ids)`` just those ids.
        Returns (index or None when empty, action) with action "fresh", "synced" or "rebuilt".
        """
        db_ids = set(int(i) for i in db_ids)
        index, side, reason = (None, None, "forced") if force_rebuild else self._read()
        if not reason and side is not None and side.get("fingerprint") == fingerprint(db_ids):
            return index, "fresh"
        if not reason:
            # Stale but readable: motion ids never change their descriptor, so diff the id sets.
            have = self._ids_of(index)
            skipped_before = set(side.get("skipped") or ())
            extra = have - db_ids
            missing = db_ids - have - skipped_before
            if index is not None and extra:
                index.remove_ids(np.asarray(sorted(extra), dtype=np.int64))
            index, skipped = self._build(fetch(missing) if missing else [], base=index)
            if index is not None and index.ntotal == 0:
                index = None
            skipped_all = (skipped_before & db_ids) | set(skipped)
            self.save(index, db_ids, skipped_all)
            return index, "synced"
        index, skipped = self._build(fetch(None))
        self.save(index, db_ids, skipped)
        return index, "rebuilt"

    # -- search --------------------------------------------------------------------------------
    @staticmethod
    def search(index: faiss.Index | None, query, k: int, allowed: set[int] | None = None
               ) -> list[tuple[int, float]]:
        if index is None or index.ntotal == 0 or k <= 0:
            return []
        q = as_descriptor(query)
        if q.size != index.d:
            raise ValueError(f"query descriptor has {q.size} values but the index holds {index.d}-d descriptors")
        q = normalise(q)
        if allowed is not None:
            if not allowed:
                return []
            k = min(k, len(allowed))
            sel = faiss.IDSelectorBatch(np.asarray(sorted(allowed), dtype=np.int64))
            scores, ids = index.search(q, k, params=faiss.SearchParameters(sel=sel))
        else:
            scores, ids = index.search(q, min(k, index.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
