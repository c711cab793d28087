"""The policy file (load and validate) and classification of entity counts."""

from __future__ import annotations

import copy

import pytest

from veil.transforms.classification import PolicyError, classify, load_policy, parse_policy

VALID = {
    "version": "test-1",
    "text": {"language": "en", "score_threshold": 0.4, "entities": [], "max_chars": 100},
    "classification": {
        "regimes": {
            "GDPR": ["PERSON", "EMAIL_ADDRESS", "CREDIT_CARD"],
            "PCI": ["CREDIT_CARD"],
            "CREDENTIALS": ["CRYPTO"],
        },
        "sensitivity": {"RESTRICTED": ["PCI", "CREDENTIALS"], "CONFIDENTIAL": ["GDPR"]},
        "default": "CONFIDENTIAL",
        "no_entities": "INTERNAL",
    },
}


def _with(path: str, value):
    """A deep copy of VALID with ``path`` (dotted) set to ``value`` (``...`` deletes it)."""
    raw = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


def test_default_policy_loads():
    policy = load_policy()
    assert policy.version.strip() == policy.version != ""
    assert policy.text.language == "en"
    assert 0 <= policy.text.score_threshold <= 1
    assert policy.text.max_chars > 0
    assert {"GDPR", "PCI"} <= set(policy.regimes)
    assert policy.sensitivity_rules[0][0] == "RESTRICTED"


def test_valid_policy_parses():
    policy = parse_policy(VALID)
    assert policy.version == "test-1"
    assert policy.text.score_threshold == 0.4
    assert policy.text.entities == ()
    assert policy.regimes["PCI"] == frozenset({"CREDIT_CARD"})
    assert policy.sensitivity_rules == (
        ("RESTRICTED", frozenset({"PCI", "CREDENTIALS"})),
        ("CONFIDENTIAL", frozenset({"GDPR"})),
    )


@pytest.mark.parametrize(
    "raw, names",
    [
        (["not", "a", "mapping"], "top level must be a mapping"),
        (None, "top level must be a mapping"),
        (_with("version", ...), "'version'"),
        (_with("version", "  "), "'version'"),
        (_with("version", 3), "'version'"),
        (_with("text", ...), "'text'"),
        (_with("text.score_threshold", 1.5), "text.score_threshold"),
        (_with("text.score_threshold", -0.1), "text.score_threshold"),
        (_with("text.score_threshold", "high"), "text.score_threshold"),
        (_with("text.entities", "PERSON"), "text.entities"),
        (_with("text.entities", ["PERSON", 3]), "text.entities"),
        (_with("text.max_chars", 0), "text.max_chars"),
        (_with("text.language", "fr"), "text.language"),
        (_with("classification", ...), "'classification'"),
        (_with("classification.regimes", ["GDPR"]), "'regimes'"),
        (_with("classification.regimes.PCI", "CREDIT_CARD"), "classification.regimes.PCI"),
        (
            _with("classification.sensitivity.RESTRICTED", ["HIPAA"]),
            "classification.sensitivity.RESTRICTED",
        ),
        (
            _with("classification.sensitivity.TOP_SECRET", ["PCI"]),
            "sensitivity levels ['TOP_SECRET']",
        ),
        (_with("classification.default", "SECRET"), "classification.default"),
        (_with("classification.no_entities", "NONE"), "classification.no_entities"),
    ],
    ids=[
        "list",
        "none",
        "missing-version",
        "blank-version",
        "int-version",
        "missing-text",
        "threshold-1.5",
        "threshold-negative",
        "threshold-string",
        "entities-not-list",
        "entities-not-strings",
        "max-chars-zero",
        "language-fr",
        "missing-classification",
        "regimes-not-mapping",
        "regime-not-list",
        "unknown-regime-in-sensitivity",
        "unknown-level",
        "bad-default",
        "bad-no-entities",
    ],
)
def test_bad_policy_names_the_field(raw, names):
    with pytest.raises(PolicyError) as caught:
        parse_policy(raw, "p.yaml")
    assert names in str(caught.value)
    assert str(caught.value).startswith("p.yaml")


def test_load_policy_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PolicyError, match="missing.yaml cannot be read"):
        load_policy(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: [unclosed\n")
    with pytest.raises(PolicyError, match="broken.yaml is not valid YAML"):
        load_policy(broken)


POLICY = parse_policy(VALID)


@pytest.mark.parametrize(
    "counts, sensitivity, regimes",
    [
        ({}, "INTERNAL", []),
        ({"PERSON": 0, "CREDIT_CARD": 0}, "INTERNAL", []),
        ({"PERSON": 2}, "CONFIDENTIAL", ["GDPR"]),
        ({"EMAIL_ADDRESS": 1, "PERSON": 1}, "CONFIDENTIAL", ["GDPR"]),
        ({"CREDIT_CARD": 1}, "RESTRICTED", ["GDPR", "PCI"]),
        ({"PERSON": 3, "CREDIT_CARD": 1}, "RESTRICTED", ["GDPR", "PCI"]),
        ({"PERSON": 1, "CREDIT_CARD": 0}, "CONFIDENTIAL", ["GDPR"]),
        ({"CRYPTO": 1}, "RESTRICTED", ["CREDENTIALS"]),
        ({"DATE_TIME": 4}, "CONFIDENTIAL", []),
    ],
    ids=[
        "nothing",
        "zero-counts-ignored",
        "person",
        "email-and-person",
        "credit-card",
        "person-and-card",
        "zero-card-ignored",
        "crypto",
        "no-regime-uses-default",
    ],
)
def test_classify(counts, sensitivity, regimes):
    result = classify(counts, POLICY)
    assert (result.sensitivity, result.regimes) == (sensitivity, regimes)
    assert result.entity_counts == counts
    assert result.entity_counts is not counts


def test_classify_with_default_policy():
    policy = load_policy()
    assert classify({"PERSON": 1}, policy).as_dict() == {
        "sensitivity": "CONFIDENTIAL",
        "regimes": ["GDPR"],
        "entity_counts": {"PERSON": 1},
    }
    assert classify({"CREDIT_CARD": 1}, policy).as_dict() == {
        "sensitivity": "RESTRICTED",
        "regimes": ["GDPR", "PCI"],
        "entity_counts": {"CREDIT_CARD": 1},
    }
    assert classify({}, policy).as_dict() == {
        "sensitivity": "INTERNAL",
        "regimes": [],
        "entity_counts": {},
    }


def test_empty_sensitivity_level_is_a_policy_error():
    with pytest.raises(PolicyError, match="classification.sensitivity.RESTRICTED"):
        parse_policy(_with("classification.sensitivity.RESTRICTED", None))
