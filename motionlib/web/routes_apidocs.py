"""The /api page: this API's documentation, drawn from the OpenAPI schema FastAPI builds, offline (no
CDN, no script). It lists the routes in the order `create_app` includes them, this one last."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .templating import html_page

router = APIRouter()


@router.get("/api", response_class=HTMLResponse, summary="This API's documentation")
def api_docs(request: Request):
    """The OpenAPI schema FastAPI builds (/openapi.json), drawn without any external script."""
    return html_page(request, "api.html", {"schema": request.app.openapi()})
