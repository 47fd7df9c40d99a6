"""The header of a motion asset file, read without torch.

A safetensors file starts with an 8-byte little-endian length and that many bytes of JSON: the tensor
table (name -> dtype, shape, byte offsets) and ``__metadata__``, where motionlib keeps its own JSON
under the key ``motionlib`` (format, version, model spec, timesteps, learn parameters, losses). Reading
it costs a few kilobytes of I/O, so the catalogue commands (``show``) read it at once;
``motionlib.asset.inspect`` adds the full validation of every tensor against the metadata.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import MotionlibError

__all__ = ["AssetError", "AssetHeader", "read_header", "FORMAT", "VERSION", "MAX_HEADER_BYTES"]

FORMAT = "motionlib.motion"
VERSION = 1
MAX_HEADER_BYTES = 1 << 20  # metadata + tensor table; a 5B asset needs ~10 KB


class AssetError(MotionlibError, ValueError):
    """A motion file that is not a valid motionlib asset (or not for this model)."""


@dataclass(frozen=True)
class AssetHeader:
    """What the first bytes of an asset file say: motionlib's metadata and the tensor table."""

    meta: dict  # motionlib's metadata (format, version, spec, timesteps, params, losses, ...)
    tensors: dict  # name -> {"dtype", "shape", "data_offsets"}, as safetensors writes it
    header_bytes: int  # length of the JSON header
    file_bytes: int


def read_header(path: str | os.PathLike) -> AssetHeader:
    """The header of a motionlib asset; AssetError naming the problem when the file is not one of this
    format version. Tensor shapes and dtypes are not checked here (``motionlib.asset.inspect`` does)."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise AssetError(f"{path}: not a motion file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or n + 8 > size:
            raise AssetError(f"{path}: not a motion file (header of {n} bytes is not plausible)")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise AssetError(f"{path}: not a motion file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise AssetError(f"{path}: not a motion file (header is not a table)")
    try:
        meta = json.loads(header.get("__metadata__", {}).get("motionlib", "null"))
    except (AttributeError, TypeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AssetError(f"{path}: not a motionlib motion (no motionlib metadata)")
    if meta.get("version") != VERSION:
        raise AssetError(f"{path}: motion format version {meta.get('version')} is not supported "
                         f"(this motionlib reads version {VERSION})")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    return AssetHeader(meta=meta, tensors=tensors, header_bytes=n, file_bytes=size)
