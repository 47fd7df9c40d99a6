"""Render records: the log of videos made with the stored motions (``Render`` rows).

A record keeps a copy of its motion's name, so the history of a motion survives its removal. The
``Library`` methods ``record_render``, ``renders`` and ``render`` open the sessions and call these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from .errors import MotionNotFound, RenderNotFound
from .models import Motion, Render

__all__ = ["record", "newest", "one"]


def record(s: Session, name: str | None, *, prompt: str, output_path: Path | str, seed: int | None,
           steps: int | None, strength: float | None, seconds: float | None, motion_id: int | None,
           not_found: Callable[[str], MotionNotFound], image_sha256: str | None = None,
           image_preview: bytes | None = None) -> Render:
    """Insert and commit the record of a render made with motion ``name`` (None: no motion), in the write
    session ``s``: the check and the insert in one write transaction.

    ``motion_id`` (the row read when the render started) makes it record only if that very row still has
    that name: a motion removed, renamed or replaced meanwhile raises ``not_found(name)``."""
    if name is None:
        motion_id = None
    elif motion_id is None:
        motion_id = s.exec(select(Motion.id).where(Motion.name == name)).first()
    elif s.exec(select(Motion.name).where(Motion.id == motion_id)).first() != name:
        motion_id = None
    if name is not None and motion_id is None:
        s.rollback()
        raise not_found(name)
    r = Render(motion_id=motion_id, motion_name=name, prompt=prompt, seed=seed, steps=steps,
               strength=strength, output_path=str(output_path), seconds=seconds, image_sha256=image_sha256,
               image_preview=image_preview)
    s.add(r)
    try:
        s.commit()
    except IntegrityError:  # the motion was removed by another process meanwhile
        if name is None:  # no motion, no foreign key: not that
            raise
        raise not_found(name) from None
    return r


def newest(s: Session, name: str | None = None, limit: int | None = None) -> list[Render]:
    """Renders newest first, optionally only those of motion ``name`` (also after it was removed)."""
    stmt = select(Render).order_by(col(Render.created_at).desc(), col(Render.id).desc())
    if name is not None:
        stmt = stmt.where(Render.motion_name == name)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(s.exec(stmt).all())


def one(s: Session, render_id: int) -> Render:
    """One render by id (RenderNotFound if there is none)."""
    r = s.get(Render, int(render_id))
    if r is None:
        raise RenderNotFound(render_id)
    return r
