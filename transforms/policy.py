"""The policy file: one JSON Schema, parsed into frozen dataclasses.

The policy is versioned YAML (reference: docs/policy.md), validated when the graph is
built: a bad policy fails the build with a message that names the field
(``p.yaml: text.phone_regions[2]: must be an ISO 3166 code such as DE``) and a misspelt
key names the nearest valid one (``unknown key 'anonymise'; did you mean 'anonymize'?``),
so a typo never leaves a setting silently at its default. Every output record and audit
event carries ``policy.version``.

``POLICY_SCHEMA`` (JSON Schema Draft 2020-12, checked by ``jsonschema``) lists every key;
operator entries follow each registered operator's own schema
(``veil.transforms.operators``). What a schema cannot say (a regime named in
``classification.sensitivity`` must be defined in ``classification.regimes``; Presidio
recognizer entries) is checked after it, in ``_cross_checks`` and
``veil.transforms.text.presidio``. Defaults live in the dataclasses.

Example::

    policy = load_policy("policy.yaml")
    policy.operator_for("text", "CREDIT_CARD", regimes=["PCI"])
    # OperatorSpec(name='mask', params=(('keep_last', 4),))
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from pathlib import Path

from veil.transforms import operators
from veil.transforms.operators import OperatorSpec, spec_of

SENSITIVITY_LEVELS = ("PUBLIC", "INTERNAL", "CONFIDENTIAL", "RESTRICTED")
DEFAULT_POLICY = "policy-default.yaml"
MODALITY_SECTIONS = ("text", "structured")
DEFAULT_OPERATOR = OperatorSpec.of("replace")
DEFAULT_KEY_ENV = "VEIL_PSEUDONYM_KEY_FILE"
VIDEO_AUDIO_MODES = ("drop", "anonymize")
VIDEO_FACE_MODES = ("fill", "pixelate", "blur")
UNRELIABLE_SPEECH_ACTIONS = ("quarantine", "publish")


class PolicyError(ValueError):
    """The policy file is missing, malformed or inconsistent."""


# --- the parsed policy ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TextPolicy:
    """``text``: what the text detectors look for."""

    language: str = "en"
    score_threshold: float = 0.35
    entities: tuple = ()  # empty: every entity the analyzer knows
    max_chars: int = 200_000
    allow_list: frozenset = frozenset()  # values never anonymized (case-folded)
    deny_list: tuple = ()  # ((entity type, (value, ...)), ...): always anonymized
    context_words: tuple = ()  # ((entity type, (word, ...)), ...): extra context
    ner: bool = True  # spaCy NER for names, places and organisations
    # Regions whose national phone formats are validated (ISO 3166 codes; empty: default).
    phone_regions: tuple = ()
    # Presidio recognizers (canonical JSON, see veil.transforms.text.presidio).
    recognizers: tuple = ()

    @property
    def recognizers_digest(self) -> str:
        return hashlib.sha256("\n".join(self.recognizers).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class StructuredPolicy:
    """``structured``: field-name rules and how deep JSON records are walked."""

    field_rules: tuple = ()  # ((compiled regex on the field name, entity type), ...)
    scan_values: bool = True  # run the text detectors on string values too
    max_depth: int = 32


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
    default_sensitivity: str = "CONFIDENTIAL"
    no_entity_sensitivity: str = "INTERNAL"
    # modality -> (default OperatorSpec, {entity type: OperatorSpec})
    operators: dict = dataclasses.field(default_factory=dict)
    # ((regime, {entity type: OperatorSpec}), ...) in policy order; first match wins
    regime_operators: tuple = ()
    regime_requires: dict = dataclasses.field(default_factory=dict)  # regime -> frozenset
    structured: StructuredPolicy = StructuredPolicy()
    # The pseudonym key: a key URI (``file:``, ``env:``, ``kms:``, ``pkcs11:``; see
    # veil.transforms.key_uri) or, as an alias, a path; else the file named by $key_env.
    key_file: str | None = None
    key_env: str | None = DEFAULT_KEY_ENV
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
    def key_uri(self) -> str:
        """The pseudonym key's URI (``env:NAME`` when only the variable names it)."""
        return self.key_file or f"env:{self.key_env}"

    @property
    def uses_keys(self) -> bool:
        specs = [s for _, (d, t) in self.operators.items() for s in (d, *t.values())]
        specs += [s for _, t in self.regime_operators for s in t.values()]
        return any(s.keyed for s in specs)


# --- the schema -----------------------------------------------------------------------


