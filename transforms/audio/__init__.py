"""The audio branch: voices that cannot be linked back to the speaker, spoken PII removed.

Modules:

* ``codec``: header checks, bounded decoding (soundfile; PyAV for MP3/M4A and video
  audio tracks), metadata-free re-encoding;
* ``mcadams``: the McAdams-coefficient transform, vectorized, plus the baseline's
  frame-by-frame reference;
* ``voice``: the voice modes (``warp``, the default; ``mcadams``; ``pitch_shift``) at
  <= 16 kHz;
* ``keys``: the voice key (one small interface, a local key-file implementation) and
  per-subject parameters from HMAC-SHA256 of the subject key;
* ``asr``: PocketSphinx with its packaged English model, word timestamps;
* ``spoken_pii``: transcript normalization, findings to time spans, blanking;
* ``similarity``: the speaker-distance measure the tests and docs/audio.md use;
* ``handler``: ``AudioHandler`` and ``AudioConfig`` for ``ApplyPrivacyStep``.

Example::

    audio = routed.branches["audio"] | "Audio" >> ApplyPrivacyStep(
        AudioHandler(policy, AudioConfig(mode="warp")), time_limit_s=60
    )
"""

from veil.transforms.audio.codec import AudioLimits
from veil.transforms.audio.handler import AudioConfig, AudioHandler

__all__ = ["AudioConfig", "AudioHandler", "AudioLimits"]
