"""Veil's schemas in a Confluent-compatible schema registry.

Offline, Veil frames values with the ids of its local ``catalog.json``. With a registry
(``--veil_schema_registry URL``, or ``$VEIL_SCHEMA_REGISTRY_URL``), Veil registers each
schema it writes under the subject ``<topic>-value`` (compatibility ``BACKWARD``) when
topics are created and when the pipeline starts, frames its output with the ids the
registry returns, and resolves ids it has not seen in input records through the
registry (cached per process). Consumers that are not Veil then read Veil's topics with
their registry's standard Avro deserializer, and upstream producers' own registered
versions of ``MediaRecord`` decode in Veil.

The client is confluent-kafka's ``SchemaRegistryClient``: no hand-written HTTP.

Example::

    from veil.schemas.registry import codec, register

    binding = register("http://registry:8080/apis/ccompat/v7",
                       [("veil.raw", "MediaRecord"), ("veil.audit", "AuditEvent")])
    framed = codec(binding).encode("AuditEvent", event)   # registry id in the header
    subject, record = codec(binding).decode(framed)

``register`` fails fast (``RegistryError``, whose message names the fix) when the
registry cannot be reached, so a pipeline never starts half-configured.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable

import fastavro

from veil.schemas import FramingError, SchemaCatalog, SchemaVersion, _load_json, catalog

_LOGGER = logging.getLogger(__name__)

URL_ENV = "VEIL_SCHEMA_REGISTRY_URL"
NONE = "none"  # --veil_schema_registry none: the local catalog (offline mode)
COMPATIBILITY = "BACKWARD"
NAMESPACE = "dev.veil.v1"
# Unknown ids are asked again after this long (a producer may register them meanwhile).
NEGATIVE_TTL_S = 30.0
MAX_NEGATIVE = 10_000

FIX_UNREACHABLE = (
    "start the registry or correct --veil_schema_registry / $VEIL_SCHEMA_REGISTRY_URL "
    "(the Confluent-compatible API, e.g. http://HOST:8080/apis/ccompat/v7), or pass "
    "--veil_schema_registry none to use the local schema catalog offline"
)


class RegistryError(RuntimeError):
    """The registry is unreachable or refused a schema; the message names the fix."""


def default_url() -> str:
    """``$VEIL_SCHEMA_REGISTRY_URL`` when set, else ``none`` (the local catalog)."""
    return os.environ.get(URL_ENV, "").strip() or NONE


def resolve_url(value: str | None) -> str | None:
    """The registry URL from a flag value; None for offline mode (``none`` or empty)."""
    value = (value or "").strip()
    if not value or value.lower() == NONE:
        return None
    if not value.startswith(("http://", "https://")):
        raise RegistryError(
            f"schema registry URL must start with http:// or https:// (got a "
            f"{len(value)}-character value); {FIX_UNREACHABLE}"
        )
    if "@" in value.split("://", 1)[1].split("/", 1)[0]:
        # The URL travels in pipeline options and log lines: never with a secret in it.
        raise RegistryError(
            "schema registry URL must not carry credentials (user:password@); registry "
            "authentication is not supported yet"
        )
    return value.rstrip("/")


def subject_for(topic: str) -> str:
    """The TopicNameStrategy subject of a topic's values."""
    return f"{topic}-value"


@dataclasses.dataclass(frozen=True)
class RegistryBinding:
    """The registry and the ids Veil writes with (picklable; no secrets).

    Attributes:
        url: the registry's Confluent-compatible API base URL.
        ids: ``(record type, schema id)`` for each schema Veil writes.
    """

    url: str
    ids: tuple = ()

    def id_of(self, record_type: str) -> int:
        return dict(self.ids)[record_type]


