"""The bridge between the engine and the catalogue (``motionlib.store``), used by the CLI.

Reading a clip, learning, drawing thumbnails, describing the motion and storing it are separate
steps elsewhere; here they are put together so that a learn lands in the library whole or not
at all (the store commits the row only after the blob is durable).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from .asset import MotionAsset
from .descriptor import DESCRIPTOR_VERSION, NoMotionError, described_motion, motion_descriptor
from .fsutil import TMP_MARKER, no_space_is_an_error, sha256_file
from .learn import learn, reference_motion
from .models import check_geometry, model_name_for, with_geometry  # noqa: F401  (re-exported for callers)
from .thumbnail import save_thumbnails
from .video import read_video, to_uint8

PREVIEW_HEIGHT = 96
# Thumbnails leave out flow vectors whose peak attention probability is below this: on flat
# regions attention ties and the argmax points anywhere, which would drown the real motion.
THUMB_MIN_CONFIDENCE = 0.15


def installed_weights(model_name: str, model_source: str, *, load_large: bool = False) -> str:
    """Fingerprint (motionlib.weights) of the weights `model_name` loads here now, for ``doctor``.

    Built-in models (shapes, the tiny presets) load in a second; others (hub ids, folders) only with
    `load_large`, on the CPU in their own dtype. Raises a ModelError saying why when it cannot."""
    from .errors import ModelError
    from .models import known_models, load_model, resolve_spec
    from .weights import fingerprint

    name = model_name if model_name in known_models() else model_source
    spec = resolve_spec(name)
    builtin = spec.source.startswith("builtin:")
    if not builtin and not load_large:
        raise ModelError("it loads the whole model; run: motionlib doctor --weights")
    model = load_model(name, device="cpu", dtype=None if builtin else getattr(torch, spec.dtype))
    return fingerprint(model.transformer)


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
    """The catalogue's descriptor of a motion: of its reference AMF, confidence-weighted."""
    _, rows, cols = asset.spec.grid
    return motion_descriptor(asset.amf, (rows, cols), asset.ref_confidence[asset.blocks[0]])


def motion_descriptor_of(asset: MotionAsset, video: torch.Tensor | None, what: str) -> np.ndarray:
    """The searchable descriptor of an asset whose clip is ``video`` (None: not at hand); NoMotionError
    when the clip is still or the model found no motion in it."""
    if video is not None:
        check_moving(video, what)
    _, rows, cols = asset.spec.grid
    return described_motion(asset.amf, (rows, cols), asset.ref_confidence[asset.blocks[0]], what=what)


def describe_asset(asset: MotionAsset, what: str) -> np.ndarray | None:
    """A stored asset's descriptor by the rule of a new learn (its preview frames stand in for the
    clip); None when that clip shows no motion. Import and descriptor migration use it."""
    frames = None if asset.ref_frames is None else asset.ref_frames.permute(0, 3, 1, 2).float() / 127.5 - 1
    try:
        return motion_descriptor_of(asset, frames, what)
    except NoMotionError:
        return None


def describe_file(path: Path) -> np.ndarray | None:
    """``Library(describe=...)``: :func:`describe_asset` of an asset file."""
    return describe_asset(MotionAsset.load(path), str(path))


def searchable_descriptor(asset: MotionAsset, what: str, video: torch.Tensor | None = None) -> np.ndarray | None:
    """The descriptor to store for a new motion; None (search will not rank it) with a NoMotionWarning
    when its clip is still or the model found no motion in it."""
    try:
        return motion_descriptor_of(asset, video, what)
    except NoMotionError as exc:
        import warnings

        warnings.warn(f"{exc}; the motion is stored, but search will not rank it", NoMotionWarning, stacklevel=2)
        return None


#: a clip is still when less than this share of its pixels change by more than STILL_LEVEL between frames
STILL_SHARE = 1e-3
STILL_LEVEL = 0.1  # of the full range (about 25 of 255): above video compression noise


