"""``doctor``: check a library's files against its rows, and repair what can be repaired.

Found: orphan blobs and thumbnails (no row, e.g. from a killed learn), temp files left behind,
rows whose blob is missing or fails its catalogue checksum, blobs whose embedded content hash does
not match (through the caller's ``check_content``, e.g. ``motionlib.catalog.check_content``; the
store itself does not read asset files), missing thumbnails, descriptors of another version and a
stale search index. Repair removes orphans and old temp files and rebuilds the index; rows are never
deleted, so findings about rows are only reported.

Doctor reads the library through ``Library``'s public methods only (``motion_files``, ``learnt_weights``,
``gc_blob``, ``rebuild_index``, ``index``, ``blobs``), so it needs ``store.library`` for type checking
alone and ``Library`` can import ``Report`` from here without an import circle.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from motionlib.errors import MotionlibError
from motionlib.fsutil import TMP_MARKER

from . import layout
from .errors import CorruptBlob, LibraryError

if TYPE_CHECKING:
    from .library import Library

__all__ = ["Report", "doctor", "temp_entries"]


@dataclass
class Report:
    """What ``doctor`` found (and, with repair, did). Rows are never deleted by doctor."""

    orphan_blobs: list[Path] = field(default_factory=list)
    orphan_thumbnails: list[Path] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)
    missing_blobs: list[str] = field(default_factory=list)  # motion names
    corrupt_blobs: list[str] = field(default_factory=list)  # motion names
    damaged_content: list[tuple[str, str]] = field(default_factory=list)  # (motion, why): embedded hash
    unverified: list[str] = field(default_factory=list)  # motions whose file carries no content hash
    missing_thumbnails: list[tuple[str, str]] = field(default_factory=list)  # (motion, relative path)
    other_descriptor_versions: list[str] = field(default_factory=list)  # motions not searchable now
    other_weights: list[tuple[str, str]] = field(default_factory=list)  # (motion, model): learnt with other weights
    unknown_weights: list[str] = field(default_factory=list)  # motions stored before weights were recorded
    weights_unchecked: list[tuple[str, str]] = field(default_factory=list)  # (model, why)
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
        out += [f"motion '{n}': asset file is damaged ({why}); re-learn it or remove the motion"
                for n, why in self.damaged_content]
        out += [f"motion '{n}': thumbnail {p} is missing" for n, p in self.missing_thumbnails]
        out += [f"motion '{n}': descriptor is of another version; not searchable until re-described "
                "(any motionlib command re-describes it)"
                for n in self.other_descriptor_versions]
        out += [f"motion '{n}': learnt with other {m} weights than the installed ones, so it may not move as it "
                f"did; learn it again from its reference clip (motionlib learn CLIP --name {n} --model {m} --force)"
                for n, m in self.other_weights]
        return out

    def problems(self) -> list[str]:
        out = [f"orphan blob (no motion row): {p}" for p in self.orphan_blobs]
        out += [f"orphan thumbnail (no motion row): {p}" for p in self.orphan_thumbnails]
        out += [f"temp file left behind: {p}" for p in self.temp_files]
        out += self.needs_attention
        if self.index_stale:
            out.append(f"search index: {self.index_reason}")
        return out

    def notes(self) -> list[str]:
        """Informational findings that are not problems."""
        out = [f"motion '{n}': its file is of an older format without a content hash (export and "
               "re-import it to add one)" for n in self.unverified]
        if self.unknown_weights:
            out.append(f"{len(self.unknown_weights)} motion(s) were stored before motionlib recorded the weights they "
                       f"were learnt with (unknown weights): {', '.join(repr(n) for n in self.unknown_weights)}")
        out += [f"weights of {m} not checked: {why}" for m, why in self.weights_unchecked]
        if self.index_note:
            out.append(f"search index: {self.index_note}")
        return out

    def __str__(self) -> str:
        lines = self.problems() or ["library is healthy"]
        lines += [f"note: {n}" for n in self.notes()]
        lines += [f"repaired: {r}" for r in self.repaired]
        lines += [f"skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


def temp_entries(home: Path) -> list[Path]:
    """Temp files and folders under the library's folders (not those inside a temp folder)."""
    out: list[Path] = []
    for sub in layout.FOLDERS:
        root = home / sub
        if root.is_dir():
            out += [p for p in root.rglob(f"*{TMP_MARKER}*")
                    if not any(TMP_MARKER in part for part in p.relative_to(root).parts[:-1])]
    return sorted(out)


