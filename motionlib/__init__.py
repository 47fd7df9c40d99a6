"""motionlib: learn the motion of a reference video once (DiTFlow ρ-optimisation), reuse it zero-shot."""

__version__ = "0.1.0"
