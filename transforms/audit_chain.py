"""The tamper-evident audit chain: link format, MAC key, and the verifier.

Every ``AuditEvent`` on the audit topic carries a ``ChainLink``. There is one chain per
*source partition* (``chain id`` = ``<source topic>/<source partition>``): the runner
lets one bundle at a time own a source partition, so each chain has a single writer, and
all of a chain's events go to one audit partition (``audit_partition``), where Kafka
orders them. A link holds:

* ``sequence``: 0 for the chain's first event (genesis), +1 per event;
* ``prev_hash``: SHA-256 of the previous event's canonical bytes (32 zero bytes at
  genesis);
* ``mac``: HMAC-SHA256 of this event's canonical bytes under the audit MAC key (empty
  when no key is configured);
* ``mac_key_id``: which key (``file:<id>/audit``, ``kms:<id>/audit``, or ``none``).

Canonical bytes (``canonical``): ``b"veil-audit-chain-v1\\n"`` followed by the event as
JSON with sorted keys, no spaces, ASCII only, ``event_time`` as epoch milliseconds,
``chain.prev_hash`` as hex and ``chain.mac`` left out, and ``steps`` left out when it is
empty (schema v2's default, so events without steps hash as they did in v1). JSON rather than the Avro body, so
the same bytes can be rebuilt from the topic and from ``veil consume`` JSON lines alike.
The hash and the MAC cover every field of the event, the sequence, the previous hash and
the key id, so an edit anywhere breaks the MAC and the next event's link.

Hashing and MACs go through ``event_hash`` and ``event_mac`` only (``hashlib`` and
``hmac``; no ``hazmat`` here). The verifier (``verify``) is what ``veil audit verify``
runs; the writing side is ``veil.transforms.kafkaio.audit_chainer``.

Example::

    key = resolve_mac_key("/etc/veil/audit.key")
    event["chain"] = make_link(event, sequence=0, prev_hash=GENESIS_HASH, key=key)
    report = verify(read_file("audit.jsonl"), [key])
    print(report.summary())
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import hashlib
import hmac
import io
import json
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import fastavro

from veil.schemas import AUDIT_EVENT, HEADER, MAGIC_BYTE, FramingError
from veil.schemas.registry import codec

CANONICAL_PREFIX = b"veil-audit-chain-v1\n"
GENESIS_HASH = bytes(32)
NO_KEY_ID = "none"
AUDIT_SCOPE = "audit"
AUDIT_KEY_ENV = "VEIL_AUDIT_KEY_FILE"
CHAIN_HEADER = "veil-chain"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class AuditKeyUnavailable(Exception):
    """An audit MAC key is configured but cannot be had: the writer refuses to chain."""


# --- canonical form, hash, MAC ---------------------------------------------------------


def _millis(value) -> int:
    """``event_time`` as epoch ms, from fastavro's datetime, an int, or ISO text."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return (value - _EPOCH) // dt.timedelta(milliseconds=1)
    return int(value)


def _as_bytes(value) -> bytes:
    """Bytes from Avro (bytes) or from JSON lines (base64 text)."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return base64.b64decode(value, validate=True)


def canonical(event: dict) -> bytes:
    """The bytes that ``prev_hash`` and ``mac`` cover (see the module docstring)."""
    # An empty ``steps`` (schema v2's default) is left out: v1 events, and v2 events
    # about no pipeline run (reveal, erasure) whose writer built them without it, hash
    # the same whether read back (decoders fill in the default) or not.
    body = {k: v for k, v in event.items() if k != "chain" and not (k == "steps" and not v)}
    body["event_time"] = _millis(event["event_time"])
    chain = event.get("chain")
    if chain is not None:
        body["chain"] = {
            "sequence": int(chain["sequence"]),
            "prev_hash": _as_bytes(chain["prev_hash"]).hex(),
            "mac_key_id": chain["mac_key_id"],
        }
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return CANONICAL_PREFIX + text.encode("ascii")


def event_hash(event: dict) -> bytes:
    """SHA-256 of the canonical bytes: the next event's ``prev_hash``."""
    return hashlib.sha256(canonical(event)).digest()


def event_mac(key: bytes, event: dict) -> bytes:
    return hmac.new(key, canonical(event), hashlib.sha256).digest()


class MacKey(NamedTuple):
    """The audit MAC key (``key`` None: hash chain only) and its public id."""

    key: bytes | None
    key_id: str


NO_KEY = MacKey(None, NO_KEY_ID)


