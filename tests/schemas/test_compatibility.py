"""Schema evolution: every catalogued version pair is compatible both ways, and the
checker itself detects the classic breaking changes."""

from __future__ import annotations

import copy
import json
from importlib import resources

import pytest

from veil.schemas import catalog, compatibility_errors


def _raw_schema(file: str) -> dict:
    """The .avsc as JSON, straight from the installed package (history/ included)."""
    node = resources.files("veil.schemas")
    for part in file.split("/"):
        node = node.joinpath(part)
    return json.loads(node.read_text("utf-8"))


SUBJECTS = catalog().subjects()


@pytest.mark.parametrize("subject", SUBJECTS)
def test_consecutive_versions_are_compatible(subject):
    versions = catalog().versions(subject)
    assert versions, f"{subject} has no version"
    assert [v.version for v in versions] == sorted({v.version for v in versions})
    assert versions[-1] == catalog().latest(subject)
    for old, new in zip(versions, versions[1:]):
        errors = compatibility_errors(_raw_schema(old.file), _raw_schema(new.file))
        assert errors == [], f"{subject} v{old.version} -> v{new.version}: {errors}"


@pytest.mark.parametrize("subject", SUBJECTS)
def test_current_schema_is_compatible_with_itself(subject):
    schema = _raw_schema(catalog().latest(subject).file)
    assert compatibility_errors(schema, copy.deepcopy(schema)) == []


def test_schema_ids_are_unique_and_never_shared_between_subjects():
    raw = json.loads(resources.files("veil.schemas").joinpath("catalog.json").read_text())
    ids = [item["id"] for item in raw["schemas"]]
    assert len(ids) == len(set(ids))
    pairs = {(item["subject"], item["version"]) for item in raw["schemas"]}
    assert len(pairs) == len(ids)


def _record(*fields) -> dict:
    return {"type": "record", "name": "R", "namespace": "test.v1", "fields": list(fields)}


A = {"name": "a", "type": "string"}
B = {"name": "b", "type": "string"}
OPTIONAL_C = {"name": "c", "type": ["null", "string"], "default": None}


def _enum(*symbols) -> dict:
    return {"name": "e", "type": {"type": "enum", "name": "E", "symbols": list(symbols)}}


def _directions(errors: list[str]) -> list[str]:
    return sorted(e.split(":", 1)[0] for e in errors)


@pytest.mark.parametrize(
    "old, new, directions",
    [
        (_record(A), _record(A, B), ["backward"]),
        (_record(A, B), _record(A), ["forward"]),
        (_record(A), _record({"name": "a", "type": "int"}), ["backward", "forward"]),
        (_record(A), _record(A, OPTIONAL_C), []),
        (_record(A, OPTIONAL_C), _record(A), []),
        (_record(A), _record(A, {**B, "default": "x"}), []),
        (
            _record({"name": "a", "type": "int"}),
            _record({"name": "a", "type": "long"}),
            ["forward"],
        ),
    ],
    ids=[
        "add-required-field",
        "remove-field-old-readers-need",
        "string-to-int",
        "add-optional-null-default",
        "remove-optional-null-default",
        "add-field-with-default",
        "int-to-long-promotes-one-way",
    ],
)
def test_checker_finds_breaking_changes(old, new, directions):
    assert _directions(compatibility_errors(old, new)) == directions


def test_checker_finds_added_enum_symbol_without_default():
    """New writers can emit C, which an old reader without an enum default cannot read."""
    errors = compatibility_errors(_record(_enum("A", "B")), _record(_enum("A", "B", "C")))
    assert _directions(errors) == ["forward"]


def test_added_enum_symbol_with_reader_default_is_compatible():
    old = _record({"name": "e", "type": {**_enum("A", "B")["type"], "default": "A"}})
    new = _record({"name": "e", "type": {**_enum("A", "B", "C")["type"], "default": "A"}})
    assert compatibility_errors(old, new) == []
