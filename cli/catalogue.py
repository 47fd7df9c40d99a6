"""The commands on the catalogue: search, list (ls), show, rm, rename, tag, export, import, doctor, models.

Start-up: list, show, rm, rename, tag, export, doctor (without --repair) and models import neither
torch, diffusers nor faiss (tests/test_startup.py); search needs faiss, and the engine when it reads a
clip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .core import (Memory, UserError, app, columns, default_model, emit, fitting, load, out, printable, say,
                   shown_warnings, state, warn)
from .options import OFFLOAD, VAE_TILING


@app.command()
def search(
    video: Optional[Path] = typer.Argument(None, help="Clip whose motion to look for."),
    k: int = typer.Option(5, "-k", help="How many results."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Read the clip with this model only and rank only its motions (default: every model that has stored motions)."),
    like: Optional[str] = typer.Option(None, "--like", help="Search motions like a stored one instead of a clip (all models, or --model's)."),
    offload: str = OFFLOAD,
    vae_tiling: str = VAE_TILING,
):
    """Rank stored motions by how similar their motion is to a clip's (or to --like NAME).

    Without --model, every model that has stored motions reads the clip (each loaded once) and its
    motions are scored against the clip as that model sees it. A score is the cosine similarity of
    two motion descriptors (normalised, confidence-weighted summaries of the attention motion flow):
    1 is the same motion, 0 unrelated, -1 the opposite direction. Every model's descriptors live in
    the same space, so the lists are merged by score and each hit names its model. A model that finds
    no motion in the clip is left out with a warning; if none finds any, search fails.
    """
    from motionlib.errors import ParameterError

    if k < 1:
        raise ParameterError(f"-k must be at least 1, got {k}")
    memory = Memory("search", offload, vae_tiling)
    if (video is None) == (like is None):
        raise UserError("give either a VIDEO or --like NAME")
    lib = state.library()
    if like:
        row = lib.get(like)
        desc = row.descriptor_array() if row.descriptor_version == lib.descriptor_version else None
        if desc is None:
            raise UserError(f"'{like}' cannot be searched with: its clip showed no motion")
        hits = lib.search(desc, k=k, model=model, exclude=like)
    else:
        from motionlib.video import probe

        probe(video)
        from motionlib.catalog import search_clip

        hits, notes = search_clip(lib, video, k=k, model=model, load=lambda name: load(name, memory), guard=fitting)
        for note in notes:
            warn(note)
    data = [{"name": r.name, "score": round(float(s), 4), "model": r.model_name, "tags": r.tags} for r, s in hits]

    def human():
        if not data:
            out.print("no stored motions to compare with")
            return
        t = Table("name", "similarity", "model", "tags")
        for d in data:
            t.add_row(printable(d["name"]), f"{d['score']:.3f}", d["model"], printable(", ".join(d["tags"])))
        out.print(t)

    emit(data, human)


@app.command("list")
def list_(
    tag: Optional[str] = typer.Option(None, "--tag", "-t"),
    model: Optional[str] = typer.Option(None, "--model", "-m"),
):
    """List stored motions, by name."""
    rows = state.library().list(tag=tag, model=model)
    data = [r.listing() for r in rows]

    def human():
        if not data:
            out.print("no motions yet: `motionlib learn CLIP --name NAME`")
            return
        columns(("name", "model", "source", "size", "tags", "created"),
                [(d["name"], d["model"], d["source"] or "", f"{d['bytes'] / 1e6:.2f} MB", ", ".join(d["tags"]),
                  d["created_at"][:19]) for d in data])

    emit(data, human)


app.command("ls", help="Alias of list.")(list_)


UNSET = {"check_score": "not checked (learn --check)",
         "weights_fingerprint": "unknown (learnt before motionlib recorded the weights)"}


@app.command()
def show(name: str = typer.Argument(...)):
    """Everything stored about a motion."""
    from motionlib.views import lineage_text, motion_details

    data = motion_details(state.library(), name)

    def human():
        t = Table(show_header=False)
        for key in ("name", "model_name", "family", "latent_frames", "latent_rows", "latent_cols", "source_name",
                    "source_fps", "source_frames", "blob_bytes", "tags", "created_at", "check_score",
                    "weights_fingerprint", "thumbnail_png", "thumbnail_gif"):
            value = data.get(key)
            if value is None and key in UNSET:
                t.add_row(key, UNSET[key])
            else:
                t.add_row(key, printable(value))
        derived = lineage_text(data["lineage"])
        if derived:
            t.add_row("derived", printable(derived))
        loss = data["loss"] or []
        if loss and isinstance(loss[0], list):
            t.add_row("AMF loss", f"{loss[0][0]:.4f} → {loss[-1][-1]:.4f} over {len(loss)} guided steps")
        facts = data["asset"]
        t.add_row("asset file", printable(facts["error"]) if "error" in facts else
                  f"format v{facts['format_version']}, {facts['steps']} steps ({facts['scheduler']}), guided at "
                  f"timesteps {', '.join(map(str, facts['guided_timesteps'] or []))}")
        if "error" not in facts:
            t.add_row("conditioning", {"i2v": "image-to-video (apply needs --image)"}.get(
                facts.get("conditioning", "t2v"), "text-to-video"))
        t.add_row("params", printable(json.dumps(data["params"], ensure_ascii=False)))
        t.add_row("renders", str(len(data["renders"])))
        for r in data["renders"]:  # newest first; an image-to-video render beside its first frame
            frame = f"  ← first frame sha256 {r['image_sha256'][:16]}…" if r.get("image_sha256") else ""
            t.add_row("", printable(f"{r['output']}{frame}"))
        out.print(t)

    emit(data, human)


@app.command()
def rm(names: List[str] = typer.Argument(..., help="Motions to remove.")):
    """Remove motions (their files go when no other motion shares them)."""
    state.library().remove_many(names)  # all or nothing
    emit({"removed": names}, lambda: say(f"removed {', '.join(names)}"))


@app.command()
def rename(old: str, new: str):
    """Rename a motion."""
    state.library().rename(old, new)
    emit({"renamed": old, "to": new}, lambda: say(f"renamed {old} → {new}"))


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": ["--help"]})
def tag(name: str = typer.Argument(...),
        changes: List[str] = typer.Argument(..., help="+TAG adds, -TAG removes (e.g. +sport -draft).")):
    """Add (+tag) or remove (-tag) tags."""
    add = [c[1:] for c in changes if c.startswith("+")]
    remove = [c[1:] for c in changes if c.startswith("-")]
    bad = [c for c in changes if c[:1] not in "+-" or len(c) < 2]
    if bad:
        raise UserError(f"tags must be written +TAG or -TAG, got {' '.join(bad)}")
    row = state.library().tag(name, add=add, remove=remove)
    emit({"name": name, "tags": row.tags}, lambda: say(f"{name}: {', '.join(row.tags) or '(no tags)'}"))


@app.command()
def export(name: str, file: Path = typer.Argument(..., help="Destination file or folder."),
           force: bool = typer.Option(False, "--force", "-f", help="Overwrite FILE.")):
    """Copy a motion's asset file (safetensors, with its content hash) out of the library."""
    from motionlib.integrity import seal_file

    path = state.library().export(name, file, overwrite=force)
    sealed = seal_file(path)  # a motion stored in an older format leaves with its hash added
    emit({"name": name, "file": str(path), "sealed": sealed},
         lambda: say(f"exported {name} to {path}" + (" (upgraded to the current format, with its content "
                                                           "hash)" if sealed else "")))