def _strings(what: str = "non-empty strings", item: dict | None = None) -> dict:
    item = item or _string("must be a non-empty string", minLength=1)
    return {"type": "array", "items": item, "x-message": f"must be a list of {what}"}


def _string(message: str, **extra) -> dict:
    return {"type": "string", "x-message": message, **extra}


def _table(values: dict, what: str, nullable: bool = False) -> dict:
    """A mapping whose keys the policy chooses (entity types, regimes)."""
    kinds = ["object", "null"] if nullable else "object"
    return {"type": kinds, "additionalProperties": values, "x-message": f"must be {what}"}


def _section(properties: dict, nullable: bool = True, **extra) -> dict:
    """A mapping with fixed keys (``null`` allowed unless ``nullable`` is False)."""
    return {
        "type": ["object", "null"] if nullable else "object",
        "properties": properties,
        "additionalProperties": False,
        "x-message": "must be a mapping",
        **extra,
    }


def _one_of(values, message: str | None = None) -> dict:
    return {"enum": list(values), "x-message": message or f"must be one of {list(values)}"}


def _number(low, high, kind="number") -> dict:
    word = "an integer" if kind == "integer" else "a number"
    message = f"must be {word} in [{low}, {high}]"
    return {"type": kind, "minimum": low, "maximum": high, "x-message": message}


_BOOL = {"type": "boolean", "x-message": "must be true or false"}
_NAME = _string("must be a non-empty string", pattern=r"\S")
_OPERATOR = {"$ref": "#/$defs/operator"}
_OPERATORS = _table(_OPERATOR, "a mapping of entity type to operator", nullable=True)
_TYPES = _strings("entity types")
_STRING_TABLE = _table(_strings(), "a mapping of entity type to a list of strings")
_LEVELS = {level: _strings("regimes") for level in reversed(SENSITIVITY_LEVELS)}
_KEY_URI = _string(
    "must be a key URI (file:PATH, env:NAME, kms:..., pkcs11:...), never a key value",
    pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:",
)
_ROLES = {**_strings("roles"), "type": ["array", "null"]}
_FIELD_RULE = {
    "type": "object",
    "required": ["match", "entity"],
    "additionalProperties": False,
    "properties": {
        "match": _string("is not a valid regex", format="regex"),
        "entity": _string("must be an entity type", minLength=1),
    },
    "x-message": "must be {match: REGEX, entity: TYPE}",
}

_TEXT = _section(
    {
        "language": _one_of(["en"], "{value!r} is not supported (only 'en')"),
        "score_threshold": _number(0, 1),
        "entities": _strings("entity type names"),
        "max_chars": {"type": "integer", "minimum": 1, "x-message": "must be a positive integer"},
        "ner": _BOOL,
        "allow_list": _strings(),
        "deny_list": _STRING_TABLE,
        "context_words": _STRING_TABLE,
        "phone_regions": _strings(
            "ISO 3166 codes", _string("must be an ISO 3166 code such as DE", pattern="^[A-Z]{2}$")
        ),
        # Presidio recognizers: veil.transforms.text.presidio checks each entry.
        "recognizers": {"type": ["array", "null"], "x-message": "must be a list"},
    },
    nullable=False,
)
_CLASSIFICATION = _section(
    {
        "regimes": _table(_TYPES, "a mapping of regime to entity types"),
        "requires": _table(_TYPES, "a mapping of regime to entity types", nullable=True),
        "sensitivity": _section(_LEVELS, nullable=False),
        "default": _one_of(SENSITIVITY_LEVELS),
        "no_entities": _one_of(SENSITIVITY_LEVELS),
    },
    nullable=False,
    required=["regimes", "sensitivity"],
)
_NOT_A_VALUE = "'keys' names a key (a URI, a file or an environment variable), never a key value"
_KEYS = _section(
    {
        "pseudonym_key": _KEY_URI,  # veil.transforms.key_uri; the two below are aliases
        "pseudonym_key_file": _NAME,
        "pseudonym_key_env": _NAME,
    },
    **{"x-note": _NOT_A_VALUE},
)


def policy_schema() -> dict:
    """The policy's JSON Schema, with the operators registered now."""
    return _policy_schema(tuple(operators.REGISTRY))


