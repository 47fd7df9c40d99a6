"""Fuzzed import (issue 19): every mutant of a valid motion file is rejected in one line with the
catalogue unchanged, or imports bit-identical content. Never a traceback. The benchmark section
`reliability` runs the same fuzzer longer (python -m benchmarks --only reliability)."""

import pytest

from benchmarks.reliability import OUTCOMES, fuzz

MUTANTS = 250


@pytest.mark.slow
def test_fuzzed_import_never_accepts_damage_nor_shows_a_traceback(tmp_path):
    res = fuzz(MUTANTS, seed=19, workdir=tmp_path)
    assert res.total == MUTANTS
    assert res.counts["traceback"] == res.counts["damaged-accepted"] == res.counts["dirty"] == 0, res.failures
    assert set(res.counts) <= set(OUTCOMES)
    kinds = {k for k, _ in res.kinds}
    # every family of mutation was tried, and both verdicts occur (re-serialised headers import)
    assert {"header-bytes", "data-bytes", "truncate", "length", "json-shape", "json-offsets", "json-dtype",
            "json-metadata", "json-long-string", "json-reserialise"} <= kinds, kinds
    assert res.counts["rejected"] > MUTANTS // 2 and res.counts["accepted-identical"] > 0
    assert res.kinds[("data-bytes", "accepted-identical")] == 0  # every flipped data byte is caught
