"""Crypto benchmark: the protection stage's cost, next to bare AES-GCM in the same run.

    .venv/bin/python bench/crypto/run.py [--mib 256] [--records 20000]

Prints (and writes ``--json``):
* bulk throughput, GB/s: bare ``AESGCM.encrypt`` from ``cryptography`` vs Veil's envelope
  ``seal`` (key derivation + commitment + header) on 1 MiB chunks;
* per record, µs: protect (2 fields, cached keys) + Avro encode of the SanitizedRecord,
  vs the encode alone, and bare AES-GCM of the same two fields;
* a cold key (store read + KMS unwrap, local keyring and SoftHSM2 when installed) vs a
  cached one, µs per encrypt.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veil.schemas import SANITIZED_RECORD, catalog
from veil.transforms.crypto import KeyServiceConfig, LocalKeyring, aead
from veil.transforms.crypto.kms import SOFTHSM_MODULE, init_softhsm_token
from veil.transforms.crypto.protect import protect_item
from veil.transforms.crypto.service import KeyService
from veil.transforms.records import Classification, Source, WorkItem

SOFTHSM = SOFTHSM_MODULE


def _best(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bulk(mib: int) -> dict:
    chunk, n = os.urandom(1 << 20), mib
    key, nonce, aad = os.urandom(32), os.urandom(12), b"veil-bench"
    gcm = AESGCM(key)
    bare = _best(lambda: [gcm.encrypt(nonce, chunk, aad) for _ in range(n)])
    sealed = _best(lambda: [aead.seal(key, "s:bench", 1, chunk, aad) for _ in range(n)])
    gb = n * (1 << 20) / 1e9
    return {"bare_aesgcm_gb_s": round(gb / bare, 2), "envelope_gb_s": round(gb / sealed, 2)}


def _service(tmp: Path, config: KeyServiceConfig) -> KeyService:
    return KeyService(config.kms(), config.open_store(), config)


def _item(i: int) -> WorkItem:
    return WorkItem(
        source=Source("veil.raw", 0, i),
        record={
            "record_id": f"rec-{i}",
            "subject_key": f"subject-{i % 1000}",
            "content_type": "text/plain",
            "payload": b"x",
        },
        modality="text",
        sanitized_payload=b"Call <PERSON:protected> at <PHONE_NUMBER:protected>.",
        classification=Classification("CONFIDENTIAL", ["GDPR"], {"PERSON": 1}),
        pending_protection=[("payload[5:15]", b"John Smith"), ("payload[19:31]", b"212-555-0175")],
    )


def _encode(cat, item: WorkItem) -> bytes:
    return cat.encode(
        SANITIZED_RECORD,
        {
            "record_id": item.record_id,
            "modality": item.modality,
            "content_type": "text/plain",
            "payload": item.sanitized_payload,
            "classification": item.classification.as_dict(),
            "protected": list(item.protected),
            "policy_version": "bench",
            "pipeline_version": "bench",
            "source": item.source.as_dict(),
        },
    )


def per_record(service: KeyService, records: int) -> dict:
    cat = catalog()
    items = [_item(i) for i in range(records)]
    for it in items[:1000]:  # warm the caches: every subject's key exists and is unwrapped
        protect_item(service, _item(it.source.offset))
    plain = [_item(i) for i in range(records)]
    for it in plain:
        it.pending_protection = []
    t_encode = _best(lambda: [_encode(cat, it) for it in plain], 1) / records

    def protect_and_encode():
        for it in items:
            protect_item(service, it)
            _encode(cat, it)

    t_protect = _best(protect_and_encode, 1) / records
    key = os.urandom(32)
    gcm = AESGCM(key)
    t_bare = (
        _best(
            lambda: [
                (
                    gcm.encrypt(os.urandom(12), b"John Smith", b"a"),
                    gcm.encrypt(os.urandom(12), b"212-555-0175", b"a"),
                )
                for _ in range(records)
            ],
            1,
        )
        / records
    )
    return {
        "encode_only_us": round(t_encode * 1e6, 1),
        "protect_plus_encode_us": round(t_protect * 1e6, 1),
        "protect_overhead_us": round((t_protect - t_encode) * 1e6, 1),
        "bare_aesgcm_2_fields_us": round(t_bare * 1e6, 1),
    }


def cold_vs_cached(service: KeyService, n: int = 500) -> dict:
    ctxs = [service.context(f"r{i}", f"cold-{i}", "p") for i in range(n)]
    for c in ctxs:
        service.encrypt(b"x", c)  # keys exist

    def cold():
        for c in ctxs:
            service.clear_cache()
            service.encrypt(b"John Smith", c)

    def cached():
        for c in ctxs:
            service.encrypt(b"John Smith", c)

    t_cold = _best(cold, 3) / n
    t_cached = _best(cached, 3) / n
    return {"cold_us": round(t_cold * 1e6, 1), "cached_us": round(t_cached * 1e6, 1)}


def first_use(service: KeyService, n: int = 200) -> dict:
    """µs per first use of a brand-new subject: index key lookup, KMS wrap, the store's
    one-winner insert and a usage lease (for the Kafka store: two acked round trips)."""
    tag = os.urandom(4).hex()
    start = time.perf_counter()
    for i in range(n):
        service.encrypt(b"x", service.context(f"r{i}", f"new-{tag}-{i}", "p"))
    return {"first_use_us": round((time.perf_counter() - start) / n * 1e6, 1)}


def _softhsm_config(tmp: Path):
    if not init_softhsm_token(tmp, "bench", "1234"):
        return None
    os.environ["VEIL_BENCH_PIN"] = "1234"
    return KeyServiceConfig(
        store=str(tmp / "hsm.db"),
        backend="pkcs11",
        pkcs11_module=SOFTHSM,
        pkcs11_token="bench",
        pkcs11_pin_env="VEIL_BENCH_PIN",
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--kafka", default=None, metavar="HOST:PORT", help="also bench the Kafka key store"
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["VEIL_BENCH_MASTER"] = os.urandom(32).hex()
        LocalKeyring.create(tmp / "keyring.json", "VEIL_BENCH_MASTER")
        config = KeyServiceConfig(
            store=str(tmp / "keys.db"),
            keyring=str(tmp / "keyring.json"),
            master_key_env="VEIL_BENCH_MASTER",
        )
        result = {"bulk": bulk(args.mib)}
        service = _service(tmp, config)
        result["per_record"] = per_record(service, args.records)
        result["key_local"] = cold_vs_cached(service)
        result["store_sqlite"] = first_use(service)
        if args.kafka:
            topic = f"veil-bench-keys-{os.urandom(4).hex()}"
            kafka = dataclasses.replace(config, store=f"kafka://{args.kafka}/{topic}")
            kafka_service = _service(tmp, kafka)
            result["store_kafka"] = {**first_use(kafka_service), **cold_vs_cached(kafka_service)}
        hsm = _softhsm_config(tmp)
        if hsm is not None:
            result["key_softhsm2"] = cold_vs_cached(_service(tmp, hsm))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
