"""Batch rendering: many (motion, prompt, seed) jobs, spread over Ray workers or run in this process.

A jobs file holds one JSON object a line: ``motion``, ``prompt``, ``seed``, ``output`` (.mp4 or
.gif), optionally ``strength``, ``steps``, ``image`` (the first frame of an image-to-video motion;
relative paths, like outputs, from the current folder; ``read_jobs``'s `image` is the default) and
``frames``/``height``/``width`` (render the motion retargeted to that geometry, as
``apply --frames/--height/--width``; motionlib.retarget). Each worker (``Renderer``) opens the catalogue and
loads each model once, then renders job after job; the driver hands out jobs as workers free up,
records every finished render in the catalogue (like ``apply``) and reports failed jobs with
their error while the others go on. A job whose output file already exists is skipped, so a
re-run resumes (outputs are written atomically: an existing file is a whole video).

Ray (the ``[batch]`` extra) is optional: without it the same ``Renderer`` runs the jobs here, one
after another.
"""

from __future__ import annotations

import json
import math
import os
import traceback
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from .errors import MotionlibError

__all__ = ["BatchJob", "JobResult", "BatchError", "Renderer", "read_jobs", "pending", "run_batch",
           "ray_available", "OUTPUT_SUFFIXES"]

OUTPUT_SUFFIXES = (".mp4", ".gif")
_GEOMETRY = ("frames", "height", "width")
_FIELDS = {"motion", "prompt", "seed", "output", "strength", "steps", "image", *_GEOMETRY}
Status = Literal["done", "failed", "skipped"]


class BatchError(MotionlibError, ValueError):
    """A jobs file or a batch setting that cannot be used."""


@dataclass(frozen=True)
class BatchJob:
    """One render: line ``line`` of the jobs file."""

    line: int
    motion: str
    prompt: str
    seed: int
    output: Path  # absolute
    strength: float = 1.0
    steps: int | None = None
    image: Path | None = None  # absolute: the first frame of an image-to-video motion
    frames: int | None = None  # None: the motion's own geometry
    height: int | None = None
    width: int | None = None


@dataclass
class JobResult:
    """What became of one job (``error`` is one line; ``worker`` names the process that ran it)."""

    line: int
    status: Status
    motion: str | None = None
    output: str | None = None
    seconds: float | None = None
    steps: int | None = None
    error: str | None = None
    worker: str | None = None
    warning: str | None = None  # e.g. the motion was learnt with other weights (motionlib.weights)

    def to_dict(self) -> dict:
        return asdict(self)


def _parse(line_no: int, text: str, base: Path, image: Path | None = None) -> BatchJob:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BatchError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BatchError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise BatchError(f"unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(_FIELDS))}")
    missing = [k for k in ("motion", "prompt", "seed", "output") if k not in obj]
    if missing:
        raise BatchError(f"missing key(s) {', '.join(missing)}")
    for key in ("motion", "prompt", "output") + (("image",) if "image" in obj else ()):
        if not isinstance(obj[key], str) or not obj[key]:
            raise BatchError(f"'{key}' must be a non-empty string, got {obj[key]!r}")
    if isinstance(obj["seed"], bool) or not isinstance(obj["seed"], int):
        raise BatchError(f"'seed' must be an integer, got {obj['seed']!r}")
    strength = obj.get("strength", 1.0)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
            or strength < 0:
        raise BatchError(f"'strength' must be a number >= 0, got {strength!r}")
    for key in ("steps", *_GEOMETRY):
        v = obj.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise BatchError(f"'{key}' must be a positive integer, got {v!r}")
    steps = obj.get("steps")
    output = Path(obj["output"]).expanduser()
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise BatchError(f"'output' must end in .mp4 or .gif, got {obj['output']!r}")
    if "image" in obj:
        image = (base / Path(obj["image"]).expanduser()).resolve()
    return BatchJob(line=line_no, motion=obj["motion"], prompt=obj["prompt"], seed=obj["seed"],
                    output=(base / output).resolve(), strength=float(strength), steps=steps, image=image,
                    **{k: obj.get(k) for k in _GEOMETRY})


