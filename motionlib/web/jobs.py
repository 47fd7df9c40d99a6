"""Background renders for the web app: one runs at a time, the others wait in order."""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Literal, Optional

from motionlib.errors import MotionlibError
from motionlib.progress import DenoiseStep, ProgressEvent

#: a render function: (job, progress callback) -> result dict (the CLI's `apply --json` keys)
RenderFn = Callable[["Job", Callable[[ProgressEvent], None]], dict]


@dataclass
class Job:
    """One requested render and where it stands (also the JSON of /api/jobs/ID). Once done, ``result`` holds
    `motionlib apply --json`'s motion and seconds, the render's id, and any warning (e.g. other weights)."""

    id: int
    motion: str
    prompt: str
    seed: int
    steps: Optional[int]
    strength: float
    status: Literal["queued", "running", "done", "failed"] = "queued"
    progress: float = 0.0  # 0..1 over the denoising steps
    message: str = "waiting for its turn"
    result: Optional[dict] = None  # {"output", "motion", "seconds", "render_id", "warning"} once done
    error: Optional[str] = None
    queue_position: Optional[int] = None  # 1 = next to run; set by RenderQueue.position
    created: float = field(default_factory=time.time)
    # an image-to-video render's uploaded first frame (a motionlib.image.FirstFrame); its sha256 is public
    first_frame: Any = field(default=None, repr=False)
    image_sha256: Optional[str] = None

    def public(self, position: int | None = None) -> dict[str, Any]:
        """As JSON for the browser: the output's path on the server is left out (the render id serves it)."""
        out = asdict(replace(self, first_frame=None))
        out.pop("first_frame")
        if out["result"]:
            out["result"] = {k: v for k, v in out["result"].items() if k != "output"}
        out["queue_position"] = position
        return out


class RenderQueue:
    """A FIFO of jobs served by one worker thread (renders need the whole machine)."""

    def __init__(self, render: RenderFn, keep: int = 100):
        self._render = render
        self._keep = keep
        self._jobs: dict[int, Job] = {}
        self._order: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._queue: queue.Queue[Optional[int]] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="motionlib-render", daemon=True)
        self._thread.start()

    def submit(self, **request) -> Job:
        with self._lock:
            job = Job(id=next(self._ids), **request)
            self._jobs[job.id] = job
            self._order.append(job.id)
            for old in self._order[:-self._keep]:  # forget the oldest finished jobs
                if self._jobs[old].status in ("done", "failed"):
                    self._order.remove(old)
                    del self._jobs[old]
        self._queue.put(job.id)
        return job

    def get(self, job_id: int) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> Optional[int]:
        """1 for the next job to run, None once it runs or ran."""
        if job.status != "queued":
            return None
        with self._lock:
            waiting = [i for i in self._order if self._jobs[i].status == "queued"]
        return waiting.index(job.id) + 1 if job.id in waiting else None

    def jobs(self) -> list[Job]:
        with self._lock:
            return [self._jobs[i] for i in reversed(self._order)]

    def wait(self, job_id: int, timeout: float = 60.0) -> Job | None:
        """Block until the job has finished (for tests and scripts); None when there is no such job."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.get(job_id)
            if job is None or job.status in ("done", "failed"):
                return job
            time.sleep(0.05)
        job = self.get(job_id)
        raise TimeoutError(f"render job {job_id} still {job.status if job else 'unknown'} after {timeout} s")

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            job = self.get(job_id)
            if job is None:
                continue
            job.status, job.message = "running", "loading the model"

            def progress(event: ProgressEvent, job: Job = job) -> None:
                if isinstance(event, DenoiseStep) and event.total:
                    job.progress = event.step / event.total
                    job.message = f"denoising step {event.step}/{event.total}"

            try:
                job.result = self._render(job, progress)
                job.status, job.progress, job.message = "done", 1.0, "done"
            except MotionlibError as exc:
                job.status, job.error, job.message = "failed", str(exc).splitlines()[0], "failed"
            except Exception as exc:  # a bug: keep the server up and say what happened
                traceback.print_exc()
                job.status, job.error, job.message = "failed", f"{type(exc).__name__}: {exc}", "failed"