def client(url: str, timeout_s: float = 10.0):
    """A ``SchemaRegistryClient`` with short retries (start-up must fail fast)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient(
        {
            "url": url,
            "timeout": timeout_s,
            "max.retries": 2,
            "retries.wait.ms": 200,
            "retries.max.wait.ms": 1000,
        }
    )


def schema_text(record_type: str) -> str:
    """The Avro schema Veil writes ``record_type`` with, as JSON text."""
    entry = catalog().latest(record_type)
    return json.dumps(_load_json(entry.file), separators=(",", ":"))


def register(url: str, topic_types: Iterable[tuple[str, str]]) -> RegistryBinding:
    """Registers Veil's schemas under ``<topic>-value`` (compatibility BACKWARD).

    Args:
        url: the registry's Confluent-compatible API URL.
        topic_types: ``(topic, record type)`` pairs, e.g. ``("veil.audit", "AuditEvent")``.

    Returns:
        The binding whose ids Veil frames its output with.

    Raises:
        RegistryError: unreachable registry, refused schema (incompatible with a version
            already registered), or one schema given different ids under two subjects.
    """
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    registry = client(url)
    ids: dict[str, int] = {}
    for topic, record_type in topic_types:
        subject = subject_for(topic)
        try:
            registry.set_compatibility(subject_name=subject, level=COMPATIBILITY)
            schema_id = registry.register_schema(subject, Schema(schema_text(record_type), "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                raise RegistryError(
                    f"the registry refused {record_type} under {subject}: not {COMPATIBILITY} "
                    "compatible with the subject's registered versions; register a compatible "
                    "version or use another topic prefix"
                ) from None
            raise RegistryError(
                f"schema registry {url} answered HTTP {exc.http_status_code} for {subject}; "
                f"{FIX_UNREACHABLE}"
            ) from None
        except Exception as exc:  # transport errors: connection refused, timeout, TLS
            raise RegistryError(
                f"schema registry {url} unreachable ({type(exc).__name__}); {FIX_UNREACHABLE}"
            ) from None
        if ids.setdefault(record_type, schema_id) != schema_id:
            raise RegistryError(
                f"the registry gave {record_type} ids {ids[record_type]} and {schema_id} under "
                "two subjects; Veil needs one id per schema content (Confluent semantics; on "
                "Apicurio keep registry.ccompat.legacy-id-mode.enabled=false)"
            )
        _LOGGER.info("Registered %s under %s: id %d", record_type, subject, schema_id)
    return RegistryBinding(url, tuple(sorted(ids.items())))


class RegistryCatalog(SchemaCatalog):
    """Veil's schemas under the registry's ids; other ids are looked up in the registry.

    Ids resolved once stay cached for the process (registry ids are immutable); ids the
    registry does not know are asked again after ``NEGATIVE_TTL_S``.
    """

    def __init__(self, binding: RegistryBinding, registry=None, clock=time.monotonic):
        local = catalog()
        entries = [
            dataclasses.replace(local.latest(record_type), schema_id=schema_id)
            for record_type, schema_id in binding.ids
        ]
        # Veil's types it does not write here still decode through the registry.
        super().__init__(entries)
        for subject in local.subjects():
            self._latest.setdefault(subject, local.latest(subject))
        self._by_id = {e.schema_id: e for e in entries}
        self.binding = binding
        self._registry = registry if registry is not None else client(binding.url)
        self._unknown: dict[int, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def encode(self, subject, record):
        if subject not in dict(self.binding.ids):
            # Framing with a local catalog id would collide with the registry's ids.
            raise FramingError("UNKNOWN_SCHEMA_ID", f"{subject} is not registered here")
        return super().encode(subject, record)

    def _writer(self, schema_id: int) -> SchemaVersion | None:
        writer = self._by_id.get(schema_id)
        if writer is not None:
            return writer
        with self._lock:
            asked = self._unknown.get(schema_id)
            if asked is not None and self._clock() - asked < NEGATIVE_TTL_S:
                return None
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                with self._lock:
                    if len(self._unknown) >= MAX_NEGATIVE:
                        self._unknown.clear()
                    self._unknown[schema_id] = self._clock()
                return None
            return self._unavailable(type(exc).__name__)
        except Exception as exc:  # transport errors
            return self._unavailable(type(exc).__name__)
        if (schema.schema_type or "AVRO") != "AVRO":
            raise FramingError("UNEXPECTED_SCHEMA", f"schema id {schema_id} is not Avro")
        try:
            parsed = fastavro.parse_schema(json.loads(schema.schema_str), named_schemas={})
        except Exception:  # a registered schema fastavro cannot parse
            raise FramingError(
                "UNEXPECTED_SCHEMA", f"schema id {schema_id} does not parse"
            ) from None
        name = parsed.get("name", "") if isinstance(parsed, dict) else ""
        namespace, _, short = name.rpartition(".")
        # Only Veil's own record types (any version) resolve to a Veil reader schema.
        subject = short if namespace == NAMESPACE else name or "?"
        writer = SchemaVersion(schema_id, subject, 0, "registry", parsed)
        self._by_id[schema_id] = writer
        _LOGGER.info("Resolved schema id %d through the registry", schema_id)
        return writer

    def _unavailable(self, cause: str):
        _LOGGER.warning(
            "Schema registry %s unavailable (%s); the record is dead-lettered "
            "SCHEMA_REGISTRY_UNAVAILABLE. Fix: %s, then replay the dead letters",
            self.binding.url,
            cause,
            "restore the registry",
        )
        raise FramingError("SCHEMA_REGISTRY_UNAVAILABLE", "schema registry unavailable")


@functools.lru_cache(maxsize=16)
def _registry_catalog(binding: RegistryBinding) -> RegistryCatalog:
    return RegistryCatalog(binding)


def codec(binding: RegistryBinding | None) -> SchemaCatalog:
    """This process's codec: the local catalog offline, else the registry's (cached)."""
    return catalog() if binding is None else _registry_catalog(binding)
