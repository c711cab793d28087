"""Containers in and out: allow-lists, header limits before decoding, corrupt and cut-off
files, and re-encoding that keeps the container but none of its metadata."""

from __future__ import annotations

import io
import re

import av
import numpy as np
import pytest
from video_testing import (
    CARPHONE,
    SECRET,
    TAGS,
    build_video,
    container_tags,
    frames_of,
    psnr,
    require_footage_and_model,
)

from veil.transforms.video.container import (
    EncoderConfig,
    VideoError,
    VideoLimits,
    VideoReader,
    VideoWriter,
    container_of,
)


@pytest.fixture(scope="module")
def clip():
    require_footage_and_model()
    return frames_of(CARPHONE, limit=24)


MUXER_FIELDS = {
    "major_brand",
    "minor_version",
    "compatible_brands",
    "video:language",
    "video:handler_name",
    "video:DURATION",
    "encoder",
}


def _code(payload: bytes, limits: VideoLimits = VideoLimits()) -> str:
    with pytest.raises(VideoError) as caught:
        with VideoReader(payload, limits) as reader:
            for _ in reader.frames():
                pass
    return caught.value.code


def _reencode(payload: bytes, limits: VideoLimits = VideoLimits()) -> bytes:
    with VideoReader(payload, limits) as reader:
        writer = VideoWriter(reader.info, EncoderConfig(), limits.max_output_bytes)
        for frame in reader.frames():
            writer.write(frame.pixels, frame.pts, frame.time_base)
        data, _ = writer.finish()
    return data


@pytest.mark.parametrize(
    "kind, fmt, mime",
    [
        ("mp4", "mov,mp4,m4a,3gp,3g2,mj2", "video/mp4"),
        ("mkv", "matroska,webm", "video/x-matroska"),
        ("webm", "matroska,webm", "video/webm"),
        ("avi", "avi", "video/x-msvideo"),
    ],
)
def test_each_container_round_trips_without_its_metadata(clip, kind, fmt, mime):
    payload = build_video(clip, kind, tags=TAGS)
    assert SECRET.encode() in payload  # planted where a camera would put it
    with VideoReader(payload) as reader:
        writer = VideoWriter(reader.info)
        for frame in reader.frames():
            writer.write(frame.pixels, frame.pts, frame.time_base)
        data, content_type = writer.finish()
    assert content_type == mime
    assert SECRET.encode() not in data
    for needle in (b"PhoneCam", b"48.8584", b"2026-03-04", b"visit", b"owner"):
        assert needle not in data, needle
    # Matroska's mandatory muxing-app field says "Lavf" (Veil's muxer), never a version.
    assert not re.search(rb"Lavf\d", data)
    # Only what the muxer itself must write is left: brands, track language/handler,
    # Matroska's duration and its bare "Lavf" muxing-app field.
    tags = container_tags(data)
    assert set(tags) <= MUXER_FIELDS, set(tags) - MUXER_FIELDS
    assert tags.get("encoder", "Lavf") == "Lavf"
    with av.open(io.BytesIO(data)) as box:
        assert box.format.name == fmt
    if kind == "webm":
        assert data[:4] == b"\x1a\x45\xdf\xa3" and b"webm" in data[:64]
    out = frames_of(data)
    assert len(out) == len(clip) and out[0].shape == clip[0].shape
    assert min(psnr(a, b) for a, b in zip(clip, out)) > 28  # pixels kept, re-encoded once


def test_the_real_footage_keeps_its_frames_and_timing():
    require_footage_and_model()
    payload = CARPHONE.read_bytes()
    data = _reencode(payload)
    with av.open(io.BytesIO(payload)) as a, av.open(io.BytesIO(data)) as b:
        sa, sb = a.streams.video[0], b.streams.video[0]
        assert sb.frames == sa.frames == 120
        assert sb.average_rate == sa.average_rate
        assert abs(float(sb.duration * sb.time_base) - float(sa.duration * sa.time_base)) < 0.05