@app.command("import")
def import_(file: Path = typer.Argument(..., help="A motion asset file (.safetensors)."),
            name: Optional[str] = typer.Option(None, "--name", "-n", help="Name in this library (default: file stem)."),
            force: bool = typer.Option(False, "--force", "-f")):
    """Import a motion asset file: its header, content hash and values are checked; nothing in it is executed."""
    from motionlib.catalog import import_motion

    name = name or file.stem
    with shown_warnings(file.name):
        row = import_motion(state.library(), file, name, force=force)
    emit({"name": row.name, "model": row.model_name},
         lambda: say(f"imported {row.name} ({row.model_name})"))


@app.command()
def doctor(repair: bool = typer.Option(False, "--repair", help="Remove orphans and temp files, rebuild the index."),
           weights: bool = typer.Option(False, "--weights", help="Also load the large models the motions use (hub "
                                        "ids, folders; on the CPU) to compare their weights; built-in models are always "
                                        "compared.")):
    """Check the library: orphan blobs (e.g. from a killed learn), corrupt or damaged files (checksums and each
    file's embedded content hash), stale index, and motions learnt with weights other than the installed ones."""
    from motionlib.integrity import check_file

    def installed(model_name: str, model_source: str) -> str:
        from motionlib.catalog import installed_weights  # torch loads only when a motion has a fingerprint

        return installed_weights(model_name, model_source, load_large=weights)

    report = state.library().doctor(repair=repair, check_content=check_file, installed_weights=installed)
    data = {"ok": report.ok, "problems": report.problems(), "notes": report.notes(), "repaired": report.repaired,
            "skipped": report.skipped}
    emit(data, lambda: [say(line) for line in str(report).splitlines()])
    if report.needs_attention or (report.problems() and not repair):
        raise typer.Exit(1)


@app.command()
def models():
    """Known models and presets, and which run offline."""
    from motionlib.models import known_models, shapes_available
    from motionlib.models.spec import adapter_module

    data = []
    for name, s in known_models().items():
        offline = (shapes_available(name) if name in ("shapes", "shapes-i2v") else s.source.startswith("builtin:")) \
            or _hf_cached(s.source)
        data.append({"name": name, "family": adapter_module(s.embedding), "embedding": s.embedding,
                     "source": s.source, "grid": list(s.grid), "conditioning": s.conditioning,
                     "frames": s.num_frames, "size": f"{s.height}x{s.width}", "offline": offline,
                     "description": s.description, "default": name == default_model()})

    def human():
        t = Table("name", "family", "embedding", "input", "frames", "size", "offline", "description")
        for d in data:
            t.add_row(d["name"] + (" (default)" if d["default"] else ""), d["family"], d["embedding"],
                      "text + image" if d["conditioning"] == "i2v" else "text", str(d["frames"]),
                      d["size"], "yes" if d["offline"] else "needs download", d["description"])
        out.print(t)

    emit(data, human)


def _hf_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str)
    except Exception:
        return False