def doctor(lib: Library, repair: bool = False, *, grace_seconds: float = 60.0, verify: bool = True,
           check_content: Callable[[Path], bool] | None = None,
           installed_weights: Callable[[str, str], str] | None = None) -> Report:
    """Check ``lib``'s files against its rows.

    ``verify`` re-hashes every blob against its catalogue checksum; ``check_content(path)`` (after
    a blob passed that) checks the hash the file itself carries: it returns False for a file that
    carries none and raises to report damage. With repair: remove orphan blobs/thumbnails, remove
    temp files older than ``grace_seconds`` (younger ones may belong to a running learn/import),
    rebuild the index. ``installed_weights(model_name, model_source)`` gives the fingerprint of a
    model's installed weights (raising a MotionlibError that says why when it cannot, e.g. weights not
    on this machine); motions learnt with another are listed (see motionlib.weights)."""
    rep = Report()
    rows, signature = lib.motion_files()  # one snapshot: the rows and the signature the index is checked against
    used = {r.blob_sha256 for r in rows}
    searchable = any(r.descriptor_version == lib.descriptor_version and r.has_descriptor for r in rows)
    for name, sha, png, gif, dv, _ in rows:
        _check_blob(lib, rep, name, sha, verify, check_content)
        for rel in (png, gif):
            if rel and not (lib.home / rel).is_file():
                rep.missing_thumbnails.append((name, rel))
        if dv != lib.descriptor_version:
            rep.other_descriptor_versions.append(name)
    rep.orphan_blobs = [lib.blobs.path(sha) for sha in lib.blobs.iter_shas() if sha not in used]
    for p in sorted(lib.thumbs_dir.glob("*.*")):
        stem, _, ext = p.name.partition(".")
        if ext in layout.THUMB_KINDS and stem not in used:
            rep.orphan_thumbnails.append(p)
    rep.temp_files = temp_entries(lib.home)
    if installed_weights is not None:
        _check_weights(lib, rep, installed_weights)
    state = lib.index.check(signature)
    # an index not built yet for a library with nothing to search is not a problem
    stale = not state.usable and (searchable or lib.index.sidecar_path.exists())
    rep.index_stale, rep.index_reason = stale, (state.reason if stale else "")
    rep.index_note = state.reason if state.behind else ""
    if repair:
        _repair(lib, rep, grace_seconds)
    return rep


def _check_blob(lib: Library, rep: Report, name: str, sha: str, verify: bool,
                check_content: Callable[[Path], bool] | None) -> None:
    try:
        if verify:
            path = lib.blobs.verify(sha, motion=name)
        elif not lib.blobs.exists(sha):
            raise CorruptBlob("missing", path=lib.blobs.path(sha))
        else:
            path = lib.blobs.path(sha)
    except CorruptBlob as exc:
        (rep.corrupt_blobs if exc.actual else rep.missing_blobs).append(name)
        return
    if check_content is None:
        return
    try:
        if not check_content(path):
            rep.unverified.append(name)
    except MotionlibError as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        rep.damaged_content.append((name, why.replace(f"{path}: ", "")))


def _check_weights(lib: Library, rep: Report, installed: Callable[[str, str], str]) -> None:
    known: dict[tuple[str, str], str | None] = {}
    for name, model, stored_source, learnt in lib.learnt_weights():
        source = stored_source or model
        if learnt is None:
            rep.unknown_weights.append(name)
            continue
        if (model, source) not in known:
            try:
                known[(model, source)] = installed(model, source)
            except MotionlibError as exc:
                known[(model, source)] = None
                rep.weights_unchecked.append((model, str(exc).strip().splitlines()[0] if str(exc).strip() else
                                              type(exc).__name__))
        fp = known[(model, source)]
        if fp is not None and fp != learnt:
            rep.other_weights.append((name, model))


def _repair(lib: Library, rep: Report, grace_seconds: float) -> None:
    for p in rep.orphan_blobs:
        lib.gc_blob(p.name.split(".")[0])  # re-checks references right before deleting
        if not p.exists():
            rep.repaired.append(f"removed orphan blob {p}")
    for p in rep.orphan_thumbnails:
        if p.exists():
            lib.gc_blob(p.name.split(".")[0])
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
    try:
        n = lib.rebuild_index()
    except OSError as exc:
        raise LibraryError(f"could not save the rebuilt search index in {lib.index.folder}: "
                           f"{exc.strerror or exc}") from exc
    rep.repaired.append(f"rebuilt the search index ({n} descriptors)")
