"""The voice key: the one door to the secret that picks each subject's pseudo-voice.

A subject's voice parameters come from HMAC-SHA256 of the subject key under a secret
key, so the same subject always gets the same pseudo-voice (per-speaker analytics and
diarization still work) while nobody without the key can tell which parameters belong
to whom, or undo them. Without a key the audio branch fails closed
(``AUDIO_KEY_UNAVAILABLE``): an unkeyed hash of a subject key would let anyone
recompute the mapping.

Keys come through ``veil.transforms.keys`` (``SecretKeys.key_for_subject(scope,
subject)``, the one door to key material): a key file (one key for every subject) or a
``kms:`` URI (a per-subject secret that erasure destroys) named by
``AudioConfig.key_file`` or by the environment variable ``AudioConfig.key_env`` (default
``VEIL_AUDIO_KEY_FILE``), read in ``setup`` on the worker. Key values never travel in pipeline options, logs or audit events; the
audit trail carries ``key_id``, a hash that identifies the key without revealing it.

Example::

    keys = FileKeys("/etc/veil/voice.key")
    params = voice_params(keys.key_for(VOICE_SCOPE), "subject-42", (0.55, 0.85), (3.0, 6.0))
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import struct
_LOGGER = logging.getLogger(__name__)

VOICE_SCOPE = "audio-voice"
DEFAULT_KEY_ENV = "VEIL_AUDIO_KEY_FILE"
_DOMAIN = b"veil/audio/voice-params/v1\x00"


@dataclasses.dataclass(frozen=True)
class VoiceParams:
    """One subject's pseudo-voice: McAdams ``alpha`` and a pitch shift in semitones."""

    alpha: float
    semitones: float


def voice_params(
    key: bytes,
    subject_key: str,
    alpha_range: tuple[float, float],
    semitone_range: tuple[float, float],
) -> VoiceParams:
    """Derives a subject's parameters from HMAC-SHA256(key, subject key).

    ``alpha`` is uniform in ``alpha_range``; the pitch shift's size is uniform in
    ``semitone_range`` and its direction is one more bit of the digest.
    """
    digest = hmac.new(key, _DOMAIN + subject_key.encode("utf-8"), hashlib.sha256).digest()
    u_alpha, u_shift = (v / 2.0**64 for v in struct.unpack(">QQ", digest[:16]))
    low, high = alpha_range
    alpha = low + (high - low) * u_alpha
    low, high = semitone_range
    size = low + (high - low) * u_shift
    direction = 1.0 if digest[16] & 1 else -1.0
    return VoiceParams(alpha=round(alpha, 6), semitones=round(direction * size, 6))
