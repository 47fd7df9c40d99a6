"""The web app's request and response shapes: pydantic models (the JSON of the CLI's ``--json``) and the
Literal types that route parameters are checked against. No logic: FastAPI validates with these and
draws /openapi.json from them. (A render job's JSON is ``motionlib.web.jobs.Job``.)"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Sort = Literal["newest", "oldest", "name", "size", "model"]
SORTS: dict[str, str] = {"newest": "newest first", "oldest": "oldest first", "name": "name",
                         "size": "largest first", "model": "model"}  # each Sort as the gallery's menu says it
ThumbKind = Literal["png", "gif"]
StaticName = Literal["app.css", "app.js"]  # the only files under /static


class MotionItem(BaseModel):
    """One row of `motionlib list --json`."""

    name: str
    model: str
    frames: int
    bytes: int
    tags: list[str]
    source: Optional[str]
    created_at: str
    check_score: Optional[float] = None  # learn --check (None: not checked)


class RenderItem(BaseModel):
    id: int
    prompt: str
    output: str
    seed: Optional[int]
    seconds: Optional[float]
    image_sha256: Optional[str] = Field(None, description="an image-to-video render's first frame (sha256 of the "
                                                          "image file; its preview: /renders/ID/first-frame.png)")


class MotionDetails(BaseModel):
    """`motionlib show NAME --json` (every catalogue column, params, loss, renders), plus links."""

    model_config = ConfigDict(extra="allow")
    name: str
    model_name: str
    family: str
    tags: list[str]
    params: dict[str, Any]
    loss: list[Any]
    renders: list[RenderItem]
    thumbnail_png: Optional[str]
    thumbnail_gif: Optional[str]
    lineage: Optional[dict[str, Any]] = Field(None, description="an edited motion's operations and parents "
                                              "(motionlib edit / blend), each parent with its current name or "
                                              "removed: true; null for a learnt motion")
    links: dict[str, Any] = Field(description="URLs of this motion's page, pictures, asset file and renders")


class SearchHit(BaseModel):
    """One row of `motionlib search --json`."""

    name: str
    score: float
    model: str
    tags: list[str]


class TagChange(BaseModel):
    add: list[str] = Field(default_factory=list, description="tags to add")
    remove: list[str] = Field(default_factory=list, description="tags to remove")


class TagResult(BaseModel):
    """`motionlib tag --json`."""

    name: str
    tags: list[str]


class RenameResult(BaseModel):
    """`motionlib rename --json`."""

    renamed: str
    to: str


class RenderRequest(BaseModel):
    motion: str = Field(min_length=1, max_length=64)
    prompt: str = Field(min_length=1, max_length=1000)
    seed: int = Field(0, ge=0, lt=2**63)
    steps: Optional[int] = Field(None, ge=1, le=1000, description="default: the steps of the learn")
    strength: float = Field(1.0, ge=0, le=10)
