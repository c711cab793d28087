"""The policy file (load and validate) and classification of entity counts."""

from __future__ import annotations

import copy

import pytest
import yaml

from veil.transforms.classification import (
    PolicyError,
    classify,
    default_policy_path,
    load_policy,
    parse_policy,
)

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


def _with(path: str, value, base=None):
    """A deep copy of ``base`` (VALID) with ``path`` (dotted) set to ``value`` (``...``
    deletes it)."""
    raw = copy.deepcopy(VALID if base is None else base)
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
        (_with("version", "  "), "version: must be a non-empty string"),
        (_with("version", 3), "version: must be a non-empty string"),
        (_with("text", ...), "'text'"),
        (_with("text.score_threshold", 1.5), "text.score_threshold"),
        (_with("text.score_threshold", -0.1), "text.score_threshold"),
        (_with("text.score_threshold", "high"), "text.score_threshold"),
        (_with("text.entities", "PERSON"), "text.entities"),
        (_with("text.entities", ["PERSON", 3]), "text.entities"),
        (_with("text.max_chars", 0), "text.max_chars"),
        (_with("text.language", "fr"), "text.language"),
        (_with("classification", ...), "'classification'"),
        (_with("classification.regimes", ["GDPR"]), "classification.regimes: must be a mapping"),
        (_with("classification.regimes.PCI", "CREDIT_CARD"), "classification.regimes.PCI"),
        (
            _with("classification.sensitivity.RESTRICTED", ["HIPAA"]),
            "classification.sensitivity.RESTRICTED",
        ),
        (
            _with("classification.sensitivity.TOP_SECRET", ["PCI"]),
            "unknown key 'classification.sensitivity.TOP_SECRET'",
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


@pytest.mark.parametrize(
    "path, typo, message",
    [
        ("", "anonymise", "unknown key 'anonymise'; did you mean 'anonymize'?"),
        ("text.", "score_treshold", "'text.score_treshold'; did you mean 'text.score_threshold'?"),
        ("anonymize.text.", "entites", "did you mean 'anonymize.text.entities'?"),
        ("classification.", "no_entity", "did you mean 'classification.no_entities'?"),
        (
            "classification.sensitivity.",
            "RESTRICTD",
            "did you mean 'classification.sensitivity.RESTRICTED'?",
        ),
        ("structured.", "scan_value", "did you mean 'structured.scan_values'?"),
        ("video.", "face", "did you mean 'video.faces'?"),
        ("", "zzz_unrelated", "unknown key 'zzz_unrelated' (valid here: version, text,"),
    ],
)
def test_misspelt_policy_keys_are_errors_that_suggest_the_key(path, typo, message):
    """A typo never leaves a setting silently at its default (issue 19)."""
    raw = yaml.safe_load(default_policy_path().read_text())
    node = raw
    for part in path.rstrip(".").split(".") if path else []:
        node = node[part]
    correct = message.rsplit(".", 1)[-1].rstrip("'?") if "did you mean" in message else None
    node[typo] = node.pop(correct) if correct in node else 1
    with pytest.raises(PolicyError) as caught:
        parse_policy(raw, "p.yaml")
    assert str(caught.value).startswith("p.yaml: ")
    assert message in str(caught.value)


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


# --- operators, regimes, structured rules, keys and routing ---------------------------

from pathlib import Path  # noqa: E402

from veil.transforms.operators import OperatorSpec  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "pipelines" / "data"
FULL = _with(
    "classification.regimes",
    {
        "GDPR": ["PERSON", "DATE_TIME", "HEALTH"],
        "HIPAA_PHI": ["PERSON", "DATE_TIME"],
        "GDPR_SPECIAL_CATEGORY": ["HEALTH", "RELIGION"],
        "PCI": ["CREDIT_CARD"],
        "CREDENTIALS": ["CREDENTIAL"],
    },
)
FULL["classification"]["requires"] = {"HIPAA_PHI": ["HEALTH", "MEDICAL_RECORD_NUMBER"]}
FULL["classification"]["sensitivity"] = {
    "RESTRICTED": ["PCI", "CREDENTIALS", "GDPR_SPECIAL_CATEGORY", "HIPAA_PHI"],
    "CONFIDENTIAL": ["GDPR"],
}
FULL["anonymize"] = {
    "default": "redact",
    "text": {"default": "replace", "entities": {"CREDIT_CARD": {"operator": "mask"}}},
    "structured": {"entities": {"AGE": {"operator": "generalize", "kind": "age_band"}}},
    "regimes": {"HIPAA_PHI": {"DATE_TIME": {"operator": "generalize", "kind": "date_year"}}},
}
FULL["structured"] = {"fields": [{"match": "^e?mail$", "entity": "EMAIL_ADDRESS"}]}
FULL["keys"] = {"pseudonym_key_env": "MY_KEY_FILE"}
FULL["routing"] = {"quarantine": ["RESTRICTED"]}


def _full(path: str, value):
    return _with(path, value, FULL)


def test_operator_resolution_per_modality_entity_and_regime():
    policy = parse_policy(FULL)
    assert policy.operator_for("text", "CREDIT_CARD") == OperatorSpec.of("mask")
    assert policy.operator_for("text", "PERSON") == OperatorSpec.of("replace")
    assert policy.operator_for("structured", "PERSON") == OperatorSpec.of("redact")  # default
    assert policy.operator_for("structured", "AGE").param("kind") == "age_band"
    assert policy.operator_for("text", "DATE_TIME") == OperatorSpec.of("replace")
    year = policy.operator_for("text", "DATE_TIME", ["HIPAA_PHI"])
    assert year.param("kind") == "date_year"
    assert policy.operator_for("image", "PERSON") == OperatorSpec.of("replace")
    assert policy.structured.field_rules[0][1] == "EMAIL_ADDRESS"
    assert policy.key_env == "MY_KEY_FILE" and policy.key_file is None
    assert policy.quarantine_levels == frozenset({"RESTRICTED"})
    assert not policy.uses_keys
    assert parse_policy(_full("anonymize.text.default", "pseudonym")).uses_keys


@pytest.mark.parametrize(
    "counts, sensitivity, regimes",
    [
        ({"PERSON": 1}, "CONFIDENTIAL", ["GDPR"]),  # no health: not PHI
        ({"PERSON": 1, "HEALTH": 1}, "RESTRICTED",
         ["GDPR", "GDPR_SPECIAL_CATEGORY", "HIPAA_PHI"]),
        ({"DATE_TIME": 1}, "CONFIDENTIAL", ["GDPR"]),  # a PHI type, but no health type
        ({"DATE_TIME": 1, "MEDICAL_RECORD_NUMBER": 1}, "RESTRICTED", ["GDPR", "HIPAA_PHI"]),
        ({"RELIGION": 1}, "RESTRICTED", ["GDPR_SPECIAL_CATEGORY"]),
        ({"CREDENTIAL": 2}, "RESTRICTED", ["CREDENTIALS"]),
        ({"CREDIT_CARD": 1}, "RESTRICTED", ["PCI"]),
    ],
    ids=["gdpr", "hipaa-with-health", "requires-unmet", "requires-met", "special-category",
         "credentials", "pci"],
)  # fmt: skip
def test_regime_rules(counts, sensitivity, regimes):
    result = classify(counts, parse_policy(FULL))
    assert (result.sensitivity, result.regimes) == (sensitivity, regimes)


@pytest.mark.parametrize(
    "path, value, names",
    [
        ("anonymize", [], "anonymize: must be a mapping"),
        ("anonymize.video", {}, "unknown key 'anonymize.video'"),
        ("anonymize.default", "shred", "anonymize.default: unknown operator 'shred'"),
        ("anonymize.text.entities.PERSON", {"operator": "mask", "keep_last": 99},
         "anonymize.text.entities.PERSON.keep_last: must be an integer in [0, 8]"),
        ("anonymize.text.bogus", 1, "unknown key 'anonymize.text.bogus'"),
        ("anonymize.regimes.SOX", {}, "unknown regime 'SOX'"),
        ("anonymize.structured.entities", ["AGE"], "anonymize.structured.entities"),
        ("structured.fields", [{"match": "("}], "structured.fields[0]"),
        ("structured.fields", [{"match": "(", "entity": "X"}], "not a valid regex"),
        ("structured.max_depth", 0, "structured.max_depth"),
        ("structured.scan_values", "yes", "structured.scan_values"),
        ("keys", {"pseudonym_key": "deadbeef"}, "never a key value"),
        ("keys.pseudonym_key_env", "", "keys.pseudonym_key_env"),
        ("routing.quarantine", ["SECRET"], "routing.quarantine[0]: must be one of"),
        ("routing.topic", "x", "unknown key 'routing.topic'"),
        ("classification.requires", ["HEALTH"], "classification.requires: must be a mapping"),
        ("classification.requires.SOX", ["HEALTH"], "unknown regime 'SOX'"),
        ("text.allow_list", "Ada", "text.allow_list"),
        ("text.deny_list", ["x"], "text.deny_list"),
        ("text.deny_list", {"PROJECT": [""]}, "text.deny_list.PROJECT"),
        ("text.context_words", {"PERSON": "dr"}, "text.context_words.PERSON"),
        ("text.ner", "on", "text.ner"),
    ],
    ids=lambda v: v if isinstance(v, str) and "." in v and len(v) < 40 else None,
)  # fmt: skip
def test_bad_policy_sections_are_named(path, value, names):
    with pytest.raises(PolicyError) as caught:
        parse_policy(_full(path, value), "p.yaml")
    assert names in str(caught.value)
    assert str(caught.value).startswith("p.yaml")


@pytest.mark.parametrize("name", ["policy-default.yaml", "policy-hipaa-safe-harbor.yaml"])
def test_shipped_policies_load_and_cover_the_special_categories(name):
    policy = load_policy(DATA / name)
    assert policy.version
    special = policy.regimes["GDPR_SPECIAL_CATEGORY"]
    assert {"HEALTH", "RELIGION", "POLITICAL_AFFILIATION", "SEXUAL_ORIENTATION", "NRP"} <= special
    assert "CREDENTIAL" in policy.regimes["CREDENTIALS"]
    assert not policy.uses_keys  # shipped policies run without a pseudonym key


def test_hipaa_policy_covers_the_18_identifier_classes():
    policy = load_policy(DATA / "policy-hipaa-safe-harbor.yaml")
    phi = policy.regimes["HIPAA_PHI"]
    classes = [
        {"PERSON"}, {"STREET_ADDRESS", "LOCATION", "ZIP_CODE"}, {"DATE_TIME", "AGE"},
        {"PHONE_NUMBER"}, {"PHONE_NUMBER"}, {"EMAIL_ADDRESS"}, {"US_SSN"},
        {"MEDICAL_RECORD_NUMBER"}, {"HEALTH_PLAN_ID"}, {"ACCOUNT_NUMBER"},
        {"LICENSE_NUMBER"}, {"VEHICLE_ID"}, {"DEVICE_ID"}, {"URL"}, {"IP_ADDRESS"},
        {"BIOMETRIC_ID"}, {"BIOMETRIC_ID"}, {"ID_NUMBER"},
    ]  # fmt: skip
    assert len(classes) == 18 and all(c <= phi for c in classes)
    for entity in ("DATE_TIME", "ZIP_CODE", "AGE"):
        for modality in ("text", "structured"):
            assert policy.operator_for(modality, entity, ["HIPAA_PHI"]).name == "generalize"
    assert all(
        policy.operator_for("text", e).name == "replace"
        for e in phi - {"DATE_TIME", "ZIP_CODE", "AGE"}
    )
    assert classify({"PERSON": 1}, policy).regimes == ["GDPR", "HIPAA_PHI"]


# --- the schema -----------------------------------------------------------------------


def test_policy_schema_is_valid_json_schema_and_lists_every_default_key():
    from jsonschema import Draft202012Validator

    from veil.transforms.policy import POLICY_SCHEMA

    Draft202012Validator.check_schema(POLICY_SCHEMA)
    raw = yaml.safe_load(default_policy_path().read_text())
    top = POLICY_SCHEMA["properties"]
    assert list(top)[:2] == ["version", "text"]
    for section, body in raw.items():
        assert section in top
        if isinstance(body, dict) and "properties" in top[section]:
            assert set(body) <= set(top[section]["properties"]), section


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("text.phone_regions", ["DE", "FR", "germany"],
         "text.phone_regions[2]: must be an ISO 3166 code such as DE"),
        ("text.max_chars", 1.0, "text.max_chars: must be a positive integer"),
        ("text.max_chars", True, "text.max_chars: must be a positive integer"),
        ("text.score_threshold", True, "text.score_threshold: must be a number in [0, 1]"),
        ("structured.fields", [{"match": "x", "entity": "E", "extra": 1}],
         "unknown key 'structured.fields[0].extra'"),
        ("anonymize.regimes.PCI", {"CREDIT_CARD": {"operator": "generalize"}},
         "missing required key 'anonymize.regimes.PCI.CREDIT_CARD.kind'"),
        ("audio", {"min_transcript_confidence": 2}, "audio.min_transcript_confidence: must be"),
        ("video", {"faces": "none"}, "video.faces: must be one of ['fill', 'pixelate', 'blur']"),
    ],
)  # fmt: skip
def test_schema_errors_name_the_field_with_its_index(path, value, message):
    with pytest.raises(PolicyError) as caught:
        parse_policy(_full(path, value), "p.yaml")
    assert str(caught.value).startswith(f"p.yaml: {message}")


