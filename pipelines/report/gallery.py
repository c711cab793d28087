"""The review gallery of ``veil sanitize --report``: what Veil did to each sample record.

For people tuning a policy on sample data. Everything shown is sanitized output, except
with ``show_originals`` (the report then says on every page that it holds raw personal
data):

* text: the sanitized text with each replaced span highlighted and labelled with its
  entity type and operator. The spans are re-derived here with the text branch's own
  functions (detect, select, classify, the policy's operators) and used only if that
  reproduces the published text byte for byte; otherwise the text is shown plain.
* structured: the sanitized JSON, with the entity counts.
* images: the sanitized image, down-scaled (original beside it only with originals).
* video: a contact sheet of evenly spaced sanitized frames (and the original's).
* audio: the loudness envelope before (not invertible to speech), the spectrogram after,
  and the silenced spoken-PII spans: stretches the output is digitally silent where the
  input was not (the spectrogram before only with originals).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
import re

import numpy as np

from veil.pipelines.report import charts

_LOGGER = logging.getLogger(__name__)

THUMB_SIDE = 360
SHEET_FRAMES = 6
MAX_TEXT_CHARS = 4000


@dataclasses.dataclass
class GalleryItem:
    key: str
    record_id: str | None
    modality: str
    sensitivity: str | None
    entity_counts: dict
    html: str  # the sanitized view (built here, escaped)
    original_html: str | None = None  # only with show_originals
    note: str | None = None


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _jpeg_uri(pixels: np.ndarray, side: int = THUMB_SIDE) -> str:
    import cv2

    height, width = pixels.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale < 1.0:
        pixels = cv2.resize(
            pixels,
            (max(1, int(width * scale)), max(1, int(height * scale))),
            interpolation=cv2.INTER_AREA,
        )
    ok, data = cv2.imencode(".jpg", pixels, [int(cv2.IMWRITE_JPEG_QUALITY), 85])
    if not ok:
        raise ValueError("thumbnail encode failed")
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return f'<img class="thumb" src="{uri}" alt="{_esc(alt)}">'


# --- text ---------------------------------------------------------------------------


class TextReviewer:
    """Re-derives the replaced spans of a text record with the text branch's functions."""

    def __init__(self, policy):
        from veil.transforms.text import load_text_model

        self._policy = policy
        self._model = load_text_model(policy.text.ner)
        self._keys = None

    def spans(self, record: dict, published: str) -> list | None:
        """``[(start, end, entity_type, operator)]`` in the published text, or None."""
        from veil.transforms.classification import classify
        from veil.transforms.keys import keys_from_config
        from veil.transforms.operators import DROP, OperatorContext, apply_operator
        from veil.transforms.privacy import entity_counts
        from veil.transforms.text import detect, select_spans

        policy = self._policy
        try:
            text = record["payload"].decode("utf-8")
            found = select_spans(
                detect(self._model, text, policy.text), policy.text.score_threshold
            )
            regimes = classify(entity_counts([t for _, _, t in found]), policy).regimes
            if self._keys is None:
                self._keys = keys_from_config(policy.key_file, policy.key_env)
            ctx = OperatorContext(record["subject_key"], self._keys)
            out, spans, cursor, length = [], [], 0, 0
            for start, end, entity in found:
                out.append(text[cursor:start])
                length += start - cursor
                spec = policy.operator_for("text", entity, regimes)
                value = apply_operator(
                    spec, text[start:end], entity, ctx, f"payload[{start}:{end}]"
                )
                value = "" if value is DROP else value
                spans.append((length, length + len(value), entity, spec.name))
                out.append(value)
                length += len(value)
                cursor = end
            out.append(text[cursor:])
        except Exception as exc:  # noqa: BLE001 - the gallery then shows plain text
            _LOGGER.info("text review unavailable: %s", type(exc).__name__)
            return None
        return spans if "".join(out) == published else None


def text_html(published: str, spans: list | None) -> str:
    shown = published[:MAX_TEXT_CHARS]
    if not spans:
        body = _esc(shown)
    else:
        parts, cursor = [], 0
        for start, end, entity, operator in spans:
            if start >= len(shown):
                break
            parts.append(_esc(shown[cursor:start]))
            inner = _esc(shown[start:end]) or "&#8203;"
            parts.append(
                f'<mark class="pii" data-entity="{_esc(entity)}" style="--hue:{_hue(entity)}">'
                f'{inner}<span class="tag">{_esc(entity)} · {_esc(operator)}</span></mark>'
            )
            cursor = end
        parts.append(_esc(shown[cursor:]))
        body = "".join(parts)
    more = " …" if len(published) > MAX_TEXT_CHARS else ""
    return f'<p class="text-sample">{body}{more}</p>'


