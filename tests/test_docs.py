"""The docs keep up with the code: links resolve, the code layout is the tree, the configuration
reference is the schema, and the README's glossary words are the ones the docs use.

A newcomer reads the README first and follows its links into docs/; a link to a page or a heading
that moved is a dead end, a module missing from docs/CODE_LAYOUT.md is a part nobody finds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from device import config

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: The packages docs/CODE_LAYOUT.md lays out, module by module.
CODE_ROOTS = ("device", "central")

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """``text`` without fenced code blocks and code spans: what Markdown renders as text and links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped, spaces to hyphens.

    >>> github_slug("Replaced cards: `kiosk revocations`")
    'replaced-cards-kiosk-revocations'
    >>> github_slug("Technicians' commands: status, diagnostics, configuration")
    'technicians-commands-status-diagnostics-configuration'
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of ``page``, repeats numbered as GitHub numbers them (``x``, ``x-1``)."""
    seen: dict[str, int] = {}
    found = set()
    for _, heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        slug = github_slug(heading)
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def broken_links(page: Path) -> list[str]:
    """Each link of ``page`` to a file that is not there, or to a heading its target does not have."""
    broken = []
    for target in _LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check here
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: {where.name} has no heading with the anchor #{anchor}")
        elif anchor and where.suffix != ".md" and not re.fullmatch(r"L\d+(-L\d+)?", anchor):
            broken.append(f"{target}: #{anchor} is no line anchor, and {where.name} has no headings")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_found(tmp_path):
    """The link check itself: it must see a missing file, a missing heading and a good link."""
    (tmp_path / "other.md").write_text("# Other\n\n## The second heading: `kiosk x`\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#the-second-heading-kiosk-x) [self](#page) `[in code](nowhere.md)`\n"
        "[gone](missing.md) [no heading](other.md#not-a-heading) [web](https://example.org/x#y)\n"
    )
    assert [problem.split(":")[0] for problem in broken_links(page)] == ["missing.md", "other.md#not-a-heading"]


def code_layout_entries(text: str) -> list[str]:
    """The paths docs/CODE_LAYOUT.md lists in its tree, packages ending in ``/`` (``device/camera/``).

    Each line of the tree is ``<two spaces per level><name> <what it is>``: one line per entry.
    """
    section = text.split("## Every package and module", 1)[1]
    block = re.search(r"^```\n(.*?)^```", section, re.S | re.M).group(1)
    entries, folders = [], []
    for number, line in enumerate(block.splitlines(), 1):
        indent = len(line) - len(line.lstrip(" "))
        name, _, what = line.strip().partition(" ")
        assert indent % 2 == 0 and indent // 2 <= len(folders), f"tree line {number} is not indented by level: {line!r}"
        assert what.strip(), f"tree line {number} says nothing about {name}: one line each, name and what it is"
        del folders[indent // 2 :]
        path = "".join(folders) + name
        entries.append(path)
        if name.endswith("/"):
            folders.append(name)
    return entries


def modules_in_tree() -> set[str]:
    """Every package (``device/camera/``) and module (``device/camera/file.py``) under CODE_ROOTS."""
    found = set()
    for root in CODE_ROOTS:
        for path in (REPO / root).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            relative = path.relative_to(REPO)
            found.add(f"{relative.parent.as_posix()}/" if path.name == "__init__.py" else relative.as_posix())
    return found


def test_code_layout_lists_every_package_and_module_and_nothing_gone():
    listed = code_layout_entries((REPO / "docs" / "CODE_LAYOUT.md").read_text())
    repeated = sorted({entry for entry in listed if listed.count(entry) > 1})
    assert not repeated, f"docs/CODE_LAYOUT.md lists these more than once: {repeated}"
    actual = modules_in_tree()
    missing = sorted(actual - set(listed))
    gone = sorted(set(listed) - actual)
    assert not missing, f"docs/CODE_LAYOUT.md does not list {missing}: add one line for each under its package"
    assert not gone, f"docs/CODE_LAYOUT.md lists {gone}, which no longer exist: remove their lines"


def test_the_code_layout_check_sees_a_missing_and_a_gone_module():
    listed = code_layout_entries(
        "## Every package and module\n\n```\ndevice/    the kiosk\n  camera/  sources\n    file.py  files\n  old.py     gone\n```\n"
    )
    assert listed == ["device/", "device/camera/", "device/camera/file.py", "device/old.py"]
    actual = {"device/", "device/camera/", "device/camera/file.py", "device/events.py"}
    assert (sorted(actual - set(listed)), sorted(set(listed) - actual)) == (["device/events.py"], ["device/old.py"])


def test_configuration_reference_is_the_schema():
    """docs/CONFIGURATION.md's table is exactly what ``kiosk config reference`` prints: never edited by hand."""
    page = (REPO / "docs" / "CONFIGURATION.md").read_text()
    generated = re.search(r"^<!-- BEGIN generated by `kiosk config reference` -->\n(.*?)^<!-- END generated", page, re.S | re.M)
    assert generated, "docs/CONFIGURATION.md lost its BEGIN/END markers around the generated table"
    assert generated.group(1) == config.reference_markdown(), (
        "docs/CONFIGURATION.md's table is not the schema's: replace the lines between its two markers "
        "with the output of `kiosk config reference`"
    )
    assert page.count("\n| `") == config.reference_markdown().count("\n| `"), "a configuration table outside the markers"


def glossary_words() -> list[str]:
    """The words the README's glossary defines: the bold ones at the start of each entry."""
    readme = (REPO / "README.md").read_text()
    section = re.search(r"^## Glossary\n(.*?)(?=^## )", readme, re.S | re.M).group(1)
    entries = re.findall(r"^- (.*?)(?=^- |\Z)", section, re.S | re.M)
    return [word.lower() for entry in entries for word in re.findall(r"\*\*([^*]+)\*\*", entry.split(":", 1)[0])]


def test_the_glossary_names_each_word_once():
    words = glossary_words()
    for word in ("card", "payload", "identification", "presentation", "outbox", "central", "re-issue",
                 "replaced card", "replaced-card list", "refusal", "not a card", "fault"):  # fmt: skip
        assert word in words, f"the README's glossary does not define {word!r}"
    assert sorted({w for w in words if words.count(w) > 1}) == []


#: Words the docs do not use, each with the glossary's word for the same thing.
COMPETING_WORDS = {
    r"\breplacement cards?\b": "a re-issued card (the newer one) or a replaced card (the older one)",
    r"\breissue": "re-issue",
    r"\brevocation lists?\b": "the replaced-card list (the code's name: revocations)",
    r"\brevoked\b": "replaced",
    r"\bdead[- ]letters?\b": "dead (a dead record)",
    r"\balerts?\b": "fault",
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_the_docs_use_the_glossarys_words(page):
    text = prose(page.read_text())
    found = [f"{m.group(0)!r} (say: {say})" for pattern, say in COMPETING_WORDS.items() for m in re.finditer(pattern, text, re.I)]
    assert found == []
