"""Guard against diffusers versions whose CogVideoX internals motionlib has not been tested with."""

from __future__ import annotations

TESTED_DIFFUSERS = (">=0.42", "<0.43")


def _parse(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def check_diffusers(version: str | None = None) -> str:
    """Return the installed diffusers version, or raise a one-line error outside the tested range."""
    if version is None:
        import diffusers

        version = diffusers.__version__
    v = _parse(version)
    if not ((0, 42) <= v[:2] < (0, 43)):
        from .errors import ModelError

        raise ModelError(
            f"motionlib is tested with diffusers {','.join(TESTED_DIFFUSERS)} but found {version}: "
            f"install a tested version with: pip install 'diffusers{','.join(TESTED_DIFFUSERS)}'"
        )
    return version