def read_jobs(path: Path | str, base: Path | None = None,
              image: Path | str | None = None) -> tuple[list[BatchJob], list[JobResult]]:
    """The jobs of a JSONL file (blank lines ignored) and a failed result for each unusable line.

    Relative outputs and images are taken from ``base`` (default: the current folder), as ``apply -o``
    does; `image` is the first frame of jobs that name none (``apply-batch --image``)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BatchError(f"{path}: no such jobs file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"cannot read the jobs file {path}: {exc}") from None
    base = (base or Path.cwd()).resolve()
    default_image = None if image is None else (base / Path(image).expanduser()).resolve()
    jobs: list[BatchJob] = []
    bad: list[JobResult] = []
    owner: dict[Path, int] = {}
    for no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            job = _parse(no, text, base, default_image)
            if job.output in owner:
                raise BatchError(f"output {job.output} is already written by line {owner[job.output]}")
        except BatchError as exc:
            bad.append(JobResult(line=no, status="failed", error=f"line {no}: {exc}"))
            continue
        owner[job.output] = no
        jobs.append(job)
    if not jobs and not bad:
        raise BatchError(f"{path} holds no jobs (one JSON object a line)")
    return jobs, bad


def pending(jobs: Iterable[BatchJob]) -> tuple[list[BatchJob], list[JobResult]]:
    """(jobs to run, skipped results for jobs whose output already exists): what makes a re-run resume."""
    todo, skipped = [], []
    for j in jobs:
        if j.output.is_file():
            skipped.append(JobResult(line=j.line, status="skipped", motion=j.motion, output=str(j.output)))
        else:
            todo.append(j)
    return todo, skipped


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, MotionlibError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class Renderer:
    """Renders jobs with models loaded once per process: a Ray actor, or the in-process worker.

    It reads motions from the catalogue at ``home``/``db_url`` (on a cluster: a shared folder and a
    shared database) and keeps the last few assets in memory (jobs arrive sorted by motion)."""

    ASSETS_KEPT = 4

    def __init__(self, home: str | None = None, db_url: str | None = None, device: str | None = None,
                 threads: int | None = None, name: str = "local"):
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.home, self.db_url, self.device, self.name = home, db_url, device, name
        from .models import load_model
        from .render import ModelCache

        self._library = None
        self._models = ModelCache(load=lambda name, **geometry: load_model(name, device=device))
        self._assets: OrderedDict[str, object] = OrderedDict()

    def _motion(self, name: str):
        from .render import resolve
        from .store import Library

        if name in self._assets:
            self._assets.move_to_end(name)
            return self._assets[name]
        if self._library is None:
            self._library = Library(self.home, self.db_url)
        motion = resolve(self._library, name)
        self._assets[name] = motion
        while len(self._assets) > self.ASSETS_KEPT:
            self._assets.popitem(last=False)
        return motion

    def render(self, job: BatchJob) -> JobResult:
        """Render one job; every failure comes back as a failed result, never as an exception."""
        from .render import kept_warnings, render, retargeted
        from .retarget import RetargetNote

        try:
            with kept_warnings(RetargetNote) as notes:
                motion = retargeted(self._motion(job.motion), job.frames, job.height, job.width)
            note = "; ".join(notes) or None
            model = self._models.for_motion(motion)
            picture = None
            if job.image is not None:
                from .image import load_image

                picture = load_image(job.image)
            done = render(model, motion, job.prompt, job.output, seed=job.seed, steps=job.steps,
                          strength=job.strength, image=picture)
        except Exception as exc:  # reported with the job; the worker goes on with the next one
            if os.environ.get("MOTIONLIB_BATCH_TRACEBACKS"):
                traceback.print_exc()
            return JobResult(line=job.line, status="failed", motion=job.motion, output=str(job.output),
                             error=f"line {job.line} ({job.motion}): {_one_line(exc)}", worker=self.name)
        warning = "; ".join(w for w in (note, done.warning) if w) or None
        return JobResult(line=job.line, status="done", motion=job.motion, output=str(job.output),
                         seconds=done.seconds, steps=done.steps, worker=self.name, warning=warning)


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Plan:
    """How a batch runs: the workers and what each gets."""

    backend: Literal["ray", "local"]
    workers: int
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    note: str = ""


def _ray_plan(workers: int | None, address: str | None) -> Plan:
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, num_cpus=os.cpu_count())
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
    if gpus:
        n = workers or gpus
        share = min(1.0, gpus / n)  # more workers than GPUs: they share the GPUs
        return Plan("ray", n, gpus_per_worker=share, cpus_per_worker=1.0,
                    note=f"{n} Ray worker(s) on {gpus} GPU(s)" + (", one per GPU" if share == 1 else ""))
    n = workers or 1
    per = max(1, cpus // n)
    return Plan("ray", n, cpus_per_worker=per, note=f"{n} Ray worker(s) on CPUs, {per} thread(s) each"
                + ("" if workers else " (--workers N for more)"))


def run_batch(jobs: list[BatchJob], *, home: str | None, db_url: str | None, workers: int | None = None,
              address: str | None = None, use_ray: bool = True, device: str | None = None,
              on_start: Callable[[Plan], None] | None = None,
              on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Render ``jobs`` (already filtered by ``pending``); returns their results in completion order.

    With Ray (``use_ray`` and the package installed): on the cluster at ``address``, on the one this
    process already joined, or on a new local one. Otherwise in this process, one job after another."""
    if workers is not None and workers < 1:
        raise BatchError(f"--workers must be >= 1, got {workers}")
    if address and not (use_ray and ray_available()):
        raise BatchError("--address needs Ray: pip install 'motionlib[batch]'")
    jobs = sorted(jobs, key=lambda j: (j.motion, j.line))  # consecutive jobs share a loaded asset
    results: list[JobResult] = []

    def done(r: JobResult) -> None:
        results.append(r)
        if on_result is not None:
            on_result(r)

    if not (use_ray and ray_available()):
        why = "Ray is not installed (pip install 'motionlib[batch]')" if use_ray else "--in-process"
        plan = Plan("local", 1, note=f"{why}: running {len(jobs)} job(s) in this process, one after another")
        if on_start:
            on_start(plan)
        if jobs:
            worker = Renderer(home, db_url, device)
            for job in jobs:
                done(worker.render(job))
        return results

    import ray

    plan = _ray_plan(workers, address)
    if on_start:
        on_start(plan)
    if not jobs:
        return results
    actor_cls = ray.remote(Renderer).options(num_cpus=plan.cpus_per_worker, num_gpus=plan.gpus_per_worker)
    threads = None if plan.gpus_per_worker else int(plan.cpus_per_worker)
    # Ray actor handles (untyped: ray's stubs give .options().remote() the class, without .render.remote)
    actors: list[Any] = [actor_cls.remote(home, db_url, device, threads, f"worker-{i}")
              for i in range(min(plan.workers, len(jobs)))]
    queue = list(jobs)
    running: dict = {}  # future -> (actor, job)
    idle = list(actors)
    try:
        while queue or running:
            while idle and queue:
                actor, job = idle.pop(0), queue.pop(0)
                running[actor.render.remote(job)] = (actor, job)
            if not running:  # every worker died: the rest cannot run
                for job in queue:
                    done(JobResult(line=job.line, status="failed", motion=job.motion, output=str(job.output),
                                   error=f"line {job.line} ({job.motion}): no Ray worker left"))
                break
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ready[0])
            try:
                done(ray.get(ready[0]))
                idle.append(actor)
            except ray.exceptions.RayError as exc:  # the worker process died (e.g. out of memory)
                done(JobResult(line=job.line, status="failed", motion=job.motion, output=str(job.output),
                               error=f"line {job.line} ({job.motion}): worker died: {_one_line(exc)}"))
    finally:
        for a in actors:
            ray.kill(a)
    return results
