"""Routes to find motions: search by an uploaded clip and "more like this" (pages and JSON), and the
catalogue as JSON (``/api/motions`` = `motionlib list --json`, ``/api/motions/NAME`` = `show --json`).

Uploads are staged and probed by ``security.stage_upload`` (size-limited, fixed file names).
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse

from .schemas import MotionDetails, MotionItem, SearchHit
from .services import Core, get_core, links
from .templating import html_page

router = APIRouter()


def hits_json(hits: list[tuple[Any, float]]) -> list[dict]:
    """Ranked motions as `motionlib search --json` prints them."""
    return [{"name": r.name, "score": round(float(s), 4), "model": r.model_name, "tags": r.tags}
            for r, s in hits]


def results_page(request: Request, core: Core, hits, title: str, query: Optional[dict] = None):
    cards = [{"row": r, "score": float(s), "links": links(r.name, r)} for r, s in hits]
    models = core.call(core.lib.model_names)
    return html_page(request, "search.html", {
        "cards": cards, "title": title, "searched": True, "models": models, "query": query})


@router.get("/search", response_class=HTMLResponse, summary="Search page")
def search_page(request: Request, core: Core = Depends(get_core)):
    """Upload a clip to rank the stored motions by motion similarity."""
    models = core.call(core.lib.model_names)
    return html_page(request, "search.html", {
        "cards": [], "title": "Search by clip", "searched": False, "models": models, "query": None})


@router.post("/search", response_class=HTMLResponse, include_in_schema=False)
def search_form(request: Request, clip: UploadFile = File(...), k: int = Form(12, ge=1, le=100),
                model: str = Form("", max_length=200), core: Core = Depends(get_core)):
    hits = core.search_clip(clip, k, model)
    return results_page(request, core, hits, f"Motions like {clip.filename or 'the clip'}")


@router.get("/motions/{name}/like", response_class=HTMLResponse, summary="More like this")
def like_page(request: Request, name: str, k: int = Query(12, ge=1, le=100), core: Core = Depends(get_core)):
    return results_page(request, core, core.like(name, k), f"More like {name}")


@router.post("/api/search", response_model=list[SearchHit], summary="Search by clip (`search VIDEO`)")
def search_api(clip: UploadFile = File(..., description="a video clip"), k: int = Form(5, ge=1, le=100),
               model: str = Form("", max_length=200), core: Core = Depends(get_core)):
    return hits_json(core.search_clip(clip, k, model))


@router.get("/api/motions/{name}/like", response_model=list[SearchHit], summary="`search --like NAME`")
def like_api(name: str, k: int = Query(5, ge=1, le=100), core: Core = Depends(get_core)):
    return hits_json(core.like(name, k))


# --- the catalogue as JSON ------------------------------------------------------------------------
@router.get("/api/motions", response_model=list[MotionItem], summary="`list`")
def list_api(tag: Optional[str] = Query(None, max_length=64), model: Optional[str] = Query(None, max_length=200),
             core: Core = Depends(get_core)):
    return [r.listing() for r in core.call(core.lib.list, tag=tag or None, model=model or None)]


@router.get("/api/motions/{name}", response_model=MotionDetails, summary="`show NAME`")
def show_api(name: str, core: Core = Depends(get_core)):
    return core.details(name)