@pytest.mark.parametrize(
    "keys",
    [
        {"pseudonym_key": "00112233445566778899aabbccddeeff"},
        {"pseudonym_key_secret": "00112233445566778899aabbccddeeff"},
        {"pseudonym_key_env": 1234567890123456},
    ],
)
def test_a_key_value_in_the_policy_is_refused_without_echoing_it(keys):
    with pytest.raises(PolicyError) as caught:
        parse_policy(_full("keys", keys), "p.yaml")
    assert "00112233" not in str(caught.value) and "1234567890" not in str(caught.value)
    assert "keys" in str(caught.value)


def test_pseudonym_key_uri_and_its_aliases():
    uri = parse_policy(_full("keys", {"pseudonym_key": "file:/etc/veil/p.key"}))
    assert uri.key_file == "file:/etc/veil/p.key" and uri.key_uri == "file:/etc/veil/p.key"
    legacy = parse_policy(_full("keys", {"pseudonym_key_file": "/etc/veil/p.key"}))
    assert legacy.key_uri == "/etc/veil/p.key"
    env = parse_policy(_full("keys", {"pseudonym_key_env": "MY_KEY_FILE"}))
    assert env.key_uri == "env:MY_KEY_FILE"
    assert parse_policy(VALID).key_uri == "env:VEIL_PSEUDONYM_KEY_FILE"


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"pseudonym_key": "s3:bucket/key"}, "keys.pseudonym_key: unknown key URI scheme 's3:'"),
        ({"pseudonym_key": "env:"}, "keys.pseudonym_key: an env: key URI needs a variable"),
        ({"pseudonym_key_file": "kms:local?keyring=/k"}, "keys.pseudonym_key_file: kms:"),
    ],
)
def test_policy_key_uris_are_checked_when_the_policy_loads(keys, message):
    with pytest.raises(PolicyError) as caught:
        parse_policy(_full("keys", keys), "p.yaml")
    assert str(caught.value).startswith(f"p.yaml: {message}")