@pytest.mark.parametrize(
    "limits",
    [
        VideoLimits(max_width=160),
        VideoLimits(max_height=100),
        VideoLimits(max_pixels=176 * 144 - 1),
        VideoLimits(max_frames=10),
        VideoLimits(max_duration_s=0.5),
        VideoLimits(max_bytes=1000),
    ],
    ids=["width", "height", "pixels", "frames", "duration", "bytes"],
)
def test_over_the_header_limits_is_refused_before_decoding(clip, limits, monkeypatch):
    payload = build_video(clip, "mp4")
    decoded = []
    monkeypatch.setattr(av.VideoFrame, "to_ndarray", lambda *a, **k: decoded.append(1))
    with pytest.raises(VideoError) as caught:
        VideoReader(payload, limits)
    assert caught.value.code == "VIDEO_TOO_LARGE"
    assert decoded == []


def test_a_stream_longer_than_max_frames_stops_while_decoding(clip):
    # Matroska declares no frame count: the header passes, decoding stops at the limit.
    payload = build_video(clip, "mkv")
    with VideoReader(payload) as reader:
        assert reader.info.frames is None
    assert _code(payload, VideoLimits(max_frames=10)) == "VIDEO_TOO_LARGE"


def test_output_over_the_message_limit_is_refused(clip):
    with pytest.raises(VideoError) as caught:
        _reencode(build_video(clip, "mp4"), VideoLimits(max_output_bytes=2000))
    assert caught.value.code == "VIDEO_TOO_LARGE"


@pytest.mark.parametrize(
    "payload",
    [
        b"GIF89a" + b"\x00" * 64,
        b"\x00\x01 not a video at all",
        b"OggS" + b"\x00" * 64,
    ],
    ids=["gif", "bytes", "ogg"],
)
def test_unknown_containers_are_unsupported(payload):
    assert _code(payload) == "VIDEO_UNSUPPORTED_FORMAT"


def test_a_codec_off_the_allow_list_or_no_video_track_is_unsupported(clip):
    mpeg4_in_mp4 = io.BytesIO()
    with av.open(mpeg4_in_mp4, "w", format="mp4") as box:
        stream = box.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        for pixels in clip[:5]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="bgr24")):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    only_h264 = VideoLimits(codecs=("h264",))
    assert _code(mpeg4_in_mp4.getvalue(), only_h264) == "VIDEO_UNSUPPORTED_FORMAT"
    audio_only = io.BytesIO()
    with av.open(audio_only, "w", format="matroska") as box:
        track = box.add_stream("pcm_s16le", rate=16000)
        silence = np.zeros((1, 1600), np.int16)
        frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in track.encode(frame):
            box.mux(packet)
        for packet in track.encode(None):
            box.mux(packet)
    assert _code(audio_only.getvalue()) == "VIDEO_UNSUPPORTED_FORMAT"
    avi_only = VideoLimits(containers=("avi",))
    assert _code(build_video(clip[:3], "mp4"), avi_only) == "VIDEO_UNSUPPORTED_FORMAT"


def test_corrupt_and_cut_off_files_are_corrupt(clip, tmp_path):
    whole = build_video(clip, "mp4")
    assert _code(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200) == "VIDEO_CORRUPT"
    assert _code(whole[: len(whole) // 2]) == "VIDEO_CORRUPT"  # index (moov) cut off
    # The index first (faststart), the frames cut off: fewer frames than declared.
    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as box:
        stream = box.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        for pixels in clip:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="bgr24")):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    faststart = path.read_bytes()
    assert _reencode(faststart)  # whole, it is fine
    assert _code(faststart[: len(faststart) * 2 // 3]) == "VIDEO_CORRUPT"
    mkv = build_video(clip, "mkv")
    assert _code(mkv[:200]) == "VIDEO_CORRUPT"


def test_magic_bytes_and_limits_are_validated():
    assert container_of(b"\x00\x00\x00\x20ftypisom") == "mp4"
    assert container_of(b"\x1a\x45\xdf\xa3\x01") == "matroska"
    assert container_of(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert container_of(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    with pytest.raises(ValueError):
        VideoLimits(max_frames=0)
    with pytest.raises(ValueError):
        VideoLimits(containers=("flv",))
    with pytest.raises(ValueError):
        EncoderConfig(crf=60)
