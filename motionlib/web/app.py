"""The web app behind `motionlib serve`: gallery, motion pages, search by clip, background renders.

``create_app`` puts it together from the modules of this package, one job each:

- ``services``: ``Settings`` and ``Core`` (the library under its lock, models, renders, previews, search),
  thin over the catalogue (``motionlib.store``), ``motionlib.catalog``, ``motionlib.render`` and
  ``motionlib.views``;
- ``security``: the ``Guard`` middleware (cross-site writes, upload size), upload staging, the checks
  between a catalogue row and a file, and the one-line 4xx problem responses;
- ``schemas``: the JSON shapes (the CLI's ``--json``) and ``templating``: the HTML templates;
- the routes, as ``APIRouter``s: ``routes_library`` (gallery, motion pages and files, edits),
  ``routes_search`` (search, more like this, the JSON catalogue), ``routes_renders`` (render page,
  jobs) and ``routes_apidocs`` (/api); the order they are included in is the order /api lists them;
- ``jobs``: the render queue, and ``plots``: the loss curve as SVG.

Safety rules: read-only unless ``allow_render``; uploads are size-limited and probed like CLI inputs;
every file route maps a name or id to a path through the catalogue (no request text becomes a path);
errors are 4xx with one line; templates autoescape (user text is data).
"""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from motionlib.store import Library

from . import routes_apidocs, routes_library, routes_renders, routes_search
from .jobs import RenderQueue
from .security import FORM_OVERHEAD, PROBLEM_HANDLERS, Guard
from .services import Core, Settings
from .templating import make_templates

__all__ = ["create_app", "Settings", "serve_in_thread"]

ROUTERS = (routes_library, routes_search, routes_renders, routes_apidocs)


def create_app(library: Library | str | Path | None = None, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app over `library` (a Library, or a library folder; default: $MOTIONLIB_HOME)."""
    settings = settings or Settings()
    lib = library if isinstance(library, Library) else Library(library)
    core = Core(lib, settings)
    if settings.allow_render:
        core.queue = RenderQueue(core.render)

    @asynccontextmanager
    async def lifespan(app):
        yield
        if core.queue is not None:
            core.queue.close()

    app = FastAPI(title="motionlib", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="The motion library in a browser. JSON routes under /api return what the CLI's "
                              "--json prints.")
    app.state.core = core  # routes get it through services.get_core
    app.state.templates = make_templates(settings.allow_render)
    app.add_middleware(Guard, limit=settings.max_upload_bytes + FORM_OVERHEAD)
    if settings.allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    for exc_type, handler in PROBLEM_HANDLERS.items():
        app.add_exception_handler(exc_type, handler)
    for module in ROUTERS:
        app.include_router(module.router)
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
