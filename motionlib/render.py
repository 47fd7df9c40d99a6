"""Render with a stored motion: the one path behind `motionlib apply`, `apply-batch` and the web app.

1. ``resolve``: read the motion's row and its verified asset at once (the catalogue may change while
   the render runs; the row id keeps the record pointing at the motion that was rendered);
   ``retargeted``: the motion at another frame count or size when one is asked for (motionlib.retarget;
   refused before any model loads where it cannot be);
2. ``ModelCache.for_motion``: load the model the motion was learnt with (or an override of the same
   architecture) once per name, at the motion's geometry, and refuse an incompatible one;
3. ``render``: the zero-shot render (``motionlib.apply``), written to a file; a motion learnt with
   other weights renders, and the result carries the ``OtherWeights`` line;
4. ``record``: the render in the catalogue's history.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .progress import ProgressFn

__all__ = ["StoredMotion", "ModelCache", "Rendered", "resolve", "retargeted", "render", "record"]


@dataclass(frozen=True)
class StoredMotion:
    """A catalogue motion read for rendering: its name, row id and asset."""

    name: str
    id: int | None
    asset: Any  # motionlib.asset.MotionAsset


def resolve(lib, name: str) -> StoredMotion:
    """The motion `name` from `lib`, its asset verified (MotionNotFound, DamagedAsset, ... otherwise)."""
    from .catalog import load_motion

    row = lib.get(name)
    return StoredMotion(row.name, row.id, load_motion(lib, row))


def retargeted(motion: StoredMotion, frames: int | None = None, height: int | None = None,
               width: int | None = None) -> StoredMotion:
    """`motion` at `frames` x `height` x `width` (None keeps one; all None: `motion` itself). Refuses
    (``CannotRetarget``, ``ParameterError``) what cannot be retargeted, and warns ``RetargetNote`` when
    KV injection had to be turned off (motionlib.retarget)."""
    if frames is None and height is None and width is None:
        return motion
    from .retarget import retarget

    return replace(motion, asset=retarget(motion.asset, frames, height, width))


@contextmanager
def kept_warnings(category: type[Warning]) -> Iterator[list[str]]:
    """The messages of the `category` warnings raised in the block (every time, filled when it ends), to be
    turned into a result; every other warning goes on as it would have."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        yield messages
    for w in caught:
        if issubclass(w.category, category):
            messages.append(str(w.message))
        else:  # not ours to turn into a result
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _load_model(name: str, **geometry):
    from .models import load_model

    return load_model(name)


@dataclass
class ModelCache:
    """Models loaded once per name; each motion gets its model at the motion's own geometry.

    ``load(name, num_frames=, height=, width=)`` loads one (default: ``load_model(name)``; the CLI
    passes its own, which plans memory and prints what it chose)."""

    load: Callable[..., Any] = _load_model
    models: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, **geometry):
        """Model `name` (loaded on first use) at the given num_frames/height/width."""
        from .models import with_geometry

        if name not in self.models:
            self.models[name] = self.load(name, **geometry)
        return with_geometry(self.models[name], **geometry)

    def for_motion(self, motion: StoredMotion, override: str | None = None):
        """The model to render `motion` with: `override` (same architecture) or the one it was learnt with."""
        from .models import model_name_for

        spec = motion.asset.spec
        model = self.get(override or model_name_for(spec), num_frames=spec.num_frames, height=spec.height,
                         width=spec.width)
        motion.asset.check_compatible(model.spec)
        return model


@dataclass(frozen=True)
class Rendered:
    """A written render: where, how long it took, with how many steps, and any warning about it."""

    output: Path
    seconds: float
    steps: int
    warning: str | None = None


def render(model, motion: StoredMotion, prompt: str, output: str | Path, *, seed: int = 0, steps: int | None = None,
           strength: float = 1.0, inject: bool = True, progress: ProgressFn | None = None, image=None) -> Rendered:
    """Render `prompt` moving like `motion` zero-shot and write it to `output` (.mp4 or .gif); an
    image-to-video motion renders from the first frame `image` (a PIL image)."""
    from .apply import apply
    from .video import write_video
    from .weights import OtherWeights

    started = time.monotonic()
    steps = steps or motion.asset.steps
    with kept_warnings(OtherWeights) as other_weights:
        video = apply(model, motion.asset, prompt, seed=seed, steps=steps, strength=strength, inject=inject,
                      progress=progress, name=motion.name, image=image)
    path = write_video(video, output, fps=model.spec.fps)
    warning = other_weights[0] if other_weights else None
    return Rendered(Path(path), round(time.monotonic() - started, 2), steps, warning)


def record(lib, motion: StoredMotion, prompt: str, rendered: Rendered, *, seed: int, strength: float, image=None):
    """Add the render to the motion's history (MotionNotFound when it was removed or renamed meanwhile); an
    image-to-video render's first frame `image` (a ``motionlib.image.FirstFrame``) is recorded by its
    sha256 and a small preview."""
    extra = {} if image is None else {"image_sha256": image.sha256, "image_preview": image.preview()}
    return lib.record_render(motion.name, prompt=prompt, output_path=str(Path(rendered.output).resolve()), seed=seed,
                             steps=rendered.steps, strength=strength, seconds=rendered.seconds, motion_id=motion.id,
                             **extra)
