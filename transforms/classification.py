"""Record classification (sensitivity level and regimes) under the policy.

The policy itself (the file, its schema and the parsed dataclasses) lives in
``veil.transforms.policy``; its names are re-exported here for the modules that import
them from this one.

Example::

    policy = load_policy("policy.yaml")
    classify({"PERSON": 2, "CREDIT_CARD": 1}, policy)
    # Classification(sensitivity="RESTRICTED", regimes=["GDPR", "PCI"], ...)
"""

from __future__ import annotations

from veil.transforms.policy import (  # noqa: F401  (re-exported)
    DEFAULT_OPERATOR,
    DEFAULT_POLICY,
    MODALITY_SECTIONS,
    POLICY_SCHEMA,
    SENSITIVITY_LEVELS,
    UNRELIABLE_SPEECH_ACTIONS,
    VIDEO_AUDIO_MODES,
    VIDEO_FACE_MODES,
    AudioPolicy,
    Policy,
    PolicyError,
    StructuredPolicy,
    TextPolicy,
    VideoPolicy,
    _parse_video,
    check_policy_keys,
    default_policy_path,
    load_policy,
    parse_policy,
    policy_schema,
)
from veil.transforms.records import Classification, ErrorCode


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


#: Entity count and regime of speech Veil could not transcribe reliably (spoken PII may
#: have been missed): set by the audio branch, carried by a video's anonymized track.
UNRELIABLE_TRANSCRIPT = "UNRELIABLE_TRANSCRIPT"
UNVERIFIED_SPEECH = "UNVERIFIED_SPEECH"


def classify_speech(entity_counts: dict, policy: Policy) -> Classification:
    """``classify``, plus the unverified-speech marking when ``entity_counts`` holds
    ``UNRELIABLE_TRANSCRIPT``: the ``UNVERIFIED_SPEECH`` regime and, unless the policy's
    ``audio.unreliable_speech`` says publish, quarantine (fail closed: the record does not
    reach the sanitized topic). Audio records and videos with an anonymized track alike.
    """
    classification = classify(entity_counts, policy)
    if entity_counts.get(UNRELIABLE_TRANSCRIPT, 0) > 0:
        classification.regimes = sorted({*classification.regimes, UNVERIFIED_SPEECH})
        if policy.audio.unreliable_speech == "quarantine":
            classification.quarantine_reason = ErrorCode.AUDIO_TRANSCRIPT_UNRELIABLE
    return classification
