"""The web app behind `motionlib serve`: gallery, motion pages, search by clip, background renders.

Thin over the catalogue (``motionlib.store.Library``) and the engine bridge (``motionlib.catalog``); the
JSON routes under ``/api`` return what the CLI's ``--json`` prints. Safety rules: read-only unless
``allow_render``; uploads are size-limited and probed like CLI inputs; every file route maps a name or
id to a path through the catalogue (no request text becomes a path); errors are 4xx with one line.
"""

from __future__ import annotations

import io
import math
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import Body, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from motionlib.errors import MotionlibError
from motionlib.render import ModelCache
from motionlib.store import CorruptBlob, Library, MotionExists, MotionNotFound, RenderNotFound

from .jobs import Job, RenderQueue
from .plots import loss_svg

HERE = Path(__file__).resolve().parent
UPLOAD_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif", ".mpg", ".mpeg", ".ogv")
RENDER_MEDIA = {".mp4": "video/mp4", ".gif": "image/gif"}
SORTS = {"newest": "newest first", "oldest": "oldest first", "name": "name", "size": "largest first",
         "model": "model"}
Sort = Literal["newest", "oldest", "name", "size", "model"]
DEFAULT_MAX_UPLOAD = 50 * 2**20
FORM_OVERHEAD = 64 * 2**10  # multipart boundaries and the small fields next to the file


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


class HTTPProblem(HTTPException):
    """A 4xx with a one-line message, raised by the app itself."""


class UploadTooLarge(HTTPProblem):
    def __init__(self, limit: int):
        super().__init__(413, f"upload is larger than the limit of {limit / 2**20:.0f} MB "
                              "(`motionlib serve --max-upload-mb` raises it)")


# --- JSON shapes (the CLI's --json keys) ----------------------------------------------------------
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
    prompt: str
    output: str
    seed: Optional[int]
    seconds: Optional[float]


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