def test_parsed_policy_is_frozen():
    import dataclasses

    policy = parse_policy(FULL)
    for obj in (policy, policy.text, policy.structured, policy.video, policy.audio):
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.version = "x"


def test_an_operator_registered_later_is_accepted_by_the_policy():
    from veil.transforms.operators import REGISTRY, Operator, register

    @register
    class Upper(Operator):
        name = "upper_for_test"

        def operate(self, value, entity_type, params, ctx, field_path):
            return value.upper()

    try:
        policy = parse_policy(_full("anonymize.text.entities.PERSON", "upper_for_test"))
        assert policy.operator_for("text", "PERSON") == OperatorSpec.of("upper_for_test")
    finally:
        del REGISTRY["upper_for_test"]
    with pytest.raises(PolicyError, match="unknown operator 'upper_for_test'"):
        parse_policy(_full("anonymize.text.entities.PERSON", "upper_for_test"))


def test_reidentification_roles_are_lists_not_strings():
    """A bare string would be read as a set of letters by `veil reveal`."""
    raw = yaml.safe_load(default_policy_path().read_text())
    raw["reidentification"] = {"default": None, "regimes": {"PCI": None, "GDPR": ["dpo"]}}
    assert parse_policy(raw).version
    raw["reidentification"] = {"default": "privacy-officer"}
    with pytest.raises(PolicyError, match="reidentification.default: must be a list of roles"):
        parse_policy(raw, "p.yaml")
