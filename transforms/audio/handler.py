"""The audio branch's ``PrivacyHandler``: decode, find spoken PII, change the voice,
blank the PII, re-encode.

Per record (``AudioHandler.process``):

1. the voice key must be there (else ``AUDIO_KEY_UNAVAILABLE``: fail closed);
2. header checks, then bounded decoding (``AUDIO_FORMAT_UNSUPPORTED``,
   ``AUDIO_TOO_LONG``, ``AUDIO_DECODE_ERROR``);
3. spoken PII: PocketSphinx transcribes the original audio (16 kHz mono mix) with word
   times; the text branch's detectors run on the normalized transcript; the PII words
   become time spans. The transcript stays in this function;
4. the voice changes with the subject's parameters (HMAC of the subject key);
5. the PII spans are blanked (silence or tone) in the transformed audio;
6. the samples are re-encoded without any metadata; classification comes from the
   spoken entities found.

Everything heavy (the recognizer, the text detectors, numba and librosa JIT) loads once
per worker process in ``load``, which ``ApplyPrivacyStep`` calls from ``DoFn.setup``.

Example::

    audio = items | "Audio" >> ApplyPrivacyStep(AudioHandler(policy, AudioConfig()))
    audio.records, audio.dead_letters
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from veil.transforms.audio import voice
from veil.transforms.audio.codec import (
    AudioLimits,
    decode_audio,
    encode_audio,
    output_container,
)
from veil.transforms.audio.keys import DEFAULT_KEY_ENV, VOICE_SCOPE, voice_params
from veil.transforms.audio.spoken_pii import blank, normalize, time_spans
from veil.transforms.classification import (
    UNRELIABLE_TRANSCRIPT,
    UNVERIFIED_SPEECH,  # noqa: F401  (re-exported)
    Policy,
    classify_speech,
)
from veil.transforms.fixes import fix_for
from veil.transforms.keys import KeyUnavailable, SubjectKeyErased, keys_from_config
from veil.transforms.privacy_handler import PrivacyError, PrivacyHandler, StepResult, entity_counts
from veil.transforms.records import ErrorCode, WorkItem
from veil.transforms.sandbox import NATIVE_DECODERS, SandboxConfig, sandbox_for

_LOGGER = logging.getLogger(__name__)

REPLACEMENTS = ("silence", "tone")
#: Count (audit event, classification) and regime marking speech whose transcript
#: confidence was below the policy's ``audio.min_transcript_confidence``.
OUTPUTS = ("auto", "wav", "flac", "ogg")


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """How the audio branch works. Holds no secret: the key is named, never given.

    Attributes:
        mode: ``"warp"`` (default: McAdams + vocal-tract-length warp + pitch to a
            per-subject target F0; see ``docs/audio.md``), ``"mcadams"`` (the
            VoicePrivacy baseline; weaker against a speaker encoder) or
            ``"pitch_shift"``.
        alpha_range: the McAdams coefficients subjects are spread over.
        semitone_range: the size of the pitch shift in ``pitch_shift`` mode (its
            direction is per subject too).
        warp_alpha_range: the McAdams coefficients of the ``warp`` mode (milder than
            ``alpha_range``: the warp and the pitch do part of the work).
        warp_range: the size of the ``warp`` mode's frequency warp β (its sign is per
            subject too).
        f0_range: the ``warp`` mode's per-subject target F0, Hz (log-uniform).
        spoken_pii: transcribe and blank spoken PII (on by default).
        replacement: ``"silence"`` or ``"tone"`` for spoken PII.
        pad_s: extra time blanked on both sides of each PII word.
        output: ``"auto"`` (WAV and FLAC kept, lossy formats become OGG Vorbis) or a
            fixed ``"wav"``, ``"flac"`` or ``"ogg"``.
        limits: header and decode limits.
        key_file: the voice key file on the worker, or None to use ``key_env``.
        key_env: the environment variable naming the key file on the worker.
        isolation: libsndfile and FFmpeg decode in a sandbox worker pool
            (``veil.transforms.sandbox``); ``None`` or ``enabled=False``: in process.
    """

    mode: str = "warp"
    alpha_range: tuple = (0.6, 0.8)
    semitone_range: tuple = (5.0, 8.0)
    warp_alpha_range: tuple = (0.8, 0.9)
    warp_range: tuple = (0.1, 0.18)
    f0_range: tuple = (90.0, 260.0)
    spoken_pii: bool = True
    replacement: str = "silence"
    pad_s: float = 0.15
    output: str = "auto"
    limits: AudioLimits = AudioLimits()
    key_file: str | None = None
    key_env: str = DEFAULT_KEY_ENV
    isolation: SandboxConfig | None = NATIVE_DECODERS

    def __post_init__(self):
        if self.mode not in voice.MODES:
            raise ValueError(f"audio mode must be one of {voice.MODES}")
        low, high = self.alpha_range
        if not 0.3 <= low <= high <= 1.0:
            raise ValueError("alpha_range must satisfy 0.3 <= low <= high <= 1.0")
        low, high = self.semitone_range
        if not 0.0 < low <= high <= 12.0:
            raise ValueError("semitone_range must satisfy 0 < low <= high <= 12")
        low, high = self.warp_alpha_range
        if not 0.3 <= low <= high <= 1.0:
            raise ValueError("warp_alpha_range must satisfy 0.3 <= low <= high <= 1.0")
        low, high = self.warp_range
        if not 0.0 <= low <= high < 0.4:
            raise ValueError("warp_range must satisfy 0 <= low <= high < 0.4")
        low, high = self.f0_range
        if not 50.0 <= low <= high <= 400.0:
            raise ValueError("f0_range must satisfy 50 <= low <= high <= 400 (Hz)")
        if self.replacement not in REPLACEMENTS:
            raise ValueError(f"replacement must be one of {REPLACEMENTS}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}")
        if not 0.0 <= self.pad_s <= 1.0:
            raise ValueError("pad_s must be in [0, 1] seconds")


@dataclasses.dataclass
class AudioModel:
    key: bytes | None
    transcriber: object | None
    text_model: object | None
    versions: dict
    key_reported: bool = False
    sandbox: object | None = None  # veil.transforms.sandbox.Sandbox, None: in process
    # The key source: a key file gives every subject the same voice key; the key service
    # (a kms: URI) a per-subject one that erasure destroys.
    keys: object | None = None


class AudioHandler(PrivacyHandler[AudioModel]):
    """Anonymizes voices and blanks spoken PII in ``audio`` records (see the module).

    Args:
        policy: the validated policy (text section for the spoken-PII detectors,
            classification rules).
        config: modes, ranges, limits and where the voice key file is named.

    Example::

        audio = routed.branches["audio"] | "Audio" >> ApplyPrivacyStep(
            AudioHandler(policy, AudioConfig(mode="mcadams", replacement="tone")),
            time_limit_s=30,
        )
        audio.records | PublishSanitized(topics, policy.version)
        audio.dead_letters | PublishDeadLetters(topics, policy.version)
    """

    stage = "audio"

    def __init__(self, policy: Policy, config: AudioConfig = AudioConfig()):
        self._policy = policy
        self._config = config

    def share_key(self) -> str:
        c = self._config
        isolated = c.isolation is not None and c.isolation.enabled
        # The key source as resolved here (a path or kms: URI, never key material): a
        # model loaded while $VEIL_AUDIO_KEY_FILE named nothing, or another file, must
        # not be shared with a handler whose key is elsewhere.
        source = c.key_file or (os.environ.get(c.key_env, "") if c.key_env else "")
        return f"audio:{c.mode}:pii={c.spoken_pii}:key={source or '-'}" + (
            "" if isolated else ":in-process"
        )

    def load(self) -> AudioModel:
        from veil.transforms.audio.asr import Transcriber

        config = self._config
        sandbox = sandbox_for(config.isolation)
        if sandbox is not None:
            sandbox.spawn()  # its processes start while the models below load
        keys = keys_from_config(config.key_file, config.key_env)
        try:
            key, key_id = keys.key_for(VOICE_SCOPE), keys.key_id
        except KeyUnavailable:
            key, key_id = None, "none"  # reported on the first audio record, not here
        versions = {"voice-key": key_id, **voice.versions(config.mode)}
        transcriber = text_model = None
        if config.spoken_pii:
            transcriber = Transcriber.load()
            text_model, text_versions = _text_model(self._policy)
            versions.update(transcriber.versions)
            versions.update(text_versions)
        voice.warm_up(config.mode)
        if sandbox is not None:
            sandbox.warm()
        _LOGGER.info("Audio handler loaded: %s", sorted(versions))
        return AudioModel(key, transcriber, text_model, versions, sandbox=sandbox, keys=keys)

    def process(self, model: AudioModel, item: WorkItem) -> StepResult:
        config = self._config
        if model.key is None:
            if not model.key_reported:
                model.key_reported = True
                _LOGGER.error(
                    "No usable voice key (key file %s, $%s): audio records are dead-lettered "
                    "%s. Fix: %s",
                    "configured" if config.key_file else "not configured",
                    config.key_env,
                    ErrorCode.AUDIO_KEY_UNAVAILABLE,
                    fix_for(ErrorCode.AUDIO_KEY_UNAVAILABLE),
                )
            raise PrivacyError(ErrorCode.AUDIO_KEY_UNAVAILABLE)
        # AudioError is a PrivacyError: the step dead-letters its code.
        audio = decode_audio(item.record["payload"], config.limits, model.sandbox)
        subject = item.record["subject_key"]
        try:
            key = model.keys.key_for_subject(VOICE_SCOPE, subject) if model.keys else model.key
        except SubjectKeyErased:  # the key service destroyed this subject's keys
            raise PrivacyError(ErrorCode.SUBJECT_ERASED) from None
        except KeyUnavailable:
            raise PrivacyError(ErrorCode.AUDIO_KEY_UNAVAILABLE) from None
        params = voice_params(
            key,
            subject,
            config.warp_alpha_range if config.mode == "warp" else config.alpha_range,
            config.semitone_range,
            config.warp_range,
            config.f0_range,
        )
        spans, counts, reliable = [], {}, True
        if config.spoken_pii:
            spans, counts, reliable = self._spoken_pii(model, audio.samples, audio.sample_rate)
        out = voice.anonymize_voice(audio.samples, audio.sample_rate, params, config.mode)
        blank(out, audio.sample_rate, spans, config.replacement)
        container = output_container(audio.container, config.output)
        payload, content_type = encode_audio(out, audio.sample_rate, container)
        if not reliable:
            # Spoken PII may have been missed: say so in the classification and in this
            # stage's audit event (a count, never content); quarantine unless the
            # policy says publish.
            counts = {**counts, UNRELIABLE_TRANSCRIPT: 1}
        return StepResult(payload, content_type, counts, classify_speech(counts, self._policy))

    def _spoken_pii(self, model: AudioModel, samples: np.ndarray, rate: int):
        """Time spans of spoken PII and entity counts; the transcript stays here."""
        mono = samples.mean(axis=1)
        mono16 = voice.resample(mono, rate, voice.WORK_RATE)
        transcript = model.transcriber.transcribe_scored(mono16)
        words = transcript.words
        reliable = transcript.confidence >= self._policy.audio.min_transcript_confidence
        text, pieces = normalize(words)
        merged = _detect(model.text_model, text, self._policy) if text else []
        counts = entity_counts([entity for _, _, entity in merged])
        return time_spans(pieces, merged, words, self._config.pad_s), counts, reliable


# The text branch's detectors (``veil.transforms.text.detect``, the entry point other
# modalities call). These two small functions are the only call sites.
def _text_model(policy: Policy):
    from veil.transforms.text import load_text_model

    model = load_text_model(policy.text.ner)
    return model, dict(model.versions)


def _detect(model, text: str, policy: Policy) -> list[tuple[int, int, str]]:
    """Merged ``(start, end, entity type)`` spans at or above the policy's threshold."""
    from veil.transforms.text import detect, select_spans

    return select_spans(detect(model, text, policy.text), policy.text.score_threshold)
