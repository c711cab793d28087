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
import math
import struct

_LOGGER = logging.getLogger(__name__)

VOICE_SCOPE = "audio-voice"
DEFAULT_KEY_ENV = "VEIL_AUDIO_KEY_FILE"
_DOMAIN = b"veil/audio/voice-params/v1\x00"


@dataclasses.dataclass(frozen=True)
class VoiceParams:
    """One subject's pseudo-voice.

    ``alpha``: McAdams coefficient; ``semitones``: the ``pitch_shift`` mode's shift;
    ``warp``: the ``warp`` mode's frequency warp β (signed); ``f0``: the ``warp``
    mode's target fundamental frequency in Hz.
    """

    alpha: float
    semitones: float
    warp: float = 0.0
    f0: float = 0.0


def voice_params(
    key: bytes,
    subject_key: str,
    alpha_range: tuple[float, float],
    semitone_range: tuple[float, float],
    warp_range: tuple[float, float] = (0.0, 0.0),
    f0_range: tuple[float, float] = (0.0, 0.0),
) -> VoiceParams:
    """Derives a subject's parameters from HMAC-SHA256(key, subject key).

    ``alpha`` is uniform in ``alpha_range``; the pitch shift's size is uniform in
    ``semitone_range`` and its direction is one more bit of the digest. The warp's size
    is uniform in ``warp_range`` with its own sign bit; the target F0 is log-uniform in
    ``f0_range`` (both from digest bytes the first two never use, so adding them
    changed no subject's ``alpha`` or ``semitones``).
    """
    digest = hmac.new(key, _DOMAIN + subject_key.encode("utf-8"), hashlib.sha256).digest()
    u_alpha, u_shift = (v / 2.0**64 for v in struct.unpack(">QQ", digest[:16]))
    low, high = alpha_range
    alpha = low + (high - low) * u_alpha
    low, high = semitone_range
    size = low + (high - low) * u_shift
    direction = 1.0 if digest[16] & 1 else -1.0
    u_warp, u_f0 = (v / 2.0**32 for v in struct.unpack(">II", digest[17:25]))
    low, high = warp_range
    warp = (low + (high - low) * u_warp) * (1.0 if digest[25] & 1 else -1.0)
    low, high = f0_range
    f0 = math.exp(math.log(low) + (math.log(high) - math.log(low)) * u_f0) if low > 0 else 0.0
    return VoiceParams(
        alpha=round(alpha, 6),
        semitones=round(direction * size, 6),
        warp=round(warp, 6),
        f0=round(f0, 3),
    )
