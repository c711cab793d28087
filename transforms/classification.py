"""The policy file and record classification (sensitivity level and regimes).

The policy is versioned YAML, validated when the graph is built: a bad policy fails the
build with a message that names the field. Every output record and audit event carries
``policy.version``.

Example::

    policy = load_policy("policy.yaml")
    classify({"PERSON": 2, "CREDIT_CARD": 1}, policy)
    # Classification(sensitivity="RESTRICTED", regimes=["GDPR", "PCI"], ...)
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import yaml

from veil.transforms.records import Classification

SENSITIVITY_LEVELS = ("PUBLIC", "INTERNAL", "CONFIDENTIAL", "RESTRICTED")
DEFAULT_POLICY = "policy-default.yaml"


class PolicyError(ValueError):
    """The policy file is missing, malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class TextPolicy:
    language: str
    score_threshold: float
    entities: tuple  # empty: every entity the analyzer knows
    max_chars: int


@dataclasses.dataclass(frozen=True)
class Policy:
    version: str
    text: TextPolicy
    regimes: dict  # regime -> frozenset of entity types
    sensitivity_rules: tuple  # ((level, frozenset of regimes), ...) most sensitive first
    default_sensitivity: str
    no_entity_sensitivity: str


def default_policy_path() -> Path:
    return Path(str(resources.files("veil.pipelines").joinpath("data", DEFAULT_POLICY)))


def load_policy(path: str | Path | None = None) -> Policy:
    """Reads and validates a policy file (the packaged default when ``path`` is None)."""
    path = Path(path) if path else default_policy_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
    return parse_policy(raw, str(path))


def parse_policy(raw, where: str = "policy") -> Policy:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: top level must be a mapping")
    version = raw.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError(f"{where}: 'version' must be a non-empty string")
    text = _mapping(raw, "text", where)
    threshold = text.get("score_threshold", 0.35)
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise PolicyError(f"{where}: text.score_threshold must be a number in [0, 1]")
    entities = text.get("entities", [])
    if not isinstance(entities, list) or not all(isinstance(e, str) for e in entities):
        raise PolicyError(f"{where}: text.entities must be a list of entity type names")
    max_chars = text.get("max_chars", 200_000)
    if not isinstance(max_chars, int) or max_chars <= 0:
        raise PolicyError(f"{where}: text.max_chars must be a positive integer")
    language = text.get("language", "en")
    if language != "en":
        raise PolicyError(f"{where}: text.language {language!r} is not supported (only 'en')")

    classification = _mapping(raw, "classification", where)
    regimes_raw = _mapping(classification, "regimes", f"{where}: classification")
    regimes = {}
    for regime, members in regimes_raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise PolicyError(
                f"{where}: classification.regimes.{regime} must be a list of entity types"
            )
        regimes[regime] = frozenset(members)
    rules_raw = _mapping(classification, "sensitivity", f"{where}: classification")
    rules = []
    for level in reversed(SENSITIVITY_LEVELS):
        members = rules_raw.get(level, [])
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise PolicyError(
                f"{where}: classification.sensitivity.{level} must be a list of regimes"
            )
        unknown = set(members) - set(regimes)
        if unknown:
            raise PolicyError(
                f"{where}: classification.sensitivity.{level} names unknown regimes "
                f"{sorted(unknown)}"
            )
        if members:
            rules.append((level, frozenset(members)))
    extra = set(rules_raw) - set(SENSITIVITY_LEVELS)
    if extra:
        raise PolicyError(f"{where}: unknown sensitivity levels {sorted(extra)}")
    default = classification.get("default", "CONFIDENTIAL")
    no_entities = classification.get("no_entities", "INTERNAL")
    for name, level in (("default", default), ("no_entities", no_entities)):
        if level not in SENSITIVITY_LEVELS:
            raise PolicyError(
                f"{where}: classification.{name} must be one of {list(SENSITIVITY_LEVELS)}"
            )
    return Policy(
        version=version.strip(),
        text=TextPolicy(language, float(threshold), tuple(entities), max_chars),
        regimes=regimes,
        sensitivity_rules=tuple(rules),
        default_sensitivity=default,
        no_entity_sensitivity=no_entities,
    )


def _mapping(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: '{key}' must be a mapping")
    return value


def classify(entity_counts: dict, policy: Policy) -> Classification:
    """Sensitivity and regimes from the entity types found (never their values)."""
    found = {entity for entity, count in entity_counts.items() if count > 0}
    regimes = sorted(regime for regime, members in policy.regimes.items() if found & members)
    if not found:
        level = policy.no_entity_sensitivity
    else:
        level = policy.default_sensitivity
        for candidate, members in policy.sensitivity_rules:
            if members & set(regimes):
                level = max(level, candidate, key=SENSITIVITY_LEVELS.index)
                break
    return Classification(sensitivity=level, regimes=regimes, entity_counts=dict(entity_counts))
