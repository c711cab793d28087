"""The tree's layering and lint rules hold (part of `make test`).

* ``lint-imports`` checks the contracts in ``.importlinter``: ``veil.pipelines`` composes
  ``veil.transforms``, which builds on ``veil.schemas``; no import goes back up (not
  even one inside a function).
* ``ruff check`` applies ``ruff.toml``'s rules to the whole tree.

Both tools come from the test extra (pinned in requirements/constraints.txt) and run in
well under a second.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    done = _run(str(BIN / "lint-imports"), "--no-cache")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_import_contracts_catch_an_upward_import(tmp_path):
    """The contracts are live: a transforms module importing pipelines breaks them."""
    config = (REPO / ".importlinter").read_text()
    probe = REPO / "transforms" / "_layering_probe.py"
    probe.write_text("def f():\n    from veil.pipelines import sanitize  # noqa: F401\n")
    try:
        (tmp_path / "contracts.ini").write_text(config)
        done = _run(
            str(BIN / "lint-imports"), "--no-cache", "--config", str(tmp_path / "contracts.ini")
        )
    finally:
        probe.unlink()
    assert done.returncode != 0
    assert "veil.transforms._layering_probe -> veil.pipelines" in done.stdout


def test_ruff_check_passes():
    done = _run(str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise", ".")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_tree_is_formatted():
    """`ruff format` (black style, ruff.toml) leaves every file as it is."""
    done = _run(str(BIN / "ruff"), "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