def resolve_mac_key(key_ref: str | None = None, key_service=None, env: str = AUDIT_KEY_ENV):
    """The audit MAC key, resolved on the worker (or by the verifier).

    Order: ``key_ref`` (a key file path, or a ``kms:`` URI), then ``$VEIL_AUDIT_KEY_FILE``,
    then the pipeline's key service (``KeyServiceConfig``), each giving the ``audit``
    scope key of ``veil.transforms.keys.SecretKeys``. None of them: ``NO_KEY``. A key that
    is configured but unreadable raises ``AuditKeyUnavailable`` (fail closed).
    """
    from veil.transforms.keys import KeyNotConfigured, KeyUnavailable, resolve_scoped_key

    try:
        key, key_id = resolve_scoped_key(
            key_ref, key_service, env, AUDIT_SCOPE, "AUDIT_KEY_UNAVAILABLE"
        )
    except KeyNotConfigured:
        return NO_KEY
    except KeyUnavailable as exc:
        raise AuditKeyUnavailable(*exc.args) from None
    return MacKey(key, key_id)


def link_event(event: dict, sequence: int, prev_hash: bytes, key: MacKey) -> bytes:
    """Sets ``event["chain"]`` (at ``sequence``, after an event hashing to ``prev_hash``)
    and returns the event's own hash; one canonical encoding serves hash and MAC."""
    link = {"sequence": sequence, "prev_hash": prev_hash, "mac": b"", "mac_key_id": key.key_id}
    event["chain"] = link
    data = canonical(event)
    if key.key is not None:
        link["mac"] = hmac.new(key.key, data, hashlib.sha256).digest()
    return hashlib.sha256(data).digest()


def make_link(event: dict, sequence: int, prev_hash: bytes, key: MacKey) -> dict:
    """The ``ChainLink`` for ``event`` at ``sequence`` after an event hashing to ``prev_hash``."""
    linked = dict(event)
    link_event(linked, sequence, prev_hash, key)
    return linked["chain"]


def chain_events(events: Iterable[dict], key: MacKey) -> list[dict]:
    """Links ``events`` in the given order, each chain from genesis (``veil sanitize``
    chains its local ``audit.jsonl`` this way; the Kafka sink uses ``audit_chainer``)."""
    heads: dict = {}
    out = []
    for event in events:
        event = dict(event)
        label = chain_id(event)
        sequence, prev_hash = heads.get(label, (-1, GENESIS_HASH))
        heads[label] = (sequence + 1, link_event(event, sequence + 1, prev_hash, key))
        out.append(event)
    return out


def chain_id(event: dict) -> str:
    """One chain per source partition."""
    source = event["source"]
    return f"{source['topic']}/{source['partition']}"


