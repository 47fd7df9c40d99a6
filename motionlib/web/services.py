"""What the routes share: ``Settings``, and ``Core``: the library under its lock, the models, the render
job runner, the reference previews, search and the catalogue calls the pages and the JSON routes both make.

One ``Core`` per app, on ``app.state.core``; routes get it by dependency injection
(``core: Core = Depends(get_core)``). A ``Library`` is not thread-safe and FastAPI runs routes in a
thread pool, so every catalogue call goes through ``Core.lock``; model runs take ``Core.compute``.
"""

from __future__ import annotations

import io
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from fastapi import Request, UploadFile

from motionlib.errors import MotionlibError
from motionlib.render import ModelCache
from motionlib.store import Library

from .jobs import Job, RenderQueue
from .schemas import RenderRequest
from .security import DEFAULT_MAX_UPLOAD, HTTPProblem, UploadTooLarge, stage_upload

T = TypeVar("T")


@dataclass
class Settings:
    """How the app behaves; `motionlib serve` fills it from its options."""

    allow_render: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    search_model: Optional[str] = None  # model that reads uploaded clips (default: as `motionlib search`)
    device: Optional[str] = None
    per_page: int = 24
    allowed_hosts: Optional[list[str]] = None  # Host header allow-list (DNS rebinding); None: any
    preview_cache: int = 256


def links(name: str, row=None) -> dict:
    """The URLs of a motion's page, pictures, asset file and neighbours (`row` versions the pictures)."""
    v = f"?v={row.blob_sha256[:12]}" if row is not None else ""
    return {"page": f"/motions/{name}", "thumbnail_png": f"/motions/{name}/thumb.png{v}",
            "thumbnail_gif": f"/motions/{name}/thumb.gif{v}", "reference": f"/motions/{name}/reference.gif{v}",
            "asset": f"/motions/{name}/asset.safetensors", "like": f"/motions/{name}/like"}


