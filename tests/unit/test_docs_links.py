"""The README and docs/: every relative link resolves to a file or folder in this repository, and no
link or path points outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *REPO.glob("*/README.md")])
# [text](target) and [text](target "title"); images too. Targets with a scheme are external.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def relative_links(text: str) -> list[str]:
    return [target for target in LINK.findall(text) if not SCHEME.match(target) and not target.startswith("#")]


def broken_links(document: Path, text: str | None = None) -> list[str]:
    """Links of `document` (its text, or `text` as if it were its text) that do not resolve."""
    broken = []
    for target in relative_links(document.read_text(encoding="utf-8") if text is None else text):
        resolved = (document.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(REPO):
            broken.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{target} (no such file)")
    return broken


def test_the_documents_are_found() -> None:
    names = {d.relative_to(REPO).as_posix() for d in DOCUMENTS}
    assert {"README.md", "docs/architecture.md", "docs/api.md", "docs/deployment.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_every_relative_link_resolves_inside_the_repository(document: Path) -> None:
    assert broken_links(document) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_nothing_points_outside_the_repository(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    assert not re.findall(r"\.\./shared|DESIGN\.md|(?<![\w-])/work/", text)


def test_a_broken_or_escaping_link_is_reported() -> None:
    text = "[a](missing.md) [b](../../elsewhere.md) [ok](api.md) [c](https://example.org) [d](#top)"
    assert relative_links(text) == ["missing.md", "../../elsewhere.md", "api.md"]
    assert broken_links(REPO / "docs" / "any.md", text) == [
        "missing.md (no such file)",
        "../../elsewhere.md (outside the repository)",
    ]


def test_the_readme_stays_short() -> None:
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 160
