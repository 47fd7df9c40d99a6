"""SQLModel tables of the motion catalogue.

The schema is owned by the alembic history in ``motionlib.migrations`` (revision ``0001`` creates
these tables); change a model here only together with a new numbered migration.
"""

import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, cast

import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Relationship, SQLModel

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Motion", "MotionSummary", "MotionTag", "Render", "UTCDateTime", "utcnow", "TABLES", "HEAVY_COLUMNS",
           "TAG_ROWS", "motion_ids"]

TABLES = ("motions", "motion_tags", "renders")
#: Motion columns that ``Library.list`` does not load (``MotionSummary`` leaves them out)
HEAVY_COLUMNS = ("params_json", "loss_json", "descriptor", "lineage_json")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive; we re-attach UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class MotionTag(SQLModel, table=True):
    __tablename__ = "motion_tags"

    motion_id: int = Field(foreign_key="motions.id", primary_key=True, ondelete="CASCADE")
    tag: str = Field(primary_key=True, index=True, max_length=64)

    motion: Optional["Motion"] = Relationship(back_populates="tag_rows")


class Motion(SQLModel, table=True):
    """One learned motion asset: catalogue metadata + the sha256 of its safetensors blob."""

    __tablename__ = "motions"
    # AUTOINCREMENT: SQLite must never reuse a deleted motion's id, because the descriptor index
    # is keyed by id and trusts that an id always denotes the same descriptor.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    model_name: str = Field(index=True)
    model_source: Optional[str] = None
    config_hash: Optional[str] = None
    family: str  # the model's positional embedding: one of motionlib.models.spec.EMBEDDINGS (a stored name)
    latent_frames: int
    latent_rows: int
    latent_cols: int

    source_sha256: Optional[str] = None
    source_name: Optional[str] = None
    source_fps: Optional[float] = None
    source_frames: Optional[int] = None
    source_width: Optional[int] = None
    source_height: Optional[int] = None

    params_json: str = Field(default="{}", sa_type=sa.Text)
    loss_json: str = Field(default="[]", sa_type=sa.Text)

    blob_sha256: str = Field(max_length=64, index=True)
    blob_bytes: int
    thumb_png: Optional[str] = None  # relative to the library home
    thumb_gif: Optional[str] = None  # relative to the library home

    descriptor: Optional[bytes] = Field(default=None, sa_type=sa.LargeBinary)
    descriptor_version: int = Field(default=1)
    # `learn --check` (issue 24): AMF agreement of one zero-shot render on a new seed with the reference
    check_score: Optional[float] = None
    # the motionlib.weights fingerprint of the transformer it was learnt with (None: unknown, stored before 0003)
    weights_fingerprint: Optional[str] = Field(default=None, max_length=64)
    # an edited motion's provenance (issue 28, revision 0005): {"operations": [...], "parents": [{"name",
    # "id", "blob_sha256", ...}]} as JSON; None for a learnt or imported-unedited motion
    lineage_json: Optional[str] = Field(default=None, sa_type=sa.Text)

    tag_rows: List[MotionTag] = Relationship(
        back_populates="motion",
        sa_relationship_kwargs={"lazy": "selectin", "cascade": "all, delete-orphan"},
    )

    # -- conveniences (not columns) -------------------------------------------------------------
    @property
    def tags(self) -> list:
        """Sorted tag strings."""
        return sorted(t.tag for t in self.tag_rows)

    @property
    def params(self) -> dict:
        return json.loads(self.params_json or "{}")

    @property
    def loss(self) -> list:
        return json.loads(self.loss_json or "[]")

    @property
    def lineage(self) -> Optional[dict]:
        """How the motion was derived (operations and parents as stored), or None for a learnt one."""
        return json.loads(self.lineage_json) if self.lineage_json else None

    def descriptor_array(self) -> Optional["np.ndarray"]:
        """The stored descriptor as a float32 vector (not normalised), or None."""
        if self.descriptor is None:
            return None
        import numpy as np  # here, not at import: the catalogue commands never need it

        return np.frombuffer(self.descriptor, dtype="<f4").astype(np.float32)

    def summary(self) -> dict[str, Any]:
        """Plain dict of the columns (descriptor omitted) plus tags, handy for JSON output."""
        out = {c: getattr(self, c) for c in self.__class__.model_fields
               if c not in ("descriptor", "tag_rows", "lineage_json")}
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        out["tags"] = self.tags
        return out


#: ``Motion.tag_rows`` as the ORM attribute it is at class level (SQLModel types it as the list of rows)
TAG_ROWS = cast("QueryableAttribute[Any]", Motion.tag_rows)


def motion_ids(rows: Iterable[Optional[int]]) -> set[int]:
    """Motion ids read back from the catalogue (``Motion.id`` is typed optional only before an insert)."""
    return {i for i in rows if i is not None}


class Render(SQLModel, table=True):
    """One video rendered with a motion. ``motion_name`` is a copy, so history survives removal."""

    __tablename__ = "renders"

    id: Optional[int] = Field(default=None, primary_key=True)
    motion_id: Optional[int] = Field(default=None, foreign_key="motions.id", ondelete="SET NULL",
                                     nullable=True, index=True)
    motion_name: Optional[str] = Field(default=None, max_length=64, index=True)
    prompt: str = Field(sa_type=sa.Text)
    seed: Optional[int] = None
    steps: Optional[int] = None
    strength: Optional[float] = None
    output_path: str = Field(sa_type=sa.Text)
    seconds: Optional[float] = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # an image-to-video render's first frame: the sha256 of the image file and a small PNG preview of it
    image_sha256: Optional[str] = Field(default=None, max_length=64)
    image_preview: Optional[bytes] = Field(default=None, sa_type=sa.LargeBinary)


@dataclass(slots=True)
class MotionSummary:
    """A motion as ``Library.list`` returns it: every Motion column except the heavy ones
    (``HEAVY_COLUMNS``: params/loss JSON and the descriptor), plus its sorted tags. Not bound to a
    session; ``Library.get(name)`` gives the full row."""

    id: int
    name: str
    created_at: datetime
    model_name: str
    model_source: Optional[str]
    config_hash: Optional[str]
    family: str
    latent_frames: int
    latent_rows: int
    latent_cols: int
    source_sha256: Optional[str]
    source_name: Optional[str]
    source_fps: Optional[float]
    source_frames: Optional[int]
    source_width: Optional[int]
    source_height: Optional[int]
    blob_sha256: str
    blob_bytes: int
    thumb_png: Optional[str]
    thumb_gif: Optional[str]
    descriptor_version: int
    check_score: Optional[float]
    weights_fingerprint: Optional[str]
    tags: List[str] = field(default_factory=list)

    @classmethod
    def columns(cls) -> list[str]:
        """The Motion columns a summary holds, in Motion's order."""
        return [f.name for f in fields(cls) if f.name != "tags"]

    def listing(self) -> dict[str, Any]:
        """The motion as ``motionlib list --json`` and the web API's list print it (one shape for both)."""
        return {"name": self.name, "model": self.model_name, "frames": self.latent_frames, "bytes": self.blob_bytes,
                "tags": list(self.tags), "source": self.source_name, "created_at": self.created_at.isoformat(),
                "check_score": self.check_score}

    def summary(self) -> dict[str, Any]:
        """Plain dict of the fields, handy for JSON output (like ``Motion.summary`` without params and loss)."""
        out = {c: getattr(self, c) for c in self.columns()}
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        out["tags"] = list(self.tags)
        return out
