"""CLI start-up: whole-process time of the catalogue commands against ``python -c "import sqlmodel"``.

Each command runs as a fresh ``python -m motionlib.cli ...`` process (stdout to a pipe that is read and
dropped), alternating with the baseline process, so the ratio shows what motionlib adds on top of the
database layer every catalogue command needs anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import ROOT, Config, Section, fmt_s, log, paired

GOAL_RATIO = 2.0  # each command <= 2x `import sqlmodel`
GOAL_SCALE = 1.5  # list of 10,000 motions <= 1.5x list of one
BIG = 10_000


def _process(args: list[str], env: dict | None = None):
    cmd = [sys.executable, *args]

    def run() -> None:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {out.stderr.decode()[-1000:]}")
    return run


def _cli(home: Path, *args: str):
    env = {**os.environ, "MOTIONLIB_HOME": str(home)}
    env.pop("MOTIONLIB_DB_URL", None)
    return _process(["-m", "motionlib.cli", *args], env)


def _learnt_motion(home: Path, name: str) -> None:
    """One real motion (tiny-5b learn: asset file, thumbnails, descriptor) stored in the library at ``home``."""
    from motionlib.catalog import store_asset
    from motionlib.learn import learn
    from motionlib.store import Library

    from .common import disc_video, model

    m = model("tiny-5b")
    with Library(home) as lib:
        store_asset(lib, learn(m, disc_video(m.spec), seed=0).asset, name)


def run(cfg: Config) -> Section:
    from .catalogue import bulk_library

    sec = Section("startup", "CLI start-up", f"--help, list, show: whole process <= {GOAL_RATIO:g}x "
                  f"`python -c \"import sqlmodel\"`; list of {BIG:,} motions <= {GOAL_SCALE:g}x list of one")
    n = cfg.pairs
    with tempfile.TemporaryDirectory(prefix="motionlib-bench-") as tmp:
        small, big = Path(tmp) / "one", Path(tmp) / "big"
        log("startup: a library of one learnt motion, and one of 10,000 (bulk rows) plus that motion")
        _learnt_motion(small, "walk")
        bulk_library(big, BIG - 1).close()
        _learnt_motion(big, "walk")
        baseline = _process(["-c", "import sqlmodel"])
        cases = [("motionlib --help", _cli(small, "--help")),
                 ("motionlib list (1 motion)", _cli(small, "list")),
                 (f"motionlib list ({BIG:,} motions)", _cli(big, "list")),
                 ("motionlib show NAME", _cli(small, "show", "walk")),
                 (f"motionlib --json list ({BIG:,} motions)", _cli(big, "--json", "list"))]
        pairs = {}
        for label, case in cases:
            log(f"startup: {label} vs import sqlmodel, {n} pairs")
            pairs[label] = paired(case, baseline, n=n)
        log(f"startup: list of {BIG:,} vs list of one, {n} pairs")
        scale = paired(_cli(big, "list"), _cli(small, "list"), n=n)

    sec.headers = ["process", "ratio to `import sqlmodel` (side by side)", "goal", "process (context)",
                   "`import sqlmodel` (context)"]
    goals = {"motionlib --help", "motionlib list (1 motion)", f"motionlib list ({BIG:,} motions)",
             "motionlib show NAME"}
    for label, p in pairs.items():
        sec.rows.append([label, p.text(2), f"<= {GOAL_RATIO:g}" if label in goals else "-", fmt_s(p.a_s),
                         fmt_s(p.b_s)])
    sec.rows.append([f"motionlib list: {BIG:,} motions vs one", scale.text(2) + " (ratio of the two lists)",
                     f"<= {GOAL_SCALE:g}", fmt_s(scale.a_s), fmt_s(scale.b_s) + " (list of one)"])
    met = all(pairs[g].ratio <= GOAL_RATIO for g in goals) and scale.ratio <= GOAL_SCALE
    sec.status = "met" if met else "missed"
    sec.headline = (f"--help {pairs['motionlib --help'].ratio:.2f}x, list {pairs['motionlib list (1 motion)'].ratio:.2f}x "
                    f"({pairs[f'motionlib list ({BIG:,} motions)'].ratio:.2f}x with {BIG:,} motions), show "
                    f"{pairs['motionlib show NAME'].ratio:.2f}x `import sqlmodel`; list of {BIG:,} = "
                    f"{scale.ratio:.2f}x list of one")
    sec.notes.append("Whole process: `python -m motionlib.cli ARGS` started fresh each time, stdout and stderr "
                     "captured through pipes, as a script or `| less` sees it (list prints plain aligned columns; "
                     "--json prints plain JSON when stdout is not a terminal).")
    sec.notes.append("These commands import neither torch, diffusers, transformers, faiss nor numpy "
                     "(tests/test_startup.py checks sys.modules), and opening the library checks the schema with one "
                     "query on alembic_version: alembic is imported only to upgrade an older catalogue. `list` reads "
                     "its rows with two SQL queries on a plain connection (no ORM objects).")
    sec.notes.append(f"The {BIG:,}-motion library: rows bulk-inserted as in section 'catalogue' (no asset files), "
                     "plus the one learnt motion; `show` reads that motion's row, its renders and the asset "
                     "file's JSON header.")
    return sec