@functools.lru_cache(maxsize=4)
def _policy_schema(_names: tuple) -> dict:
    anonymize = {"default": _OPERATOR, "entities": _OPERATORS}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Veil policy",
        "type": "object",
        "x-message": "top level must be a mapping",
        "required": ["version", "text", "classification"],
        "additionalProperties": False,
        "$defs": {"operator": operators.operator_schema()},
        "properties": {
            "version": _NAME,
            "text": _TEXT,
            "anonymize": _section(
                {
                    "default": _OPERATOR,
                    **{modality: _section(anonymize) for modality in MODALITY_SECTIONS},
                    "regimes": _table(_OPERATORS, "a mapping of regime to operators", True),
                }
            ),
            "structured": _section(
                {
                    "scan_values": _BOOL,
                    "max_depth": _number(1, 256, "integer"),
                    "fields": {"type": ["array", "null"], "items": _FIELD_RULE},
                }
            ),
            "classification": _CLASSIFICATION,
            "keys": _KEYS,
            "video": _section(
                {"faces": _one_of(VIDEO_FACE_MODES), "audio": _one_of(VIDEO_AUDIO_MODES)}
            ),
            "audio": _section(
                {
                    "unreliable_speech": _one_of(UNRELIABLE_SPEECH_ACTIONS),
                    "min_transcript_confidence": _number(0, 1),
                }
            ),
            "routing": _section(
                {"quarantine": _strings("sensitivity levels", _one_of(SENSITIVITY_LEVELS))}
            ),
            # Read by ``veil reveal`` (veil.transforms.crypto.reveal): roles per regime.
            "reidentification": _section(
                {
                    "default": _ROLES,
                    "regimes": _table(_ROLES, "a mapping of regime to roles", nullable=True),
                }
            ),
        },
    }


#: The schema with the built-in operators (the CLI and docs read it).
POLICY_SCHEMA = policy_schema()


def check_policy_keys(raw, where: str = "policy") -> None:
    """Raises ``PolicyError`` for the first key the schema does not know, naming the
    key, where it is and the nearest valid key (``did you mean 'anonymize'?``)."""
    from veil.transforms.validation import StrictValidator, describe

    errors = StrictValidator(policy_schema()).iter_errors(raw)
    unknown = [e for e in errors if e.validator == "additionalProperties"]
    if unknown:
        first = min(unknown, key=lambda e: len(e.absolute_path))
        raise PolicyError(f"{where}: {describe(first)}")


# --- loading --------------------------------------------------------------------------


def default_policy_path() -> Path:
    """The packaged default policy, ``veil/pipelines/data/policy-default.yaml``.

    Found next to this package (``veil.transforms`` and ``veil.pipelines`` are siblings
    in the source tree and in an installed wheel) rather than through
    ``importlib.resources``, which would import ``veil.pipelines``: ``veil.transforms``
    never imports it.
    """
    return Path(__file__).resolve().parent.parent / "pipelines" / "data" / DEFAULT_POLICY


