"""The bridge between the engine and the catalogue (``motionlib.store``), used by the CLI.

Reading a clip, learning, drawing thumbnails, describing the motion and storing it are separate
steps elsewhere; here they are put together so that a learn lands in the library whole or not
at all (the store commits the row only after the blob is durable).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .asset import MotionAsset
from .descriptor import DESCRIPTOR_VERSION, motion_descriptor
from .errors import ParameterError
from .fsutil import TMP_MARKER, no_space_is_an_error, sha256_file
from .learn import learn, reference_motion
from .thumbnail import save_thumbnails
from .video import read_video, to_uint8

PREVIEW_HEIGHT = 96
# Thumbnails leave out flow vectors whose peak attention probability is below this: on flat
# regions attention ties and the argmax points anywhere, which would drown the real motion.
THUMB_MIN_CONFIDENCE = 0.15


def with_geometry(model, num_frames: int | None = None, height: int | None = None, width: int | None = None):
    """The same model (shared weights) with another frame count or resolution, validated."""
    s = model.spec
    spec = replace(s, num_frames=num_frames or s.num_frames, height=height or s.height, width=width or s.width)
    model.family.check_spec(spec)
    if spec == s:
        return model
    return replace(model, spec=spec)


def latent_frame_indices(spec) -> list[int]:
    """The pixel frame each latent frame mostly stands for (CogVideoX: 0, 4, 8, ...)."""
    return [min(i * spec.temporal_compression, spec.num_frames - 1) for i in range(spec.latent_frames)]


def previews(video: torch.Tensor, spec) -> torch.Tensor:
    """uint8 [F', h, w, 3] small frames at the latent frame times, for thumbnails."""
    frames = (video[latent_frame_indices(spec)].float() + 1) / 2
    h = PREVIEW_HEIGHT
    w = max(1, round(spec.width * h / spec.height))
    if spec.height >= h:
        small = torch.nn.functional.interpolate(frames, size=(h, w), mode="bilinear", antialias=True)
    else:  # tiny clips: enlarge with visible pixels so a person can see them
        small = torch.nn.functional.interpolate(frames, size=(h, w), mode="nearest")
    return torch.from_numpy(to_uint8(small.clamp(0, 1)))


def descriptor_of(asset: MotionAsset) -> np.ndarray:
    _, rows, cols = asset.spec.grid
    return motion_descriptor(asset.amf, (rows, cols))


def thumbnails_of(asset: MotionAsset, workdir: Path) -> dict[str, Path]:
    _, rows, cols = asset.spec.grid
    frames = asset.ref_frames
    if frames is None:  # no previews in the file: flow maps on grey
        f = asset.spec.latent_frames
        frames = torch.full((f, PREVIEW_HEIGHT, PREVIEW_HEIGHT * asset.spec.width // asset.spec.height, 3), 128,
                            dtype=torch.uint8)
    block = asset.blocks[0]
    confident = (asset.ref_confidence[block] >= THUMB_MIN_CONFIDENCE).unsqueeze(-1)
    png, gif = workdir / "thumb.png", workdir / "thumb.gif"
    save_thumbnails(frames.numpy(), asset.amf * confident, (rows, cols), png, gif)
    return {"png": png, "gif": gif}


def meta_of(asset: MotionAsset) -> dict:
    """Catalogue columns for an asset (see motionlib.store.REQUIRED_META / COLUMN_META)."""
    s = asset.spec
    frames, rows, cols = s.grid
    src = asset.source or {}
    return {
        "model_name": s.name, "model_source": s.source, "config_hash": s.config_hash(), "family": s.family,
        "latent_frames": frames, "latent_rows": rows, "latent_cols": cols,
        "source_sha256": src.get("sha256"), "source_name": src.get("name"), "source_fps": src.get("fps"),
        "source_frames": src.get("frames"), "source_width": src.get("width"), "source_height": src.get("height"),
        "descriptor_version": DESCRIPTOR_VERSION, "created_at": asset.created_at,
        "params": {**asset.params, "num_frames": s.num_frames, "height": s.height, "width": s.width},
        "loss": asset.losses,
    }


def learn_motion(library, model, video_path: str | Path, name: str, *, prompt: str = "", seed: int = 0,
                 steps: int | None = None, sampling: str = "spread", tags=(), force: bool = False,
                 progress=None, **overrides):
    """Read a clip, learn its motion and store it under `name`. Returns the catalogue row."""
    library.check_new_name(name, force=force)  # before minutes of learning
    s = model.spec
    video, info = read_video(video_path, s.num_frames, s.height, s.width, sampling=sampling)
    source = {"name": Path(video_path).name, "sha256": sha256_file(video_path)[0], "fps": info.fps,
              "frames": info.frame_count, "width": info.width, "height": info.height, "sampling": sampling}
    asset = learn(model, video, prompt=prompt, seed=seed, steps=steps, source=source, progress=progress,
                  **overrides)
    asset.ref_frames = previews(video, s)
    return store_asset(library, asset, name, tags=tags, force=force)


def store_asset(library, asset: MotionAsset, name: str, *, tags=(), force: bool = False):
    """Save, thumbnail and add the asset; whole or not at all (a full disk raises NoSpaceLeft)."""
    with no_space_is_an_error(library.home / "tmp"):
        work = Path(tempfile.mkdtemp(prefix="learn-", suffix=TMP_MARKER, dir=library.home / "tmp"))
        try:
            path = asset.save(work / "asset.safetensors")
            thumbs = thumbnails_of(asset, work)
            return library.add_motion(name, asset_file=path, meta=meta_of(asset), descriptor=descriptor_of(asset),
                                      thumbnails=thumbs, tags=tags, force=force)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def import_motion(library, path: str | Path, name: str, *, force: bool = False, tags=()):
    """Import an asset file: validated by header, hashes and values (nothing executed), described
    and thumbnailed. A file of an older format without hashes imports with an UnverifiedAsset warning."""
    loaded: dict[Path, MotionAsset] = {}

    def asset(p: Path) -> MotionAsset:  # the staged copy, read (and verified) once
        if p not in loaded:
            loaded[p] = MotionAsset.load(p)
        return loaded[p]

    return library.import_file(path, name=name, validate=lambda p: meta_of(asset(p)),
                               descriptor_fn=lambda p, meta: descriptor_of(asset(p)),
                               thumbnails_fn=lambda p, meta, work: thumbnails_of(asset(p), work),
                               force=force, tags=tags)


def load_motion(library, motion) -> MotionAsset:
    """The stored asset of `motion` (a name, or a row read earlier), its checksum verified."""
    m = library.get(motion) if isinstance(motion, str) else motion
    return MotionAsset.load(library.blobs.verify(m.blob_sha256, motion=m.name))


def clip_descriptor(model, video_path: str | Path, sampling: str = "spread") -> np.ndarray:
    """Descriptor of a clip's motion with `model` (reference AMF only, no optimisation)."""
    s = model.spec
    video, _ = read_video(video_path, s.num_frames, s.height, s.width, sampling=sampling)
    g = s.guidance
    ref = reference_motion(model, video, blocks=g.blocks[:1], temperature=g.temperature)
    _, rows, cols = s.grid
    return motion_descriptor(ref.amf[g.blocks[0]], (rows, cols))
