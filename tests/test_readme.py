"""The README's Python example runs as written, and CI runs the README's test command."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_python_api_example_runs(tmp_path, monkeypatch):
    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "left.safetensors").is_file() and (tmp_path / "out.mp4").is_file()


def test_ci_runs_the_readme_test_command():
    """The README opens with `make test`; CI calls it, and it runs the suite with `python -m pytest tests`."""
    assert re.search(r"^make test\b", README, re.M)
    assert re.search(r"^make test\b", (ROOT / ".ci" / "run").read_text(), re.M)
    recipe = (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "-m pytest tests" in recipe


def test_quickstart_commands_use_existing_examples():
    for clip in re.findall(r"(examples/\S+\.mp4)", README):
        assert (ROOT / clip).is_file(), clip
