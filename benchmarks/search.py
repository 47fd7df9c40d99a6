"""Section 5: descriptor search latency and recall with the catalogue's index type."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from .catalogue import bulk_library, descriptors
from .common import Config, Section, fmt_s, log, paired, percentile

K = 10
GOAL_S = 5e-3  # p50 at 100k


def _queries(base: np.ndarray, n: int, seed: int = 7) -> np.ndarray:
    """Noisy copies of stored descriptors (a query has true neighbours, as a real 'find similar' does)."""
    rng = np.random.default_rng(seed)
    q = base[rng.integers(0, len(base), n)] + 0.5 * rng.standard_normal((n, base.shape[1]), dtype=np.float32) \
        / np.sqrt(base.shape[1])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _index(vecs: np.ndarray):
    import faiss

    from motionlib.store.index import normalise

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vecs.shape[1]))  # what DescriptorIndex builds
    index.add_with_ids(normalise(vecs), np.arange(1, len(vecs) + 1, dtype=np.int64))
    return index


def _latencies(index, queries) -> list[float]:
    from motionlib.store.index import DescriptorIndex

    out = []
    for q in queries:
        t0 = time.perf_counter()
        DescriptorIndex.search(index, q, K)
        out.append(time.perf_counter() - t0)
    return out


def _recall(index, vecs, queries) -> float:
    from motionlib.store.index import DescriptorIndex

    exact = vecs.astype(np.float64) @ queries.astype(np.float64).T  # [N, Q]
    hits = 0
    for j, q in enumerate(queries):
        truth = set((np.argsort(-exact[:, j])[:K] + 1).tolist())
        got = {i for i, _ in DescriptorIndex.search(index, q, K)}
        hits += len(truth & got)
    return hits / (K * len(queries))


def run(cfg: Config) -> Section:
    sizes = [1000, 10_000] if cfg.quick else [1000, 10_000, 100_000]
    sec = Section("search", "Descriptor search (catalogue index: IndexIDMap2(IndexFlatIP))",
                  "p50 <= 5 ms at 100k motions")
    sec.headers = ["motions", "index p50", "index p99", "recall@10 vs exact", "Library.search p50",
                   "Library.search p99", "Library.search / index search"]
    p50_at = {}
    for n in sizes:
        log(f"search: {n:,} descriptors")
        vecs = descriptors(n, seed=n)
        index = _index(vecs)
        n_q = 100 if cfg.quick else (500 if n < 100_000 else 300)
        lat = _latencies(index, _queries(vecs, n_q))
        recall = _recall(index, vecs, _queries(vecs, 20 if cfg.quick else 100, seed=11))
        p50_at[n] = percentile(lat, 50)
        if cfg.quick and n > 1000:  # quick: end to end at 1k only
            sec.rows.append([f"{n:,}", fmt_s(p50_at[n]), fmt_s(percentile(lat, 99)), f"{recall:.3f}", "", "", ""])
            continue
        # end to end: Library.search in a catalogue of n rows, side by side with the bare index search
        with tempfile.TemporaryDirectory(prefix="motionlib-search-") as tmp:
            lib = bulk_library(Path(tmp), n, vecs)
            qs = iter(_queries(vecs, 200, seed=13))
            lib.search(next(qs), k=K)  # first call builds and saves the index
            from motionlib.store.index import DescriptorIndex

            lib_lat = []

            def lib_search():
                t0 = time.perf_counter()
                lib.search(q_now[0], k=K)
                lib_lat.append(time.perf_counter() - t0)

            q_now = [next(qs)]

            def raw():
                DescriptorIndex.search(index, q_now[0], K)
                q_now[0] = next(qs)

            n_pairs = cfg.pairs if (cfg.quick or n >= 100_000) else cfg.pairs_fine
            p = paired(lib_search, raw, n=n_pairs, warmup=0)
            lib.close()
        sec.rows.append([f"{n:,}", fmt_s(p50_at[n]), fmt_s(percentile(lat, 99)), f"{recall:.3f}",
                         fmt_s(percentile(lib_lat, 50)), fmt_s(percentile(lib_lat, 99)), p.text(0)])
    top = max(sizes)
    if 100_000 in p50_at:
        ok = p50_at[100_000] <= GOAL_S
        sec.status = "met" if ok else "missed"
        sec.headline = (f"index p50 at 100k = {fmt_s(p50_at[100_000])} (goal 5 ms: {'met' if ok else 'missed'}); "
                        "recall@10 = 1.0 by construction (exact index)")
    else:
        sec.status = "not measured"
        sec.headline = f"quick run: largest size {top:,}, index p50 {fmt_s(p50_at[top])} (100k not run)"
    sec.notes.append("IndexIDMap2(IndexFlatIP) is an exact (brute-force) inner-product search, so recall@10 vs "
                     "exact search is 1.0 by construction; the column checks it against a float64 numpy search.")
    sec.notes.append("Latency is absolute by nature: per query, 1 thread (faiss.omp_set_num_threads(1)), on the "
                     "machine above; 'index' = DescriptorIndex.search (normalise + faiss search of k=10) on an "
                     "in-memory index; queries are noisy copies of stored descriptors. p99 is the nearest-rank "
                     "value of the queries run.")
    sec.notes.append("Library.search is the catalogue call end to end: every call re-reads all descriptor ids "
                     "from the DB, hashes them and reads the faiss file from disk before searching (see the "
                     "ratio column); rows were bulk-inserted.")
    sec.notes.append("Why the index misses 5 ms at 100k: a flat search reads all 100k x 408 float32 (163 MB) per "
                     "query, so it is memory-bandwidth bound on one core. Options (not measured here): an fp16 or "
                     "int8 IndexScalarQuantizer (2-4x fewer bytes, near-exact), a lower descriptor dimension, or an "
                     "approximate index (HNSW/IVF: sub-ms, recall < 1). For Library.search, keep the loaded index "
                     "in the Library and check freshness cheaply (e.g. count + max id) instead of re-reading the "
                     "file and hashing every id per call.")
    return sec
