"""What a user sees of a motion, as plain data: one view for `motionlib show` and the web API.

(The list view is ``MotionSummary.listing`` in motionlib.store, the one shape of `list --json` and
``/api/motions``.) Nothing here imports torch: the asset file's facts are read from its header.
"""

from __future__ import annotations

from .errors import MotionlibError

__all__ = ["motion_details", "asset_facts", "lineage_text"]


def motion_details(lib, name: str) -> dict:
    """Everything `show` prints about a motion (`show --json`, and the web API's motion)."""
    row = lib.get(name)
    data = row.summary()
    data["thumbnail_png"] = str(lib.thumb_path(row, "png"))
    data["thumbnail_gif"] = str(lib.thumb_path(row, "gif"))
    data["params"] = row.params
    data["loss"] = row.loss
    data["lineage"] = lib.lineage(row)  # None for a learnt motion
    data["renders"] = [{"id": r.id, "prompt": r.prompt, "output": r.output_path, "seed": r.seed,
                        "seconds": r.seconds, "image_sha256": r.image_sha256}
                       for r in lib.renders(name, limit=10)]
    data.pop("params_json", None)
    data.pop("loss_json", None)
    data["asset"] = asset_facts(lib, name)
    return data


def asset_facts(lib, name: str) -> dict:
    """What the asset file's header says that the catalogue row does not (read without torch)."""
    from motionlib.integrity import read_header

    try:
        meta = read_header(lib.asset_path(name, verify=False)).meta
    except MotionlibError as e:  # missing or damaged file: show still shows the row
        return {"error": str(e)}
    if meta is None:
        return {"error": "not a motionlib motion (no motionlib metadata)"}
    return {"format_version": meta.get("version"), "guided_timesteps": meta.get("timesteps"),
            "steps": meta.get("steps"), "scheduler": (meta.get("scheduler") or {}).get("name"),
            # image-to-video motions say so in their spec; every other motion is text-to-video
            "conditioning": (meta.get("spec") or {}).get("conditioning", "t2v")}


def _operation(op: dict) -> str:
    kind = str(op.get("op", "?"))
    return f"mirror {op.get('axis', '?')}" if kind == "mirror" else kind


def _parent(p: dict) -> str:
    name = f"'{p.get('name')}'"
    if p.get("removed"):
        return f"{name} (removed)"
    if p.get("current") and p.get("current") != p.get("name"):
        return f"{name} (now '{p['current']}')"
    return name


def lineage_text(lineage: dict | None) -> str | None:
    """One line saying how a motion was derived ("mirror x, reverse of 'left'", "blend 0.5 × 'left' + 0.5 × 'up'
    (global parts)"), from ``Library.lineage``; None for a learnt motion."""
    if not lineage:
        return None
    ops = [o for o in lineage.get("operations") or [] if isinstance(o, dict)]
    parents = [p for p in lineage.get("parents") or [] if isinstance(p, dict)]
    blends = [o for o in ops if o.get("op") == "blend"]
    if blends:
        parts = [f"{p.get('weight', '?')} × {_parent(p)}" for p in parents]
        whole = blends[0].get("part", "full") == "full"  # blends made before --part summed the full fields
        return "blend " + " + ".join(parts) + ("" if whole else " (global parts)")
    return f"{', '.join(_operation(o) for o in ops)} of {', '.join(_parent(p) for p in parents)}"