@dataclass
class Core:
    """What the routes share: the library (one lock: a Library is not thread-safe), models, renders."""

    lib: Library
    settings: Settings
    lock: threading.RLock = field(default_factory=threading.RLock)
    compute: threading.Lock = field(default_factory=threading.Lock)  # one model run at a time
    models: ModelCache = field(init=False)
    previews: dict = field(default_factory=dict)
    queue: Optional[RenderQueue] = None  # set (by create_app) only with allow_render

    def __post_init__(self):
        self.models = ModelCache(load=self._load)

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """`fn(*args, **kwargs)` under the library lock."""
        with self.lock:
            return fn(*args, **kwargs)

    def writable(self) -> RenderQueue:
        """The render queue; a 403 on a read-only server (renders and edits need --allow-render)."""
        if self.queue is None:
            raise HTTPProblem(403, "this server is read-only: start it with `motionlib serve --allow-render` "
                                   "to render and to edit names and tags")
        return self.queue

    # -- models ------------------------------------------------------------------------------------
    def _load(self, name: str, **geometry):
        from motionlib.models import load_model

        try:
            return load_model(name, device=self.settings.device)
        except MotionlibError as exc:  # unknown model, weights missing or not downloadable offline
            raise HTTPProblem(400, f"could not load model {name}: {str(exc).splitlines()[0]}") from exc

    def model(self, name: str, **geometry):
        with self.compute:
            return self.models.get(name, **geometry)

    def search_model(self, requested: Optional[str]) -> Optional[str]:
        """As `motionlib search`: the requested model (or `serve --model`'s), else None: every stored model."""
        requested = requested or self.settings.search_model
        if requested:
            with self.lock:
                stored = self.lib.model_names()
            if requested not in stored:
                raise HTTPProblem(400, f"no stored motions of model {requested!r}; stored: {', '.join(stored) or 'none'}")
        return requested

    # -- the catalogue -----------------------------------------------------------------------------
    def details(self, name: str) -> dict:
        """`motionlib show NAME --json` plus the motion's links (its page and its renders' files)."""
        from motionlib.views import motion_details

        self.lib.validate_name(name)
        with self.lock:
            data = motion_details(self.lib, name)
            row = self.lib.get(name)
            renders = self.lib.renders(name, limit=10)
        data["links"] = links(name, row)
        data["links"]["renders"] = [f"/renders/{r.id}" for r in renders]
        return data

    def change_tags(self, name: str, add: list[str], remove: list[str]) -> dict:
        """`motionlib tag --json` (needs --allow-render)."""
        self.writable()
        self.lib.validate_name(name)
        row = self.call(self.lib.tag, name, add=add, remove=remove)
        return {"name": name, "tags": row.tags}

    def rename(self, name: str, new: str) -> dict:
        """`motionlib rename --json` (needs --allow-render)."""
        self.writable()
        self.lib.validate_name(name)
        self.call(self.lib.rename, name, new.strip())
        return {"renamed": name, "to": new.strip()}

    # -- search ------------------------------------------------------------------------------------
    def like(self, name: str, k: int) -> list[tuple[Any, float]]:
        """`motionlib search --like NAME`: the k stored motions nearest to NAME."""
        self.lib.validate_name(name)
        with self.lock:
            row = self.lib.get(name)
            return self.lib.search(row.descriptor_array(), k=k, exclude=name)

    def search_clip(self, upload: UploadFile, k: int, model: Optional[str]) -> list[tuple[Any, float]]:
        """`motionlib search VIDEO` over an uploaded clip (staged in the library's tmp folder, then removed)."""
        from motionlib.catalog import search_clip as ranked
        from motionlib.descriptor import NoMotionError
        from motionlib.video import VideoError

        name = self.search_model(model or None)
        path, shown = stage_upload(upload, self.lib.tmp_dir, self.settings.max_upload_bytes)
        try:
            hits, _ = ranked(LockedLibrary(self), path, k=k, model=name, load=self.model,
                             guard=lambda m: self.compute)
        except (VideoError, NoMotionError) as exc:
            raise HTTPProblem(400, str(exc).replace(str(path), shown)) from None
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)
        return hits

    # -- renders -----------------------------------------------------------------------------------
    def submit(self, req: RenderRequest, image: Optional[UploadFile] = None) -> Job:
        """Queue a render (needs --allow-render); an unknown motion is a 404 now, not a failed job later. An
        image-to-video motion needs its first frame (`image`, an upload read with the clip uploads' size limit
        and probed as `apply --image` probes a file); a text-to-video motion refuses one."""
        q = self.writable()
        self.lib.validate_name(req.motion)
        self.call(self.lib.get, req.motion)
        from motionlib.views import asset_facts

        i2v = self.call(asset_facts, self.lib, req.motion).get("conditioning") == "i2v"
        frame = self._first_frame(image) if image is not None and (image.filename or image.size) else None
        if i2v and frame is None:
            raise HTTPProblem(400, f"motion '{req.motion}' is an image-to-video motion: upload its first frame "
                                   "(an image)")
        if frame is not None and not i2v:
            raise HTTPProblem(400, f"motion '{req.motion}' is a text-to-video motion and takes no image")
        return q.submit(motion=req.motion, prompt=req.prompt.strip(), seed=req.seed, steps=req.steps,
                        strength=req.strength, first_frame=frame,
                        image_sha256=None if frame is None else frame.sha256)

    def _first_frame(self, upload: UploadFile):
        """An uploaded first frame: read up to the upload limit, then probed (motionlib.image); 413 / 415."""
        from motionlib.image import ImageError, first_frame_from_bytes

        shown = Path((upload.filename or "").replace("\\", "/")).name or "the upload"
        limit = self.settings.max_upload_bytes
        data = upload.file.read(limit + 1)
        if len(data) > limit:
            raise UploadTooLarge(limit)
        if not data:
            raise HTTPProblem(400, f"{shown} is empty (0 bytes)")
        try:
            return first_frame_from_bytes(data, shown)
        except ImageError as exc:
            raise HTTPProblem(415, str(exc)) from None

    def job(self, job_id: int) -> dict:
        """A render job as JSON (``Job.public``), with its place in the queue."""
        q = self.writable()
        job = q.get(job_id)
        if job is None:
            raise HTTPProblem(404, f"no render job {job_id}")
        return job.public(q.position(job))

    def render(self, job: Job, progress) -> dict:
        """The render queue's worker: render `job` as `motionlib apply` does and record it in the catalogue."""
        from motionlib import render as rendering

        with self.lock:
            motion = rendering.resolve(self.lib, job.motion)
        with self.compute:
            m = self.models.for_motion(motion)
        job.message = "rendering"
        out = self.lib.renders_dir / f"{job.motion}-{job.seed}-{uuid.uuid4().hex[:8]}.mp4"
        with self.compute:
            done = rendering.render(m, motion, job.prompt, out, seed=job.seed, steps=job.steps, strength=job.strength,
                                    progress=progress, image=job.first_frame and job.first_frame.image)
        with self.lock:
            r = rendering.record(self.lib, motion, job.prompt, done, seed=job.seed, strength=job.strength,
                                 image=job.first_frame)
        return {"output": str(out), "motion": job.motion, "seconds": done.seconds, "render_id": r.id,
                "warning": done.warning}

    # -- pictures ----------------------------------------------------------------------------------
    def reference_gif(self, name: str) -> bytes:
        """The reference clip's preview frames stored in the asset, as a looping GIF (cached by blob)."""
        from PIL import Image
        from safetensors import safe_open

        with self.lock:
            row = self.lib.get(name)
            path = self.lib.asset_path(name, verify=False)
        if row.blob_sha256 in self.previews:
            return self.previews[row.blob_sha256]
        with safe_open(str(path), framework="np") as f:
            if "ref.frames" not in f.keys():
                raise HTTPProblem(404, f"motion '{name}' stores no reference preview frames")
            frames = f.get_tensor("ref.frames")
        fps = float(row.source_fps or 8) / max(1, (row.source_frames or 1) / max(1, len(frames)))
        buf = io.BytesIO()
        images = [Image.fromarray(fr) for fr in frames]
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=max(100, round(1000 / max(fps, 0.5))))
        if len(self.previews) >= self.settings.preview_cache:
            self.previews.clear()
        self.previews[row.blob_sha256] = buf.getvalue()
        return self.previews[row.blob_sha256]


class LockedLibrary:
    """The catalogue calls `motionlib.catalog.search_clip` makes, each under the library lock."""

    def __init__(self, core: Core):
        self.core = core

    def searchable_models(self):
        return self.core.call(self.core.lib.searchable_models)

    def search(self, *args, **kwargs):
        return self.core.call(self.core.lib.search, *args, **kwargs)


async def get_core(request: Request) -> Core:
    """FastAPI dependency: the Core of the app serving `request` (async: no trip to the thread pool)."""
    return request.app.state.core
