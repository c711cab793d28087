"""``veil report`` and ``veil sanitize --report``: rendered in Debian's headless Chromium,
checked for console errors and every section, and canary-tested for raw values.

The demo run (``deploy/report_demo.py``: texts, JSON, a photograph, real footage, spoken
PII, three bad records) goes through the real pipeline graph once per module; the canary
runs seed known values into text, JSON, attributes, a PNG's text chunks, the subject key
and a dead letter, and look for them in the HTML in several encodings.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from veil.pipelines.report import RAW_WARNING, SECTIONS, from_directory, write_report
from veil.pipelines.report.browser import capture, chromium_path
from veil.pipelines.report.gallery import silenced_spans, text_html
from veil.pipelines.report_cli import parse_when
from veil.transforms.audit_chain import chain_id

REPO = Path(__file__).resolve().parents[2]
SECTION_IDS = {sid for sid, _ in SECTIONS}


def _demo_module():
    spec = importlib.util.spec_from_file_location("report_demo", REPO / "deploy" / "report_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's sanitize --report output directory (one real pipeline run)."""
    if chromium_path() is None:
        pytest.fail("Chromium missing: run `bash deploy/setup-report.sh`")
    out = tmp_path_factory.mktemp("report-demo")
    done = _demo_module().run(out)
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "sanitized"


def test_demo_report_renders_in_chromium_without_errors(demo, tmp_path):
    shot = capture(demo / "report.html", tmp_path / "report.png")
    assert shot.errors == []
    assert shot.sections == dict.fromkeys(SECTION_IDS | {"gallery"}, True)
    assert shot.images == 10 and shot.broken_images == 0  # 7 charts, 3 media
    assert shot.raw_banner_position is None  # no originals, no warning
    from PIL import Image

    pixels = np.asarray(Image.open(shot.screenshot).convert("L"))
    assert pixels.shape[0] == min(shot.height, 16000) and pixels.shape[1] == 1280
    assert pixels.std() > 20  # a page with charts and photos, not a blank one


def test_demo_report_counts_match_the_outputs(demo):
    data = from_directory(demo)
    outcomes = data.by_outcome()
    assert len(data.records) == 13  # 6 texts + 3 JSON lines + photo + cut-off + clip + call
    # The call is espeak-ng speech, which PocketSphinx transcribes with low confidence:
    # the default policy quarantines it (docs/audio.md), and the report says so.
    assert outcomes["sanitized"] == 9 and outcomes["quarantined"] == 1
    assert outcomes["dead-lettered"] == 3
    codes = sorted(r.error_code for r in data.records if r.outcome == "dead-lettered")
    assert codes == ["EMPTY_PAYLOAD", "IMAGE_DECODE_ERROR", "TEXT_DECODE_ERROR"]
    dead = [json.loads(line) for line in (demo / "dead-letter.jsonl").read_text().splitlines()]
    assert sorted(d["error_code"] for d in dead) == codes
    assert data.chain is not None and data.chain.ok
    modalities = {r.modality for r in data.records if r.outcome == "sanitized"}
    assert modalities == {"text", "structured", "image", "video"}
    audio = next(r for r in data.records if r.modality == "audio")
    assert audio.outcome == "quarantined" and audio.entity_counts.get("UNRELIABLE_TRANSCRIPT")
    assert audio.entity_counts.get("PHONE_NUMBER") and audio.step_ms > 0
    html = (demo / "report.html").read_text()
    # The gallery shows spans with their entity type and operator, and silenced audio.
    assert 'data-entity="PHONE_NUMBER"' in html and "PHONE_NUMBER · replace" in html
    assert "span(s) silenced" in html and "0 span(s) silenced" not in html