def check_moving(video: torch.Tensor, what: str) -> None:
    """NoMotionError when the frames ``[F, 3, H, W]`` (in [-1, 1]) do not change (a still clip)."""
    if video.shape[0] < 2:
        raise NoMotionError(f"no motion found in {what} (too short: {video.shape[0]} frame)")
    change = (video[1:].float() - video[:-1].float()).abs().amax(dim=1) / 2  # [F-1, H, W], 0..1
    share = float((change > STILL_LEVEL).float().mean())
    if share < STILL_SHARE:
        raise NoMotionError(f"no motion found in {what} (static: {share:.2%} of its pixels change between frames)")


class NoMotionWarning(UserWarning):
    """A motion was learnt from a clip in which the model found no motion."""


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
        "model_name": s.name, "model_source": s.source, "config_hash": s.config_hash(), "family": s.embedding,
        "latent_frames": frames, "latent_rows": rows, "latent_cols": cols,
        "source_sha256": src.get("sha256"), "source_name": src.get("name"), "source_fps": src.get("fps"),
        "source_frames": src.get("frames"), "source_width": src.get("width"), "source_height": src.get("height"),
        "descriptor_version": DESCRIPTOR_VERSION, "created_at": asset.created_at,
        "weights_fingerprint": asset.weights,
        **({} if asset.lineage is None else {"lineage": asset.lineage}),
        "params": {**asset.params, "num_frames": s.num_frames, "height": s.height, "width": s.width},
        "loss": asset.losses,
    }


def learn_motion(library, model, video_path: str | Path, name: str, *, prompt: str = "", seed: int = 0,
                 steps: int | None = None, sampling: str = "spread", tags=(), force: bool = False,
                 progress=None, check: bool = False, **overrides):
    """Read a clip, learn its motion and store it under `name`. Returns the catalogue row.

    `check`: render the motion once zero-shot on a new seed and store its AMF agreement with the
    reference (``motionlib.check``) as the row's ``check_score``."""
    library.check_new_name(name, force=force)  # before minutes of learning
    s = model.spec
    video, info = read_video(video_path, s.num_frames, s.height, s.width, sampling=sampling)
    source = {"name": Path(video_path).name, "sha256": sha256_file(video_path)[0], "fps": info.fps,
              "frames": info.frame_count, "width": info.width, "height": info.height, "sampling": sampling}
    image = overrides.pop("image", None)
    if s.conditioning == "i2v" and image is None:  # an image-to-video learn starts from the clip's first frame
        from .image import first_frame

        image = first_frame(video)
    asset = learn(model, video, prompt=prompt, seed=seed, steps=steps, source=source, progress=progress,
                  image=image, **overrides).asset
    asset.ref_frames = previews(video, s)
    extra = {}
    if check:
        from .check import check_motion

        result = check_motion(model, asset, steps=steps, progress=progress, image=image)
        extra["check_score"] = result.to_dict()["score"]
    return store_asset(library, asset, name, tags=tags, force=force, video=video, what=str(video_path),
                       meta=extra)


def store_asset(library, asset: MotionAsset, name: str, *, tags=(), force: bool = False,
                video: torch.Tensor | None = None, what: str | None = None, meta: dict | None = None):
    """Save, thumbnail, describe and add the asset (``video``: its clip, to tell a still one; ``meta``:
    further catalogue columns, e.g. check_score); whole or not at all (a full disk raises NoSpaceLeft)."""
    descriptor = searchable_descriptor(asset, what or f"the clip of '{name}'", video)
    with no_space_is_an_error(library.tmp_dir):
        work = Path(tempfile.mkdtemp(prefix="learn-", suffix=TMP_MARKER, dir=library.tmp_dir))
        try:
            path = asset.save(work / "asset.safetensors")
            thumbs = thumbnails_of(asset, work)
            return library.add_motion(name, asset_file=path, meta={**meta_of(asset), **(meta or {})}, descriptor=descriptor,
                                      thumbnails=thumbs, tags=tags, force=force)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _parent_ref(row) -> dict:
    """A parent as an edited motion's asset header records it (the catalogue adds its row id)."""
    return {"name": row.name, "blob_sha256": row.blob_sha256, "created_at": row.created_at.isoformat()}


