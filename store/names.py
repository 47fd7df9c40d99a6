"""Motion names and tags: the rule they follow, the check that says why one breaks it, and the
"did you mean" suggestion of ``MotionNotFound``.

No file path is ever derived from a name (files are named by content hash, see ``layout``); the rule
keeps names safe anyway, e.g. for ``export``'s ``<folder>/<name>.safetensors``. Tags follow the same
rule, lower-cased.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Iterable

from .errors import InvalidName

__all__ = ["NAME_MAX", "validate", "clean_tags", "closest"]

NAME_MAX = 64  # the name columns hold 64 characters (store.models)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def validate(name: str, *, what: str = "motion name") -> str:
    """Return ``name`` if acceptable, else raise InvalidName saying why."""
    rule = f"use 1-{NAME_MAX} letters, digits, '-', '_' or '.', starting with a letter or digit"
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{what} is empty; {rule}")
    if len(name) > NAME_MAX:
        raise InvalidName(f"{what} is {len(name)} characters long; the limit is {NAME_MAX}")
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise InvalidName(f"{what} {name!r} contains a path separator; {rule}")
    if name in (".", ".."):
        raise InvalidName(f"{what} {name!r} is reserved; {rule}")
    if not _NAME_RE.match(name) or not name.isascii():
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
        if bad:
            raise InvalidName(f"{what} {name!r} contains {''.join(bad)!r}; {rule}")
        raise InvalidName(f"{what} {name!r} must start with a letter or digit; {rule}")
    return name


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Tags stripped, lower-cased, checked (InvalidName) and without repeats, in their order; one string is
    one tag."""
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for t in tags:
        t = validate(str(t).strip().lower(), what="tag")
        if t not in out:
            out.append(t)
    return out


def closest(name: str, names: Iterable[str]) -> str | None:
    """The name in ``names`` most like ``name`` (a likely typo of it), or None."""
    close = difflib.get_close_matches(str(name), list(names), n=1, cutoff=0.6)
    return close[0] if close else None
