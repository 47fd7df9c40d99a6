"""A rich progress bar fed by the engine's progress events (``motionlib.progress``)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from motionlib.progress import DenoiseStep, OptimiseStep, ProgressEvent, ReferenceExtracted, Stopped


class EngineProgress:
    """Context manager; pass the instance as the engine's `progress` callback."""

    def __init__(self, console: Console, enabled: bool = True):
        self.enabled = enabled
        self.bar = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}", markup=False), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), console=console, transient=False, disable=not enabled)
        self.tasks: dict[str, int] = {}
        self.started = time.monotonic()

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def _task(self, key: str, description: str, total: int) -> int:
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(description, total=total, info="")
        return self.tasks[key]

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, ReferenceExtracted):
            self.bar.console.log("reference motion extracted") if self.enabled else None
        elif isinstance(event, OptimiseStep):
            task = self._task("optimise", "optimising ρ", event.total * event.opt_steps)
            self.bar.update(task, completed=event.done, info=f"step {event.step}/{event.total} loss {event.loss:.4f}")
        elif isinstance(event, DenoiseStep):
            task = self._task("denoise", "denoising", event.total)
            self.bar.update(task, completed=event.step)
        elif isinstance(event, Stopped):  # a hook ended the loop early (learn: after the last guided step)
            task = self._task("denoise", "denoising", event.total)
            self.bar.update(task, description=f"denoised {event.step}/{event.total}, stopped",
                            total=max(event.step, 1), completed=max(event.step, 1), info=event.reason)

    def advance(self, key: str, description: str, total: int, n: int = 1, info: str = "") -> None:
        """Count ``n`` units of a task fed by something other than engine events (a batch's jobs)."""
        self.bar.update(self._task(key, description, total), advance=n, info=info)