def _store_derived(library, asset: MotionAsset, name: str, rows: list, operations: list[dict], *,
                   weights=None, tags=(), force: bool = False):
    parents = [_parent_ref(r) for r in rows]
    if weights is not None:
        parents = [{**p, "weight": w} for p, w in zip(parents, weights)]
    asset.lineage = {"operations": operations, "parents": parents}
    ids = {"operations": operations, "parents": [{**p, "id": r.id} for p, r in zip(parents, rows)]}
    what = f"the edited motion '{name}'"
    return store_asset(library, asset, name, tags=tags, force=force, what=what, meta={"lineage": ids})


def edit_motion(library, source: str, name: str, *, mirror: str | None = None, reverse: bool = False, tags=(),
                force: bool = False):
    """Store under `name` the motion `source` mirrored (``"x"``/``"y"``) and/or reversed (motionlib.edit), with
    its lineage, thumbnails and search descriptor (of the transformed reference AMF). Returns the row."""
    from . import edit
    from .errors import UneditableMotion

    if mirror is None and not reverse:
        raise UneditableMotion("nothing to do: give --mirror x, --mirror y and/or --reverse")
    if mirror is not None:
        edit.check_axis(mirror)
    library.check_new_name(name, force=force)
    row = library.get(source)
    asset = load_motion(library, row)
    edit.check_editable(asset, f"'{source}'")
    operations = []
    if mirror is not None:
        asset = edit.mirror(asset, mirror)
        operations.append({"op": "mirror", "axis": mirror})
    if reverse:
        asset = edit.reverse(asset)
        operations.append({"op": "reverse"})
    return _store_derived(library, asset, name, [row], operations, tags=tags, force=force)


def blend_motions(library, sources, name: str, *, weights=None, part: str = "global", tags=(), force: bool = False):
    """Store under `name` the blend of the motions `sources` (motionlib.edit.blend; ``weights`` default to
    equal ones summing to 1; ``part``: each parent's "global" or "full" shifts), with its lineage, thumbnails
    and search descriptor. Returns the row."""
    from . import edit

    sources = list(sources)
    if len(set(sources)) != len(sources):
        from .errors import UneditableMotion

        raise UneditableMotion("blend each motion once (a motion was named twice: give it a larger weight instead)")
    if weights is not None:
        weights = edit.check_weights(weights, len(sources))
    edit.check_part(part)
    library.check_new_name(name, force=force)
    rows = [library.get(s) for s in sources]
    assets = [load_motion(library, r) for r in rows]
    blended = edit.blend(assets, weights, part=part, names=sources)
    used = blended.lineage["parents"] if blended.lineage else []
    return _store_derived(library, blended, name, rows,
                          [{"op": "blend", "weights": [p["weight"] for p in used], "part": part}],
                          weights=[p["weight"] for p in used], tags=tags, force=force)


def import_motion(library, path: str | Path, name: str, *, force: bool = False, tags=()):
    """Import an asset file: validated by header, hashes and values (nothing executed), described
    and thumbnailed. A file of an older format without hashes imports with an UnverifiedAsset warning."""
    loaded: dict[Path, MotionAsset] = {}

    def asset(p: Path) -> MotionAsset:  # the staged copy, read (and verified) once
        if p not in loaded:
            loaded[p] = MotionAsset.load(p)
        return loaded[p]

    return library.import_file(path, name=name, validate=lambda p: meta_of(asset(p)),
                               descriptor_fn=lambda p, meta: describe_asset(asset(p), str(p)),
                               thumbnails_fn=lambda p, meta, work: thumbnails_of(asset(p), work),
                               force=force, tags=tags)


def load_motion(library, motion) -> MotionAsset:
    """The stored asset of `motion` (a name, or a row read earlier), its checksum verified."""
    m = library.get(motion) if isinstance(motion, str) else motion
    return MotionAsset.load(library.blobs.verify(m.blob_sha256, motion=m.name))


