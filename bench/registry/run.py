"""Schema registry benchmark: Veil's registry codec next to confluent-kafka's standard
Avro serde, on the same records and the same real registry, in one run.

    .venv/bin/python bench/registry/run.py [--records 20000] [--url URL]

Without ``--url`` it starts Apicurio Registry (deploy/registry/registry.sh) on a free
loopback port and stops it at the end. Prints, per record (µs) and as ratios:
* encode a SanitizedRecord: Veil (``codec(binding).encode``, registry id) vs
  ``AvroSerializer`` (schema registered once, then cached);
* decode it: Veil (``decode``, writer resolved, reader = Veil's latest) vs
  ``AvroDeserializer`` (writer schema only);
* the local catalog's encode/decode (offline mode) for reference;
and one-off costs: registering Veil's 23 subjects at start-up, resolving an unseen id
through the registry (cold), then the cached lookup.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from veil.pipelines.topics import register_schemas
from veil.schemas import SANITIZED_RECORD, catalog
from veil.schemas.registry import RegistryCatalog, schema_text
from veil.transforms.emit import TopicNames

REPO = Path(__file__).resolve().parents[2]
REGISTRY_SH = REPO / "deploy" / "registry" / "registry.sh"


def _record(i: int) -> dict:
    return {
        "record_id": f"rec-{i}",
        "modality": "text",
        "content_type": "text/plain",
        "payload": b"Customer <PERSON> can be reached at <EMAIL_ADDRESS> or <PHONE_NUMBER>." * 3,
        "classification": {
            "sensitivity": "CONFIDENTIAL",
            "regimes": ["GDPR"],
            "entity_counts": {"PERSON": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1},
        },
        "protected": [],
        "policy_version": "default-1",
        "pipeline_version": "0.1.0",
        "source": {"topic": "veil.raw", "partition": i % 3, "offset": i},
    }


def _per_record_us(fn, items, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


def run(url: str, n: int) -> dict:
    names = TopicNames(f"bench{int(time.time())}")
    t0 = time.perf_counter()
    binding = register_schemas(url, names)
    register_s = time.perf_counter() - t0
    topic = names.sanitized("text")
    veil = RegistryCatalog(binding)
    registry = SchemaRegistryClient({"url": url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    serializer = AvroSerializer(registry, schema_text(SANITIZED_RECORD))
    deserializer = AvroDeserializer(registry)
    records = [_record(i) for i in range(n)]
    framed_ref = [serializer(r, ctx) for r in records]  # registers/caches the id
    framed_veil = [veil.encode(SANITIZED_RECORD, r) for r in records]
    assert framed_veil[0][:5] == framed_ref[0][:5], "both frame with the registry's id"
    local = catalog()
    framed_local = [local.encode(SANITIZED_RECORD, r) for r in records]
    out = {
        "records": n,
        "encode_us": {
            "veil": _per_record_us(lambda r: veil.encode(SANITIZED_RECORD, r), records),
            "confluent_avro_serializer": _per_record_us(lambda r: serializer(r, ctx), records),
            "local_catalog": _per_record_us(lambda r: local.encode(SANITIZED_RECORD, r), records),
        },
        "decode_us": {
            "veil": _per_record_us(veil.decode, framed_veil),
            "confluent_avro_deserializer": _per_record_us(
                lambda b: deserializer(b, ctx), framed_ref
            ),
            "local_catalog": _per_record_us(local.decode, framed_local),
        },
        "register_23_subjects_s": register_s,
    }
    # An id Veil has not seen: an upstream producer's new version, resolved once.
    v2 = json.loads(schema_text("MediaRecord"))
    v2["fields"].append({"name": f"extra{int(time.time())}", "type": ["null", "string"],
                         "default": None})  # fmt: skip
    new_id = registry.register_schema(f"{names.raw}-value", Schema(json.dumps(v2), "AVRO"))
    probe = veil.encode("MediaRecord", {
        "record_id": "r", "subject_key": "s", "modality": None, "content_type": "text/plain",
        "payload": b"x", "attributes": {}, "event_time": None})  # fmt: skip
    probe = probe[:1] + new_id.to_bytes(4, "big") + probe[5:] + b"\x00"  # extra = null
    t0 = time.perf_counter()
    veil.decode(probe)
    cold_ms = (time.perf_counter() - t0) * 1e3
    warm = [probe] * 2000
    out["resolve_unseen_id_ms"] = {"cold": cold_ms, "cached_us": _per_record_us(veil.decode, warm)}
    e, d = out["encode_us"], out["decode_us"]
    out["ratios"] = {
        "encode_veil_vs_confluent": e["veil"] / e["confluent_avro_serializer"],
        "decode_veil_vs_confluent": d["veil"] / d["confluent_avro_deserializer"],
        "encode_registry_vs_local": e["veil"] / e["local_catalog"],
        "decode_registry_vs_local": d["veil"] / d["local_catalog"],
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--url", default=None, help="a running registry (default: start one)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    workdir = None
    url = args.url
    if url is None:
        workdir = tempfile.mkdtemp(prefix="veil-bench-registry-")
        started = subprocess.run(["bash", str(REGISTRY_SH), "start", workdir, "120"],
                                 capture_output=True, text=True)  # fmt: skip
        if started.returncode != 0:
            print(started.stderr, file=sys.stderr)
            return 1
        url = started.stdout.strip().splitlines()[-1]
    try:
        result = run(url, args.records)
    finally:
        if workdir:
            subprocess.run(["bash", str(REGISTRY_SH), "stop", workdir], capture_output=True)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
