"""The commands that edit stored motions without learning again: edit (mirror, reverse) and blend.

Thin over ``motionlib.catalog.edit_motion`` / ``blend_motions`` (``motionlib.edit`` does the maths). Names
and weights are checked before any asset is read; torch is imported inside the commands.
"""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.text import Text

from .core import UserError, app, emit, out, printable, state

EXACTNESS = (
    "Exact for the ρ shifts, the reference AMF and its confidence, and the previews (an edit applied twice gives "
    "the original back bit for bit). Not exact: a VAE latent used for KV injection mirrors only approximately "
    "(VAEs are not mirror-symmetric; the shapes codec's latent is exact: its 2x2 sub-pixel channels are swapped "
    "too), and a temporally compressed latent (CogVideoX, Wan) reverses only approximately; the model itself "
    "is not mirror- or time-symmetric, so renders follow the edit approximately. Only motions learnt with "
    "--parametrisation shift or shared-shift can be edited ('table' ρ cannot be transformed).")


def _stored(row, started_from: str) -> dict:
    lib = state.library()
    return {"name": row.name, "model": row.model_name, "from": started_from, "bytes": row.blob_bytes,
            "thumbnail": str(lib.thumb_path(row, "png")), "searchable": row.descriptor is not None,
            "lineage": lib.lineage(row)}


def _report(data: dict, verb: str) -> None:
    from motionlib.views import lineage_text

    emit(data, lambda: out.print(Text.assemble(
        f"{verb} ", (printable(data["name"]), "bold"), ": ", printable(lineage_text(data["lineage"]) or ""),
        f", {data['bytes'] / 1e6:.2f} MB\nthumbnail: ", printable(data["thumbnail"]),
        "" if data["searchable"] else "\nnot searchable: its reference AMF shows no motion"), highlight=False))


@app.command(help="Mirror and/or reverse a stored motion into a new one, without learning again.\n\n" + EXACTNESS)
def edit(
    source: str = typer.Argument(..., help="Stored motion to edit (left unchanged)."),
    as_: str = typer.Option(..., "--as", help="Name of the new motion."),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="'x': mirror left-right; 'y': mirror top-bottom."),
    reverse: bool = typer.Option(False, "--reverse", help="Play the motion backwards (the frame order, not the denoising steps)."),
    tag: List[str] = typer.Option([], "--tag", "-t", help="Tag the new motion (repeatable)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a motion of the same name."),
):
    if mirror is not None and mirror not in ("x", "y"):
        raise UserError(f"--mirror must be 'x' or 'y', got {mirror!r}")
    if mirror is None and not reverse:
        raise UserError("nothing to do: give --mirror x, --mirror y and/or --reverse")
    lib = state.library()
    lib.check_new_name(as_, force=force)
    lib.get(source)  # unknown motion: said before torch loads
    from motionlib.catalog import edit_motion

    row = edit_motion(lib, source, as_, mirror=mirror, reverse=reverse, tags=tag, force=force)
    _report(_stored(row, source), "stored")


def parse_weights(text: str, count: int) -> list[float]:
    """``--weights 0.5,0.5`` as floats, one per motion (their values are checked by motionlib.edit.check_weights)."""
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise UserError(f"--weights must be numbers separated by commas, e.g. 0.5,0.5, got {text!r}") from None
    if len(weights) != count:
        raise UserError(f"--weights needs one number per motion: {count} motions, {len(weights)} weights")
    return weights


@app.command(help="Blend two or more stored motions into a new one, without learning again.\n\nTheir ρ shifts are "
                  "summed per guided timestep with the weights (used as given, not normalised; stored as float16). "
                  "By default (--part global) each motion gives only its global part: per frame, the mean offset "
                  "of the frame's tokens, a rigid translation of the frame; --part full sums the whole per-token "
                  "fields, whose local parts interfere (on shapes, blend(left, up) moved up-left with cosine 0.81 "
                  "from the global parts, 0.45 from the full fields: docs/editing.md). "
                  "The motions must come from the same model, geometry, parametrisation and guided timesteps, and "
                  "be learnt with --parametrisation shift or shared-shift. Not exact: the blend's reference AMF (for "
                  "search and the thumbnail) is the weighted sum of the parents' displacements, rounded, a stand-in "
                  "and not the AMF of any clip; its previews are a cross-fade of the parents'. KV injection is off for "
                  "a blend (injecting one parent's reference would pull the render to that parent's motion); the file "
                  "keeps the first parent's latent. With --part full, weights 1,0 give the first motion itself.")
def blend(
    motions: List[str] = typer.Argument(..., help="Two or more stored motions (left unchanged)."),
    as_: str = typer.Option(..., "--as", help="Name of the new motion."),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per motion, e.g. 0.5,0.5 (default: equal, summing to 1)."),
    part: str = typer.Option("global", "--part", help="What of each motion is summed: 'global' (each frame's mean "
                             "offset, default) or 'full' (the whole per-token shift field)."),
    tag: List[str] = typer.Option([], "--tag", "-t", help="Tag the new motion (repeatable)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a motion of the same name."),
):
    if len(motions) < 2:
        raise UserError("blend needs two or more motions")
    if len(set(motions)) != len(motions):
        raise UserError("name each motion once (give one a larger weight instead)")
    w = None if weights is None else parse_weights(weights, len(motions))
    lib = state.library()
    lib.check_new_name(as_, force=force)
    for m in motions:
        lib.get(m)  # unknown motion: said before torch loads
    from motionlib.catalog import blend_motions

    row = blend_motions(lib, motions, as_, weights=w, part=part, tags=tag, force=force)
    _report(_stored(row, ", ".join(motions)), "stored")