# --- the app --------------------------------------------------------------------------------------
class Guard:
    """ASGI middleware: refuses cross-site writes (Origin check) and bodies over the upload limit."""

    def __init__(self, app, limit: int, problem):
        self.app, self.limit, self.problem = app, limit, problem

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin, host = headers.get("origin"), headers.get("host", "")
        if origin and origin.split("://", 1)[-1] != host:  # also "null" (sandboxed frames, file: pages)
            return await self.problem(scope, 403, f"cross-site request from {origin} refused")(scope, receive, send)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            problem = self.problem(scope, 413, UploadTooLarge(self.limit - FORM_OVERHEAD).detail)
            return await problem(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise UploadTooLarge(self.limit - FORM_OVERHEAD)
            return message

        await self.app(scope, limited, send)


@dataclass
class Core:
    """What the routes share: the library (one lock: a Library is not thread-safe), models, renders."""

    lib: Library
    settings: Settings
    lock: threading.RLock = field(default_factory=threading.RLock)
    compute: threading.Lock = field(default_factory=threading.Lock)  # one model run at a time
    models: ModelCache = field(init=False)
    previews: dict = field(default_factory=dict)
    queue: Optional[RenderQueue] = None

    def __post_init__(self):
        self.models = ModelCache(load=self._load)

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

    # -- renders -----------------------------------------------------------------------------------
    def render(self, job, progress) -> dict:
        from motionlib import render as rendering

        with self.lock:
            motion = rendering.resolve(self.lib, job.motion)
        with self.compute:
            m = self.models.for_motion(motion)
        job.message = "rendering"
        out = self.lib.renders_dir / f"{job.motion}-{job.seed}-{uuid.uuid4().hex[:8]}.mp4"
        with self.compute:
            done = rendering.render(m, motion, job.prompt, out, seed=job.seed, steps=job.steps, strength=job.strength,
                                    progress=progress)
        with self.lock:
            r = rendering.record(self.lib, motion, job.prompt, done, seed=job.seed, strength=job.strength)
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


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _date(value) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def create_app(library: Library | str | Path | None = None, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app over `library` (a Library, or a library folder; default: $MOTIONLIB_HOME)."""
    settings = settings or Settings()
    lib = library if isinstance(library, Library) else Library(library)
    core = Core(lib, settings)
    if settings.allow_render:
        core.queue = RenderQueue(core.render)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(mb=_mb, date=_date)
    templates.env.globals.update(allow_render=settings.allow_render, sorts=SORTS)
    static = {name: (HERE / "static" / name).read_bytes() for name in ("app.css", "app.js")}

    @asynccontextmanager
    async def lifespan(app):
        yield
        if core.queue is not None:
            core.queue.close()

    app = FastAPI(title="motionlib", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="The motion library in a browser. JSON routes under /api return what the CLI's "
                              "--json prints.")
    app.state.core = core

    def problem_response(request: Request, status: int, message: str) -> Response:
        """JSON under /api, an HTML page elsewhere."""
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=status)
        return templates.TemplateResponse(request, "error.html", {"status": status, "message": message},
                                          status_code=status)

    app.add_middleware(Guard, limit=settings.max_upload_bytes + FORM_OVERHEAD,
                       problem=lambda scope, status, message: problem_response(Request(scope), status, message))
    if settings.allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)

    @app.exception_handler(MotionlibError)
    async def motionlib_error(request: Request, exc: MotionlibError):
        status = 404 if isinstance(exc, (MotionNotFound, RenderNotFound)) else \
            409 if isinstance(exc, (MotionExists, CorruptBlob)) else 400
        text = str(exc).strip().splitlines()
        return problem_response(request, status, text[0] if text else type(exc).__name__)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no page at {request.url.path}"
        return problem_response(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            where = [str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body", "form")]
            parts.append(f"{' '.join(where) or 'request'}: {e.get('msg', 'invalid')}")
        return problem_response(request, 422, "; ".join(parts))

    def lib_call(fn, *args, **kwargs):
        with core.lock:
            return fn(*args, **kwargs)

    def need_render() -> RenderQueue:
        if core.queue is None:
            raise HTTPProblem(403, "this server is read-only: start it with `motionlib serve --allow-render` "
                                   "to render and to edit names and tags")
        return core.queue

    def links(name: str, row=None) -> dict:
        v = f"?v={row.blob_sha256[:12]}" if row is not None else ""
        return {"page": f"/motions/{name}", "thumbnail_png": f"/motions/{name}/thumb.png{v}",
                "thumbnail_gif": f"/motions/{name}/thumb.gif{v}", "reference": f"/motions/{name}/reference.gif{v}",
                "asset": f"/motions/{name}/asset.safetensors", "like": f"/motions/{name}/like"}

    # --- static ---------------------------------------------------------------------------------------
    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: Literal["app.css", "app.js"]):
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return Response(static[name], media_type=media, headers={"Cache-Control": "max-age=3600"})

    # --- gallery --------------------------------------------------------------------------------------
    def gallery_rows(tag: Optional[str], model: Optional[str], sort: str):
        rows = lib_call(lib.list)
        tags = sorted({t for r in rows for t in r.tags})
        models = sorted({r.model_name for r in rows})
        if tag:
            rows = [r for r in rows if tag.strip().lower() in r.tags]
        if model:
            rows = [r for r in rows if model in (r.model_name, r.model_source)]
        key = {"newest": lambda r: (r.created_at, r.id), "oldest": lambda r: (r.created_at, r.id),  # id: same-second ties
               "name": lambda r: r.name,
               "size": lambda r: r.blob_bytes, "model": lambda r: (r.model_name, r.name)}[sort]
        rows.sort(key=key, reverse=sort in ("newest", "size"))
        return rows, tags, models

    @app.get("/", response_class=HTMLResponse, summary="Gallery")
    def gallery(request: Request,
                tag: Optional[str] = Query(None, max_length=64, description="only motions with this tag"),
                model: Optional[str] = Query(None, max_length=200, description="only motions of this model"),
                sort: Sort = Query("newest"), page: int = Query(1, ge=1, le=10**6),
                per_page: Optional[int] = Query(None, ge=1, le=200)):
        """Every motion as a card: animated AMF thumbnail, name, model, tags, size and date."""
        tag, model = tag or None, model or None
        per = per_page or settings.per_page
        rows, tags, models = gallery_rows(tag, model, sort)
        pages = max(1, math.ceil(len(rows) / per))
        if page > pages:
            raise HTTPProblem(404, f"page {page} does not exist: there are {pages} page(s) of {per}")
        shown = rows[(page - 1) * per: page * per]
        cards = [{"row": r, "links": links(r.name, r)} for r in shown]
        return templates.TemplateResponse(request, "gallery.html", {
            "cards": cards, "tags": tags, "models": models, "tag": tag, "model": model, "sort": sort,
            "page": page, "pages": pages, "per_page": per_page, "total": len(rows)})

    # --- motion ---------------------------------------------------------------------------------------
    def details(name: str) -> dict:
        from motionlib.views import motion_details

        lib.validate_name(name)
        with core.lock:
            data = motion_details(lib, name)
            row = lib.get(name)
            renders = lib.renders(name, limit=10)
        data["links"] = links(name, row)
        data["links"]["renders"] = [f"/renders/{r.id}" for r in renders]
        return data

    @app.get("/motions/{name}", response_class=HTMLResponse, summary="Motion page")
    def motion_page(request: Request, name: str):
        """The reference preview next to the AMF thumbnail, the loss curve, every learn parameter, renders."""
        data = details(name)
        with core.lock:
            renders = lib.renders(name, limit=10)
        playable = [{"r": r, "media": RENDER_MEDIA.get(Path(r.output_path).suffix.lower()),
                     "exists": Path(r.output_path).is_file()} for r in renders]
        return templates.TemplateResponse(request, "motion.html", {
            "m": data, "links": data["links"], "plot": Markup(loss_svg(data["loss"])), "renders": playable,
            "params": sorted(data["params"].items())})

    @app.get("/motions/{name}/thumb.{kind}", summary="AMF thumbnail (PNG or animated GIF)")
    def thumbnail(name: str, kind: Literal["png", "gif"]):
        lib.validate_name(name)
        row = lib_call(lib.get, name)
        rel = row.thumb_png if kind == "png" else row.thumb_gif
        path = (lib.home / rel).resolve() if rel else None
        if path is None or path.parent != lib.thumbs_dir.resolve() or not path.is_file():
            raise HTTPProblem(404, f"motion '{name}' has no {kind.upper()} thumbnail (`motionlib doctor` lists "
                                   "missing files)")
        return FileResponse(path, media_type=f"image/{kind}", headers={"Cache-Control": "max-age=86400"})

    @app.get("/motions/{name}/reference.gif", summary="The reference clip's preview frames, animated")
    def reference(name: str):
        lib.validate_name(name)
        return Response(core.reference_gif(name), media_type="image/gif",
                        headers={"Cache-Control": "max-age=86400"})

    @app.get("/motions/{name}/asset.safetensors", summary="Download the motion asset (as `motionlib export`)")
    def asset_file(name: str):
        lib.validate_name(name)
        path = lib_call(lib.asset_path, name, verify=True)
        return FileResponse(path, media_type="application/octet-stream", filename=f"{name}.safetensors")

    @app.get("/renders/{render_id}", summary="A render made with a stored motion (mp4 or GIF)")
    def render_file(render_id: int):
        r = lib_call(lib.render, render_id)
        path = Path(r.output_path)
        media = RENDER_MEDIA.get(path.suffix.lower())
        if media is None or not path.is_file():
            raise HTTPProblem(404, f"render {render_id}'s file {path.name} is no longer there")
        return FileResponse(path, media_type=media)

    # --- editing (only with --allow-render) ----------------------------------------------------------
    def change_tags(name: str, add: list[str], remove: list[str]) -> dict:
        need_render()
        lib.validate_name(name)
        row = lib_call(lib.tag, name, add=add, remove=remove)
        return {"name": name, "tags": row.tags}

    def do_rename(name: str, new: str) -> dict:
        need_render()
        lib.validate_name(name)
        lib_call(lib.rename, name, new.strip())
        return {"renamed": name, "to": new.strip()}

    @app.post("/motions/{name}/tags", include_in_schema=False)
    def tags_form(name: str, add: str = Form("", max_length=400), remove: str = Form("", max_length=400)):
        change_tags(name, add.replace(",", " ").split(), remove.replace(",", " ").split())
        return RedirectResponse(f"/motions/{name}", status_code=303)

    @app.post("/motions/{name}/rename", include_in_schema=False)
    def rename_form(name: str, new_name: str = Form(..., max_length=200)):
        result = do_rename(name, new_name)
        return RedirectResponse(f"/motions/{result['to']}", status_code=303)

    @app.post("/api/motions/{name}/tags", response_model=TagResult, summary="Add and remove tags (`tag`)")
    def tags_api(name: str, change: TagChange):
        return change_tags(name, change.add, change.remove)

    @app.post("/api/motions/{name}/rename", response_model=RenameResult, summary="Rename (`rename`)")
    def rename_api(name: str, to: str = Body(..., embed=True, max_length=200)):
        return do_rename(name, to)

    # --- search ---------------------------------------------------------------------------------------
    def stage_upload(upload: UploadFile) -> tuple[Path, str]:
        """Copy an upload into the library's tmp folder (size-checked) and probe it like a CLI input."""
        from motionlib.video import VideoError, probe

        shown = Path((upload.filename or "").replace("\\", "/")).name or "upload"
        suffix = Path(shown).suffix.lower()
        work = Path(tempfile.mkdtemp(prefix="upload-", suffix=".tmp", dir=lib.tmp_dir))
        path = work / f"clip{suffix if suffix in UPLOAD_SUFFIXES else '.bin'}"
        limit = settings.max_upload_bytes
        n = 0
        with open(path, "wb") as f:
            while chunk := upload.file.read(1 << 20):
                n += len(chunk)
                if n > limit:
                    shutil.rmtree(work, ignore_errors=True)
                    raise UploadTooLarge(limit)
                f.write(chunk)
        if n == 0:
            shutil.rmtree(work, ignore_errors=True)
            raise HTTPProblem(400, "no clip uploaded: choose a video file" if not upload.filename
                              else f"{shown} is empty (0 bytes)")
        try:
            probe(path)
        except VideoError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise HTTPProblem(415, str(exc).replace(str(path), shown)) from None
        return path, shown

    def search_clip(upload: UploadFile, k: int, model: Optional[str]) -> list[tuple[Any, float]]:
        from motionlib.catalog import search_clip as ranked
        from motionlib.descriptor import NoMotionError
        from motionlib.video import VideoError

        name = core.search_model(model or None)
        path, shown = stage_upload(upload)
        try:
            hits, _ = ranked(LockedLibrary(), path, k=k, model=name, load=core.model,
                             guard=lambda m: core.compute)
        except (VideoError, NoMotionError) as exc:
            raise HTTPProblem(400, str(exc).replace(str(path), shown)) from None
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)
        return hits

    class LockedLibrary:
        """The catalogue calls search_clip makes, each under the library lock."""

        def searchable_models(self):
            return lib_call(lib.searchable_models)

        def search(self, *args, **kwargs):
            return lib_call(lib.search, *args, **kwargs)

    def like(name: str, k: int) -> list[tuple[Any, float]]:
        lib.validate_name(name)
        with core.lock:
            row = lib.get(name)
            return lib.search(row.descriptor_array(), k=k, exclude=name)

    def hits_json(hits) -> list[dict]:
        return [{"name": r.name, "score": round(float(s), 4), "model": r.model_name, "tags": r.tags}
                for r, s in hits]

    def results_page(request: Request, hits, title: str, query: Optional[dict] = None):
        cards = [{"row": r, "score": float(s), "links": links(r.name, r)} for r, s in hits]
        with core.lock:
            models = lib.model_names()
        return templates.TemplateResponse(request, "search.html", {
            "cards": cards, "title": title, "searched": True, "models": models, "query": query})

    @app.get("/search", response_class=HTMLResponse, summary="Search page")
    def search_page(request: Request):
        """Upload a clip to rank the stored motions by motion similarity."""
        with core.lock:
            models = lib.model_names()
        return templates.TemplateResponse(request, "search.html", {
            "cards": [], "title": "Search by clip", "searched": False, "models": models, "query": None})

    @app.post("/search", response_class=HTMLResponse, include_in_schema=False)
    def search_form(request: Request, clip: UploadFile = File(...), k: int = Form(12, ge=1, le=100),
                    model: str = Form("", max_length=200)):
        hits = search_clip(clip, k, model)
        return results_page(request, hits, f"Motions like {clip.filename or 'the clip'}")

    @app.get("/motions/{name}/like", response_class=HTMLResponse, summary="More like this")
    def like_page(request: Request, name: str, k: int = Query(12, ge=1, le=100)):
        return results_page(request, like(name, k), f"More like {name}")

    @app.post("/api/search", response_model=list[SearchHit], summary="Search by clip (`search VIDEO`)")
    def search_api(clip: UploadFile = File(..., description="a video clip"), k: int = Form(5, ge=1, le=100),
                   model: str = Form("", max_length=200)):
        return hits_json(search_clip(clip, k, model))

    @app.get("/api/motions/{name}/like", response_model=list[SearchHit], summary="`search --like NAME`")
    def like_api(name: str, k: int = Query(5, ge=1, le=100)):
        return hits_json(like(name, k))

    # --- JSON catalogue -------------------------------------------------------------------------------
    @app.get("/api/motions", response_model=list[MotionItem], summary="`list`")
    def list_api(tag: Optional[str] = Query(None, max_length=64), model: Optional[str] = Query(None, max_length=200)):
        return [r.listing() for r in lib_call(lib.list, tag=tag or None, model=model or None)]

    @app.get("/api/motions/{name}", response_model=MotionDetails, summary="`show NAME`")
    def show_api(name: str):
        return details(name)

    # --- renders --------------------------------------------------------------------------------------
    def submit(req: RenderRequest):
        q = need_render()
        lib.validate_name(req.motion)
        lib_call(lib.get, req.motion)  # 404 now, not in the queue
        return q.submit(motion=req.motion, prompt=req.prompt.strip(), seed=req.seed, steps=req.steps,
                        strength=req.strength)

    def job_json(job_id: int) -> dict:
        q = need_render()
        job = q.get(job_id)
        if job is None:
            raise HTTPProblem(404, f"no render job {job_id}")
        return job.public(q.position(job))

    @app.get("/render", response_class=HTMLResponse, summary="Render page")
    def render_page(request: Request, motion: Optional[str] = Query(None, max_length=64)):
        """Prompt, seed, strength and steps; the render runs in the background (one at a time)."""
        q = need_render()
        with core.lock:
            names = lib.names()
        return templates.TemplateResponse(request, "render.html", {
            "names": names, "motion": motion, "jobs": [j.public(q.position(j)) for j in q.jobs()[:20]]})

    @app.post("/render", include_in_schema=False)
    def render_form(motion: str = Form(..., max_length=64), prompt: str = Form(..., max_length=1000),
                    seed: int = Form(0, ge=0, lt=2**63), steps: str = Form("", max_length=5),
                    strength: float = Form(1.0, ge=0, le=10)):
        if steps.strip() and not steps.strip().isdigit():
            raise HTTPProblem(422, f"steps: give a whole number, got {steps!r}")
        req = RenderRequest(motion=motion, prompt=prompt, seed=seed, strength=strength,
                            steps=int(steps) if steps.strip() else None)
        return RedirectResponse(f"/jobs/{submit(req).id}", status_code=303)

    @app.get("/jobs/{job_id}", response_class=HTMLResponse, summary="A render job's page")
    def job_page(request: Request, job_id: int):
        return templates.TemplateResponse(request, "job.html", {"job": job_json(job_id)})

    @app.post("/api/render", response_model=Job, status_code=202, summary="Queue a render (`apply`)")
    def render_api(req: RenderRequest):
        job = submit(req)
        return job_json(job.id)

    @app.get("/api/jobs/{job_id}", response_model=Job, summary="A render job's progress")
    def job_api(job_id: int):
        return job_json(job_id)

    # --- API docs (offline: no CDN) -------------------------------------------------------------------
    @app.get("/api", response_class=HTMLResponse, summary="This API's documentation")
    def api_docs(request: Request):
        """The OpenAPI schema FastAPI builds (/openapi.json), drawn without any external script."""
        schema = app.openapi()
        return templates.TemplateResponse(request, "api.html", {"schema": schema})

    return app



def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0):
    """Run `app` with uvicorn in a daemon thread (port 0: a free one); returns (base URL, stop function)."""
    import socket

    import uvicorn

    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="motionlib-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the web server did not start on {host}:{port}")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://{host}:{port}", stop
