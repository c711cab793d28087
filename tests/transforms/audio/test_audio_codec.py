"""Audio decoding and re-encoding: containers, header limits, corrupt input, tags."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
from audio_testing import encode_pyav, encode_soundfile, librivox, require_test_audio

from veil.transforms.audio.codec import (
    AudioError,
    AudioLimits,
    container_of,
    decode_audio,
    encode_audio,
    output_container,
)

TAG = "Alice Example 555-0100"


@pytest.fixture(scope="module")
def speech():
    require_test_audio()
    samples, rate = librivox(1)  # 2.99 s
    return samples.astype(np.float32), rate


def _encoded(kind: str, x: np.ndarray, rate: int) -> bytes:
    if kind == "wav":
        return encode_soundfile(x, rate, "WAV", "PCM_16", title=TAG, artist=TAG)
    if kind == "wav-float":
        return encode_soundfile(x, rate, "WAV", "FLOAT")
    if kind == "flac":
        return encode_soundfile(x, rate, "FLAC", "PCM_16", title=TAG)
    if kind == "ogg-vorbis":
        return encode_soundfile(x, rate, "OGG", "VORBIS", title=TAG)
    if kind == "ogg-opus":
        import soxr

        return encode_soundfile(soxr.resample(x, rate, 48000), 48000, "OGG", "OPUS")
    if kind == "mp3":
        return encode_pyav(x, rate, "mp3", "mp3", title=TAG)
    if kind == "m4a":
        return encode_pyav(x, rate, "ipod", "aac", title=TAG)
    if kind == "mp4":
        return encode_pyav(x, rate, "mp4", "aac", title=TAG)
    if kind == "matroska":
        return encode_pyav(x, rate, "matroska", "pcm_s16le", title=TAG)
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind, container, rate, lossless",
    [
        ("wav", "wav", 16000, True),
        ("wav-float", "wav", 16000, True),
        ("flac", "flac", 16000, True),
        ("ogg-vorbis", "ogg", 16000, False),
        ("ogg-opus", "ogg", 48000, False),
        ("mp3", "mp3", 16000, False),
        ("m4a", "m4a", 16000, False),
        ("mp4", "mp4", 16000, False),
        ("matroska", "matroska", 16000, True),
    ],
)
def test_decodes_every_container(speech, kind, container, rate, lossless):
    x, _ = speech
    data = _encoded(kind, x, 16000)
    assert container_of(data) == container
    audio = decode_audio(data, AudioLimits())
    assert (audio.container, audio.sample_rate, audio.samples.shape[1]) == (container, rate, 1)
    assert audio.samples.dtype == np.float32
    # Codec priming and padding may add up to a few frames of 1152/1024 samples.
    assert abs(audio.duration_s - len(x) / 16000) < 0.2
    if lossless:
        assert audio.samples.shape[0] == len(x)
        assert np.max(np.abs(audio.samples[:, 0] - x)) < 1e-4


@pytest.mark.parametrize(
    "limits, shape, rate, code",
    [
        (AudioLimits(max_duration_s=1.0), (16000 * 2, 1), 16000, "AUDIO_TOO_LONG"),
        (AudioLimits(), (1600, 3), 16000, "AUDIO_FORMAT_UNSUPPORTED"),
        (AudioLimits(), (1600, 1), 4000, "AUDIO_FORMAT_UNSUPPORTED"),
        (AudioLimits(), (1600, 1), 192000, "AUDIO_FORMAT_UNSUPPORTED"),
        (AudioLimits(max_channels=1), (1600, 2), 16000, "AUDIO_FORMAT_UNSUPPORTED"),
        (AudioLimits(), (0, 1), 16000, "AUDIO_DECODE_ERROR"),
    ],
    ids=["too-long", "three-channels", "rate-too-low", "rate-too-high", "stereo-refused", "empty"],
)
def test_header_limits(limits, shape, rate, code):
    data = encode_soundfile(np.zeros(shape), rate, "WAV", "PCM_16")
    with pytest.raises(AudioError) as caught:
        decode_audio(data, limits)
    assert caught.value.code == code


@pytest.mark.parametrize("kind", ["mp3", "ogg-vorbis"])
def test_decoding_stops_at_the_duration_limit(speech, kind):
    x, rate = speech
    data = _encoded(kind, x, rate)
    with pytest.raises(AudioError) as caught:
        decode_audio(data, AudioLimits(max_duration_s=1.5))
    assert caught.value.code == "AUDIO_TOO_LONG"


def test_a_wav_header_that_understates_the_data_is_read_as_declared(speech):
    x, rate = speech
    data = bytearray(encode_soundfile(x, rate, "WAV", "PCM_16"))
    data_at = data.index(b"data")
    declared = 16000 * 2  # claim one second of 16-bit mono
    data[data_at + 4 : data_at + 8] = declared.to_bytes(4, "little")
    audio = decode_audio(bytes(data), AudioLimits(max_duration_s=1.0))
    assert audio.samples.shape[0] == 16000


@pytest.mark.parametrize("kind", ["wav", "flac"])
def test_a_cut_off_file_is_corrupt_not_short(speech, kind):
    x, rate = speech
    data = _encoded(kind, x, rate)
    assert decode_audio(data, AudioLimits()).samples.shape[0] == len(x)
    with pytest.raises(AudioError) as caught:
        decode_audio(data[: len(data) - 2000], AudioLimits())
    assert caught.value.code == "AUDIO_DECODE_ERROR"


def test_a_streaming_wav_with_unknown_length_is_accepted(speech):
    x, rate = speech
    data = bytearray(encode_soundfile(x, rate, "WAV", "PCM_16"))
    data_at = data.index(b"data")
    data[data_at + 4 : data_at + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    assert decode_audio(bytes(data), AudioLimits()).samples.shape[0] == len(x)


@pytest.mark.parametrize(
    "payload, code",
    [
        (b"RIFF\x24\x08\x00\x00WAVEfmt ", "AUDIO_DECODE_ERROR"),
        (b"RIFF\x24\x08\x00\x00WAVE" + bytes(range(256)) * 4, "AUDIO_DECODE_ERROR"),
        (b"fLaC" + b"\x00" * 300, "AUDIO_DECODE_ERROR"),
        (b"OggS" + b"\x01" * 300, "AUDIO_DECODE_ERROR"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x23" + b"\x00" * 300, "AUDIO_DECODE_ERROR"),
        (b"\x00\x00\x00\x1cftypM4A " + b"\x00" * 300, "AUDIO_DECODE_ERROR"),
        (b"\x1a\x45\xdf\xa3" + b"\xff" * 300, "AUDIO_DECODE_ERROR"),
        (b"just some text, no audio", "AUDIO_FORMAT_UNSUPPORTED"),
    ],
    ids=["wav-truncated", "wav-garbage", "flac", "ogg", "id3", "m4a", "matroska", "no-magic"],
)
def test_corrupt_input_is_a_coded_error(payload, code):
    with pytest.raises(AudioError) as caught:
        decode_audio(payload, AudioLimits())
    assert caught.value.code == code
    assert str(caught.value) == code  # no library message, no content


@pytest.mark.parametrize("kind", ["wav", "flac", "ogg-vorbis", "mp3", "m4a"])
def test_tags_never_survive_reencoding(speech, kind):
    x, rate = speech
    data = _encoded(kind, x, rate)
    assert TAG.encode() in data
    audio = decode_audio(data, AudioLimits())
    container = output_container(audio.container)
    out, content_type = encode_audio(audio.samples, audio.sample_rate, container)
    assert TAG.encode() not in out and b"Alice" not in out
    assert content_type == {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg"}[container]
    again, rate_out = soundfile.read(io.BytesIO(out), always_2d=True)
    assert rate_out == audio.sample_rate
    assert again.shape == audio.samples.shape


def test_non_finite_samples_are_cleaned(speech):
    x, rate = speech
    bad = x.copy()
    bad[100:110] = np.nan
    bad[200] = np.inf
    audio = decode_audio(encode_soundfile(bad, rate, "WAV", "FLOAT"), AudioLimits())
    assert np.isfinite(audio.samples).all()
    assert np.max(np.abs(audio.samples)) <= 1.0


@pytest.mark.parametrize(
    "container, output, expected",
    [
        ("wav", "auto", "wav"),
        ("flac", "auto", "flac"),
        ("ogg", "auto", "ogg"),
        ("mp3", "auto", "ogg"),
        ("m4a", "auto", "ogg"),
        ("matroska", "auto", "ogg"),
        ("mp3", "flac", "flac"),
        ("wav", "ogg", "ogg"),
    ],
)
def test_output_container(container, output, expected):
    assert output_container(container, output) == expected


def test_limits_validate():
    with pytest.raises(ValueError):
        AudioLimits(max_duration_s=0)
    with pytest.raises(ValueError):
        AudioLimits(min_sample_rate=48000, max_sample_rate=8000)
