"""``veil``: run the pipeline, produce and consume records, sanitize local files.

    veil run [--veil_* flags] [Beam runner flags]
    veil produce PATH... --topic T [--subject KEY]
    veil consume --topic T [--max N]
    veil sanitize PATH... --out DIR
    veil topics create [--schema-registry URL]
    veil setup | veil doctor
    veil keys init|init-keyring|create|rotate|retire|forget|list|watch-erasures
    veil reveal FILE --principal P --role R
    veil audit verify --topic T | --file F [--key K]
    veil demo --bootstrap HOST:PORT

Errors print one line on stderr and exit non-zero: 2 for usage and configuration
errors, 1 for failures while running.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

_LOGGER = logging.getLogger("veil")

DEFAULT_BOOTSTRAP = os.environ.get("VEIL_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


class CliError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _client_config(args) -> dict:
    """Bootstrap and security settings (``veil.pipelines.kafka_args``), secret-free."""
    from veil.pipelines.kafka_args import client_config

    return client_config(args)


def _registry_binding(args, topic: str, record_type: str | None):
    """The ``RegistryBinding`` for ``--schema-registry`` (None offline).

    ``record_type``: register it under ``<topic>-value`` first (producers); None: only
    resolve ids through the registry (readers).
    """
    from veil.schemas.registry import RegistryBinding, RegistryError, register, resolve_url

    try:
        url = resolve_url(getattr(args, "schema_registry", None))
        if url is None:
            return None
        if record_type is None:
            return RegistryBinding(url)
        return register(url, [(topic, record_type)])
    except RegistryError as exc:
        raise CliError(str(exc), 2) from None


def _progress(iterable, total=None, desc=""):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="rec", disable=not sys.stderr.isatty())


# --- veil run -------------------------------------------------------------------------


def cmd_run(args, beam_argv):
    from veil.pipelines.options import ConfigError
    from veil.pipelines.sanitize import run
    from veil.schemas.registry import RegistryError
    from veil.transforms.classification import PolicyError

    try:
        run(beam_argv)
    except (ConfigError, PolicyError, RegistryError) as exc:
        raise CliError(str(exc), 2) from None
    return 0


# --- veil produce ---------------------------------------------------------------------


def cmd_produce(args, _):
    from kafka import KafkaProducer

    from veil.pipelines.files import InputError, encode_record, iter_records
    from veil.transforms.kafkaio import MAX_MESSAGE_BYTES, client

    from veil.schemas import MEDIA_RECORD

    _check_paths(args.paths)
    schemas = _registry_binding(args, args.topic, MEDIA_RECORD)
    producer = KafkaProducer(
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_MESSAGE_BYTES,
        **client.resolve(_client_config(args)),
    )
    sent = failed = 0
    try:
        for path, line, record in _progress(
            iter_records(args.paths, args.subject, args.modality), desc="produce"
        ):
            if isinstance(record, InputError):
                print(f"skipped: {record}", file=sys.stderr)
                failed += 1
                continue
            producer.send(
                args.topic,
                key=record["subject_key"].encode("utf-8"),
                value=encode_record(record, schemas),
            )
            sent += 1
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    print(f"produced {sent} record(s) to {args.topic}" + (f", skipped {failed}" if failed else ""))
    return 1 if failed else 0


def _check_paths(paths):
    for path in paths:
        if not os.path.isfile(path):
            raise CliError(f"{path}: no such file", 2)


# --- veil consume ---------------------------------------------------------------------


def consume(
    client_config: dict,
    topic: str,
    max_records=None,
    idle_timeout_s=5.0,
    read_committed=True,
    schemas=None,
):
    """Reads ``topic`` from the beginning without a group; yields decoded records.

    ``read_committed`` (the default) hides records of open and aborted transactions, so
    an exactly-once pipeline's output is seen exactly once; at-least-once output (no
    transactions) reads the same either way.
    """
    from kafka import KafkaConsumer, TopicPartition

    from veil.schemas import FramingError
    from veil.schemas.registry import codec
    from veil.transforms.kafkaio import MAX_MESSAGE_BYTES, client

    cat = codec(schemas)  # registry ids through the registry, else the local catalog
    consumer = KafkaConsumer(
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        **client.resolve(client_config),
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            # Kafka answers the same for a topic this principal may not describe.
            raise CliError(f"topic {topic} does not exist or is not authorized", 2)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        count, last_data = 0, time.monotonic()
        while max_records is None or count < max_records:
            if all(consumer.position(tp) >= end[tp] for tp in tps):
                break
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                if time.monotonic() - last_data > idle_timeout_s:
                    break
                continue
            last_data = time.monotonic()
            for records in batch.values():
                for rec in records:
                    try:
                        subject, value = cat.decode(rec.value)
                    except FramingError as exc:
                        subject, value = None, {"undecodable": exc.code}
                    yield rec, subject, value
                    count += 1
                    if max_records is not None and count >= max_records:
                        return
    finally:
        consumer.close(autocommit=False)


def cmd_consume(args, _):
    from veil.pipelines.files import to_json

    schemas = _registry_binding(args, args.topic, None)
    for rec, subject, value in consume(
        _client_config(args), args.topic, args.max, args.idle_timeout, schemas=schemas
    ):
        out = {
            "topic": rec.topic,
            "partition": rec.partition,
            "offset": rec.offset,
            "key": rec.key.decode("utf-8", "replace") if rec.key else None,
            "schema": subject,
            "value": to_json(subject, value) if subject else value,
        }
        print(json.dumps(out, ensure_ascii=False, default=str))
    return 0


# --- veil sanitize --------------------------------------------------------------------


def cmd_sanitize(args, beam_argv):
    from veil.pipelines.local import sanitize_files

    _check_paths(args.paths)
    summary = sanitize_files(args.paths, args.out, args.subject, args.policy, beam_argv)
    print(
        f"{summary['records']} record(s): {summary['sanitized']} sanitized, "
        f"{summary['dead_letters']} dead-lettered; outputs in {args.out}"
    )
    for problem in summary["input_errors"]:
        print(f"input error: {problem}", file=sys.stderr)
    from veil.transforms.fixes import FIXES

    for code, count in sorted(summary.get("dead_letter_codes", {}).items()):
        if code in FIXES:  # a set-up problem, not bad input: say what to do
            print(f"{count} dead-lettered {code}; fix: {FIXES[code]}", file=sys.stderr)
    return 0


# --- veil topics ----------------------------------------------------------------------


def cmd_topics(args, _):
    from veil.pipelines.topics import topic_specs
    from veil.transforms.emit import TopicNames
    from veil.transforms.kafkaio import ensure_topics

    from veil.pipelines.topics import register_schemas
    from veil.schemas.registry import RegistryError, resolve_url

    names = TopicNames(args.prefix)
    try:  # a bad registry URL fails before any topic is created
        url = resolve_url(args.schema_registry)
    except RegistryError as exc:
        raise CliError(str(exc), 2) from None
    specs = topic_specs(names, args.partitions)
    created = ensure_topics(_client_config(args), specs)
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        print(f"{state:8} {spec.name} partitions={spec.partitions}")
    try:
        binding = register_schemas(url, names)
    except RegistryError as exc:
        raise CliError(str(exc), 1) from None
    for record_type, schema_id in binding.ids if binding else ():
        print(f"schema   {record_type} id={schema_id} (subjects <topic>-value, BACKWARD)")
    return 0


# --- veil keys ----------------------------------------------------------------------


def cmd_keys_init(args, _):
    from veil.transforms.keys import FileKeys, write_key_file

    try:
        path = write_key_file(args.path, overwrite=args.force)
    except FileExistsError:
        raise CliError(f"{args.path} exists (use --force to replace it)", 2) from None
    print(
        f"created {path} ({FileKeys(path).key_id}); point the policy's keys settings, "
        "$VEIL_PSEUDONYM_KEY_FILE or $VEIL_AUDIO_KEY_FILE at it on every worker"
    )
    return 0


# --- veil demo ------------------------------------------------------------------------


def cmd_demo(args, beam_argv):
    from veil.pipelines.demo import run_demo

    from veil.pipelines.kafka_args import as_run_flags

    return run_demo(args.bootstrap, args.prefix, as_run_flags(args) + list(beam_argv))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="veil",
        description="Veil: a streaming privacy pipeline (Kafka -> Apache Beam -> Kafka).",
    )
    top.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_bootstrap(p):
        p.add_argument(
            "--bootstrap",
            default=DEFAULT_BOOTSTRAP,
            help="Kafka bootstrap servers (default: $VEIL_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
        )
        from veil.pipelines.kafka_args import add_security_args
        from veil.schemas.registry import default_url

        p.add_argument(
            "--schema-registry",
            default=default_url(),
            metavar="URL",
            help="Confluent-compatible schema registry URL, or 'none' for the local "
            "schema catalog (default: $VEIL_SCHEMA_REGISTRY_URL, else none)",
        )
        return add_security_args(p)  # --security-protocol, --sasl-username, ...

    sub.add_parser(
        "run",
        usage="veil run [--veil_* flags] [--runner RUNNER] [runner flags]",
        help="run the pipeline; --veil_* and Beam flags pass through",
        description="Runs the Kafka -> Kafka pipeline. Every flag is passed to Beam: "
        "--veil_bootstrap_servers, --veil_topic_prefix, --veil_read_mode "
        "(unbounded|bounded), --veil_consumer_group, --veil_policy, ... "
        "(see README 'Configuration'), plus --runner and runner flags.",
        add_help=False,
    )

    p = with_bootstrap(sub.add_parser("produce", help="wrap files into MediaRecords and produce them"))
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, or .jsonl of MediaRecords")
    p.add_argument("--topic", required=True, help="topic to produce to (e.g. veil.raw)")
    p.add_argument("--subject", default=None, help="subject key (default: per record / file stem)")
    p.add_argument("--modality", default=None, help="declare a modality instead of sniffing")

    p = with_bootstrap(sub.add_parser("consume", help="print a topic's records as JSON lines"))
    p.add_argument("--topic", required=True)
    p.add_argument("--max", type=int, default=None, help="stop after N records")
    p.add_argument(
        "--idle-timeout", type=float, default=5.0, help="stop after this many idle seconds"
    )

    p = sub.add_parser(
        "sanitize",
        help="run the same transforms on local files, without Kafka",
        description="Each input file gives a sanitized file of the same name in DIR; a "
        ".jsonl of MediaRecords gives a .jsonl of SanitizedRecords. DIR also gets "
        "audit.jsonl and dead-letter.jsonl.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--subject", default=None, help="subject key for plain files")
    p.add_argument("--policy", default=None, help="policy YAML (default: packaged policy)")

    p = with_bootstrap(sub.add_parser("topics", help="create Veil's topics with their configs"))
    p.add_argument("action", choices=("create",))
    p.add_argument("--prefix", default="veil")
    p.add_argument("--partitions", type=int, default=3)

    from veil.pipelines.keys_cli import register as register_keys

    register_keys(sub, with_bootstrap)  # veil keys ..., veil reveal

    from veil.pipelines.audit_cli import register as register_audit

    register_audit(sub, with_bootstrap)  # veil audit verify

    from veil.pipelines.doctor import register as register_doctor

    register_doctor(sub, with_bootstrap)  # veil setup, veil doctor

    p = with_bootstrap(sub.add_parser("demo", help="end-to-end demo against a running broker"))
    p.add_argument("--prefix", default="veil")
    return top


def _run_help() -> str:
    from veil.pipelines.options import LOCAL_RUNNER, VeilOptions

    p = argparse.ArgumentParser(
        prog="veil run",
        usage="veil run [--veil_* flags] [--runner RUNNER] [runner flags]",
        description="Runs the Kafka -> Kafka pipeline. Every flag goes to Beam. "
        f"The default runner is {LOCAL_RUNNER}; FlinkRunner and DataflowRunner take their "
        "usual flags. DirectRunner is refused: it downloads the Prism binary at run time.",
    )
    VeilOptions._add_argparse_args(p)
    return p.format_help()


def _keys_cli(name):
    def handler(args, beam_argv):
        from veil.pipelines import keys_cli

        return getattr(keys_cli, name)(args, beam_argv)

    return handler


def _doctor_cli(name):
    def handler(args, beam_argv):
        from veil.pipelines import doctor

        return getattr(doctor, name)(args, beam_argv)

    return handler


def _audit_cli(args, beam_argv):
    from veil.pipelines.audit_cli import cmd_audit

    return cmd_audit(args, beam_argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    split = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if split is not None and argv[split] == "run":
        if any(a in ("-h", "--help") for a in argv[split + 1 :]):
            print(_run_help())
            return 0
        args, beam_argv = top.parse_args(argv[: split + 1]), argv[split + 1 :]
    else:
        args, beam_argv = top.parse_known_args(argv)
        if beam_argv and args.command not in ("sanitize", "demo"):
            top.error(f"unrecognized arguments: {' '.join(beam_argv)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python narrates every connection at INFO; keep its warnings only.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    handler = {
        "run": cmd_run,
        "produce": cmd_produce,
        "consume": cmd_consume,
        "sanitize": cmd_sanitize,
        "topics": cmd_topics,
        "keys": _keys_cli("cmd_keys"),
        "reveal": _keys_cli("cmd_reveal"),
        "audit": _audit_cli,
        "demo": cmd_demo,
        "setup": _doctor_cli("cmd_setup"),
        "doctor": _doctor_cli("cmd_doctor"),
    }[args.command]
    try:
        return handler(args, beam_argv)
    except CliError as exc:
        print(f"veil: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("veil: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, class name only: messages may hold content
        # No traceback, not even at debug level: frames and messages may hold content.
        print(f"veil: error: {args.command} failed ({type(exc).__name__})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
