"""Reliability: fuzzed import. Damaged motion files must be rejected in one line or import bit-identical.

``fuzz(n, seed)`` writes ``n`` seeded mutants of one valid motion file (header bytes, data bytes,
truncation, length prefix, JSON edits of shapes / offsets / dtypes / metadata, over-long strings,
re-serialisations that change nothing) and imports each through the CLI in-process
(``motionlib.cli.main.main``). Each outcome is one of: rejected (exit 1, exactly one ``Error:`` line,
no traceback, catalogue unchanged), accepted-identical (exit 0, stored tensors and metadata equal
the original's), traceback (an exception escaped, or a rejection that printed one), damaged-accepted
(exit 0 with other content), or dirty (a rejection that changed the catalogue). tests/test_import_fuzz.py
runs a few hundred; this section runs more.
"""

from __future__ import annotations

import json
import random
import struct
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .common import Config, Section, log, run_cli

OUTCOMES = ("rejected", "accepted-identical", "traceback", "damaged-accepted", "dirty")
HASH_KEYS = ("content_sha256", "header_sha256", "version")


def make_asset(seed: int = 0):
    """A small valid tiny-5b motion with seeded random tensors (no model needed)."""
    import torch

    from motionlib.asset import MotionAsset
    from motionlib.models import resolve_spec
    from motionlib.rho import names_for

    spec = resolve_spec("tiny-5b")
    g = torch.Generator().manual_seed(seed)
    frames, rows, cols = spec.grid
    tokens, s = frames * rows * cols, rows * cols
    timesteps = [900, 800]
    block = spec.guidance.blocks[0]
    return MotionAsset(
        spec=spec, timesteps=timesteps,
        rho_delta={t: {n: torch.randn(tokens, spec.head_dim, generator=g) * 0.01 for n in names_for("rope")}
                   for t in timesteps},
        ref_latent=torch.randn(1, frames, 4, spec.height // spec.spatial_compression,
                               spec.width // spec.spatial_compression, generator=g),
        ref_amf={block: torch.randint(-2, 3, (frames, frames, s, 2), generator=g).float()},
        ref_confidence={block: torch.rand(frames, frames, s, generator=g)},
        params={"blocks": [block], "inject_blocks": [0], "parametrisation": "table", "prompt": "a disc",
                "lr_start": 0.3, "opt_steps": 2},
        steps=10, scheduler={"name": "CogVideoXDDIMScheduler", "config": {}}, losses=[[0.5, 0.4], [0.3, 0.2]],
        source={"name": "disc.mp4"}, ref_frames=torch.randint(0, 256, (frames, 24, 32, 3), generator=g,
                                                              dtype=torch.uint8))


# --- mutations ----------------------------------------------------------------------------------
def _split(data: bytes):
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: dict, body: bytes, *, indent=None, sort=False, pad=True) -> bytes:
    text = json.dumps(header, indent=indent, sort_keys=sort).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def _tensor_names(header: dict) -> list[str]:
    return sorted(k for k in header if k != "__metadata__")


def _edit_meta(header: dict, fn) -> dict:
    meta = json.loads(header["__metadata__"]["motionlib"])
    fn(meta)
    header["__metadata__"]["motionlib"] = json.dumps(meta)
    return header


_ODD_VALUES = [None, -1, 0, 1, 2 ** 63, 1.5, "x", [], {}, True, "9" * 40, -(2 ** 70)]
_DTYPES = ["F32", "F64", "F16", "BF16", "I8", "I16", "I32", "I64", "U8", "U16", "BOOL", "F8_E4M3", "Q4", ""]


