"""`motionlib apply-batch JOBS.jsonl`: many renders with stored motions, spread over Ray workers.

Thin over ``motionlib.batch``; registers on the app of ``cli.core`` when ``cli.main`` imports it. Heavy
imports (Ray, torch) happen inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .core import app, dim, emit, err, labelled, progress_bar, say, state


@app.command("apply-batch")
def apply_batch(
    jobs_file: Path = typer.Argument(..., metavar="JOBS.jsonl",
                                     help='One JSON job a line: {"motion": NAME, "prompt": TEXT, "seed": N, '
                                          '"output": FILE.mp4|.gif} plus optional "strength", "steps" and '
                                          '"image" (the first frame of an image-to-video motion) and '
                                          '"frames"/"height"/"width" (retargeted, as apply --frames). Relative '
                                          "outputs and images are taken from the current folder."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w",
                                          help="Ray workers (default: one per GPU; on CPUs 1). Each loads "
                                               "the model once and renders many jobs."),
    address: Optional[str] = typer.Option(None, "--address",
                                          help="Join this Ray cluster (e.g. ray://head:10001 or auto) instead "
                                               "of starting a local one. Workers need the same "
                                               "MOTIONLIB_HOME (a shared folder) and MOTIONLIB_DB_URL."),
    in_process: bool = typer.Option(False, "--in-process",
                                    help="Do not use Ray: run the jobs here, one after another."),
    image: Optional[Path] = typer.Option(None, "--image", "-i",
                                         help="First frame of the jobs that name no \"image\" (image-to-video "
                                              "motions; PNG, JPEG, WebP or BMP, resized to the model's size as "
                                              "its diffusers pipeline does)."),
):
    """Render every job of JOBS.jsonl with its stored motion (zero-shot, like `apply`).

    Jobs whose output already exists are skipped, so re-running resumes; a failing job is reported
    with its error and the others go on (exit code 1 if any failed). Renders are recorded in the
    catalogue like apply's. One progress bar counts all jobs, with ETA."""
    from motionlib.batch import pending, read_jobs, run_batch
    from motionlib.errors import MotionlibError

    if image is not None:  # one clear line now rather than one per job
        from motionlib.image import load_image

        load_image(image)
    jobs, bad = read_jobs(jobs_file, image=image)
    todo, skipped = pending(jobs)
    lib = state.library()
    by_line = {j.line: j for j in jobs}
    talk = not (state.as_json or state.quiet)
    if talk and skipped:
        dim(f"{len(skipped)} job(s) already have their output: skipped")

    with progress_bar() as bar:
        def on_start(plan):
            if talk:
                dim(plan.note)
            bar.advance("jobs", "rendering", len(todo), n=0)

        def on_result(r):
            job = by_line[r.line]
            if r.status == "done":
                if r.warning and talk:
                    err.print(labelled("warning:", "yellow", f"line {r.line}: {r.warning}"), highlight=False,
                              soft_wrap=True)
                try:
                    extra = {}
                    if job.image is not None:  # the first frame it rendered from: its hash and a preview
                        from motionlib.image import read_first_frame

                        frame = read_first_frame(job.image)
                        extra = {"image_sha256": frame.sha256, "image_preview": frame.preview()}
                    lib.record_render(job.motion, prompt=job.prompt, output_path=str(job.output), seed=job.seed,
                                      steps=r.steps, strength=job.strength, seconds=r.seconds, **extra)
                except MotionlibError as exc:  # e.g. removed meanwhile: the video is there, say so
                    r.error = f"line {r.line} ({r.motion}): rendered, but not recorded: {exc}"
                    if talk:
                        err.print(labelled("warning:", "yellow", r.error), highlight=False, soft_wrap=True)
            elif talk:
                err.print(labelled("failed:", "red", r.error), highlight=False, soft_wrap=True)
            bar.advance("jobs", "rendering", len(todo), info=f"{r.motion} → {Path(r.output).name}")

        results = run_batch(todo, home=str(lib.home), db_url=lib.db_url, workers=workers, address=address,
                            use_ray=not in_process, device=state.device, on_start=on_start, on_result=on_result)
    everything = sorted(bad + skipped + results, key=lambda r: r.line)
    count = {s: sum(r.status == s for r in everything) for s in ("done", "skipped", "failed")}
    data = {**count, "jobs": [r.to_dict() for r in everything]}

    def human():
        for r in bad:
            err.print(labelled("failed:", "red", r.error), highlight=False, soft_wrap=True)
        say(f"rendered {count['done']}, skipped {count['skipped']} (output exists), failed {count['failed']}")

    emit(data, human)
    if count["failed"]:
        raise typer.Exit(1)
