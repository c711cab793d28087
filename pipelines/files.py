"""Local files in and out of the pipeline, for ``veil produce`` and ``veil sanitize``.

A plain file becomes one ``MediaRecord`` (modality sniffed unless given). A ``.jsonl``
file holds one record per line in MediaRecord's JSON form::

    {"record_id": "r1", "subject_key": "alice", "content_type": "text/plain",
     "payload": "text payloads as a string", "attributes": {"k": "v"}}

(``payload_base64`` instead of ``payload`` for binary content.)
"""

from __future__ import annotations

import base64
import json
import mimetypes
import uuid
from pathlib import Path

from veil.schemas import MEDIA_RECORD
from veil.transforms.records import KafkaMessage


class InputError(ValueError):
    """A local input file or line cannot become a MediaRecord."""


def record_from_file(path: Path, subject: str, modality: str | None = None) -> dict:
    content_type, _ = mimetypes.guess_type(path.name)
    return {
        "record_id": f"{path.name}-{uuid.uuid4().hex[:12]}",
        "subject_key": subject,
        "modality": modality,
        "content_type": content_type or "application/octet-stream",
        "payload": path.read_bytes(),
        "attributes": {"filename": path.name},
        "event_time": None,
    }


def record_from_json(obj: dict, default_subject: str | None) -> dict:
    if not isinstance(obj, dict):
        raise InputError("a line must hold a JSON object")
    if "payload_base64" in obj:
        payload = base64.b64decode(obj["payload_base64"], validate=True)
    elif isinstance(obj.get("payload"), str):
        payload = obj["payload"].encode("utf-8")
    else:
        raise InputError("a record needs 'payload' (string) or 'payload_base64'")
    subject = obj.get("subject_key") or default_subject
    if not subject:
        raise InputError("a record needs 'subject_key' (or pass --subject)")
    attributes = obj.get("attributes") or {}
    return {
        "record_id": str(obj.get("record_id") or uuid.uuid4().hex),
        "subject_key": str(subject),
        "modality": obj.get("modality"),
        "content_type": obj.get("content_type") or "text/plain; charset=utf-8",
        "payload": payload,
        "attributes": {str(k): str(v) for k, v in attributes.items()},
        "event_time": obj.get("event_time"),
    }


def iter_records(paths, subject: str | None, modality: str | None = None):
    """Yields ``(path, line_number_or_None, record_or_InputError)``."""
    for path in map(Path, paths):
        if path.suffix == ".jsonl":
            with path.open("r", encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        yield path, number, record_from_json(json.loads(line), subject)
                    except (ValueError, InputError) as exc:
                        yield path, number, InputError(
                            f"{path}:{number}: {type(exc).__name__}"
                            + (f": {exc}" if isinstance(exc, InputError) else "")
                        )
        else:
            yield path, None, record_from_file(path, subject or path.stem, modality)


def encode_record(record: dict, schemas=None) -> bytes:
    """A framed MediaRecord; ``schemas``: a ``RegistryBinding`` (registry ids) or None."""
    from veil.schemas.registry import codec

    return codec(schemas).encode(MEDIA_RECORD, record)


def to_json(subject: str, record: dict) -> dict:
    """A decoded record in readable JSON form (text payloads as text)."""
    out = {}
    for key, value in record.items():
        if key == "payload" or isinstance(value, (bytes, bytearray)):
            out.update(_payload_json(key, value))
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        elif isinstance(value, dict):  # nested records, e.g. an audit event's chain link
            out[key] = {k: _bytes_note(v) for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = [
                {k: _bytes_note(v) for k, v in v_.items()} if isinstance(v_, dict) else v_
                for v_ in value
            ]
        else:
            out[key] = value
    return out


def _bytes_note(value):
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


def _payload_json(key: str, value) -> dict:
    if value is None:
        return {key: None}
    try:
        return {key: value.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{key}_base64": base64.b64encode(value).decode()}


def file_messages(paths, subject: str | None, errors: list) -> list[KafkaMessage]:
    """Local inputs as ``KafkaMessage``s: topic = file path, offset = record number."""
    messages = []
    counters: dict[str, int] = {}
    for path, line, record in iter_records(paths, subject):
        index = counters.get(str(path), 0)
        counters[str(path)] = index + 1
        if isinstance(record, InputError):
            errors.append(str(record))
            value = b""  # still one record in, so it still yields one dead letter
        else:
            value = encode_record(record)
        messages.append(
            KafkaMessage(
                topic=str(path),
                partition=0,
                offset=(line - 1) if line else index,
                timestamp_ms=0,
                key=None,
                value=value,
            )
        )
    return messages