def audit_partition(chain: str, partitions: int) -> int:
    """The audit partition of a chain: stable across processes and restarts."""
    digest = hashlib.sha256(chain.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % partitions


# --- reading events --------------------------------------------------------------------


class Located(NamedTuple):
    """An audit event and where it was read (partition None: unknown, e.g. a bare file)."""

    event: dict | None
    where: str
    partition: int | None = None
    problem: str | None = None  # the event could not be read (code)


def decode_writer(value: bytes, schemas=None) -> dict:
    """An AuditEvent decoded with the schema that wrote it (no resolution, so the
    canonical bytes are the writer's, whatever later schema versions add).

    ``schemas``: a ``RegistryBinding`` when the topic carries registry ids, else None.
    """
    if not value or len(value) < HEADER.size:
        raise FramingError("BAD_FRAMING", "short value")
    magic, schema_id = HEADER.unpack_from(value)
    if magic != MAGIC_BYTE:
        raise FramingError("BAD_FRAMING", "magic byte is not 0")
    try:
        writer = codec(schemas).by_id(schema_id)
    except KeyError:
        raise FramingError("UNKNOWN_SCHEMA_ID", "unknown schema id") from None
    if writer.subject != AUDIT_EVENT:
        raise FramingError("UNEXPECTED_SCHEMA", "not an AuditEvent")
    body = io.BytesIO(memoryview(value)[HEADER.size :])
    try:
        event = fastavro.schemaless_reader(body, writer.parsed, None)
    except Exception:
        raise FramingError("AVRO_DECODE_ERROR", "Avro body does not decode") from None
    if body.tell() != len(body.getbuffer()):
        raise FramingError("AVRO_DECODE_ERROR", "trailing bytes")
    return event


def read_topic(
    client_config: dict, topic: str, idle_timeout_s: float = 10.0, schemas=None
) -> Iterator[Located]:
    """Every record of ``topic``, all partitions from the beginning, in log order per
    partition (committed records only: ``read_committed``)."""
    from kafka import KafkaConsumer, TopicPartition

    from veil.transforms.kafkaio import MAX_MESSAGE_BYTES, client

    consumer = KafkaConsumer(
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        **client.resolve(client_config),
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist")
        for p in sorted(partitions):
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            waited = 0.0
            while consumer.position(tp) < end:
                batch = consumer.poll(timeout_ms=500)
                records = batch.get(tp, [])
                waited = 0.0 if records else waited + 0.5
                if waited > idle_timeout_s:
                    raise TimeoutError(f"{topic}/{p}: no progress reading to offset {end}")
                for rec in records:
                    if rec.offset >= end:
                        break
                    where = f"{topic}/{p}@{rec.offset}"
                    try:
                        yield Located(decode_writer(rec.value, schemas), where, p)
                    except FramingError as exc:
                        yield Located(None, where, p, exc.code)
    finally:
        consumer.close(autocommit=False)


def from_json(value: dict) -> dict:
    """An AuditEvent from its JSON-lines form (``veil consume`` / ``veil sanitize``)."""
    event = dict(value)
    chain = event.get("chain")
    if isinstance(chain, dict):
        event["chain"] = {
            **chain,
            "prev_hash": _as_bytes(chain.get("prev_hash")),
            "mac": _as_bytes(chain.get("mac")),
        }
    return event


def read_file(path: str) -> Iterator[Located]:
    """Audit events from a file: JSON lines as ``veil consume`` writes them (with the
    record's topic/partition/offset), bare events as ``veil sanitize`` writes them, or an
    Avro object container file of AuditEvents."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == b"Obj\x01":
        yield from _read_avro_file(path)
        return
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
                partition = None
                if isinstance(obj, dict) and isinstance(obj.get("value"), dict):
                    where += f" ({obj.get('topic')}/{obj.get('partition')}@{obj.get('offset')})"
                    partition, obj = obj.get("partition"), obj["value"]
                if not isinstance(obj, dict) or "event_id" not in obj:
                    raise ValueError("not an audit event")
                yield Located(from_json(obj), where, partition)
            except (ValueError, TypeError, KeyError):
                yield Located(None, where, None, "UNREADABLE_LINE")


def _read_avro_file(path: str) -> Iterator[Located]:
    with open(path, "rb") as handle:
        for number, event in enumerate(fastavro.reader(handle), 1):
            yield Located(event, f"{path}#{number}", None)


# --- verification ----------------------------------------------------------------------


@dataclasses.dataclass
class Problem:
    kind: str  # MODIFIED, BAD_MAC, UNKNOWN_MAC_KEY, UNSIGNED, DELETED, INSERTED, REORDERED, ...
    chain: str | None
    sequence: int | None
    where: str
    detail: str

    def __str__(self) -> str:
        seq = "-" if self.sequence is None else self.sequence
        return f"{self.kind:15} chain={self.chain or '-'} seq={seq} at {self.where}: {self.detail}"


@dataclasses.dataclass
class Report:
    events: int = 0
    chains: dict = dataclasses.field(default_factory=dict)  # group label -> (head seq, head hash)
    duplicates: int = 0
    macs_checked: int = 0
    unsigned: int = 0
    problems: list = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        state = "OK" if self.ok else f"FAILED: {len(self.problems)} problem(s)"
        return (
            f"{state}: {len(self.chains)} chain(s), {self.events} event(s), "
            f"{self.duplicates} duplicate(s) from replays, {self.macs_checked} MAC(s) verified, "
            f"{self.unsigned} unsigned"
        )


class _Entry(NamedTuple):
    position: int
    sequence: int
    prev_hash: bytes
    digest: bytes
    event_id: str
    where: str


def verify(
    events: Iterable[Located],
    keys: Iterable[MacKey] = (),
    allow_unsigned: bool = False,
    expect_heads: dict | None = None,
) -> Report:
    """Checks every chain in ``events`` (in log order) and says what is wrong and where.

    With ``keys``, every event's MAC is checked and an unsigned event (``mac_key_id``
    ``none``) is a problem unless ``allow_unsigned``. Without keys only the hash links
    are checked (anyone able to write the topic could rebuild such a chain).
    ``expect_heads`` maps a chain id to a sequence the chain must reach (a head
    recorded earlier): the only defence against deleting a chain's newest events.
    """
    keyring = {k.key_id: k.key for k in keys if k.key is not None}
    report = Report()
    groups: dict = collections.defaultdict(list)
    for position, located in enumerate(events):
        report.events += 1
        if located.event is None:
            report.problems.append(
                Problem("UNREADABLE", None, None, located.where, located.problem or "unreadable")
            )
            continue
        entry = _check_event(located, position, keyring, allow_unsigned, report)
        if entry is not None:
            label = chain_id(located.event)
            groups[(located.partition, label)].append(entry)
    for (partition, label), entries in groups.items():
        _check_chain(label, entries, report)
        head = max(entries, key=lambda e: e.sequence)
        name = label if partition is None else f"{label} (audit partition {partition})"
        report.chains[name] = (head.sequence, head.digest.hex()[:16])
    for label, sequence in (expect_heads or {}).items():
        heads = [seq for name, (seq, _) in report.chains.items() if name.split(" ")[0] == label]
        if not heads or max(heads) < sequence:
            got = max(heads) if heads else "no events"
            report.problems.append(
                Problem("TRUNCATED", label, sequence, "end of log", f"chain ends at {got}")
            )
    return report


def _check_event(located, position, keyring, allow_unsigned, report) -> _Entry | None:
    """Per-event checks (link present, MAC); returns the entry for the chain checks."""
    event, where = located.event, located.where
    try:
        label = chain_id(event)
        link = event.get("chain")
        if link is None:
            report.problems.append(Problem("UNCHAINED", label, None, where, "no chain link"))
            return None
        sequence = int(link["sequence"])
        digest = event_hash(event)
        prev_hash, mac = _as_bytes(link["prev_hash"]), _as_bytes(link["mac"])
        key_id = link["mac_key_id"]
    except (KeyError, TypeError, ValueError):
        report.problems.append(Problem("MALFORMED", None, None, where, "chain fields unreadable"))
        return None
    if key_id == NO_KEY_ID or not mac:
        report.unsigned += 1
        if keyring and not allow_unsigned:
            report.problems.append(
                Problem("UNSIGNED", label, sequence, where, "no MAC, but a key was given")
            )
    elif keyring:
        key = keyring.get(key_id)
        if key is None:
            report.problems.append(
                Problem("UNKNOWN_MAC_KEY", label, sequence, where, f"MAC key {key_id} not given")
            )
        elif not hmac.compare_digest(mac, event_mac(key, event)):
            report.problems.append(
                Problem("BAD_MAC", label, sequence, where, "modified, or inserted without the key")
            )
        else:
            report.macs_checked += 1
    return _Entry(position, sequence, prev_hash, digest, str(event.get("event_id")), where)


def _check_chain(label: str, entries: list, report: Report) -> None:
    """Link checks over one chain's events in log order."""
    by_seq: dict = collections.defaultdict(list)
    highest = -1
    for entry in entries:
        earlier = by_seq.get(entry.sequence)
        if earlier:
            same = any(e.digest == entry.digest for e in earlier)
            kind, what = ("INSERTED", "a copy of") if same else ("CONFLICT", "differs from")
            report.problems.append(
                Problem(kind, label, entry.sequence, entry.where, f"{what} {earlier[0].where}")
            )
        elif entry.sequence < highest:
            report.problems.append(
                Problem("REORDERED", label, entry.sequence, entry.where,
                        f"comes after sequence {highest} in the log")
            )  # fmt: skip
        by_seq[entry.sequence].append(entry)
        highest = max(highest, entry.sequence)
    first = {seq: found[0] for seq, found in by_seq.items()}
    _check_gaps(label, first, highest, report)
    seen_ids: set = set()
    for seq in sorted(first):
        entry = first[seq]
        if entry.event_id in seen_ids:
            report.duplicates += 1  # a replayed record: same event id, new sequence
        seen_ids.add(entry.event_id)
        if seq == 0:
            expected, what = GENESIS_HASH, "not a genesis link"
        elif seq - 1 in first:
            before = first[seq - 1]
            expected, what = before.digest, f"{before.where} altered, or this event inserted"
        else:
            continue  # already reported as DELETED
        if entry.prev_hash != expected:
            report.problems.append(Problem("BROKEN_LINK", label, seq, entry.where, what))


def _check_gaps(label: str, first: dict, highest: int, report: Report) -> None:
    """Missing sequence numbers (deleted events), from 0 up to the highest seen."""
    previous = -1
    for seq in sorted(first):
        if seq > previous + 1:
            span = f"{previous + 1}" if seq == previous + 2 else f"{previous + 1}..{seq - 1}"
            report.problems.append(
                Problem("DELETED", label, previous + 1, f"before {first[seq].where}",
                        f"sequence {span} missing")
            )  # fmt: skip
        previous = seq
