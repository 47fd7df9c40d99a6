"""The web app's defences, checked before any route or file is touched.

- ``Guard`` (ASGI middleware): refuses cross-site writes (``Origin`` other than the ``Host``) and
  bodies over the upload limit, while they stream in;
- ``stage_upload``: an uploaded clip copied into the library's tmp folder under a fixed name,
  size-checked again and probed like a CLI input;
- ``thumbnail_path`` and ``servable_render``: the only ways a file route finds a file, from a catalogue
  row (never from request text), and only inside the folder it belongs in;
- ``HTTPProblem`` and the problem responses: every error is a 4xx with one line, as JSON under /api
  and as an HTML page elsewhere.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional

from fastapi import Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from motionlib.errors import MotionlibError
from motionlib.store import CorruptBlob, Library, MotionExists, MotionNotFound, RenderNotFound

from .templating import html_page

UPLOAD_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif", ".mpg", ".mpeg", ".ogv")
RENDER_MEDIA = {".mp4": "video/mp4", ".gif": "image/gif"}  # the render files the app serves
DEFAULT_MAX_UPLOAD = 50 * 2**20
FORM_OVERHEAD = 64 * 2**10  # multipart boundaries and the small fields next to the file


class HTTPProblem(HTTPException):
    """A 4xx with a one-line message, raised by the app itself."""


class UploadTooLarge(HTTPProblem):
    def __init__(self, limit: int):
        super().__init__(413, f"upload is larger than the limit of {limit / 2**20:.0f} MB "
                              "(`motionlib serve --max-upload-mb` raises it)")


# --- problem responses ----------------------------------------------------------------------------
def problem_response(request: Request, status: int, message: str) -> Response:
    """JSON under /api, an HTML page elsewhere."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    return html_page(request, "error.html", {"status": status, "message": message}, status_code=status)


async def motionlib_error(request: Request, exc: Exception) -> Response:
    """The library's and the engine's errors: 404 for what is not there, 409 for a clash, else 400."""
    status = 404 if isinstance(exc, (MotionNotFound, RenderNotFound)) else \
        409 if isinstance(exc, (MotionExists, CorruptBlob)) else 400
    text = str(exc).strip().splitlines()
    return problem_response(request, status, text[0] if text else type(exc).__name__)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no page at {request.url.path}"
    return problem_response(request, exc.status_code, message)


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's validation errors in one line: ``where: what`` for each."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for e in exc.errors():
        where = [str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body", "form")]
        parts.append(f"{' '.join(where) or 'request'}: {e.get('msg', 'invalid')}")
    return problem_response(request, 422, "; ".join(parts))


PROBLEM_HANDLERS = {MotionlibError: motionlib_error, HTTPException: http_error,
                    RequestValidationError: validation_error}


# --- the guard ------------------------------------------------------------------------------------
class Guard:
    """ASGI middleware: refuses cross-site writes (Origin check) and bodies over `limit` bytes."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    @staticmethod
    def problem(scope, status: int, message: str) -> Response:
        return problem_response(Request(scope), status, message)  # scope["app"]: set by the app before us

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


# --- uploads --------------------------------------------------------------------------------------
def stage_upload(upload: UploadFile, tmp_dir: Path, limit: int) -> tuple[Path, str]:
    """Copy an upload into `tmp_dir` (size-checked against `limit` bytes) and probe it like a CLI input.

    Returns the staged file (``clip.SUFFIX`` in a folder of its own: the caller removes the folder) and
    the name to show for it (the upload's base name; its path on the server never reaches a message)."""
    from motionlib.video import VideoError, probe

    shown = Path((upload.filename or "").replace("\\", "/")).name or "upload"
    suffix = Path(shown).suffix.lower()
    work = Path(tempfile.mkdtemp(prefix="upload-", suffix=".tmp", dir=tmp_dir))
    path = work / f"clip{suffix if suffix in UPLOAD_SUFFIXES else '.bin'}"
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


# --- files named by the catalogue -----------------------------------------------------------------
def thumbnail_path(lib: Library, rel: Optional[str]) -> Optional[Path]:
    """The thumbnail a catalogue row names (`rel`, relative to the library), if it is a file directly in
    the library's thumbs folder; None otherwise."""
    path = (lib.home / rel).resolve() if rel else None
    if path is None or path.parent != lib.thumbs_dir.resolve() or not path.is_file():
        return None
    return path


def render_media(path: Path) -> Optional[str]:
    """The media type a render file is served as; None for a kind of file the app does not serve."""
    return RENDER_MEDIA.get(path.suffix.lower())


def servable_render(render_id: int, output_path: str) -> tuple[Path, str]:
    """A render's file (its catalogue row's output path) and media type, if it is a video still there."""
    path = Path(output_path)
    media = render_media(path)
    if media is None or not path.is_file():
        raise HTTPProblem(404, f"render {render_id}'s file {path.name} is no longer there")
    return path, media
