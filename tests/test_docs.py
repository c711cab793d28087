"""README.md and docs/: links resolve, and the reference tables match the code.

The reference pages were moved out of the README by hand; these checks keep the parts
that code defines (dead-letter codes, ``--veil_*`` flags, ``veil`` commands) from
drifting away from it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from veil.pipelines.cli import parser
from veil.pipelines.options import VeilOptions
from veil.transforms.records import ErrorCode

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", REPO / "SECURITY.md", *sorted(DOCS.glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    in_code, out = False, set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            out.add(_slug(line.lstrip("#")))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # absolute URL
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: broken link {target}"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name}: no heading for {target}"


def test_every_dead_letter_code_is_documented_and_no_other():
    page = (DOCS / "topics-and-schemas.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", page, re.M))
    codes = {v for k, v in vars(ErrorCode).items() if k.isupper()}
    assert documented == codes


def test_every_veil_flag_is_documented_and_every_documented_flag_exists():
    import argparse

    p = argparse.ArgumentParser()
    VeilOptions._add_argparse_args(p)
    flags = {o for a in p._actions for o in a.option_strings if o.startswith("--veil_")}
    cli_page = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert flags <= set(re.findall(r"--veil_[a-z0-9_]+", cli_page))
    # The other commands' --veil_* spellings (e.g. `veil reveal --veil_audit_log`) exist too.
    known = flags | _cli_flags(parser())
    for page in PAGES:
        prose = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        mentioned = set(re.findall(r"--veil_[a-z0-9_]+", prose))  # examples may misspell
        assert mentioned <= known, f"{page.name}: unknown flags {sorted(mentioned - known)}"


def _cli_flags(p) -> set:
    out = set()
    for action in p._actions:
        out |= {o for o in action.option_strings if o.startswith("--veil_")}
        choices = getattr(action, "choices", None)
        for child in choices.values() if isinstance(choices, dict) else ():
            if hasattr(child, "_actions"):
                out |= _cli_flags(child)
    return out


def test_documented_commands_exist():
    sub = next(a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    block = (DOCS / "cli.md").read_text(encoding="utf-8").split("```")[1]
    for line in block.strip().splitlines():
        command = line.split()[1]
        assert command in sub.choices, line
    assert set(sub.choices) <= {line.split()[1] for line in block.strip().splitlines()}
