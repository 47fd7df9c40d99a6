"""The motion catalogue: ``Library`` plus its tables, errors and helpers.

    from motionlib.store import Library
    lib = Library()                      # $MOTIONLIB_HOME or the platform data dir
    lib.add_motion("waves", asset_file=..., meta={...}, descriptor=vec, thumbnails={"png": p})
    lib.search(vec, k=5)
"""

from .blobs import BlobStore, sha256_file
from .db import migrate, open_engine
from .errors import (CorruptBlob, ImportRejected, InvalidName, LibraryError, MotionExists, MotionNotFound,
                     RenderNotFound)
from .doctor import Report
from .layout import THUMB_KINDS
from .library import DESCRIPTOR_VERSION, FAMILIES, Describe, Library, MotionFiles, RedescribeProgress
from .meta import COLUMN_META, REQUIRED_META
from .models import Motion, MotionSummary, MotionTag, Render
from .names import NAME_MAX


def __getattr__(name: str):
    if name == "DescriptorIndex":  # numpy and faiss load only when the index is used
        from .index import DescriptorIndex

        return DescriptorIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Library", "Report", "Motion", "MotionSummary", "MotionTag", "Render",
    "LibraryError", "MotionNotFound", "RenderNotFound", "MotionExists", "InvalidName", "CorruptBlob", "ImportRejected",
    "BlobStore", "DescriptorIndex", "open_engine", "migrate", "sha256_file",
    "DESCRIPTOR_VERSION", "REQUIRED_META", "COLUMN_META", "FAMILIES", "NAME_MAX", "THUMB_KINDS",
    "Describe", "RedescribeProgress", "MotionFiles",
]
