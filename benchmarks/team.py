"""Section: team scale — apply-batch throughput with 2 Ray workers vs 1, and catalogue operations on
PostgreSQL vs SQLite."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Config, Section, demo_model_name, disc_video, fmt_s, log, model, paired

GOAL = 1.7
FULL_STEPS = 100  # denoising steps per job in a full run


def _store_motion(home: Path, name: str) -> None:
    from motionlib.catalog import store_asset
    from motionlib.learn import learn
    from motionlib.store import Library

    m = model(name)
    # the motion's quality does not matter here, only its size and the render cost: a short learn
    asset = learn(m, disc_video(m.spec), prompt="a red disc", seed=0, opt_steps=1).asset
    with Library(home, db_url=f"sqlite:///{home / 'motionlib.db'}") as lib:
        store_asset(lib, asset, "bench")


def _batch(home: Path, out: Path, n_jobs: int, workers: int, steps: int | None, tag: str) -> tuple[float, list]:
    """Wall seconds of one apply-batch run (worker start and model loads included) and its results."""
    from motionlib.batch import BatchJob, run_batch

    jobs = [BatchJob(line=i + 1, motion="bench", prompt="a blue disc on a dark background", seed=i,
                     output=out / f"{tag}-{i}.mp4", steps=steps) for i in range(n_jobs)]
    t0 = time.perf_counter()
    results = run_batch(jobs, home=str(home), db_url=f"sqlite:///{home / 'motionlib.db'}", workers=workers)
    wall = time.perf_counter() - t0
    bad = [r.error for r in results if r.status != "done"]
    if bad:
        raise RuntimeError(f"batch jobs failed: {bad[0]}")
    return wall, results


def batch_rows(sec: Section, cfg: Config) -> None:
    try:
        import ray
    except ImportError:
        sec.rows.append(["apply-batch 2 workers / 1 worker", "not measured: Ray is not installed "
                         "(pip install -e '.[batch]')", "", ""])
        return
    # quick (CI): tiny-5b, short jobs, only to keep the code path alive; full: the demo model with enough
    # denoising steps that a job takes over 5 s on one idle worker (the job size; at the model's own
    # 30 steps a job takes about 2 s there) and enough jobs that worker start-up does not dominate
    name = "tiny-5b" if cfg.quick else demo_model_name()
    n_jobs = 2 if cfg.quick else 8
    steps = 2 if cfg.quick else FULL_STEPS
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        home, out = Path(tmp) / "home", Path(tmp) / "out"
        log(f"team: learning a motion on {name}")
        _store_motion(home, name)
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        try:
            order = [1, 2] if cfg.quick else [1, 2, 2, 1]  # alternate which runs first
            walls: dict[int, list[float]] = {1: [], 2: []}
            job_s: dict[int, list[float]] = {1: [], 2: []}
            for k, w in enumerate(order):
                log(f"team: apply-batch, {n_jobs} jobs on {w} worker(s)")
                wall, results = _batch(home, out, n_jobs, w, steps, f"r{k}w{w}")
                walls[w].append(wall)
                job_s[w] += [r.seconds for r in results]
        finally:
            ray.shutdown()
    w1, w2 = sum(walls[1]), sum(walls[2])
    ratio = w1 / w2
    j1, j2 = float(np.median(job_s[1])), float(np.median(job_s[2]))
    sec.rows.append([f"apply-batch throughput, 2 workers / 1 worker ({n_jobs} jobs, {name})", f"{ratio:.2f}",
                     f"1 worker: {fmt_s(w1 / len(walls[1]))} a run, median job {fmt_s(j1)}",
                     f"2 workers: {fmt_s(w2 / len(walls[2]))} a run, median job {fmt_s(j2)}"])
    met = j1 >= 5 and ratio >= GOAL
    sec.extra["batch"] = dict(ratio=ratio, job_1=j1, job_2=j2)
    sec.headline = (f"apply-batch 2 workers vs 1: {ratio:.2f}x throughput (goal >= {GOAL}x for jobs >= 5 s; "
                    f"median job {j1:.1f} s on 1 worker)")
    sec.status = "met" if met else ("missed" if j1 >= 5 else "n/a")
    sec.notes.append(f"Throughput = wall time of the whole apply-batch run (Ray actors started, model loaded once "
                     f"per worker, {n_jobs} jobs) on a local Ray cluster of {cores} CPUs; 1 worker gets "
                     f"{cores} torch threads, each of 2 workers {max(1, cores // 2)}. Runs alternate "
                     f"({'/'.join(map(str, order))} workers) and the ratio is of the summed walls.")
    if j1 > 1.5 * j2:
        sec.notes.append(f"Read the ratio with care: each job took {j1 / j2:.1f}x longer on the single 2-thread "
                         "worker than on a 1-thread worker of the pair. On a machine loaded by other work a "
                         "multi-threaded torch process stalls on its slowest thread, so the ratio overstates "
                         "what an idle 2-core machine gives (at most about 2x).")
    sec.notes.append("On GPUs apply-batch starts one worker per GPU (each holds its own copy of the model), so "
                     "throughput scales with the number of GPUs as long as jobs outnumber them; the per-worker "
                     "start-up (model load) is paid once per worker, not per job.")


def _fill(lib, n: int, tmp: Path) -> None:
    rng = np.random.default_rng(0)
    meta = dict(model_name="tiny-5b", family="rope", latent_frames=3, latent_rows=4, latent_cols=6)
    for i in range(n):
        src = tmp / f"a{i}.bin"
        src.write_bytes(f"asset {i}".encode())
        lib.add_motion(f"m{i:04d}", asset_file=src, meta=meta, descriptor=rng.standard_normal(64))


def catalogue_rows(sec: Section, cfg: Config) -> None:
    from motionlib.store import Library
    from motionlib.store.throwaway import PostgresUnavailable, ThrowawayPostgres

    try:
        pg = ThrowawayPostgres().__enter__()
    except PostgresUnavailable as exc:
        sec.tables.append((["operation", "PostgreSQL / SQLite"], [["all", f"not measured: {exc}"]]))
        return
    n = 30 if cfg.quick else 300
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cat-") as tmp:
            tmp = Path(tmp)
            libs = {"pg": Library(tmp / "pg", db_url=pg.create_database()),
                    "lite": Library(tmp / "lite", db_url=f"sqlite:///{tmp / 'lite' / 'motionlib.db'}")}
            log(f"team: {n} motions in each catalogue")
            for lib in libs.values():
                _fill(lib, n, tmp)
            src = tmp / "new.bin"
            src.write_bytes(b"a new asset")
            meta = dict(model_name="tiny-5b", family="rope", latent_frames=3, latent_rows=4, latent_cols=6)
            q = np.random.default_rng(1).standard_normal(64)

            def add_rm(lib):
                lib.add_motion("new", asset_file=src, meta=meta, descriptor=q)
                lib.remove("new")

            def rename_back(lib):
                lib.rename("m0001", "renamed")
                lib.rename("renamed", "m0001")

            ops = [("list (all motions)", lambda lib: lib.list()),
                   ("show (get one motion)", lambda lib: lib.get("m0007")),
                   ("search (k=5)", lambda lib: lib.search(q, k=5)),
                   ("tag +x -x", lambda lib: (lib.tag("m0003", add=["x"]), lib.tag("m0003", remove=["x"]))),
                   ("rename and back", rename_back),
                   ("add + rm (blob written and collected)", add_rm)]
            for label, op in ops:
                log(f"team: catalogue {label}")
                p = paired(lambda: op(libs["pg"]), lambda: op(libs["lite"]), n=cfg.pairs)
                rows.append([label, p.text(2), fmt_s(p.a_s), fmt_s(p.b_s)])
            for lib in libs.values():
                lib.close()
    finally:
        pg.stop()
    sec.tables.append((["operation", "PostgreSQL / SQLite", "PostgreSQL", "SQLite"], rows))
    sec.notes.append(f"Catalogue operations with {n} motions through the same Library API: PostgreSQL 15 (a "
                     "throwaway local server on 127.0.0.1 started with fsync and synchronous_commit off, so its "
                     "commits are cheaper than on a production server; the ratio is mostly the client/server "
                     "round trips) against SQLite in WAL mode in the library home.")


def run(cfg: Config) -> Section:
    sec = Section("team", "team scale: apply-batch workers, PostgreSQL catalogue",
                  f"apply-batch with 2 CPU workers >= {GOAL}x one worker for jobs >= 5 s; catalogue operations on "
                  "PostgreSQL reported against SQLite")
    sec.headers = ["case", "ratio", "context", "context"]
    batch_rows(sec, cfg)
    catalogue_rows(sec, cfg)
    if not sec.headline:
        sec.headline = "catalogue operations measured; apply-batch not measured"
    return sec
