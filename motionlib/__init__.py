"""motionlib: learn the motion of a reference video once (DiTFlow ρ-optimisation), reuse it zero-shot."""

__version__ = "0.1.0"

__all__ = ["attach", "blend"]


def __getattr__(name: str):
    if name == "attach":  # torch-backed: imported on first use, so `import motionlib` stays light
        from .attach import attach

        return attach
    if name == "blend":  # motionlib.edit.blend: a weighted blend of stored motions (issue 28)
        from .edit import blend

        return blend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
