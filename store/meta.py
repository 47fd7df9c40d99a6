"""A motion's meta (the dict ``add_motion`` and an import's validator give) turned into catalogue columns.

Keys in ``COLUMN_META`` become ``Motion`` columns, coerced to their types; ``REQUIRED_META`` must be
there; ``params`` (the learn parameters) and every other key are kept as JSON in ``params_json``;
``loss`` (per guided step, per optimisation step) in ``loss_json``; ``lineage`` (an edited motion's
operations and parents, motionlib.edit) in ``lineage_json``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any, Mapping

from motionlib.models.spec import EMBEDDINGS as FAMILIES  # the values of the catalogue column "family" (models' embeddings)

from .errors import LibraryError

__all__ = ["COLUMN_META", "REQUIRED_META", "meta_to_columns"]

#: meta keys that become Motion columns, with their types
COLUMN_META: dict[str, type] = {
    "model_name": str, "model_source": str, "config_hash": str, "family": str,
    "latent_frames": int, "latent_rows": int, "latent_cols": int,
    "source_sha256": str, "source_name": str, "source_fps": float, "source_frames": int,
    "source_width": int, "source_height": int, "descriptor_version": int, "created_at": datetime,
    "check_score": float, "weights_fingerprint": str,
}
REQUIRED_META = ("model_name", "family", "latent_frames", "latent_rows", "latent_cols")


def _coerce(key: str, value: Any, typ: type) -> Any:
    if value is None:
        return None
    try:
        if typ is datetime:
            return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if typ is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise LibraryError(f"meta key '{key}' should be {typ.__name__}, got {value!r}") from None


def _numpy():
    """numpy if something imported it already (then a value may be a numpy one), else None: the
    catalogue commands never import it themselves."""
    return sys.modules.get("numpy")


def _float_lists(obj: Any) -> Any:
    """Loss history as nested lists of floats (per guided step, per optimisation step)."""
    np = _numpy()
    if np is not None and isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [_float_lists(x) for x in obj]
    return float(obj)


def _jsonable(obj: Any) -> Any:
    np = _numpy()
    if np is not None and isinstance(obj, np.ndarray):
        return obj.tolist()
    if np is not None and isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path, datetime)):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in params_json")


def meta_to_columns(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The Motion columns of ``meta`` (``params_json`` and ``loss_json`` included); LibraryError says what
    is wrong with it (not a dict, a required key missing, a value of the wrong type, an unknown family,
    parameters that are not JSON)."""
    if not isinstance(meta, Mapping):
        raise LibraryError(f"meta must be a dict, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_META if meta.get(k) is None]
    if missing:
        raise LibraryError(f"meta is missing required key(s): {', '.join(missing)}")
    cols: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key, value in meta.items():
        if key in COLUMN_META:
            cols[key] = _coerce(key, value, COLUMN_META[key])
        elif key not in ("params", "loss", "lineage"):
            params[key] = value  # unknown (or library-owned) keys are kept, in params_json
    if cols["family"] not in FAMILIES:
        raise LibraryError(f"meta 'family' must be one of {', '.join(FAMILIES)}, got {cols['family']!r}")
    if cols.get("source_name"):
        cols["source_name"] = PureWindowsPath(cols["source_name"]).name  # file name only
    extra = meta.get("params") or {}
    if not isinstance(extra, Mapping):
        raise LibraryError("meta 'params' must be a dict of the learn parameters")
    params.update(extra)
    loss = meta.get("loss")
    loss = [] if loss is None else _float_lists(loss)
    try:
        cols["params_json"] = json.dumps(params, sort_keys=True, default=_jsonable)
    except (TypeError, ValueError) as exc:
        raise LibraryError(f"meta params cannot be stored as JSON: {exc}") from None
    cols["loss_json"] = json.dumps(loss)
    lineage = meta.get("lineage")
    if lineage is not None:
        if not isinstance(lineage, Mapping) or not isinstance(lineage.get("parents"), list):
            raise LibraryError("meta 'lineage' must be a dict with a list of parents")
        try:
            cols["lineage_json"] = json.dumps(lineage, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise LibraryError(f"meta lineage cannot be stored as JSON: {exc}") from None
    return cols
