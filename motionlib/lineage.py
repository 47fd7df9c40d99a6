"""The lineage an edited motion records in its asset header (motionlib.edit, issue 28): plain data, checked.

``{"operations": [{"op": "mirror", "axis": "x"}, {"op": "reverse"}], "parents": [{"name": ..., "blob_sha256":
..., "created_at": ..., "weight": ...}]}``: one to 16 operations and parents, each a table of short strings,
numbers or short lists of numbers. A learnt motion has none (its header has no ``lineage`` key). Torch-free.
"""

from __future__ import annotations

__all__ = ["check_lineage"]


def check_lineage(lineage) -> None:
    """An edited motion's lineage (motionlib.edit) is plain data of bounded size: operations and parents,
    each a table of short strings, numbers or lists of numbers."""
    if lineage is None:
        return
    if not isinstance(lineage, dict) or set(lineage) != {"operations", "parents"}:
        raise ValueError("lineage must be a table of operations and parents")
    for key in ("operations", "parents"):
        items = lineage[key]
        if not isinstance(items, list) or not 1 <= len(items) <= 16 or not all(isinstance(x, dict) for x in items):
            raise ValueError(f"lineage {key} must be a list of 1 to 16 tables")
        for item in items:
            for k, v in item.items():
                values = v if isinstance(v, list) else [v]
                if not isinstance(k, str) or len(k) > 32 or len(values) > 16 or not all(
                        v is None or (isinstance(v, str) and len(v) <= 200)
                        or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
                    raise ValueError(f"lineage {key} holds an entry that is not a short string or number")
