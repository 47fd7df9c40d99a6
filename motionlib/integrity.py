"""Motion files that prove their integrity: the hashes a motion file carries in its header (torch-free).

Format version 2 adds two SHA-256 digests to the ``motionlib`` header metadata:

- ``content_sha256``: of the safetensors data section (every tensor byte);
- ``header_sha256``: of the rest of the header in canonical JSON (sorted keys, no spaces): the
  tensor table (names, dtypes, shapes, offsets) and the metadata without these two keys, so an
  edit that keeps the data but swaps offsets or changes a parameter is caught as well.

Version-1 files carry no hash: they are still read, with an ``UnverifiedAsset`` warning. Version 3
stores the reference AMF and its confidence in 8 bits (motionlib.asset); versions 2 and 3 carry the
same hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import MotionlibError
from .fsutil import atomic_write, sha256_file

__all__ = ["AssetError", "DamagedAsset", "UnverifiedAsset", "Header", "read_header", "seal", "verify", "check_file",
           "seal_file", "FORMAT", "VERSION", "READS", "HASHED", "CONTENT_KEY", "HEADER_KEY", "MAX_HEADER_BYTES"]

FORMAT = "motionlib.motion"
VERSION = 3  # 2: content and header hashes; 3: 8-bit AMF offsets and confidence
READS = (1, 2, 3)  # 1: no hashes, read with an UnverifiedAsset warning
HASHED = 2  # the version that added the hashes: what sealing a version-1 file makes it
CONTENT_KEY = "content_sha256"
HEADER_KEY = "header_sha256"
MAX_HEADER_BYTES = 1 << 20  # metadata + tensor table; a 5B asset needs ~10 KB


class AssetError(MotionlibError, ValueError):
    """A motion file that is not a valid motionlib asset (or not for this model)."""


class DamagedAsset(AssetError):
    """A motion file whose bytes do not match the hashes it carries."""


class UnverifiedAsset(UserWarning):
    """A motion file of an older format, without a content hash: its bytes cannot be checked."""


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _unique(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice")
        out[k] = v
    return out


def strict_json(text: str | bytes):
    """json.loads refusing NaN/Infinity and duplicate keys (so what is hashed is what is read)."""
    return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique)


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


@dataclass
class Header:
    """The parsed safetensors header of a file: its length, the table, the motionlib metadata."""

    length: int  # bytes of JSON after the 8-byte length prefix
    table: dict  # tensor name -> {"dtype", "shape", "data_offsets"}
    extra: dict  # __metadata__ entries other than "motionlib"
    meta: dict | None  # the parsed "motionlib" metadata, None when absent or not a table
    size: int  # file size

    @property
    def data_start(self) -> int:
        return 8 + self.length


def read_header(path: str | os.PathLike) -> Header:
    """Parse a safetensors header with bounds checks; never reads tensor data."""
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
            header = strict_json(fh.read(n))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise AssetError(f"{path}: not a motion file (header is not valid JSON: {_short(e)})") from None
    if not isinstance(header, dict):
        raise AssetError(f"{path}: not a motion file (header is not a table)")
    extra = header.pop("__metadata__", {})
    if not isinstance(extra, dict):
        raise AssetError(f"{path}: not a motion file (its metadata is not a table)")
    extra = dict(extra)
    try:
        meta = strict_json(extra.pop("motionlib", "null"))
    except (TypeError, ValueError, RecursionError):
        meta = None
    return Header(n, header, extra, meta if isinstance(meta, dict) else None, size)


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:120] if str(e) else type(e).__name__


def header_digest(table: dict, extra: dict, meta: dict) -> str:
    body = {"tensors": table, "metadata": extra,
            "motionlib": {k: v for k, v in meta.items() if k not in (CONTENT_KEY, HEADER_KEY)}}
    return hashlib.sha256(canonical(body)).hexdigest()


def seal(data: bytes, **changes) -> bytes:
    """The safetensors file ``data`` with both hashes added to its motionlib metadata (after
    applying ``changes`` to that metadata, e.g. ``version=2`` to upgrade a version-1 file)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    extra = dict(header.pop("__metadata__", {}))
    meta = {**json.loads(extra.pop("motionlib")), **changes}
    body = memoryview(data)[8 + n:]
    meta[CONTENT_KEY] = hashlib.sha256(body).hexdigest()
    meta[HEADER_KEY] = header_digest(header, extra, meta)
    new = {"__metadata__": {**extra, "motionlib": json.dumps(meta, allow_nan=False)}, **header}
    text = json.dumps(new, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors keeps the data section 8-byte aligned
    return struct.pack("<Q", len(text)) + text + bytes(body)


def verify(path: str | os.PathLike, head: Header) -> bool:
    """Check both hashes of a sealed file; False when it carries none (an older format).

    Raises DamagedAsset: "<path>: damaged: content does not match its hash"."""
    meta = head.meta or {}
    if CONTENT_KEY not in meta and HEADER_KEY not in meta:
        return False
    damaged = DamagedAsset(f"{path}: damaged: content does not match its hash")
    want_header, want_data = meta.get(HEADER_KEY), meta.get(CONTENT_KEY)
    if not (isinstance(want_header, str) and isinstance(want_data, str)):
        raise damaged
    try:
        if header_digest(head.table, head.extra, meta) != want_header:
            raise damaged
    except (TypeError, ValueError):
        raise damaged from None
    got, _ = sha256_file(path, head.data_start)
    if got != want_data:
        raise damaged
    return True


def seal_file(path: str | os.PathLike) -> bool:
    """Seal a version-1 motion file in place (atomically): version 2, the same tensors plus the
    hashes; False (nothing written) when it already carries them."""
    head = read_header(path)
    if head.meta is None or head.meta.get("format") != FORMAT or head.meta.get("version") not in READS:
        raise AssetError(f"{path}: not a motionlib motion of a supported version")
    if CONTENT_KEY in head.meta:
        return False
    atomic_write(path, seal(Path(path).read_bytes(), version=HASHED))
    return True


def check_file(path: str | os.PathLike) -> bool:
    """``verify`` for a file on disk: True when its hashes match, False when it carries none."""
    return verify(path, read_header(path))
