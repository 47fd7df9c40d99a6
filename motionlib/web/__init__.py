"""`motionlib serve`: the motion library in a browser (FastAPI + Jinja2 templates, no JavaScript build, offline).

    from motionlib.web import create_app, Settings
    app = create_app("~/motions", Settings(allow_render=True))   # then: uvicorn.run(app)

Needs the `serve` extra: pip install "motionlib[serve]".
"""

from .app import Settings, create_app, serve_in_thread

__all__ = ["create_app", "Settings", "serve_in_thread"]
