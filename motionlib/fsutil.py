"""Durable file writes and file hashing: the one place motionlib writes a file that must not be torn.

``atomic_write`` writes to a temp file in the destination folder (its name contains ``TMP_MARKER``,
so ``doctor`` can find leftovers), fsyncs it, renames it into place and fsyncs the folder: a crash
leaves either the old file or the whole new one. A full disk (ENOSPC, EDQUOT) removes the temp
file and raises ``NoSpaceLeft`` ("no space left on <folder>"). Torch-free, so the store can use it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from pathlib import Path
from contextlib import contextmanager
from typing import BinaryIO, Callable, Iterator, Literal, TypeVar, Union, cast, overload

from .errors import MotionlibError

__all__ = ["NoSpaceLeft", "TMP_MARKER", "CHUNK", "atomic_write", "atomic_copy", "sha256_file", "fsync_file",
           "fsync_dir", "temp_path", "is_no_space", "no_space_is_an_error"]

CHUNK = 1 << 20
TMP_MARKER = ".tmp"
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class NoSpaceLeft(MotionlibError, OSError):
    """The disk (or quota) is full; nothing partial was left behind."""

    def __init__(self, where: str | os.PathLike):
        super().__init__(errno.ENOSPC, f"no space left on {where}; free some space and try again")

    def __str__(self) -> str:  # one line, without OSError's "[Errno 28]"
        return self.strerror or ""


def is_no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it wraps) says the disk or quota is full."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, NoSpaceLeft) or (isinstance(exc, OSError) and exc.errno in _FULL):
            return True
        text = str(exc).lower()
        if "no space left" in text or "disk is full" in text or "disk quota exceeded" in text:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextmanager
def no_space_is_an_error(where: str | os.PathLike) -> Iterator[None]:
    """Turn a full-disk error raised inside (by any library) into ``NoSpaceLeft(where)``."""
    try:
        yield
    except Exception as exc:
        if is_no_space(exc):  # also a NoSpaceLeft from inside: name the place the caller knows
            raise NoSpaceLeft(where) from exc
        raise


def sha256_file(path: str | os.PathLike, start: int = 0, end: int | None = None) -> tuple[str, int]:
    """(sha256 hex digest, byte count) of ``path`` from byte ``start`` to ``end`` (default: the end)."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        f.seek(start)
        left = None if end is None else max(0, end - start)
        while left is None or left > 0:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest(), n


def fsync_file(path: str | os.PathLike) -> None:
    """fsync a file written by someone else (a library that opened it itself)."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder so a rename inside it is durable (no-op where unsupported, e.g. Windows)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    """A fresh hidden temp name next to ``final`` that keeps its suffix (writers that pick the
    format by suffix still work) and contains ``TMP_MARKER``."""
    return final.with_name(f".{final.name}{TMP_MARKER}{secrets.token_hex(4)}{final.suffix}")


Content = Union[bytes, str, Callable[[Path], object], Callable[[BinaryIO], object]]
T = TypeVar("T")


@overload
def atomic_write(path: str | os.PathLike, content: bytes | str) -> None: ...
@overload
def atomic_write(path: str | os.PathLike, content: Callable[[Path], T], *, stream: Literal[False] = False) -> T: ...
@overload
def atomic_write(path: str | os.PathLike, content: Callable[[BinaryIO], T], *, stream: Literal[True]) -> T: ...
def atomic_write(path: str | os.PathLike, content: Content, *, stream: bool = False) -> object:
    """Write ``path`` atomically and durably; returns what a callable ``content`` returned.

    ``content`` is bytes, text (UTF-8), or a callable that writes the temp file: given its path
    (a library that opens the file itself), or with ``stream=True`` given the open binary file.
    The temp file is created with the usual permissions (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    result = None
    with no_space_is_an_error(path.parent):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as f:
                if not callable(content):
                    f.write(content.encode() if isinstance(content, str) else content)
                elif stream:
                    result = cast("Callable[[BinaryIO], object]", content)(f)
            if callable(content) and not stream:
                result = cast("Callable[[Path], object]", content)(tmp)
            fsync_file(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    fsync_dir(path.parent)
    return result


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` atomically and durably; returns (sha256, bytes) of what was written."""

    def copy(fout: BinaryIO) -> tuple[str, int]:
        h, n = hashlib.sha256(), 0
        with open(src, "rb") as fin:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
                n += len(chunk)
        return h.hexdigest(), n

    return atomic_write(dst, copy, stream=True)


class Busy(MotionlibError):
    """Another process holds the lock on a folder this one would write (e.g. two trainers on one ``--out``)."""


@contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``path`` (created; it records the holder's pid) for the ``with`` block.

    Raises ``Busy`` at once, naming the holder's pid, when another process holds it. The kernel releases the
    lock when the holder exits, however it exits, so a crash never leaves a stale lock behind.
    """
    import fcntl  # POSIX: the trainer and the machines it runs on

    p = Path(path)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise Busy(f"{what} is in use by another process (pid {holder}); stop it or choose another") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
