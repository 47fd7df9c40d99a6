"""Exceptions raised by the motion catalogue. Every message is one line and says what to do next."""

from __future__ import annotations

from pathlib import Path

from motionlib.errors import MotionlibError

__all__ = ["LibraryError", "MotionNotFound", "RenderNotFound", "MotionExists", "InvalidName", "CorruptBlob", "ImportRejected"]


class LibraryError(MotionlibError):
    """Base class for every error the catalogue raises on purpose."""


class MotionNotFound(LibraryError, KeyError):
    """No motion of that name. ``suggestion`` holds the closest existing name, if any."""

    def __init__(self, name: str, suggestion: str | None = None):
        self.name = name
        self.suggestion = suggestion
        hint = f"; did you mean '{suggestion}'?" if suggestion else "; list the library to see what it holds"
        super().__init__(f"no motion named '{name}'{hint}")

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return self.args[0]


class RenderNotFound(LibraryError, KeyError):
    """No render with that id."""

    def __init__(self, render_id: int):
        self.render_id = render_id
        super().__init__(f"no render with id {render_id}")

    def __str__(self) -> str:
        return self.args[0]


class MotionExists(LibraryError):
    """A motion of that name is already in the library."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"a motion named '{name}' already exists; pick another name, or replace it "
                         "(--force, or force=True in Python)")


class InvalidName(LibraryError, ValueError):
    """A motion name (or tag) that the catalogue refuses."""


class CorruptBlob(LibraryError):
    """A stored asset file is missing or its bytes no longer match their checksum."""

    def __init__(self, message: str, *, path: Path | None = None, motion: str | None = None,
                 expected: str | None = None, actual: str | None = None):
        self.path = path
        self.motion = motion
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class ImportRejected(LibraryError):
    """A file offered to ``Library.import_file`` is not an acceptable motion asset."""
