"""Routes to browse and edit the library: the gallery, a motion's page and its files (thumbnails, the
reference preview, the asset), render files, the static files, and the tag and rename forms and JSON.

File routes find a file from a catalogue row looked up by name or id (``security.thumbnail_path``,
``security.servable_render``); no request text becomes a path. Edits need ``--allow-render``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Body, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from .plots import loss_svg
from .schemas import RenameResult, Sort, StaticName, TagChange, TagResult, ThumbKind
from .security import HTTPProblem, render_media, servable_render, thumbnail_path
from .services import Core, get_core, links
from .templating import html_page, static_bytes

router = APIRouter()


@router.get("/static/{name}", include_in_schema=False)
def static_file(name: StaticName):
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return Response(static_bytes(name), media_type=media, headers={"Cache-Control": "max-age=3600"})


# --- gallery --------------------------------------------------------------------------------------
def gallery_rows(core: Core, tag: Optional[str], model: Optional[str], sort: str):
    """The motions shown (filtered by tag and model, sorted) and every tag and model, for the menus."""
    rows = core.call(core.lib.list)
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


@router.get("/", response_class=HTMLResponse, summary="Gallery")
def gallery(request: Request,
            tag: Optional[str] = Query(None, max_length=64, description="only motions with this tag"),
            model: Optional[str] = Query(None, max_length=200, description="only motions of this model"),
            sort: Sort = Query("newest"), page: int = Query(1, ge=1, le=10**6),
            per_page: Optional[int] = Query(None, ge=1, le=200), core: Core = Depends(get_core)):
    """Every motion as a card: animated AMF thumbnail, name, model, tags, size and date."""
    tag, model = tag or None, model or None
    per = per_page or core.settings.per_page
    rows, tags, models = gallery_rows(core, tag, model, sort)
    pages = max(1, math.ceil(len(rows) / per))
    if page > pages:
        raise HTTPProblem(404, f"page {page} does not exist: there are {pages} page(s) of {per}")
    shown = rows[(page - 1) * per: page * per]
    cards = [{"row": r, "links": links(r.name, r)} for r in shown]
    return html_page(request, "gallery.html", {
        "cards": cards, "tags": tags, "models": models, "tag": tag, "model": model, "sort": sort,
        "page": page, "pages": pages, "per_page": per_page, "total": len(rows)})


# --- motion ---------------------------------------------------------------------------------------
@router.get("/motions/{name}", response_class=HTMLResponse, summary="Motion page")
def motion_page(request: Request, name: str, core: Core = Depends(get_core)):
    """The reference preview next to the AMF thumbnail, the loss curve, every learn parameter, renders."""
    data = core.details(name)
    renders = core.call(core.lib.renders, name, limit=10)
    playable = [{"r": r, "media": render_media(Path(r.output_path)), "exists": Path(r.output_path).is_file()}
                for r in renders]
    return html_page(request, "motion.html", {
        "m": data, "links": data["links"], "plot": Markup(loss_svg(data["loss"])), "renders": playable,
        "params": sorted(data["params"].items())})


@router.get("/motions/{name}/thumb.{kind}", summary="AMF thumbnail (PNG or animated GIF)")
def thumbnail(name: str, kind: ThumbKind, core: Core = Depends(get_core)):
    core.lib.validate_name(name)
    row = core.call(core.lib.get, name)
    path = thumbnail_path(core.lib, row.thumb_png if kind == "png" else row.thumb_gif)
    if path is None:
        raise HTTPProblem(404, f"motion '{name}' has no {kind.upper()} thumbnail (`motionlib doctor` lists "
                               "missing files)")
    return FileResponse(path, media_type=f"image/{kind}", headers={"Cache-Control": "max-age=86400"})


@router.get("/motions/{name}/reference.gif", summary="The reference clip's preview frames, animated")
def reference(name: str, core: Core = Depends(get_core)):
    core.lib.validate_name(name)
    return Response(core.reference_gif(name), media_type="image/gif", headers={"Cache-Control": "max-age=86400"})


@router.get("/motions/{name}/asset.safetensors", summary="Download the motion asset (as `motionlib export`)")
def asset_file(name: str, core: Core = Depends(get_core)):
    core.lib.validate_name(name)
    path = core.call(core.lib.asset_path, name, verify=True)
    return FileResponse(path, media_type="application/octet-stream", filename=f"{name}.safetensors")


@router.get("/renders/{render_id}", summary="A render made with a stored motion (mp4 or GIF)")
def render_file(render_id: int, core: Core = Depends(get_core)):
    r = core.call(core.lib.render, render_id)
    path, media = servable_render(render_id, r.output_path)
    return FileResponse(path, media_type=media)


@router.get("/renders/{render_id}/first-frame.png", summary="The first frame an image-to-video render started from "
            "(the small preview its record keeps)")
def render_first_frame(render_id: int, core: Core = Depends(get_core)):
    r = core.call(core.lib.render, render_id)
    if not r.image_preview:
        raise HTTPProblem(404, f"render {render_id} was not made from an image")
    return Response(r.image_preview, media_type="image/png", headers={"Cache-Control": "max-age=86400"})


# --- editing (only with --allow-render) ----------------------------------------------------------
@router.post("/motions/{name}/tags", include_in_schema=False)
def tags_form(name: str, add: str = Form("", max_length=400), remove: str = Form("", max_length=400),
              core: Core = Depends(get_core)):
    core.change_tags(name, add.replace(",", " ").split(), remove.replace(",", " ").split())
    return RedirectResponse(f"/motions/{name}", status_code=303)


@router.post("/motions/{name}/rename", include_in_schema=False)
def rename_form(name: str, new_name: str = Form(..., max_length=200), core: Core = Depends(get_core)):
    result = core.rename(name, new_name)
    return RedirectResponse(f"/motions/{result['to']}", status_code=303)


@router.post("/api/motions/{name}/tags", response_model=TagResult, summary="Add and remove tags (`tag`)")
def tags_api(name: str, change: TagChange, core: Core = Depends(get_core)):
    return core.change_tags(name, change.add, change.remove)


@router.post("/api/motions/{name}/rename", response_model=RenameResult, summary="Rename (`rename`)")
def rename_api(name: str, to: str = Body(..., embed=True, max_length=200), core: Core = Depends(get_core)):
    return core.rename(name, to)