def _hue(entity: str) -> int:
    return sum(ord(c) * 37 for c in entity) % 360


def original_text_html(record: dict) -> str:
    text = record["payload"].decode("utf-8", errors="replace")[:MAX_TEXT_CHARS]
    return f'<p class="text-sample original">{_esc(text)}</p>'


# --- structured -----------------------------------------------------------------------


def structured_html(payload: bytes) -> str:
    try:
        shown = json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        shown = payload.decode("utf-8", errors="replace")
    if len(shown) > MAX_TEXT_CHARS:
        shown = shown[:MAX_TEXT_CHARS] + "\n…"
    # Replacement tokens (<TYPE>, <TYPE_hex> pseudonyms) marked like the text spans.
    marked = re.sub(
        r"&lt;([A-Z][A-Z_]*?)(_[0-9a-f]{6,})?&gt;",
        lambda m: f'<mark class="pii flat" style="--hue:{_hue(m.group(1))}">{m.group(0)}</mark>',
        _esc(shown),
    )
    return f'<pre class="json-sample">{marked}</pre>'


# --- images and video -------------------------------------------------------------------


def image_uri(payload: bytes) -> str:
    from veil.transforms.image.codec import decode_image

    return _jpeg_uri(decode_image(payload).pixels)


def contact_sheet_uri(payload: bytes, frames: int = SHEET_FRAMES) -> str:
    """Evenly spaced frames, three to a row, as one JPEG."""
    import cv2

    from veil.transforms.video.container import VideoReader

    with VideoReader(payload) as reader:
        every = [f.pixels for f in reader.frames()]
    if not every:
        raise ValueError("no frames")
    picks = [
        every[round(i * (len(every) - 1) / max(1, frames - 1))]
        for i in range(min(frames, len(every)))
    ]
    height, width = picks[0].shape[:2]
    cell_w = 320
    cell_h = max(1, round(height * cell_w / width))
    cells = [cv2.resize(p, (cell_w, cell_h), interpolation=cv2.INTER_AREA) for p in picks]
    while len(cells) % 3:
        cells.append(np.full_like(cells[0], 255))
    gap = np.full((cell_h, 4, 3), 255, np.uint8)
    rows = [
        np.hstack([cells[i], gap, cells[i + 1], gap, cells[i + 2]]) for i in range(0, len(cells), 3)
    ]
    hgap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    sheet = rows[0]
    for row in rows[1:]:
        sheet = np.vstack([sheet, hgap, row])
    return _jpeg_uri(sheet, side=3 * cell_w + 8)


# --- audio ---------------------------------------------------------------------------


def _mono(payload: bytes):
    from veil.transforms.audio.codec import AudioLimits, decode_audio

    audio = decode_audio(payload, AudioLimits())
    return audio.samples.mean(axis=1), audio.sample_rate


def silenced_spans(
    before: np.ndarray, rate_b: int, after: np.ndarray, rate_a: int, min_s=0.1, join_s=0.25
):
    """Time spans (s) where the output is digitally silent and the input was not."""
    hop = 0.01
    n = int(min(len(before) / rate_b, len(after) / rate_a) / hop)
    spans, start = [], None
    for i in range(n + 1):
        silent = False
        if i < n:
            a = after[int(i * hop * rate_a) : int((i + 1) * hop * rate_a)]
            b = before[int(i * hop * rate_b) : int((i + 1) * hop * rate_b)]
            silent = a.size > 0 and not np.any(a) and np.sqrt(np.mean(b**2)) > 1e-3
        if silent and start is None:
            start = i
        elif not silent and start is not None:
            if (i - start) * hop >= min_s:
                if spans and start * hop - spans[-1][1] <= join_s:  # a word gap inside a span
                    spans[-1] = (spans[-1][0], i * hop)
                else:
                    spans.append((start * hop, i * hop))
            start = None
    return spans