def auto_levels(video: torch.Tensor, clip: float = 0.005) -> torch.Tensor:
    """Stretch a clip's levels ([F, 3, H, W] in [-1, 1]): each channel's darkest level (the ``clip``
    quantile) becomes black and the brightest (1 - ``clip``) white, so a grey background reads like a
    black one. Search reads query clips through this; learn reads the reference unchanged."""
    x = (video.float() + 1) / 2
    flat = x.transpose(0, 1).reshape(3, -1)
    flat = flat[:, ::max(1, flat.shape[1] // 1_000_000)]  # torch.quantile takes at most 16M values
    lo = torch.quantile(flat, clip, dim=1).view(1, 3, 1, 1)
    hi = torch.quantile(flat, 1 - clip)
    return ((x - lo) / (hi - lo.min()).clamp_min(1e-3)).clamp(0, 1) * 2 - 1


def frames_descriptor(model, video: torch.Tensor, what: str = "the clip") -> np.ndarray:
    """Descriptor of the motion in frames ``[F, 3, H, W]`` as search reads them (auto levels, reference
    AMF at the first guidance block, no optimisation); NoMotionError when there is none."""
    check_moving(video, what)
    g = model.spec.guidance
    ref = reference_motion(model, auto_levels(video), blocks=g.blocks[:1], temperature=g.temperature)
    _, rows, cols = model.spec.grid
    return described_motion(ref.amf[g.blocks[0]], (rows, cols), ref.confidence[g.blocks[0]], what=what)


def clip_descriptor(model, video_path: str | Path, sampling: str = "spread") -> np.ndarray:
    """Descriptor of a clip's motion with `model`; NoMotionError ("no motion found in CLIP (why)").

    A clip shorter than the model's frame count is read whole, at the largest frame count the model
    takes (one it reads as fewer than 2 latent frames is too short)."""
    from .video import probe

    s = model.spec
    n = probe(video_path).frame_count
    if n < s.num_frames:
        t = s.temporal_compression
        usable = (n - 1) // t * t + 1
        if n < 2 or usable < t + 1:
            raise NoMotionError(f"no motion found in {video_path} (too short: {n} frame{'s' * (n != 1)}; "
                                f"{s.name} needs at least {t + 1})")
        model = with_geometry(model, num_frames=usable)
        s = model.spec
    video, _ = read_video(video_path, s.num_frames, s.height, s.width, sampling=sampling)
    return frames_descriptor(model, video, what=str(video_path))


def search_clip(library, video_path: str | Path, *, k: int, load, model: str | None = None,
                guard=lambda m: contextlib.nullcontext()) -> tuple[list, list[str]]:
    """Stored motions ranked by similarity to a clip's motion, across models: ``(hits, notes)``.

    Without ``model`` every model with searchable motions reads the clip (``load(name)`` is called once
    per model; ``guard(model)`` wraps the reading, e.g. an out-of-memory message) and its motions are
    scored against the clip as that model reads it. Scores are cosines of unit descriptors of one
    kind (1 same motion, 0 unrelated, -1 opposite), so the lists merge by score. With ``model`` only
    that model reads the clip and only its motions rank. A model that finds no motion is left out
    (a line in ``notes``); NoMotionError when none finds any.
    """
    from .models import known_models

    if model:
        targets = [model]
    else:  # by name when it is a known model, else by where its weights came from
        known = known_models()
        targets = list(dict.fromkeys(name if name in known or not source else source
                                     for name, source in library.searchable_models()))
    hits, missing = [], []
    for name in targets:
        m = load(name)
        try:
            with guard(m):
                desc = clip_descriptor(m, video_path)
        except NoMotionError as e:
            missing.append((m.spec.name, str(e)))
            continue
        hits += library.search(desc, k=k, model=m.spec.name if model else name)
    if missing and not hits:
        if len({msg for _, msg in missing}) == 1:  # e.g. a still clip: every model says the same
            raise NoMotionError(missing[0][1])
        raise NoMotionError(f"no motion found in {video_path} by any model ("
                            + "; ".join(f"{n}: {msg.split(' (', 1)[-1].rstrip(')')}" for n, msg in missing) + ")")
    notes = [f"{n}: {msg}; its motions are not ranked" for n, msg in missing]
    return sorted(hits, key=lambda h: -h[1])[:k], notes
