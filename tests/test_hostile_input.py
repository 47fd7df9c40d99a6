"""Hostile input (issue 25). User text is data: names, tags, paths and prompts with brackets,
backslashes, control characters and newlines print as typed (never as Rich markup), and a rejected one
is one clear line. Non-finite and absurd numbers are refused, by name, before any model loads."""

import sys

import pytest

from helpers import LEFT, cli, cli_json, tmp_copy

HOSTILE = ["[/x]", "b[/x]", "a[b]", "[bold red]loud[/]", "back\\slash[", "esc\x1b[31mred", "two\nlines", "tab\tand\rcr"]


@pytest.fixture
def lib(cli_home):
    """A fresh library, tiny-5b by default, tmp_path the working folder (conftest.cli_home)."""
    return cli_home


def _one_clear_line(code, err, *must_show):
    """Exit 1 or 2, one line, no traceback or raw control character, and one of `must_show` in it."""
    assert code in (1, 2), err
    assert "Traceback" not in err and "Internal error" not in err and "MarkupError" not in err, err
    assert "\x1b" not in err and "\r" not in err  # no raw escape sequence or carriage return reaches the terminal
    assert len(err.strip().splitlines()) == 1, err
    assert any(m in err for m in must_show), err
    return err


def _shown(text):
    """The ways a message may name a value exactly: as typed with control characters escaped (\\n,
    \\x1b), or as Python's repr() quotes it (backslashes doubled too)."""
    from motionlib.cli.main import printable

    return printable(text), repr(text)[1:-1]


@pytest.mark.slow
@pytest.mark.parametrize("text", HOSTILE)
def test_motion_names_print_as_typed(lib, learnt, capsys, text):
    cli_json(capsys, "import", str(learnt), "--name", "left")
    code, _, err = cli(capsys, "show", text)  # no such motion: the message names it exactly
    _one_clear_line(code, err, *_shown(text))
    code, _, err = cli(capsys, "rename", "left", text)  # refused by the name rule, or done: never a traceback
    if code == 0:
        cli_json(capsys, "rename", text, "left")
    else:
        _one_clear_line(code, err, *_shown(text))
    code, _, err = cli(capsys, "apply", text, "a cat")
    _one_clear_line(code, err, *_shown(text))


@pytest.mark.slow
@pytest.mark.parametrize("text", HOSTILE + ["[/x]\x1b[2J", "[red]x"])
def test_tags_print_as_typed_or_are_refused_by_name(lib, learnt, capsys, text):
    cli_json(capsys, "import", str(learnt), "--name", "left")
    code, out, err = cli(capsys, "tag", "left", "+" + text)
    assert "\x1b" not in out + err and "\r" not in out + err and "Traceback" not in err
    if code == 0:
        assert out.strip() == f"left: {_shown(text.lower())[0]}"  # printed exactly, not parsed as markup
        assert cli_json(capsys, "show", "left")["tags"] == [text.lower()]
    else:  # tags follow the name rule: refused, naming the tag (tags are stored lower-case)
        _one_clear_line(code, err, *_shown(text.lower()))


def test_a_tag_the_rule_allows_prints_in_list_and_show(lib, learnt, capsys):
    cli_json(capsys, "import", str(learnt), "--name", "left")
    assert cli(capsys, "tag", "left", "+a.b_c-1")[0] == 0
    code, out, _ = cli(capsys, "list")
    assert code == 0 and "a.b_c-1" in out


@pytest.mark.parametrize("name", ["nosuch[red].mp4", "no such [/x].mp4", "new\nline.mp4", "esc\x1b[31m.mp4"])
def test_paths_print_as_typed(lib, capsys, name):
    code, _, err = cli(capsys, "learn", name, "--name", "x")
    _one_clear_line(code, err, *_shown(name))


def test_names_with_brackets_are_named_exactly(lib, capsys):
    code, _, err = cli(capsys, "learn", str(LEFT), "--name", "a[b]")
    _one_clear_line(code, err, "'a[b]'")  # used to say the name 'a' contains '[]'