def test_report_from_directory_cli_writes_a_page_that_loads_nothing(demo, tmp_path):
    out = tmp_path / "r.html"
    done = subprocess.run(
        [sys.executable, "-m", "veil.pipelines.cli", "report", str(demo), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "OK:" in done.stdout
    html = out.read_text()
    assert "default-src 'none'" in html and "<script" not in html
    assert "http://" not in html and "https://" not in html
    assert 'data-section="gallery"' not in html  # the gallery needs sanitize --report
    shot = capture(out)
    assert shot.errors == [] and shot.sections == dict.fromkeys(SECTION_IDS, True)


def test_the_browser_check_sees_console_errors(tmp_path):
    """The error check can fail: a script (blocked by the CSP) and a missing image."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'\"></head><body><script>console.error('x')</script>"
        '<img src="missing.png"></body></html>'
    )
    shot = capture(page)
    assert shot.errors and shot.broken_images == 1
    page.write_text(
        "<!DOCTYPE html><html><body><script>console.error('boom')</script></body></html>"
    )
    assert any("boom" in e for e in capture(page).errors)


def test_report_shows_a_broken_audit_chain(demo, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(demo, copy)
    lines = (copy / "audit.jsonl").read_text().splitlines()
    # An event with a successor on its chain (the demo runs without an audit MAC key, so
    # only the next link can show an edit; a chain's head needs `--expect-head`).
    chains = [chain_id(json.loads(line)) for line in lines]
    index = next(i for i, c in enumerate(chains) if c in chains[i + 1 :])
    event = json.loads(lines[index])
    event["entity_counts"] = {"PERSON": 99}  # tampered
    lines[index] = json.dumps(event)
    (copy / "audit.jsonl").write_text("\n".join(lines) + "\n")
    data = from_directory(copy)
    assert not data.chain.ok and data.chain.problems
    assert any("BROKEN_LINK" in p for p in data.chain.problems), data.chain.problems
    html = write_report(tmp_path / "r.html", data).read_text()
    assert "FAILED" in html and 'class="status bad"' in html


# --- canary ------------------------------------------------------------------------------

CANARIES = {
    "name": "Quentin Marwood",
    "email": "quentin.marwood@canary-mail.example",
    "ssn": "536-22-8146",
    "card": "4539 1488 0343 6467",
    "phone": "650-555-0143",
    "address": "1427 Larkspur Canary Lane",
}
SUBJECT = "patient:" + CANARIES["email"]
SENTENCE = (
    f"Patient {CANARIES['name']} (SSN {CANARIES['ssn']}) lives at {CANARIES['address']}; "
    f"call {CANARIES['phone']}, mail {CANARIES['email']}, card {CANARIES['card']}."
)


def encodings(value: str) -> set[bytes]:
    """``value`` in the forms a careless report could hold it."""
    raw = value.encode()
    forms = {raw, raw.lower(), raw.upper(), raw.hex().encode()}
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) >= 9:
        forms.add(digits.encode())
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        forms.add(encoded[4 if shift else 0 : -4])
    return forms


def _png_with_text(text: bytes) -> bytes:
    import cv2

    plain = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return plain[:33] + chunk(b"tEXt", b"Author\x00" + text) + plain[33:]


@pytest.fixture(scope="module")
def canary_inputs(tmp_path_factory):
    where = tmp_path_factory.mktemp("canary-in")
    lines = [
        {
            "record_id": "c-text",
            "subject_key": SUBJECT,
            "content_type": "text/plain",
            "payload": SENTENCE,
            "attributes": {"note": CANARIES["name"]},
        },
        {
            "record_id": "c-json",
            "subject_key": SUBJECT,
            "content_type": "application/json",
            "payload": json.dumps(
                {
                    "patient": CANARIES["name"],
                    "ssn": CANARIES["ssn"],
                    "contact": {"email": CANARIES["email"], "phone": CANARIES["phone"]},
                    "card": CANARIES["card"],
                    "home": CANARIES["address"],
                }
            ),
        },
        {
            "record_id": "c-bad",
            "subject_key": SUBJECT,
            "content_type": "text/plain",
            "payload_base64": base64.b64encode(SENTENCE.encode("utf-16")).decode(),
        },
    ]
    (where / "records.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (where / "scan.png").write_bytes(_png_with_text(SENTENCE.encode()))
    return [where / "records.jsonl", where / "scan.png"]


def _sanitize(inputs, out, *flags):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "veil.pipelines.cli",
            "sanitize",
            *map(str, inputs),
            "--out",
            str(out),
            "--subject",
            SUBJECT,
            "--report",
            "--allow-dead-letters",  # the canary set holds a bad record on purpose
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return (out / "report.html").read_bytes()


def _leaks(html: bytes) -> list:
    return [
        (name, form)
        for name, value in CANARIES.items()
        for form in encodings(value)
        if form in html
    ]


def test_canary_report_holds_no_raw_values(canary_inputs, tmp_path):
    html = _sanitize(canary_inputs, tmp_path / "out")
    assert _leaks(html) == []
    assert SUBJECT.encode() not in html
    assert RAW_WARNING.encode() not in html
    text = html.decode()
    assert 'data-modality="text"' in text and 'data-modality="structured"' in text
    assert 'data-modality="image"' in text
    dead = [r for r in from_directory(tmp_path / "out").records if r.outcome == "dead-lettered"]
    assert len(dead) == 1 and f"<td>{dead[0].error_code}</td>" in text  # counted, not shown
    shot = capture(tmp_path / "out" / "report.html")
    assert shot.errors == [] and all(shot.sections.values())


def test_show_originals_shows_them_and_says_so_on_every_page(canary_inputs, tmp_path):
    html = _sanitize(canary_inputs, tmp_path / "out", "--show-originals")
    leaked = {name for name, _ in _leaks(html)}
    assert {"name", "ssn", "email", "phone", "card", "address"} <= leaked  # the check can fail
    text = html.decode()
    assert text.count("original — raw personal data") == 3  # text, JSON, image
    assert RAW_WARNING in text and "RAW PERSONAL DATA" in text.split("</title>")[0]
    shot = capture(tmp_path / "out" / "report.html")
    assert shot.errors == []
    assert shot.raw_banner_position == "fixed"  # on every screen and every printed page


def test_show_originals_needs_report(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "veil.pipelines.cli",
            "sanitize",
            str(REPO / "pipelines" / "data" / "demo-records.jsonl"),
            "--out",
            str(tmp_path),
            "--show-originals",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--report" in done.stderr


# --- pieces ---------------------------------------------------------------------------


def test_text_html_labels_spans_and_escapes():
    html = text_html("Hi <PERSON> & <b>", [(3, 11, "PERSON", "replace")])
    assert '<mark class="pii" data-entity="PERSON"' in html
    assert "&lt;PERSON&gt;" in html and "&amp; &lt;b&gt;" in html and "<b>" not in html
    assert "PERSON · replace" in html
    assert "mark" not in text_html("Hi <PERSON>", None)


def test_silenced_spans_marks_only_silence_where_there_was_sound():
    rate = 16000
    t = np.arange(rate * 3) / rate
    before = 0.3 * np.sin(2 * np.pi * 220 * t)
    before[int(2.5 * rate) :] = 0  # silent in the input too: not a silenced span
    after = before.copy()
    after[rate : int(1.5 * rate)] = 0
    after[int(1.6 * rate) : int(1.8 * rate)] = 0  # 0.1 s later: joined to the first
    spans = silenced_spans(before, rate, after, rate)
    assert len(spans) == 1
    assert spans[0][0] == pytest.approx(1.0, abs=0.02) and spans[0][1] == pytest.approx(
        1.8, abs=0.02
    )


def test_parse_when():
    now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
    assert parse_when("90m", now) == now - dt.timedelta(minutes=90)
    assert parse_when("2026-01-02T10:00:00", now) == dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)
    with pytest.raises(ValueError):
        parse_when("yesterday", now)


def test_structured_html_marks_replacement_tokens_and_escapes():
    from veil.pipelines.report.gallery import structured_html

    html = structured_html(b'{"a": "<PERSON>", "b": "<b>x</b> <EMAIL_ADDRESS_0a1b2c3d>"}')
    assert html.count('<mark class="pii flat"') == 2
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>" not in html
