"""Avro schemas of Veil's topics, the local schema catalog and the wire framing.

Every topic value is framed the Confluent way: magic byte ``0``, a 4-byte big-endian
schema id, then the Avro binary body. Offline (``--veil_schema_registry none``) the ids
come from ``catalog.json`` beside this file; with a schema registry they are the ids the
registry hands out (``veil.schemas.registry``), so consumers that are not Veil resolve
them against the registry like any other topic's.

Schemas are parsed once per process (``catalog()`` is cached).

Example::

    from veil.schemas import catalog

    cat = catalog()
    framed = cat.encode("AuditEvent", event)
    subject, record = cat.decode(framed)
"""

from __future__ import annotations

import functools
import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fastavro

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")

MEDIA_RECORD = "MediaRecord"
SANITIZED_RECORD = "SanitizedRecord"
AUDIT_EVENT = "AuditEvent"
DEAD_LETTER = "DeadLetter"


class FramingError(ValueError):
    """The bytes are not a framed Avro value this catalog knows.

    ``code`` is a stable error code for the dead-letter stream; the message never holds
    content.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SchemaVersion:
    schema_id: int
    subject: str
    version: int
    file: str
    parsed: Any


class SchemaCatalog:
    """Parsed schemas by id and subject; encodes and decodes framed values."""

    def __init__(self, entries: list[SchemaVersion]):
        self._by_id = {e.schema_id: e for e in entries}
        self._latest: dict[str, SchemaVersion] = {}
        for e in sorted(entries, key=lambda e: e.version):
            self._latest[e.subject] = e

    def versions(self, subject: str) -> list[SchemaVersion]:
        return sorted(
            (e for e in self._by_id.values() if e.subject == subject),
            key=lambda e: e.version,
        )

    def subjects(self) -> list[str]:
        return sorted(self._latest)

    def latest(self, subject: str) -> SchemaVersion:
        return self._latest[subject]

    def by_id(self, schema_id: int) -> SchemaVersion:
        writer = self._writer(schema_id)
        if writer is None:
            raise KeyError(schema_id)
        return writer

    def _writer(self, schema_id: int) -> SchemaVersion | None:
        """The schema that wrote ``schema_id``, or None when unknown (subclasses may look
        it up elsewhere, or raise ``FramingError``)."""
        return self._by_id.get(schema_id)

    def encode(self, subject: str, record: Mapping[str, Any]) -> bytes:
        """Frames ``record`` with the latest version of ``subject``."""
        entry = self._latest[subject]
        buf = io.BytesIO()
        buf.write(HEADER.pack(MAGIC_BYTE, entry.schema_id))
        fastavro.schemaless_writer(buf, entry.parsed, record)
        return buf.getvalue()

    def decode(self, data: bytes, expect: str | None = None) -> tuple[str, dict]:
        """Decodes framed bytes into ``(subject, record)``, resolved to the latest version.

        Raises:
            FramingError: with code BAD_FRAMING, UNKNOWN_SCHEMA_ID, UNEXPECTED_SCHEMA or
                AVRO_DECODE_ERROR.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < HEADER.size:
            raise FramingError("BAD_FRAMING", "value shorter than the 5-byte header")
        magic, schema_id = HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise FramingError("BAD_FRAMING", "magic byte is not 0")
        writer = self._writer(schema_id)
        if writer is None:
            raise FramingError("UNKNOWN_SCHEMA_ID", f"schema id {schema_id} is not in the catalog")
        if (expect is not None and writer.subject != expect) or writer.subject not in self._latest:
            raise FramingError("UNEXPECTED_SCHEMA", f"schema id {schema_id} is not a {expect}")
        reader = self._latest[writer.subject]
        body = io.BytesIO(memoryview(data)[HEADER.size :])
        try:
            record = fastavro.schemaless_reader(body, writer.parsed, reader.parsed)
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
            raise FramingError(
                "AVRO_DECODE_ERROR", f"Avro body does not decode ({type(exc).__name__})"
            ) from None
        if body.tell() != len(body.getbuffer()):
            raise FramingError("AVRO_DECODE_ERROR", "trailing bytes after the Avro body")
        return writer.subject, record


def _load_json(name: str) -> Any:
    return json.loads(resources.files(__name__).joinpath(name).read_text("utf-8"))


@functools.lru_cache(maxsize=1)
def catalog() -> SchemaCatalog:
    """The process-wide catalog, parsed once."""
    spec = _load_json("catalog.json")
    entries = []
    for item in spec["schemas"]:
        parsed = fastavro.parse_schema(_load_json(item["file"]), named_schemas={})
        entries.append(
            SchemaVersion(item["id"], item["subject"], item["version"], item["file"], parsed)
        )
    return SchemaCatalog(entries)


def compatibility_errors(old_schema: Any, new_schema: Any) -> list[str]:
    """Checks that ``new`` reads what ``old`` wrote (backward) and vice versa (forward).

    The check writes sample records that exercise every field and every union branch of
    each schema and resolves them with the other one through fastavro. Returns a list of
    problems, empty when the pair is compatible both ways.
    """
    old = fastavro.parse_schema(old_schema, named_schemas={})
    new = fastavro.parse_schema(new_schema, named_schemas={})
    errors = []
    for direction, writer, reader in (("backward", old, new), ("forward", new, old)):
        expanded = fastavro.parse_schema(writer, named_schemas={}, expand=True)
        for sample in _samples(expanded):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, writer, sample)
            buf.seek(0)
            try:
                fastavro.schemaless_reader(buf, writer, reader)
            except Exception as exc:  # the resolution error is the finding
                errors.append(f"{direction}: {type(exc).__name__}: {exc}")
                break
    return errors


def _samples(schema: Any) -> list[Any]:
    """Sample values of ``schema``: one per union branch reachable at the top level."""
    variants = _branch_count(schema)
    return [_sample(schema, i) for i in range(max(1, variants))]


def _branch_count(schema: Any) -> int:
    """How many samples it takes to reach every union branch and enum symbol."""
    if isinstance(schema, list):
        return max([len(schema)] + [_branch_count(b) for b in schema])
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            return max([_branch_count(f["type"]) for f in schema["fields"]] or [1])
        if kind == "enum":
            return len(schema["symbols"])
        if kind == "array":
            return _branch_count(schema["items"])
        if kind == "map":
            return _branch_count(schema["values"])
    return 1


def _sample(schema: Any, variant: int) -> Any:
    if isinstance(schema, list):
        return _sample(schema[variant % len(schema)], variant)
    if isinstance(schema, str):
        return {
            "null": None,
            "boolean": True,
            "int": 7,
            "long": 7,
            "float": 1.5,
            "double": 1.5,
            "bytes": b"\x01",
            "string": "s",
        }[schema]
    kind = schema["type"]
    if kind == "record":
        return {f["name"]: _sample(f["type"], variant) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][variant % len(schema["symbols"])]
    if kind == "array":
        return [_sample(schema["items"], variant)]
    if kind == "map":
        return {"k": _sample(schema["values"], variant)}
    if kind == "fixed":
        return b"\x00" * schema["size"]
    return _sample(kind, variant)