def audio_figure(before, rate_b, after, rate_a, spans, show_originals: bool) -> str:
    import matplotlib.pyplot as plt

    rows = 3 if show_originals else 2
    fig, axes = plt.subplots(rows, 1, figsize=(7.2, 1.55 * rows + 0.4), sharex=True)
    hop = int(rate_b * 0.02)
    frames = max(1, len(before) // hop)
    rms = np.sqrt(np.mean(before[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    t = np.arange(frames) * 0.02
    ax = axes[0]
    ax.fill_between(t, -60, np.maximum(db, -60), color="#8a8f98", linewidth=0)
    ax.set_ylim(-60, 0)
    ax.set_ylabel("before\nloudness dB", fontsize=8)
    panels = [(axes[1], after, rate_a, "after (sanitized)")]
    if show_originals:
        panels.insert(0, (axes[1], before, rate_b, "before (ORIGINAL)"))
        panels[1] = (axes[2], after, rate_a, "after (sanitized)")
    for axis, samples, rate, label in panels:
        with np.errstate(divide="ignore"):  # digital silence is -inf dB: drawn as the floor
            axis.specgram(samples, NFFT=512, Fs=rate, noverlap=384, cmap="magma", vmin=-120)
        axis.set_ylim(0, min(8000, rate / 2))
        axis.set_ylabel(f"{label}\nHz", fontsize=8)
    for axis in axes:
        for start, end in spans:
            axis.axvspan(start, end, color="#2ec4b6", alpha=0.35, linewidth=0)
        axis.tick_params(labelsize=8)
        axis.spines[["top", "right"]].set_visible(False)
    axes[-1].set_xlabel("seconds (shaded: silenced spoken PII)", fontsize=8)
    return charts._png(fig)


# --- assembling ------------------------------------------------------------------------


def input_records(inputs, subject):
    """``{source key: MediaRecord}`` in the keys ``veil sanitize`` gives its inputs:
    ``source.topic`` is each input's opaque id. ``inputs``: ``LocalInput``s (the
    summary's ``inputs``) or paths (collected again, with ids of a fresh random key)."""
    from veil.pipelines.files import InputError, LocalInput, collect_inputs, iter_records

    if inputs and not isinstance(inputs[0], LocalInput):
        inputs = collect_inputs(inputs)
    out = {}
    for item in inputs:
        for index, (_, line, record) in enumerate(iter_records([item.path], subject)):
            if isinstance(record, InputError):
                continue
            offset = (line - 1) if line else index
            out[f"{item.input_id}/0@{offset}"] = record
    return out


def build(paths, subject, sanitized: list, policy, show_originals: bool) -> list[GalleryItem]:
    """One item per sanitized record of the inputs, in input order."""
    originals = input_records(paths, subject)
    reviewer = None
    items = []
    order = {key: i for i, key in enumerate(originals)}

    def position(record):
        src = record["source"]
        key = f"{src['topic']}/{src['partition']}@{src['offset']}"
        return (order.get(key, len(order)), src["topic"], src["offset"])

    for record in sorted(sanitized, key=position):
        src = record["source"]
        key = f"{src['topic']}/{src['partition']}@{src['offset']}"
        original = originals.get(key)
        modality = record["modality"]
        classification = record.get("classification") or {}
        item = GalleryItem(
            key=key,
            record_id=record.get("record_id"),
            modality=modality,
            sensitivity=classification.get("sensitivity"),
            entity_counts=dict(classification.get("entity_counts") or {}),
            html="",
        )
        payload = record["payload"]
        try:
            if modality == "text":
                published = payload.decode("utf-8")
                spans = None
                if original is not None:
                    reviewer = reviewer or TextReviewer(policy)
                    spans = reviewer.spans(original, published)
                if spans is None and item.entity_counts:
                    item.note = "spans could not be re-derived: shown without highlights"
                item.html = text_html(published, spans)
                if show_originals and original is not None:
                    item.original_html = original_text_html(original)
            elif modality == "structured":
                item.html = structured_html(payload)
                if show_originals and original is not None:
                    item.original_html = structured_html(original["payload"])
            elif modality == "image":
                item.html = _img(image_uri(payload), "sanitized image")
                if show_originals and original is not None:
                    item.original_html = _img(image_uri(original["payload"]), "original image")
            elif modality == "video":
                item.html = _img(contact_sheet_uri(payload), "sanitized video frames")
                if show_originals and original is not None:
                    item.original_html = _img(
                        contact_sheet_uri(original["payload"]), "original video frames"
                    )
            elif modality == "audio":
                after, rate_a = _mono(payload)
                if original is not None:
                    before, rate_b = _mono(original["payload"])
                    spans = silenced_spans(before, rate_b, after, rate_a)
                else:
                    before, rate_b, spans = after, rate_a, []
                item.html = _img(
                    audio_figure(before, rate_b, after, rate_a, spans, show_originals),
                    "audio before and after",
                )
                item.note = f"{len(spans)} span(s) silenced, {sum(e - s for s, e in spans):.1f} s"
        except Exception as exc:  # noqa: BLE001 - one sample must not sink the report
            _LOGGER.warning("gallery item %s not rendered: %s", key, type(exc).__name__)
            item.html = ""
            item.note = f"not rendered ({type(exc).__name__})"
        items.append(item)
    return items


__all__ = ["GalleryItem", "TextReviewer", "build", "silenced_spans"]
