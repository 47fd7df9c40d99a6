"""The documentation holds together: README.md is a short front door that links every page under docs/,
every relative link and picture resolves (anchors included), and docs/cli.md is what the CLI's --help says."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
REGENERATE = "python -m motionlib.cli.reference > docs/cli.md"

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"``.*?``|`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(markdown: str) -> str:
    """Markdown without code blocks (whose brackets are not links)."""
    return FENCE.sub("", markdown)


def _links(markdown: str) -> list[str]:
    return LINK.findall(INLINE_CODE.sub(lambda m: " " * len(m.group()), _prose(markdown)))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters of any script kept),
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", _prose(_text(path)), re.M):
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_docs_cli_md_is_the_generated_reference():
    from motionlib.cli.reference import render

    want = render()
    got = _text(DOCS / "cli.md") if (DOCS / "cli.md").is_file() else ""
    assert got == want, f"docs/cli.md is out of date with the CLI's --help: regenerate it with `{REGENERATE}`"


def test_docs_cli_reference_covers_every_command():
    import typer

    from motionlib.cli.main import app

    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="motionlib")
    cli_md = _text(DOCS / "cli.md")
    for name in group.list_commands(ctx):
        assert f"\n## motionlib {name}\n" in cli_md, name


def test_readme_is_a_short_front_door():
    assert len(_text(README).splitlines()) <= 200


def test_readme_links_every_docs_page():
    linked = {unquote(t.split("#", 1)[0]) for t in _links(_text(README))}
    missing = [f"docs/{p.name}" for p in PAGES if f"docs/{p.name}" not in linked]
    assert PAGES and not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_relative_links_and_pictures_resolve(page):
    bad = []
    for target in _links(_text(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path, _, anchor = unquote(target).partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_docs_example_clips_exist():
    for page in [README, *PAGES]:
        for clip in re.findall(r"(examples/[\w./-]+\.mp4)", _text(page)):
            assert (ROOT / clip).is_file(), f"{page.name}: {clip}"


def test_docs_python_api_page_repeats_the_readme_example():
    """docs/python-api.md shows the README's example (which tests/test_readme.py runs) word for word."""
    block = re.search(r"```python\n(.*?)```", _text(README), re.S).group(1)
    assert block in _text(DOCS / "python-api.md")