def _mutate_json(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    _, header, body = _split(data)
    names = _tensor_names(header)
    kind = rng.choice(["shape", "offsets", "dtype", "metadata", "metadata", "long-string", "reserialise",
                       "tensor-table"])
    name = rng.choice(names)
    if kind == "shape":
        shape = header[name]["shape"]
        op = rng.randrange(5)
        if op == 0 and shape:
            shape[rng.randrange(len(shape))] += rng.choice([-1, 1, 7, 1 << 20])
        elif op == 1:
            shape.append(1)
        elif op == 2 and shape:
            shape.pop()
        elif op == 3 and shape:
            shape[rng.randrange(len(shape))] = rng.choice(_ODD_VALUES)
        else:
            header[name]["shape"] = list(reversed(shape))
    elif kind == "offsets":
        off = header[name]["data_offsets"]
        op = rng.randrange(4)
        if op == 0:
            other = rng.choice([x for x in names if x != name])  # swap two tensors' places in the data
            header[name]["data_offsets"], header[other]["data_offsets"] = header[other]["data_offsets"], off
        elif op == 1:
            off[rng.randrange(2)] += rng.choice([-8, -1, 1, 2, 8, 1 << 40])
        elif op == 2:
            off[rng.randrange(2)] = rng.choice(_ODD_VALUES)
        else:
            header[name]["data_offsets"] = [off[1], off[0]]
    elif kind == "dtype":
        header[name]["dtype"] = rng.choice([d for d in _DTYPES if d != header[name].get("dtype")])
    elif kind == "tensor-table":
        op = rng.randrange(3)
        if op == 0:
            header.pop(name)
        elif op == 1:
            header[name + "x"] = header.pop(name)
        else:
            header["evil"] = {"dtype": "U8", "shape": [1], "data_offsets": [len(body), len(body) + 1]}
            body += b"\0"
    elif kind == "metadata":
        def edit(meta):
            path = [meta]
            node = meta
            while isinstance(node, dict) and node and rng.random() < 0.6:
                key = rng.choice(sorted(node))
                if isinstance(node[key], (dict, list)) and node[key]:
                    node = node[key] if isinstance(node[key], dict) else node
                    path.append(node)
                    if not isinstance(node, dict):
                        break
                else:
                    break
            node = path[-1]
            key = rng.choice(sorted(node))
            op = rng.randrange(4)
            if op == 0:
                node.pop(key)
            elif op == 1:
                node[key] = rng.choice(_ODD_VALUES)
            elif op == 2 and isinstance(node[key], (int, float)) and not isinstance(node[key], bool):
                node[key] = node[key] + rng.choice([-1, 1, 0.5, 1000])
            else:
                node[key] = [node[key]] if not isinstance(node[key], list) else node[key][::-1] + [0]
        header = _edit_meta(header, edit)
    elif kind == "long-string":
        target = rng.randrange(4)
        long = "x" * rng.choice([300, 70_000, 2_000_000])
        if target == 0:
            header = _edit_meta(header, lambda m: m["spec"].update(name=long))
        elif target == 1:
            header = _edit_meta(header, lambda m: m["params"].update(prompt=long))
        elif target == 2:
            header = _edit_meta(header, lambda m: m["source"].update(name=long))
        else:
            header[long[:5000]] = header.pop(name)
    else:  # reserialise: same content, other bytes (whitespace, key order, no padding)
        return "json-reserialise", _join(header, body, indent=rng.choice([None, 1, 2]), sort=rng.random() < 0.5,
                                         pad=rng.random() < 0.5)
    return f"json-{kind}", _join(header, body)


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One seeded mutant of the safetensors file ``data``: (kind, bytes)."""
    n = struct.unpack("<Q", data[:8])[0]
    kind = rng.choice(["header-bytes", "data-bytes", "data-bytes", "truncate", "length", "append", "json", "json",
                       "json"])
    buf = bytearray(data)
    if kind == "header-bytes":
        for _ in range(rng.choice([1, 1, 2, 5])):
            buf[rng.randrange(8, 8 + n)] ^= rng.randrange(1, 256)
    elif kind == "data-bytes":
        for _ in range(rng.choice([1, 1, 3, 50])):
            buf[rng.randrange(8 + n, len(buf))] ^= rng.randrange(1, 256)
    elif kind == "truncate":
        buf = buf[:rng.randrange(0, len(buf))]
    elif kind == "length":
        buf[:8] = struct.pack("<Q", rng.choice([0, 1, n - 1, n + 1, n + 8, len(buf), 1 << 40, 2 ** 64 - 1]))
    elif kind == "append":
        buf += bytes(rng.randrange(256) for _ in range(rng.choice([1, 8, 100])))
    else:
        return _mutate_json(rng, data)
    return kind, bytes(buf)


# --- the run ------------------------------------------------------------------------------------
@dataclass
class FuzzResult:
    counts: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)  # (kind, outcome) -> n
    failures: list[str] = field(default_factory=list)  # first few non-conforming cases
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.counts["rejected"] + self.counts["accepted-identical"] == self.total


def _snapshot(home: Path, lib) -> tuple:
    files = sorted(str(p.relative_to(home)) for sub in ("blobs", "thumbs", "tmp") for p in (home / sub).rglob("*"))
    return tuple(lib.names()), tuple(files)


def _same(meta_a: dict, meta_b: dict) -> bool:
    strip = lambda m: {k: v for k, v in m.items() if k not in HASH_KEYS}  # noqa: E731
    return strip(meta_a) == strip(meta_b)


def fuzz(n: int, seed: int = 0, workdir: Path | None = None) -> FuzzResult:
    """Import ``n`` seeded mutants of a valid motion file through the CLI; classify each outcome."""
    import os

    import torch
    from safetensors.torch import load_file

    from motionlib.integrity import read_header
    from motionlib.store import Library

    res = FuzzResult()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="motionlib-fuzz-", dir=workdir) as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        good = make_asset(seed).save(tmp / "good.safetensors")
        data = good.read_bytes()
        want_tensors = load_file(str(good))
        want_meta = read_header(good).meta
        old_home = os.environ.get("MOTIONLIB_HOME")
        os.environ["MOTIONLIB_HOME"] = str(home)
        try:
            lib = Library(home)
            before = _snapshot(home, lib)
            rng = random.Random(seed)
            for i in range(n):
                kind, blob = mutate(rng, data)
                path = tmp / f"mutant-{i}.safetensors"
                path.write_bytes(blob)
                code, _, err = run_cli(["-q", "import", str(path), "--name", "m"])
                errors = [x for x in err.splitlines() if x.startswith("Error:")]
                if code is None or "Traceback" in err:
                    outcome = "traceback"
                elif code == 1:
                    clean = len(errors) == 1 and err.strip().splitlines()[-1].startswith("Error:")
                    outcome = "rejected" if clean else "traceback"
                    if outcome == "rejected" and _snapshot(home, lib) != before:
                        outcome = "dirty"
                elif code == 0:
                    stored = lib.asset_path("m")
                    got = load_file(str(stored))
                    identical = (got.keys() == want_tensors.keys()
                                 and all(torch.equal(got[k], want_tensors[k]) for k in got)
                                 and _same(read_header(stored).meta, want_meta))
                    outcome = "accepted-identical" if identical else "damaged-accepted"
                    lib.remove("m")
                    before = _snapshot(home, lib)
                else:
                    outcome = "traceback"
                res.counts[outcome] += 1
                res.kinds[(kind, outcome)] += 1
                if outcome not in ("rejected", "accepted-identical") and len(res.failures) < 10:
                    res.failures.append(f"mutant {i} ({kind}): {outcome}: {err.strip()[-300:]}")
                path.unlink()
            lib.close()
        finally:
            if old_home is None:
                os.environ.pop("MOTIONLIB_HOME", None)
            else:
                os.environ["MOTIONLIB_HOME"] = old_home
    res.seconds = time.perf_counter() - t0
    return res


def run(cfg: Config) -> Section:
    n = 100 if cfg.quick else 1500
    n_cli = 40 if cfg.quick else 1000
    sec = Section("reliability", "Reliability: fuzzed import of damaged motion files and fuzzed CLI invocations",
                  "≥ 1,000 mutants and ≥ 1,000 CLI cases (full run): 0 tracebacks, 0 damaged files accepted, "
                  "catalogue unchanged after every rejection, every rejection one line")
    log(f"fuzzing import with {n} mutants")
    res = fuzz(n, seed=0)
    bad = res.total - res.counts["rejected"] - res.counts["accepted-identical"]
    log(f"fuzzing the CLI with {n_cli} cases")
    cli = _cli_fuzz(n_cli)
    violations = cli.counts["violation"]
    full = cfg.quick or (n >= 1000 and len(cli.cases) >= 1000)
    sec.status = "met" if res.ok and not violations and full else "missed"
    sec.headline = (f"{res.total} mutants: {res.counts['rejected']} rejected in one line, "
                    f"{res.counts['accepted-identical']} accepted identical, {res.counts['traceback']} tracebacks, "
                    f"{res.counts['damaged-accepted']} damaged accepted, {res.counts['dirty']} left the catalogue "
                    f"changed ({res.seconds:.0f} s); {len(cli.cases)} fuzzed CLI invocations: "
                    f"{cli.counts['rejected']} rejected in one line, {cli.counts['accepted']} accepted, "
                    f"{violations} broke an invariant ({cli.seconds:.0f} s)")
    sec.headers = ["mutants", "rejected", "accepted-identical", "tracebacks", "damaged accepted", "catalogue changed"]
    sec.rows = [[str(res.total), str(res.counts["rejected"]), str(res.counts["accepted-identical"]),
                 str(res.counts["traceback"]), str(res.counts["damaged-accepted"]), str(res.counts["dirty"])]]
    kinds = sorted({k for k, _ in res.kinds})
    sec.tables.append((["mutation", *OUTCOMES],
                       [[k, *(str(res.kinds[(k, o)]) for o in OUTCOMES)] for k in kinds]))
    by_kind = cli.by_kind
    slowest = max(cli.cases, key=lambda c: c.seconds) if cli.cases else None
    sec.tables.append((["CLI command", "cases", "rejected (one line)", "accepted", "broke an invariant"],
                       [[k, str(sum(c.values())), str(c["rejected"]), str(c["accepted"]), str(c["violation"])]
                        for k, c in sorted(by_kind.items())]
                       + [["all", str(len(cli.cases)), str(cli.counts["rejected"]), str(cli.counts["accepted"]),
                           str(violations)]]))
    sec.notes.append("Each mutant is imported with `motionlib import` in-process (seed 0, benchmarks/reliability.py); "
                     "accepted-identical means the stored tensors are bit-identical and the metadata equal to the "
                     "original's (the JSON re-serialisations, which the canonical header hash ignores).")
    sec.notes.append("CLI fuzz (benchmarks/cli_fuzz.py, hypothesis, derandomized): every command with hostile text, "
                     "numbers, paths and memory options on tiny-5b, each case in a fresh copy of a one-motion library; "
                     "invariants: exit 0/1/2, no traceback or 'Internal error', exactly one 'Error:' line for a "
                     "rejection, catalogue and work folder unchanged after a rejection, no file outside the asked-for "
                     f"outputs, ≤ 20 s and ≤ 2 GiB of new peak memory per case. Slowest case "
                     f"{slowest.seconds:.1f} s ({slowest.kind})." if slowest else "CLI fuzz: no case ran.")
    sec.notes += res.failures[:5]
    sec.notes += [f"CLI case {c.argv!r}: {'; '.join(c.problems)}" for c in cli.cases if c.problems][:5]
    if bad:
        sec.notes.append(f"{bad} mutants did not conform (first ones above)")
    return sec


def _cli_fuzz(n: int):
    from .cli_fuzz import fuzz as fuzz_cli, make_template

    with tempfile.TemporaryDirectory(prefix="cli-fuzz-") as d:
        return fuzz_cli(n, make_template(Path(d) / "template"))
