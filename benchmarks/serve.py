"""Section 8: `motionlib serve` — time to first byte of the gallery page with 1,000 motions, over real HTTP."""

from __future__ import annotations

import http.client
import statistics
import tempfile
import time
from pathlib import Path

from .catalogue import bulk_library, cli_list
from .common import Config, Pair, Section, fmt_s, log, percentile

GOAL_S = 0.200
N_MOTIONS = 1000


def first_byte(port: int, path: str) -> float:
    """Seconds from sending GET `path` on a new connection to the response's status line (then drains the body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()  # returns once the status line and headers arrived
        t = time.perf_counter() - t0
        body = resp.read()
        if resp.status != 200 or not body:
            raise RuntimeError(f"GET {path}: HTTP {resp.status}")
        return t
    finally:
        conn.close()


def run(cfg: Config) -> Section:
    from motionlib.web import Settings, create_app, serve_in_thread

    n_req = 20 if cfg.quick else 60
    sec = Section("serve", f"`motionlib serve`: gallery with {N_MOTIONS:,} motions",
                  f"gallery page with {N_MOTIONS:,} motions: first byte <= {GOAL_S * 1e3:.0f} ms (median)")
    tmp = tempfile.TemporaryDirectory(prefix="motionlib-bench-serve-")
    try:
        log(f"serve: {N_MOTIONS:,} synthetic motions, uvicorn on loopback")
        lib = bulk_library(Path(tmp.name) / "lib", N_MOTIONS)
        from sqlalchemy import update

        from motionlib.store import Motion

        with lib._write_session() as s:  # every card gets its thumbnail <img> (the HTML does not read the file)
            s.exec(update(Motion).values(thumb_gif="thumbs/x.gif", thumb_png="thumbs/x.png"))
            s.commit()
        app = create_app(lib, Settings())
        url, stop = serve_in_thread(app)
        port = int(url.rsplit(":", 1)[1])
        try:
            pages = {"gallery, page 1 (24 cards, newest first)": "/",
                     "gallery, page 42 of 42, tag filter off, sort by name": "/?sort=name&page=42",
                     "gallery, tag filter (50 matches), sort by size": "/?tag=people&sort=size",
                     "/api/motions (all 1,000 as JSON, like `list --json`)": "/api/motions"}
            for path in pages.values():  # warm-up (imports, template compilation)
                first_byte(port, path)
            times = {label: [] for label in pages}
            gather = []
            for _ in range(n_req):  # interleaved, so that load drift hits every case alike
                for label, path in pages.items():
                    times[label].append(first_byte(port, path))
                t0 = time.perf_counter()
                cli_list(lib)
                gather.append(time.perf_counter() - t0)
        finally:
            stop()
        lib.close()
    finally:
        tmp.cleanup()

    head = times["gallery, page 1 (24 cards, newest first)"]
    med = statistics.median(head)
    sec.status = "met" if med <= GOAL_S else "missed"
    sec.headers = ["request", "first byte, median", "p95", "max", "vs `motionlib list` gathering (same rows)"]
    for label, ts in times.items():
        ratio = Pair.from_times(ts, gather)
        sec.rows.append([label, fmt_s(statistics.median(ts)), fmt_s(percentile(ts, 95)), fmt_s(max(ts)),
                         ratio.text(2)])
    sec.headline = (f"gallery first byte {fmt_s(med)} median (p95 {fmt_s(percentile(head, 95))}) with "
                    f"{N_MOTIONS:,} motions, goal {GOAL_S * 1e3:.0f} ms; "
                    f"{statistics.median(head) / statistics.median(gather):.1f}x the time `motionlib list` "
                    "takes to gather the same rows")
    sec.notes.append(f"{n_req} requests per case, each on a new HTTP/1.1 connection to uvicorn on 127.0.0.1 in the "
                     "same process (server thread, client in the main thread), the cases interleaved. First byte = "
                     "from sending the request to receiving the status line; the page is rendered whole before "
                     "it is sent, so this includes the catalogue query, filtering, sorting and the template.")
    sec.notes.append("Rows are inserted in bulk as in section 6 (catalogue); thumbnails are not fetched (the "
                     "browser loads them after the page). The last column is a side-by-side ratio to "
                     "benchmarks.catalogue.cli_list, the data `motionlib list` gathers for all rows, timed in "
                     "the same loop.")
    return sec
