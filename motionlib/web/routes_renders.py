"""Routes to render with a stored motion (only with ``--allow-render``; a 403 without): the render page
and form, a job's page, and the JSON to queue a render and follow it. Renders run one at a time in
the background (``jobs.RenderQueue`` over ``Core.render``); a job's page polls its JSON."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from .jobs import Job
from .schemas import RenderRequest
from .security import HTTPProblem
from .services import Core, get_core
from .templating import html_page

router = APIRouter()


@router.get("/render", response_class=HTMLResponse, summary="Render page")
def render_page(request: Request, motion: Optional[str] = Query(None, max_length=64), core: Core = Depends(get_core)):
    """Prompt, seed, strength and steps; the render runs in the background (one at a time)."""
    q = core.writable()
    names = core.call(core.lib.names)
    return html_page(request, "render.html", {
        "names": names, "motion": motion, "jobs": [j.public(q.position(j)) for j in q.jobs()[:20]]})


@router.post("/render", include_in_schema=False)
def render_form(motion: str = Form(..., max_length=64), prompt: str = Form(..., max_length=1000),
                seed: int = Form(0, ge=0, lt=2**63), steps: str = Form("", max_length=5),
                strength: float = Form(1.0, ge=0, le=10), image: Optional[UploadFile] = File(None),
                core: Core = Depends(get_core)):
    if steps.strip() and not steps.strip().isdigit():
        raise HTTPProblem(422, f"steps: give a whole number, got {steps!r}")
    req = RenderRequest(motion=motion, prompt=prompt, seed=seed, strength=strength,
                        steps=int(steps) if steps.strip() else None)
    return RedirectResponse(f"/jobs/{core.submit(req, image).id}", status_code=303)


@router.get("/jobs/{job_id}", response_class=HTMLResponse, summary="A render job's page")
def job_page(request: Request, job_id: int, core: Core = Depends(get_core)):
    return html_page(request, "job.html", {"job": core.job(job_id)})


@router.post("/api/render", response_model=Job, status_code=202, summary="Queue a render (`apply`)")
def render_api(req: RenderRequest, core: Core = Depends(get_core)):
    job = core.submit(req)
    return core.job(job.id)


@router.get("/api/jobs/{job_id}", response_model=Job, summary="A render job's progress")
def job_api(job_id: int, core: Core = Depends(get_core)):
    return core.job(job_id)
