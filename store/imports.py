"""The import pipeline: a motion asset made elsewhere, checked on a private copy before it is stored.

``Library.import_file`` checks the name, then calls ``import_file`` here: the file is copied into a
work folder under ``<home>/tmp`` and every callback sees only that copy; nothing in the file is
executed by the library. The steps: copy -> ``validate`` (the caller's reading of the file, e.g.
``motionlib.catalog``'s; its verdict, whatever its type, becomes ImportRejected) -> the meta's columns
(``store.meta``) -> ``descriptor_fn`` -> ``thumbnails_fn`` (optional; failures only lose the thumbnails)
-> ``add`` (``Library.add_motion``). The work folder goes in every case.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from motionlib.fsutil import TMP_MARKER, NoSpaceLeft, atomic_copy, no_space_is_an_error

from .errors import ImportRejected, LibraryError
from .meta import meta_to_columns

if TYPE_CHECKING:
    from .models import Motion

__all__ = ["import_file", "Validate", "DescriptorFn", "ThumbnailsFn", "Add"]

log = logging.getLogger("motionlib.store")

#: ``validate(copy) -> meta``: raise to reject
Validate = Callable[[Path], dict]
#: ``descriptor_fn(copy, meta) -> vector`` (or None: a motion search cannot rank)
DescriptorFn = Callable[[Path, dict], Any]
#: ``thumbnails_fn(copy, meta, workdir) -> {"png": path, "gif": path}``
ThumbnailsFn = Callable[[Path, dict, Path], Mapping[str, Path]]
#: ``add(copy, meta, descriptor, thumbnails) -> Motion``: stores the checked copy
Add = Callable[[Path, dict, Any, Mapping[str, Path]], "Motion"]


def import_file(path: Path | str, *, tmp_dir: Path, validate: Validate, descriptor_fn: DescriptorFn,
                thumbnails_fn: ThumbnailsFn | None, add: Add) -> Motion:
    """Import the file at ``path`` through a copy in a work folder under ``tmp_dir`` (see the module
    docstring). Rejections raise ImportRejected; a full disk NoSpaceLeft."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ImportRejected(f"{path}: no such file")
    if not path.is_file():
        raise ImportRejected(f"{path}: not a regular file")
    with no_space_is_an_error(tmp_dir):
        return _import(path, tmp_dir, validate, descriptor_fn, thumbnails_fn, add)


def _import(path: Path, tmp_dir: Path, validate: Validate, descriptor_fn: DescriptorFn,
            thumbnails_fn: ThumbnailsFn | None, add: Add) -> Motion:
    work = Path(tempfile.mkdtemp(prefix="import-", suffix=TMP_MARKER, dir=tmp_dir))
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
            meta_to_columns(meta)
        except LibraryError as exc:
            raise ImportRejected(f"{path.name}: {exc}") from None
        try:
            desc = descriptor_fn(staged, meta)  # None: a motion search cannot rank (no motion)
            if desc is not None:
                from .index import as_descriptor  # numpy: only once there is a descriptor to check

                desc = as_descriptor(desc)
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
        return add(staged, meta, desc, thumbs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