@pytest.mark.slow
def test_prompts_with_markup_render_and_print(lib, learnt, capsys, tmp_path):
    cli_json(capsys, "import", str(learnt), "--name", "left")
    prompt = "[bold]a red[/x] ball \\ [link=file:///etc/passwd]x[/link]"
    out = tmp_path / "p[1].mp4"
    code, stdout, err = cli(capsys, "apply", "left", prompt, "-o", str(out), "--steps", "2")
    assert code == 0, err
    assert out.is_file() and str(out) in stdout  # the path as typed, brackets and all
    assert cli_json(capsys, "show", "left")["renders"][0]["prompt"] == prompt


def test_install_hints_keep_their_extras(lib, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    code, _, err = cli(capsys, "serve")
    _one_clear_line(code, err, "pip install 'motionlib[serve]'")


def test_a_copy_of_a_file_with_brackets_in_its_name_imports(lib, capsys, learnt, tmp_path):
    folder = tmp_path / "[odd] folder"
    folder.mkdir()
    src = tmp_copy(learnt, folder)
    got = cli_json(capsys, "import", str(src), "--name", "copy")
    assert got["name"] == "copy"


@pytest.mark.parametrize("args,names", [
    (["generate", "x", "--steps", "1000000000"], "--steps"),
    (["generate", "x", "--steps", "0"], "--steps"),
    (["transfer", str(LEFT), "x", "--steps", "5000"], "--steps"),
    (["learn", str(LEFT), "--name", "a", "--steps", "1001"], "--steps"),
    (["learn", str(LEFT), "--name", "a", "--lr", "nan"], "lr_start"),
    (["learn", str(LEFT), "--name", "a", "--lr", "inf"], "lr_start"),
    (["learn", str(LEFT), "--name", "a", "--lr", "-1"], "lr_start"),
    (["learn", str(LEFT), "--name", "a", "--lr-end", "0"], "lr_end"),
    (["learn", str(LEFT), "--name", "a", "--guided-fraction", "nan"], "guided_fraction"),
    (["learn", str(LEFT), "--name", "a", "--opt-steps", "100000000"], "opt_steps"),
    (["learn", str(LEFT), "--name", "a", "--samples", "1000"], "samples"),
    (["learn", str(LEFT), "--name", "a", "--smoothness", "inf"], "smoothness"),
    (["learn", str(LEFT), "--name", "a", "--opt-tol", "nan"], "opt_tol"),
    (["apply", "left", "x", "--strength", "nan"], "--strength"),
    (["apply", "left", "x", "--strength", "1e300"], "--strength"),
])
@pytest.mark.slow
def test_absurd_numbers_are_refused_before_a_model_loads(lib, learnt, capsys, monkeypatch, args, names):
    cli_json(capsys, "import", str(learnt), "--name", "left")
    import motionlib.models

    def no_load(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(motionlib.models, "load_model", no_load)
    code, _, err = cli(capsys, *args)
    _one_clear_line(code, err, names)


LONG = "a" * 300


@pytest.mark.parametrize("args", [
    ["generate", "x", "-o", LONG + ".mp4", "--steps", "1"],
    ["apply", "left", "x", "-o", LONG + ".mp4", "--steps", "1"],
    ["transfer", "left.mp4", "x", "-o", LONG + ".gif"],
    ["export", "left", LONG + ".safetensors"],
    ["learn", LONG + ".mp4", "--name", "b"],
    ["import", LONG + ".safetensors", "--name", "b"],
    ["search", LONG + ".mp4"],
    ["generate", "x", "-o", "clip.txt/out.mp4", "--steps", "1"],  # a path through a file
], ids=["generate", "apply", "transfer", "export", "learn", "import", "search", "through-a-file"])
@pytest.mark.slow
def test_impossible_paths_are_one_line_errors(lib, learnt, capsys, tmp_path, monkeypatch, args):
    """Found by the CLI fuzzer: a 300-byte file name ended in 'Internal error: OSError'."""
    import shutil

    from helpers import LEFT

    cli_json(capsys, "import", str(learnt), "--name", "left")
    monkeypatch.chdir(tmp_path)
    shutil.copy(LEFT, tmp_path / "left.mp4")
    (tmp_path / "clip.txt").write_text("x")
    code, out, err = cli(capsys, *args)
    assert code in (1, 2), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Internal" not in err, err
