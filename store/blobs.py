"""Content-addressed, crash-safe file store: ``<root>/<sha[:2]>/<sha><suffix>``.

Files are written with ``motionlib.fsutil.atomic_copy`` (temp file in the destination folder,
fsync, rename, folder fsync), so a crash leaves either no file or the whole file (plus, at worst,
a ``*.tmp*`` file that ``doctor`` removes); a full disk raises ``NoSpaceLeft`` and leaves nothing.
Several processes (on several machines sharing the folder) may write the same blob at once: each
writes its own temp file and the renames replace identical bytes with identical bytes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from motionlib.fsutil import TMP_MARKER, atomic_copy, fsync_dir, sha256_file

from .errors import CorruptBlob, LibraryError

__all__ = ["BlobStore", "sha256_file", "atomic_copy", "fsync_dir", "TMP_MARKER", "is_sha256"]

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def is_sha256(value: str) -> bool:
    return bool(_SHA_RE.match(value or ""))


class BlobStore:
    """Blobs keyed by sha256 under ``root``; the key is never derived from a user-supplied name."""

    def __init__(self, root: Path, suffix: str = ".safetensors"):
        self.root = Path(root)
        self.suffix = suffix
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        if not is_sha256(sha):
            raise LibraryError(f"not a sha256 hex digest: {sha!r}")
        return self.root / sha[:2] / f"{sha}{self.suffix}"

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, src_path: Path) -> tuple[str, int]:
        """Store a copy of ``src_path``; returns (sha256, nbytes). Idempotent and durable on return."""
        src_path = Path(src_path)
        if not src_path.is_file():
            raise LibraryError(f"asset file not found or not a regular file: {src_path}")
        sha, nbytes = sha256_file(src_path)
        final = self.path(sha)
        if final.is_file():
            have, have_n = sha256_file(final)
            if have == sha and have_n == nbytes:
                return sha, nbytes  # already stored (deduplicated)
        shard = final.parent
        new_shard = not shard.exists()
        shard.mkdir(parents=True, exist_ok=True)
        if new_shard:
            fsync_dir(self.root)
        written_sha, written_n = atomic_copy(src_path, final)
        if written_sha != sha:
            # The source changed between hashing and copying: never leave wrong bytes under a sha name.
            final.unlink(missing_ok=True)
            raise LibraryError(f"asset file changed while it was being copied: {src_path}; try again")
        return sha, nbytes

    def verify(self, sha: str, *, motion: str | None = None) -> Path:
        """Re-hash the blob; returns its path or raises CorruptBlob naming the file (and motion)."""
        p = self.path(sha)
        who = f"motion '{motion}': " if motion else ""
        if not p.is_file():
            raise CorruptBlob(f"{who}asset file {p} is missing; run doctor, then re-learn or re-import it",
                              path=p, motion=motion, expected=sha)
        actual, _ = sha256_file(p)
        if actual != sha:
            raise CorruptBlob(
                f"{who}asset file {p} is corrupt (sha256 {actual[:12]}… != {sha[:12]}…); "
                "re-learn or re-import it", path=p, motion=motion, expected=sha, actual=actual)
        return p

    def delete(self, sha: str) -> bool:
        p = self.path(sha)
        try:
            p.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(p.parent)
        # The shard folder stays, even empty: another process may be writing a blob into it right now
        # (removing it between that writer's mkdir and its temp file would fail the writer).
        return True

    def iter_shas(self) -> Iterator[str]:
        """Every stored blob's sha (temp files excluded)."""
        for p in sorted(self.root.glob(f"??/*{self.suffix}")):
            sha = p.name[: -len(self.suffix)]
            if is_sha256(sha) and p.parent.name == sha[:2]:
                yield sha

    def iter_temp_files(self) -> Iterator[Path]:
        yield from sorted(p for p in self.root.rglob(f"*{TMP_MARKER}*") if p.is_file())

    def copy_out(self, sha: str, dest: Path) -> Path:
        atomic_copy(self.path(sha), Path(dest))
        return Path(dest)
