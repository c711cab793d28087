"""The policy file and record classification (sensitivity level and regimes).

The policy is versioned YAML, validated when the graph is built: a bad policy fails the
build with a message that names the field. Every output record and audit event carries
``policy.version``. Sections (see ``pipelines/data/policy-default.yaml``):

* ``text``: language, score threshold, entity types, size limit, allow- and deny-lists,
  extra context words per entity type, whether spaCy's NER runs.
* ``anonymize``: operators per modality (``text``, ``structured``) and entity type,
  with a per-modality ``default``, and per-regime overrides (``regimes``) that win when
  a record falls under that regime (e.g. HIPAA PHI: dates to year).
* ``structured``: field-name rules (regex on the field name -> entity type).
* ``classification``: regimes (entity types that imply them, optionally only together
  with a required entity type) and the sensitivity rules.
* ``keys``: where the pseudonym key file is found on the worker (a path or the name of
  an environment variable; never a key value).
* ``routing``: sensitivity levels whose records go to the quarantine topic.

Example::

    policy = load_policy("policy.yaml")
    classify({"PERSON": 2, "CREDIT_CARD": 1}, policy)
    # Classification(sensitivity="RESTRICTED", regimes=["GDPR", "PCI"], ...)
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from veil.transforms.operators import OperatorError, OperatorSpec, parse_operator
from veil.transforms.records import Classification

SENSITIVITY_LEVELS = ("PUBLIC", "INTERNAL", "CONFIDENTIAL", "RESTRICTED")
DEFAULT_POLICY = "policy-default.yaml"


class PolicyError(ValueError):
    """The policy file is missing, malformed or inconsistent."""


MODALITY_SECTIONS = ("text", "structured")
DEFAULT_OPERATOR = OperatorSpec.of("replace")


@dataclasses.dataclass(frozen=True)
class TextPolicy:
    language: str
    score_threshold: float
    entities: tuple  # empty: every entity the analyzer knows
    max_chars: int
    allow_list: frozenset = frozenset()  # values never anonymized (case-insensitive)
    deny_list: tuple = ()  # ((entity type, (value, ...)), ...): always anonymized
    context_words: tuple = ()  # ((entity type, (word, ...)), ...): extra context
    ner: bool = True  # spaCy NER for names, places and organisations
    # Regions whose national phone formats are validated (ISO 3166 codes; empty: default).
    phone_regions: tuple = ()
    # Presidio recognizers (canonical JSON, see veil.transforms.text.presidio).
    recognizers: tuple = ()

    @property
    def recognizers_digest(self) -> str:
        import hashlib

        return hashlib.sha256("\n".join(self.recognizers).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class StructuredPolicy:
    field_rules: tuple = ()  # ((compiled regex on the field name, entity type), ...)
    scan_values: bool = True  # run the text detectors on string values too
    max_depth: int = 32


VIDEO_AUDIO_MODES = ("drop", "anonymize")
VIDEO_FACE_MODES = ("fill", "pixelate", "blur")


@dataclasses.dataclass(frozen=True)
class VideoPolicy:
    """``video``: how faces are covered and what happens to the audio track.

    ``audio: drop`` (default) removes the track; ``anonymize`` sends it through the
    audio branch (voice change, spoken PII blanked), which needs the voice key: without
    it such videos are dead-lettered ``AUDIO_KEY_UNAVAILABLE`` (fail closed, never
    published with the original voice).
    """

    faces: str = "fill"
    audio: str = "drop"


UNRELIABLE_SPEECH_ACTIONS = ("quarantine", "publish")


@dataclasses.dataclass(frozen=True)
class AudioPolicy:
    """``audio``: what happens to speech Veil could not transcribe reliably.

    Spoken-PII removal is only as good as the recognizer. When a recording's transcript
    confidence (``veil.transforms.audio.asr.Transcript``) is below
    ``min_transcript_confidence``, ``unreliable_speech: quarantine`` (default) sends the
    anonymized record to the quarantine topic instead of the sanitized one, with reason
    ``AUDIO_TRANSCRIPT_UNRELIABLE``; ``publish`` publishes it, still marked.
    """

    unreliable_speech: str = "quarantine"
    min_transcript_confidence: float = 0.3


@dataclasses.dataclass(frozen=True)
class Policy:
    version: str
    text: TextPolicy
    regimes: dict  # regime -> frozenset of entity types
    sensitivity_rules: tuple  # ((level, frozenset of regimes), ...) most sensitive first
    default_sensitivity: str
    no_entity_sensitivity: str
    # modality -> (default OperatorSpec, {entity type: OperatorSpec})
    operators: dict = dataclasses.field(default_factory=dict)
    # ((regime, {entity type: OperatorSpec}), ...) in policy order; first match wins
    regime_operators: tuple = ()
    regime_requires: dict = dataclasses.field(default_factory=dict)  # regime -> frozenset
    structured: StructuredPolicy = StructuredPolicy()
    key_file: str | None = None
    key_env: str | None = None
    quarantine_levels: frozenset = frozenset()
    video: VideoPolicy = VideoPolicy()
    audio: AudioPolicy = AudioPolicy()

    def operator_for(self, modality: str, entity_type: str, regimes=()) -> OperatorSpec:
        """The operator for ``entity_type`` in a record of ``modality`` under ``regimes``."""
        for regime, table in self.regime_operators:
            if regime in regimes and entity_type in table:
                return table[entity_type]
        default, table = self.operators.get(modality, (DEFAULT_OPERATOR, {}))
        return table.get(entity_type, default)

    @property
    def uses_keys(self) -> bool:
        specs = [s for _, (d, t) in self.operators.items() for s in (d, *t.values())]
        specs += [s for _, t in self.regime_operators for s in t.values()]
        return any(s.keyed for s in specs)


# The policy's key tree, checked before anything is read from it, so that a misspelt
# key (``anonymise``, ``score_treshold``) is an error naming the nearest valid key
# instead of a setting silently left at its default. A dict lists a mapping's keys;
# ``None`` is a leaf (its value is checked by ``parse_policy``); ``FREE`` is a mapping
# whose keys are names the policy chooses (entity types, regimes), each holding ``FREE``'s
# value schema.
class _Free(dict):
    """A mapping with user-chosen keys; ``_Free(schema)`` checks each value with ``schema``."""

    def __init__(self, values=None):
        super().__init__()
        self.values_schema = values


class _Section(dict):
    """A mapping with fixed keys and a note added to an unknown-key error."""

    def __init__(self, keys: dict, note: str):
        super().__init__(keys)
        self.note = note


_LEVELS = {level: None for level in SENSITIVITY_LEVELS}
_OPERATOR_TABLE = _Free(None)  # entity type -> operator (checked by parse_operator)
POLICY_SCHEMA = {
    "version": None,
    "text": {
        "language": None,
        "score_threshold": None,
        "entities": None,
        "max_chars": None,
        "ner": None,
        "allow_list": None,
        "deny_list": _Free(None),
        "context_words": _Free(None),
        "phone_regions": None,
        "recognizers": None,  # Presidio recognizers (veil.transforms.text.presidio checks them)
    },
    "anonymize": {
        "default": None,
        "text": {"default": None, "entities": _OPERATOR_TABLE},
        "structured": {"default": None, "entities": _OPERATOR_TABLE},
        "regimes": _Free(_OPERATOR_TABLE),
    },
    "structured": {"scan_values": None, "max_depth": None, "fields": None},
    "classification": {
        "regimes": _Free(None),
        "requires": _Free(None),
        "sensitivity": _LEVELS,
        "default": None,
        "no_entities": None,
    },
    "keys": _Section(
        {"pseudonym_key_file": None, "pseudonym_key_env": None},
        "'keys' names a key file or an environment variable, never a key value",
    ),
    "video": {"faces": None, "audio": None},
    "audio": {"unreliable_speech": None, "min_transcript_confidence": None},
    "routing": {"quarantine": None},
    # Read by ``veil reveal`` (veil.transforms.crypto.reveal): roles per regime.
    "reidentification": {"default": None, "regimes": _Free(None)},
}


def check_policy_keys(raw, where: str = "policy", schema=POLICY_SCHEMA, path: str = "") -> None:
    """Raises ``PolicyError`` for the first key ``schema`` does not know, naming the key,
    where it is and the nearest valid key (``did you mean 'anonymize'?``)."""
    import difflib

    if not isinstance(raw, dict) or schema is None:
        return
    if isinstance(schema, _Free):
        for key, value in raw.items():
            check_policy_keys(value, where, schema.values_schema, f"{path}{key}.")
        return
    for key, value in raw.items():
        if key not in schema:
            near = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            hint = f"; did you mean '{path}{near[0]}'?" if near else ""
            known = ", ".join(schema)
            note = f"; {schema.note}" if isinstance(schema, _Section) else ""
            raise PolicyError(
                f"{where}: unknown key '{path}{key}'{hint} (valid here: {known}){note}"
            )
        check_policy_keys(value, where, schema[key], f"{path}{key}.")


def default_policy_path() -> Path:
    """The packaged default policy, ``veil/pipelines/data/policy-default.yaml``.

    Found next to this package (``veil.transforms`` and ``veil.pipelines`` are siblings
    in the source tree and in an installed wheel) rather than through
    ``importlib.resources``, which would import ``veil.pipelines``: ``veil.transforms``
    never imports it (``.importlinter``).
    """
    return Path(__file__).resolve().parent.parent / "pipelines" / "data" / DEFAULT_POLICY


def load_policy(path: str | Path | None = None) -> Policy:
    """Reads and validates a policy file (the packaged default when ``path`` is None)."""
    path = Path(path) if path else default_policy_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
    return parse_policy(raw, str(path), path.parent)


def parse_policy(raw, where: str = "policy", base_dir: Path | None = None) -> Policy:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: top level must be a mapping")
    check_policy_keys(raw, where)
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
    allow = _strings(text.get("allow_list", []), f"{where}: text.allow_list")
    deny = _string_table(text.get("deny_list", {}), f"{where}: text.deny_list")
    context = _string_table(text.get("context_words", {}), f"{where}: text.context_words")
    ner = text.get("ner", True)
    if not isinstance(ner, bool):
        raise PolicyError(f"{where}: text.ner must be true or false")
    phone_regions = _strings(text.get("phone_regions", []), f"{where}: text.phone_regions")
    if any(not (len(r) == 2 and r.isalpha() and r.isupper()) for r in phone_regions):
        raise PolicyError(f"{where}: text.phone_regions must be ISO 3166 codes such as DE")
    from veil.transforms.text.presidio import parse_recognizer_entries

    recognizers = parse_recognizer_entries(text.get("recognizers", []), where, base_dir)

    classification = _mapping(raw, "classification", where)
    regimes_raw = _mapping(classification, "regimes", f"{where}: classification")
    regimes = {}
    for regime, members in regimes_raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise PolicyError(
                f"{where}: classification.regimes.{regime} must be a list of entity types"
            )
        regimes[regime] = frozenset(members)
    requires = {}
    requires_raw = classification.get("requires") or {}
    if not isinstance(requires_raw, dict):
        raise PolicyError(f"{where}: classification.requires must be a mapping of regime to types")
    for regime, members in requires_raw.items():
        if regime not in regimes:
            raise PolicyError(f"{where}: classification.requires names unknown regime {regime!r}")
        requires[regime] = frozenset(
            _strings(members, f"{where}: classification.requires.{regime}")
        )
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
    operators, regime_operators = _parse_anonymize(raw.get("anonymize", {}), regimes, where)
    structured = _parse_structured(raw.get("structured", {}), where)
    keys = raw.get("keys", {}) or {}
    if not isinstance(keys, dict) or set(keys) - {"pseudonym_key_file", "pseudonym_key_env"}:
        raise PolicyError(
            f"{where}: 'keys' may only name pseudonym_key_file or pseudonym_key_env "
            "(a path or an environment variable; never a key value)"
        )
    key_file = keys.get("pseudonym_key_file")
    key_env = keys.get("pseudonym_key_env", "VEIL_PSEUDONYM_KEY_FILE")
    for name, value in (("pseudonym_key_file", key_file), ("pseudonym_key_env", key_env)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise PolicyError(f"{where}: keys.{name} must be a non-empty string")
    routing = raw.get("routing", {}) or {}
    if not isinstance(routing, dict) or set(routing) - {"quarantine"}:
        raise PolicyError(f"{where}: 'routing' may only hold 'quarantine'")
    quarantine = _strings(routing.get("quarantine", []), f"{where}: routing.quarantine")
    bad_levels = set(quarantine) - set(SENSITIVITY_LEVELS)
    if bad_levels:
        raise PolicyError(f"{where}: routing.quarantine names unknown levels {sorted(bad_levels)}")
    return Policy(
        version=version.strip(),
        text=TextPolicy(
            language,
            float(threshold),
            tuple(entities),
            max_chars,
            allow_list=frozenset(v.casefold() for v in allow),
            deny_list=deny,
            context_words=context,
            ner=ner,
            phone_regions=tuple(phone_regions),
            recognizers=recognizers,
        ),
        regimes=regimes,
        sensitivity_rules=tuple(rules),
        default_sensitivity=default,
        no_entity_sensitivity=no_entities,
        operators=operators,
        regime_operators=regime_operators,
        regime_requires=requires,
        structured=structured,
        key_file=key_file,
        key_env=key_env,
        quarantine_levels=frozenset(quarantine),
        video=_parse_video(raw.get("video", {}), where),
        audio=_parse_audio(raw.get("audio", {}), where),
    )


def _strings(value, where: str) -> tuple:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def _string_table(value, where: str) -> tuple:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping of entity type to a list of strings")
    return tuple(
        (str(key), _strings(members, f"{where}.{key}")) for key, members in sorted(value.items())
    )


def _operator_table(raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be a mapping of entity type to operator")
    table = {}
    for entity_type, spec in raw.items():
        try:
            table[str(entity_type)] = parse_operator(spec, f"{where}.{entity_type}")
        except OperatorError as exc:
            raise PolicyError(str(exc)) from None
    return table


def _parse_anonymize(raw, regimes: dict, where: str) -> tuple[dict, tuple]:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: 'anonymize' must be a mapping")
    extra = set(raw) - {"default", "regimes", *MODALITY_SECTIONS}
    if extra:
        raise PolicyError(f"{where}: anonymize has unknown sections {sorted(extra)}")
    try:
        default = parse_operator(raw.get("default", "replace"), f"{where}: anonymize.default")
    except OperatorError as exc:
        raise PolicyError(str(exc)) from None
    operators = {}
    for modality in MODALITY_SECTIONS:
        section = raw.get(modality, {}) or {}
        if not isinstance(section, dict):
            raise PolicyError(f"{where}: anonymize.{modality} must be a mapping")
        unknown = set(section) - {"default", "entities"}
        if unknown:
            raise PolicyError(f"{where}: anonymize.{modality} has unknown keys {sorted(unknown)}")
        try:
            modality_default = (
                parse_operator(section["default"], f"{where}: anonymize.{modality}.default")
                if "default" in section
                else default
            )
        except OperatorError as exc:
            raise PolicyError(str(exc)) from None
        table = _operator_table(
            section.get("entities", {}), f"{where}: anonymize.{modality}.entities"
        )
        operators[modality] = (modality_default, table)
    regime_operators = []
    regimes_raw = raw.get("regimes", {}) or {}
    if not isinstance(regimes_raw, dict):
        raise PolicyError(f"{where}: anonymize.regimes must be a mapping")
    for regime, table in regimes_raw.items():
        if regime not in regimes:
            raise PolicyError(f"{where}: anonymize.regimes names unknown regime {regime!r}")
        regime_operators.append(
            (regime, _operator_table(table, f"{where}: anonymize.regimes.{regime}"))
        )
    return operators, tuple(regime_operators)


def _parse_structured(raw, where: str) -> StructuredPolicy:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: 'structured' must be a mapping")
    rules = []
    for index, rule in enumerate(raw.get("fields", []) or []):
        if not isinstance(rule, dict) or set(rule) != {"match", "entity"}:
            raise PolicyError(
                f"{where}: structured.fields[{index}] must be {{match: REGEX, entity: TYPE}}"
            )
        try:
            pattern = re.compile(str(rule["match"]), re.IGNORECASE)
        except re.error:
            raise PolicyError(
                f"{where}: structured.fields[{index}].match is not a valid regex"
            ) from None
        rules.append((pattern, str(rule["entity"])))
    scan = raw.get("scan_values", True)
    if not isinstance(scan, bool):
        raise PolicyError(f"{where}: structured.scan_values must be true or false")
    depth = raw.get("max_depth", 32)
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 256:
        raise PolicyError(f"{where}: structured.max_depth must be an integer in [1, 256]")
    return StructuredPolicy(tuple(rules), scan, depth)


def _parse_video(raw, where: str) -> VideoPolicy:
    if raw is None:
        return VideoPolicy()
    if not isinstance(raw, dict) or set(raw) - {"faces", "audio"}:
        raise PolicyError(f"{where}: 'video' may only hold 'faces' and 'audio'")
    faces = raw.get("faces", "fill")
    if faces not in VIDEO_FACE_MODES:
        raise PolicyError(f"{where}: video.faces must be one of {list(VIDEO_FACE_MODES)}")
    audio = raw.get("audio", "drop")
    if audio not in VIDEO_AUDIO_MODES:
        raise PolicyError(f"{where}: video.audio must be one of {list(VIDEO_AUDIO_MODES)}")
    return VideoPolicy(faces=faces, audio=audio)


def _parse_audio(raw, where: str) -> AudioPolicy:
    if raw is None:
        return AudioPolicy()
    allowed = {"unreliable_speech", "min_transcript_confidence"}
    if not isinstance(raw, dict) or set(raw) - allowed:
        raise PolicyError(f"{where}: 'audio' may only hold {sorted(allowed)}")
    action = raw.get("unreliable_speech", "quarantine")
    if action not in UNRELIABLE_SPEECH_ACTIONS:
        raise PolicyError(
            f"{where}: audio.unreliable_speech must be one of {list(UNRELIABLE_SPEECH_ACTIONS)}"
        )
    threshold = raw.get("min_transcript_confidence", 0.3)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise PolicyError(f"{where}: audio.min_transcript_confidence must be a number")
    if not 0.0 <= threshold <= 1.0:
        raise PolicyError(f"{where}: audio.min_transcript_confidence must be in [0, 1]")
    return AudioPolicy(action, float(threshold))


def _mapping(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: '{key}' must be a mapping")
    return value


def classify(entity_counts: dict, policy: Policy) -> Classification:
    """Sensitivity and regimes from the entity types found (never their values).

    A regime applies when the record holds one of its entity types and, if the policy
    gives ``classification.requires`` for it, also one of the required types (e.g.
    HIPAA PHI: an identifier together with health information).
    """
    found = {entity for entity, count in entity_counts.items() if count > 0}
    regimes = sorted(
        regime
        for regime, members in policy.regimes.items()
        if found & members
        and (regime not in policy.regime_requires or found & policy.regime_requires[regime])
    )
    if not found:
        level = policy.no_entity_sensitivity
    else:
        level = policy.default_sensitivity
        for candidate, members in policy.sensitivity_rules:
            if members & set(regimes):
                level = max(level, candidate, key=SENSITIVITY_LEVELS.index)
                break
    return Classification(sensitivity=level, regimes=regimes, entity_counts=dict(entity_counts))
