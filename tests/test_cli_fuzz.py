"""The CLI fuzzer (issue 25; benchmarks/cli_fuzz.py says what it draws and checks), a bounded run:
FUZZ_EXAMPLES hypothesis cases, each with every invariant asserted. The ≥ 1,000-case run is in
``python -m benchmarks --only reliability``."""

import os

import pytest
from hypothesis import HealthCheck, given, settings

from benchmarks.cli_fuzz import invocations, make_template, run_case

FUZZ_EXAMPLES = int(os.environ.get("MOTIONLIB_FUZZ_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def template(tmp_path_factory, learnt):
    """A library holding 'left' and a work folder with the reference clip, copied for every case."""
    return make_template(tmp_path_factory.mktemp("fuzz-template"), learnt)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@pytest.mark.slow
@given(case=invocations())
def test_cli_fuzz(case, template):
    kind, argv = case
    result = run_case(kind, argv, template)
    assert not result.problems, (argv, result.problems)


def test_the_checker_sees_a_violation(template, monkeypatch):
    """An invariant that cannot fail proves nothing: a command that prints a traceback is caught."""
    import motionlib.cli.main as cli_main

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_main.state, "library", boom)
    result = run_case("show", ["-q", "show", "left"], template)
    assert result.outcome == "violation" and any("traceback" in p or "exit code" in p for p in result.problems)
