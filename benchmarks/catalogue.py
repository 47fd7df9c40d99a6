"""Section 6: catalogue latency (list, show, add) with many motions, and the storing share of a learn."""

from __future__ import annotations

import json
import secrets
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from .common import Config, Section, fmt_s, log, model, paired

PARAMS = {"blocks": [20], "lr_start": 0.002, "lr_end": 0.001, "opt_steps": 5, "guided_fraction": 0.2,
          "temperature": 2.0, "inject": True, "inject_blocks": [0], "confidence": 0.0, "prompt": "",
          "negative_prompt": "", "seed": 0, "steps": 50, "guidance_scale": 6.0, "use_dynamic_cfg": True,
          "num_frames": 49, "height": 480, "width": 720}


def descriptors(n: int, seed: int = 0) -> np.ndarray:
    """n synthetic L2-normalised descriptors [n, DESCRIPTOR_DIM] float32."""
    from motionlib.descriptor import DESCRIPTOR_DIM

    x = np.random.default_rng(seed).standard_normal((n, DESCRIPTOR_DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bulk_library(home: Path, n: int, vecs: np.ndarray | None = None, start: int = 0):
    """A Library whose catalogue holds `n` rows inserted in bulk (one executemany through the SQLModel
    session; blob/thumbnail files are not created: list/show/search do not read them)."""
    from sqlalchemy import insert

    from motionlib.store import Library, Motion, MotionTag

    lib = Library(home)
    vecs = descriptors(n) if vecs is None else vecs
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    loss = json.dumps([[0.5, 0.4, 0.3, 0.25, 0.2]] * 10)
    params = json.dumps(PARAMS, sort_keys=True)
    rows = [dict(name=f"motion-{start + i:06d}", created_at=t0 + timedelta(seconds=i), model_name="cogvideox-5b",
                 model_source="THUDM/CogVideoX-5b", config_hash="0123456789abcdef", family="rope",
                 latent_frames=13, latent_rows=30, latent_cols=45, source_sha256=secrets.token_hex(32),
                 source_name=f"clip-{i}.mp4", source_fps=8.0, source_frames=49, source_width=720,
                 source_height=480, params_json=params, loss_json=loss, blob_sha256=secrets.token_hex(32),
                 blob_bytes=94_000_000, thumb_png=None, thumb_gif=None,
                 descriptor=vecs[i].astype("<f4").tobytes(), descriptor_version=lib.descriptor_version)
            for i in range(n)]
    with lib._write_session() as s:
        s.execute(insert(Motion), rows)
        s.commit()
        ids = {name: mid for mid, name in s.exec(Motion.__table__.select().with_only_columns(
            Motion.id, Motion.name)).all()}
        tags = [dict(motion_id=ids[r["name"]], tag=("waves" if i % 20 else "people")) for i, r in enumerate(rows)
                if i % 10 == 0]
        if tags:
            s.execute(insert(MotionTag), tags)
        s.commit()
    return lib


# --- list / show ------------------------------------------------------------------------------------
def cli_list(lib) -> list[dict]:
    """What `motionlib list` gathers (cli/main.py list_), without the printing."""
    return [{"name": r.name, "model": r.model_name, "frames": r.latent_frames, "bytes": r.blob_bytes,
             "tags": r.tags, "source": r.source_name, "created_at": r.created_at.isoformat()}
            for r in lib.list()]


def raw_list(db: Path) -> list[tuple]:
    """The same rows straight from sqlite3 (the floor for any catalogue list)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT m.name, m.model_name, m.latent_frames, m.blob_bytes, m.source_name, "
                           "m.created_at, group_concat(t.tag) FROM motions m LEFT JOIN motion_tags t "
                           "ON t.motion_id = m.id GROUP BY m.id ORDER BY m.name").fetchall()
    finally:
        con.close()
    return rows


def cli_show(lib, name: str) -> dict:
    """What `motionlib show NAME` gathers, without the printing."""
    from motionlib.cli.main import motion_details

    return motion_details(lib, name)


def raw_show(db: Path, name: str) -> dict:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        row = dict(con.execute("SELECT * FROM motions WHERE name = ?", (name,)).fetchone())
        row["params"] = json.loads(row["params_json"])
        row["loss"] = json.loads(row["loss_json"])
        row["tags"] = [t[0] for t in con.execute("SELECT tag FROM motion_tags WHERE motion_id = ?", (row["id"],))]
        row["renders"] = con.execute("SELECT prompt FROM renders WHERE motion_name = ? ORDER BY created_at DESC "
                                     "LIMIT 10", (name,)).fetchall()
        return row
    finally:
        con.close()


# --- add / learn share ------------------------------------------------------------------------------
def _dummy_asset(folder: Path, i: int) -> Path:
    p = folder / f"asset-{i}.bin"
    p.write_bytes(secrets.token_bytes(1024))
    return p


def _meta() -> dict:
    return {"model_name": "cogvideox-5b", "family": "rope", "latent_frames": 13, "latent_rows": 30,
            "latent_cols": 45, "params": PARAMS}


def _learn_share(cfg: Config, libs: dict, tmp: Path) -> dict:
    """Per learn: time of (read clip + learn + previews) and of store_asset, in libraries of several sizes."""
    from motionlib.catalog import previews, store_asset
    from motionlib.learn import learn
    from motionlib.synthetic import moving_disc
    from motionlib.video import read_video, write_video

    m = model("tiny-5b")
    s = m.spec
    clip = write_video(moving_disc(s.num_frames, s.height, s.width, velocity=(2.0, 0.0), background="texture"),
                       tmp / "clip.mp4")
    counter = iter(range(10**6))

    def learn_and_store(lib):
        i = next(counter)
        t0 = time.perf_counter()
        video, _ = read_video(clip, s.num_frames, s.height, s.width)
        asset = learn(m, video, prompt="a red disc", seed=i).asset
        asset.ref_frames = previews(video, s)
        t1 = time.perf_counter()
        store_asset(lib, asset, f"learnt-{i}")
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    for lib in libs.values():  # warm-up (first learn, first index write)
        learn_and_store(lib)
    out = {k: [] for k in libs}
    for _ in range(cfg.pairs):  # alternate between the libraries
        for k, lib in libs.items():
            out[k].append(learn_and_store(lib))
    return out


def run(cfg: Config) -> Section:
    n = 1000 if cfg.quick else 10_000
    n_add = 20 if cfg.quick else 100
    sec = Section("catalogue", f"Catalogue with {n:,} motions", "informational (no goal set)")
    tmp_root = tempfile.TemporaryDirectory(prefix="motionlib-bench-")
    tmp = Path(tmp_root.name)
    try:
        log(f"catalogue: {n_add} add_motion calls, then {n - n_add:,} rows in bulk")
        big_home = tmp / "big"
        from motionlib.store import Library

        big = Library(big_home)
        vecs = descriptors(n_add, seed=1)
        add_times = []
        for i in range(n_add):
            t0 = time.perf_counter()
            big.add_motion(f"added-{i:04d}", asset_file=_dummy_asset(tmp, i), meta=_meta(), descriptor=vecs[i])
            add_times.append(time.perf_counter() - t0)
        big.close()
        big = bulk_library(big_home, n - n_add)
        big.search(descriptors(1, seed=9)[0], k=5)  # brings the index up to date
        db = big_home / "motionlib.db"
        names = big.names()
        assert len(names) == n, (len(names), n)

        small = Library(tmp / "small")
        counter = iter(range(n_add, 10**6))

        def add(lib):
            def go():
                i = next(counter)
                lib.add_motion(f"added-{i:05d}", asset_file=_dummy_asset(tmp, i), meta=_meta(),
                               descriptor=descriptors(1, seed=i)[0])
            return go

        log("catalogue: list / show / add timings")
        p_list = paired(lambda: cli_list(big), lambda: raw_list(db), n=cfg.pairs)
        pick = [names[j] for j in np.random.default_rng(0).integers(0, n, 20)]
        p_show = paired(lambda: [cli_show(big, x) for x in pick], lambda: [raw_show(db, x) for x in pick],
                        n=cfg.pairs)
        p_add = paired(add(big), add(small), n=cfg.pairs)

        log("catalogue: learn vs store share (tiny-5b)")
        libs = {f"{n:,}-motion library": big}
        if not cfg.quick:
            libs = {"empty library": Library(tmp / "fresh"), **libs}
        shares = _learn_share(cfg, libs, tmp)

        sec.headers = ["operation", "ratio (side by side)", "vs", "motionlib (context)", "baseline (context)"]
        sec.rows = [
            ["list (all rows, what `motionlib list` gathers)", p_list.text(2), "raw sqlite3 query, same columns",
             fmt_s(p_list.a_s), fmt_s(p_list.b_s)],
            ["show (what `motionlib show` gathers), per motion", p_show.text(2), "raw sqlite3 queries",
             fmt_s(p_show.a_s / 20), fmt_s(p_show.b_s / 20)],
            [f"add_motion into the {n:,}-motion library", p_add.text(2), "add_motion into a small library",
             fmt_s(p_add.a_s), fmt_s(p_add.b_s)],
        ]
        for k, v in shares.items():
            share = statistics.median(st / (le + st) for le, st in v)
            lo, hi = min(st / (le + st) for le, st in v), max(st / (le + st) for le, st in v)
            sec.rows.append([f"share of learn_motion time spent storing ({k})",
                             f"{share:.1%} (runs {lo:.1%}-{hi:.1%}, n={len(v)})", "learn + store",
                             fmt_s(statistics.median(st for _, st in v)) + " store",
                             fmt_s(statistics.median(le for le, _ in v)) + " learn"])
        big_share = statistics.median(st / (le + st) for le, st in shares[f"{n:,}-motion library"])
        sec.headline = (f"{n:,} motions: list {fmt_s(p_list.a_s)} ({p_list.ratio:.1f}x raw sqlite), show "
                        f"{fmt_s(p_show.a_s / 20)} ({p_show.ratio:.1f}x raw); add_motion {p_add.ratio:.1f}x slower "
                        f"than into a small library; storing = {big_share:.0%} of a tiny-5b learn at {n:,}")
        sec.notes.append(f"Rows: the first {n_add} via Library.add_motion (tiny dummy asset files; median "
                         f"{fmt_s(statistics.median(add_times))} each, last {fmt_s(add_times[-1])}), the rest "
                         "bulk-inserted through the SQLModel session (10k add_motion calls, each copying and "
                         "fsyncing a blob, would not fit this run's time budget).")
        sec.notes.append("Storing = store_asset: asset save + thumbnails + add_motion (blob copy with fsync, DB "
                         "transaction, index refresh). Learn = read clip + learn (tiny-5b defaults) + previews.")
        sec.notes.append("Absolute latencies are on this machine with a 1-thread budget; no goal was set. "
                         "Library.list returns MotionSummary rows from two plain queries (columns without the "
                         "descriptor, params and loss JSON; then the tags), no ORM objects. add_motion updates the "
                         "Library's in-memory descriptor index with the new row only (when one is loaded) and does "
                         "not rewrite the index file: the file is saved after max(64, 2% of the index) changes and "
                         "otherwise lags; the next search, in any process, catches up from the DB.")
        sec.status = "n/a"
        for lib in (small, *libs.values()):
            lib.close()
    finally:
        tmp_root.cleanup()
    return sec