def load_yaml(text: str):
    """``yaml.safe_load`` through libyaml's safe loader where PyYAML was built with it
    (PyPI's wheels are): the same safe constructors at a tenth of the pure-Python
    loader's CPU. PyYAML is imported here, not with the module: step workers unpickle
    policies and never read one (~0.03 CPU-s)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506


#: Policies already parsed in this process, by file and text: a run reads its policy
#: more than once (``veil sanitize`` checks it before building the graph, which reads it
#: again). Only those that read no other file (no Presidio recognizer files).
_PARSED: dict = {}
_PARSED_MAX = 8


def load_policy(path: str | Path | None = None) -> Policy:
    """Reads and validates a policy file (the packaged default when ``path`` is None)."""
    path = Path(path) if path else default_policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc.strerror}") from None
    key = (str(path.resolve()), text)
    policy = _PARSED.get(key)
    if policy is not None:
        return policy
    import yaml

    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
    policy = parse_policy(raw, str(path), path.parent)
    if not policy.text.recognizers:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = policy
    return policy


def parse_policy(raw, where: str = "policy", base_dir: Path | None = None) -> Policy:
    """Validates ``raw`` (the YAML document) against the schema and builds the ``Policy``."""
    from veil.transforms.validation import first_error  # jsonschema: only here

    problem = first_error(policy_schema(), raw)
    if problem:
        raise PolicyError(f"{where}: {problem}")
    _cross_checks(raw, where)
    from veil.transforms.text.presidio import parse_recognizer_entries

    text, classification = raw["text"], raw["classification"]
    regimes = {name: frozenset(types) for name, types in classification["regimes"].items()}
    sensitivity = classification["sensitivity"]
    keys = raw.get("keys") or {}
    return Policy(
        version=raw["version"].strip(),
        text=_build(
            TextPolicy,
            text,
            score_threshold=float,
            entities=tuple,
            allow_list=lambda v: frozenset(s.casefold() for s in v),
            deny_list=_sorted_table,
            context_words=_sorted_table,
            phone_regions=tuple,
            recognizers=lambda v: parse_recognizer_entries(v, where, base_dir),
        ),
        regimes=regimes,
        sensitivity_rules=tuple(
            (level, frozenset(sensitivity[level]))
            for level in reversed(SENSITIVITY_LEVELS)
            if sensitivity.get(level)
        ),
        default_sensitivity=classification.get("default", "CONFIDENTIAL"),
        no_entity_sensitivity=classification.get("no_entities", "INTERNAL"),
        operators=_modality_operators(raw.get("anonymize") or {}, where),
        regime_operators=tuple(
            (regime, _operator_table(table, f"{where}: anonymize.regimes.{regime}"))
            for regime, table in ((raw.get("anonymize") or {}).get("regimes") or {}).items()
        ),
        regime_requires={
            regime: frozenset(types)
            for regime, types in (classification.get("requires") or {}).items()
        },
        structured=_build(
            StructuredPolicy,
            raw.get("structured") or {},
            rename={"fields": "field_rules"},
            fields=lambda rules: tuple(
                (re.compile(r["match"], re.IGNORECASE), r["entity"]) for r in rules or ()
            ),
        ),
        key_file=keys.get("pseudonym_key") or keys.get("pseudonym_key_file"),
        key_env=keys.get("pseudonym_key_env", DEFAULT_KEY_ENV),
        quarantine_levels=frozenset((raw.get("routing") or {}).get("quarantine") or ()),
        video=_build(VideoPolicy, raw.get("video") or {}),
        audio=_build(AudioPolicy, raw.get("audio") or {}, min_transcript_confidence=float),
    )


def _parse_video(raw, where: str) -> VideoPolicy:
    """The ``video`` section alone (kept for callers that validate only it)."""
    from veil.transforms.validation import first_error  # jsonschema: only here

    problem = first_error(policy_schema()["properties"]["video"], raw, prefix="video")
    if problem:
        raise PolicyError(f"{where}: {problem}")
    return _build(VideoPolicy, raw or {})


def _build(cls, raw: dict, rename: dict | None = None, **convert):
    """``cls`` from the schema-checked section ``raw``: the keys present, each through
    its converter if any, under its field name (``rename``: YAML key -> field name)."""
    rename = rename or {}
    return cls(
        **{
            rename.get(key, key): convert[key](value) if key in convert else value
            for key, value in raw.items()
        }
    )


def _sorted_table(table: dict) -> tuple:
    return tuple((str(key), tuple(values)) for key, values in sorted(table.items()))


def _operator_table(table, where: str) -> dict:
    return {str(entity): spec_of(raw, f"{where}.{entity}") for entity, raw in (table or {}).items()}


def _modality_operators(anonymize: dict, where: str) -> dict:
    default = spec_of(anonymize.get("default", "replace"), f"{where}: anonymize.default")
    out = {}
    for modality in MODALITY_SECTIONS:
        section = anonymize.get(modality) or {}
        at = f"{where}: anonymize.{modality}"
        own = spec_of(section["default"], f"{at}.default") if "default" in section else default
        out[modality] = (own, _operator_table(section.get("entities"), f"{at}.entities"))
    return out


def _cross_checks(raw: dict, where: str) -> None:
    """What the schema cannot say: every regime named must be defined; key URIs parse."""
    from veil.transforms.key_uri import KeyUriError, parse_key_uri

    for name, value in (raw.get("keys") or {}).items():
        if name != "pseudonym_key_env":
            try:
                parse_key_uri(value)
            except KeyUriError as exc:
                raise PolicyError(f"{where}: keys.{name}: {exc}") from None
    classification = raw["classification"]
    known = set(classification["regimes"])
    named = [
        ("classification.requires", list(classification.get("requires") or ())),
        ("anonymize.regimes", list((raw.get("anonymize") or {}).get("regimes") or {})),
        *(
            (f"classification.sensitivity.{level}", members or [])
            for level, members in classification["sensitivity"].items()
        ),
    ]
    for path, regimes in named:
        unknown = [r for r in regimes if r not in known]
        if unknown:
            raise PolicyError(
                f"{where}: {path}: unknown regime {unknown[0]!r} (defined in "
                f"classification.regimes: {', '.join(sorted(known)) or 'none'})"
            )
