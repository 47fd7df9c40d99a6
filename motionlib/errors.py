"""The one error family: everything motionlib raises on purpose derives from ``MotionlibError``.

The CLI (and the web app) turn these — and only these — into one-line messages; anything else is a
bug and shows its traceback. Each subclass lives next to the API that raises it (``AssetError`` in
motionlib.asset, ``VideoError`` in motionlib.video, ``LibraryError`` in motionlib.store.errors, …).
This module imports nothing heavy, so the store and the CLI can use it without torch.
"""

from __future__ import annotations

__all__ = ["MotionlibError", "ParameterError", "ModelError", "WeightsMissing", "UneditableMotion"]


class MotionlibError(Exception):
    """Base class of every error motionlib raises on purpose; its message is one line for the user."""


class ParameterError(MotionlibError, ValueError):
    """A parameter value the engine cannot use (names the parameter and the bad value)."""


class ModelError(MotionlibError, RuntimeError):
    """A model that cannot be loaded or run here: unknown, weights missing or offline, unsupported version."""


class WeightsMissing(ModelError, FileNotFoundError):
    """Model weights that are not on this machine (names the file or source and how to get them)."""


class UneditableMotion(ParameterError):
    """A motion edit that cannot be made (motionlib.edit): a ``table`` motion, incompatible motions to blend,
    bad weights or axis; the message says why (for ``table``: learn again with ``--parametrisation shift``)."""
