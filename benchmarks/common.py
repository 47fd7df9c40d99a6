"""Shared helpers: side-by-side timing, subprocess peak memory, results and their tables."""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
THREADS_ENV = "MOTIONLIB_BENCH_THREADS"


def bench_threads() -> int:
    """torch/faiss threads for timed work: $MOTIONLIB_BENCH_THREADS (``python -m benchmarks
    --threads``), else 1 — on a 2-core machine two threads made A/A pair ratios spread to 1.36."""
    return int(os.environ.get(THREADS_ENV) or 1)


def setup_threads(n: int | None = None) -> int:
    import torch

    n = n or bench_threads()
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except Exception:
        pass
    return n


@contextmanager
def every_core():
    """Untimed heavy work (demo-quality renders) on every core; the timing threads after."""
    setup_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        setup_threads()


def log(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


# --- configuration ------------------------------------------------------------------------------
@dataclass
class Config:
    quick: bool = False

    @property
    def pairs(self) -> int:
        return 5 if self.quick else 7

    @property
    def pairs_fine(self) -> int:
        """For effects of a few percent (apply vs generate)."""
        return 5 if self.quick else 7

    @property
    def pairs_headline(self) -> int:
        """For a goal of a few percent."""
        return 5 if self.quick else 15


# --- timing ---------------------------------------------------------------------------------------
@dataclass
class Pair:
    """A/B measured alternately: the median of the per-pair ratios, plus context."""

    ratio: float
    lo: float  # smallest per-pair ratio
    hi: float  # largest per-pair ratio
    a_s: float  # median seconds of A (context only)
    b_s: float  # median seconds of B (context only)
    n: int
    ta: list[float] = field(default_factory=list)  # per-pair seconds of A
    tb: list[float] = field(default_factory=list)  # per-pair seconds of B

    def text(self, digits: int = 3) -> str:
        return f"{self.ratio:.{digits}f} (pairs {self.lo:.{digits}f}-{self.hi:.{digits}f}, n={self.n})"

    @classmethod
    def from_times(cls, ta: list[float], tb: list[float]) -> "Pair":
        """From per-pair seconds of A and B (same length, pair i = ta[i], tb[i])."""
        ratios = [x / y for x, y in zip(ta, tb)]
        return cls(statistics.median(ratios), min(ratios), max(ratios),
                   statistics.median(ta), statistics.median(tb), len(ratios), list(ta), list(tb))


def _timed(f: Callable[[], object]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def paired(a: Callable[[], object], b: Callable[[], object], n: int = 5, warmup: int = 1) -> Pair:
    """Alternate A and B, n pairs (after `warmup` unmeasured pairs); ratio = median of t_A / t_B per pair.

    Wall-clock time. The order inside a pair alternates (A B, B A, A B, ...) so that neither side
    always runs first (warm caches, drift).
    """
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for i in range(n):
        if i % 2 == 0:
            ta.append(_timed(a))
            tb.append(_timed(b))
        else:
            tb.append(_timed(b))
            ta.append(_timed(a))
    return Pair.from_times(ta, tb)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


# --- peak memory ----------------------------------------------------------------------------------
def peak_memory(case: str, **args) -> dict:
    """Peak RSS increase (bytes) of `case` run in a fresh subprocess (see benchmarks.memprobe)."""
    env = dict(os.environ)
    env[THREADS_ENV] = str(os.cpu_count() or 1)  # memory does not depend on threads; time does not count
    # Fixed mmap threshold: big buffers are mmapped and returned to the OS on free, so RSS follows
    # live memory instead of glibc keeping freed setup memory resident (which would hide peaks).
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")

    def probe(extra: dict) -> dict:
        cmd = [sys.executable, "-m", "benchmarks.memprobe", json.dumps({"case": case, **args, **extra})]
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"memory probe {case} {args} failed:\n{out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    res = probe({})
    if res["method"] == "ru_maxrss":  # no clear_refs: subtract a setup-only baseline process
        base = probe({"baseline": True})
        res["peak_bytes"] = max(0, res["peak_bytes"] - base["peak_bytes"])
    return res


# --- results --------------------------------------------------------------------------------------
@dataclass
class Section:
    key: str
    title: str
    goal: str
    status: str = "n/a"  # "met", "missed", "n/a", "not measured"
    headline: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)  # further tables


def fmt_bytes(n: float) -> str:
    n = float(n)
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= k:
            return f"{n / k:.2f} {unit}"
    return f"{n:.0f} B"


def fmt_s(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} us"


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(esc(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


# --- shared fixtures ------------------------------------------------------------------------------
_MODELS: dict = {}


def model(name: str):
    """A loaded model (CPU, fp32), cached for the run."""
    if name not in _MODELS:
        from motionlib.models import load_model

        _MODELS[name] = load_model(name, device="cpu")
    return _MODELS[name]


def demo_model_name() -> str:
    """The bundled demo model when the registry has it and its weights are installed, else tiny-5b."""
    import motionlib.models as models

    if "shapes" not in models.known_models():
        return "tiny-5b"
    available = getattr(models, "shapes_available", None)
    return "shapes" if available is None or available() else "tiny-5b"


def disc_video(spec, seed: int = 0):
    """[F, 3, H, W] in [-1, 1]: a moving disc sized for `spec`."""
    import torch

    from motionlib.synthetic import moving_disc

    frames = moving_disc(spec.num_frames, spec.height, spec.width,
                         velocity=(max(1.0, spec.width / 48), 0.0), radius=max(3, spec.height // 6),
                         background="texture", seed=seed)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def run_cli(argv: list[str]) -> tuple[int | None, str, str]:
    """The motionlib CLI in-process: (exit code, None when an exception escaped; stdout; stderr)."""
    import contextlib
    import io

    from motionlib.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code: int | None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:  # noqa: BLE001 - an escaped exception is what the fuzzers count
            code = None
            err.write(f"Traceback (escaped): {type(e).__name__}: {e}\n")
    return code, out.getvalue(), err.getvalue()
