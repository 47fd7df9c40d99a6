"""The HTML side every page shares: the Jinja2 templates and static files that ship with the package.

Templates autoescape (Starlette's default), so names, tags and prompts are data; the only ``Markup``
is the loss plot, which holds numbers (``plots.loss_svg``). Error pages use these too
(``security.problem_response``), so this module imports nothing else of the web app but its schemas.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from .schemas import SORTS, StaticName

HERE = Path(__file__).resolve().parent


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _date(value) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def make_templates(allow_render: bool) -> Jinja2Templates:
    """The templates of one app (``allow_render`` shows or hides the render and edit controls)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(mb=_mb, date=_date)
    templates.env.globals.update(allow_render=allow_render, sorts=SORTS)
    return templates


def html_page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """`template` drawn with `context` by the templates of the app serving `request`."""
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, context, status_code=status_code)


@cache
def static_bytes(name: StaticName) -> bytes:
    """One of the package's static files (read once; the name is one of a fixed few, never request text)."""
    return (HERE / "static" / name).read_bytes()
