"""``veil``: run the pipeline, produce and consume records, sanitize local files.

    veil run [--veil_* flags] [Beam runner flags]
    veil produce PATH... --topic T [--subject KEY]
    veil consume --topic T [--max N]
    veil sanitize PATH... --out DIR [--allow-dead-letters] [--veil_* flags]
    veil topics create [--veil_schema_registry URL]
    veil setup | veil doctor
    veil keys init|init-keyring|create|rotate|retire|forget|list|watch-erasures
    veil reveal FILE --principal P --role R
    veil audit verify --topic T | --file F [--key K]
    veil demo --bootstrap HOST:PORT

Errors print one line on stderr and exit non-zero: 2 for usage and configuration
errors (an unknown flag names the nearest valid one), 1 for failures while running,
3 when ``veil sanitize`` dead-lettered a record (unless ``--allow-dead-letters``).

Flags: one name per setting. Pipeline settings are ``--veil_<name>`` in every command
(``veil run``, ``veil sanitize``, and ``--veil_bootstrap_servers``,
``--veil_topic_prefix``, ``--veil_key_store``, ... in the others, whose short forms
``--bootstrap``, ``--prefix``, ``--store`` stay as aliases); each reads
``$VEIL_<NAME>`` when not given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time

_LOGGER = logging.getLogger("veil")

DEFAULT_BOOTSTRAP = os.environ.get("VEIL_BOOTSTRAP_SERVERS", "127.0.0.1:9092")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEAD_LETTERS = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class VeilArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``CliError`` (exit 2, one line) instead of exiting, and names
    the nearest valid flag for an unknown one."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --stor is a mistake, not --store
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        self._seen_args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        # "--topic is required" when --topc was typed: the typo is the news.
        if message.startswith("the following arguments are required"):
            from veil.pipelines.options import nearest

            known = self.option_strings()
            for arg in getattr(self, "_seen_args", ()):
                name = arg.split("=", 1)[0]
                if name.startswith("--") and name not in known:
                    close = nearest(name, known)
                    hint = f"; did you mean {close}?" if close else ""
                    message = f"unknown flag {name}{hint} ({message})"
                    break
        choice = re.match(r"argument (.+): invalid choice: '(.*)' \(choose from (.*)\)$", message)
        if choice:
            import difflib

            options = re.findall(r"'([^']*)'", choice.group(3))
            close = difflib.get_close_matches(choice.group(2), options, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            what, value = choice.group(1), choice.group(2)
            message = f"{what}: unknown {value!r}{hint} (one of: {', '.join(options)})"
        raise CliError(message, EXIT_USAGE)

    def option_strings(self) -> list[str]:
        return [o for action in self._actions for o in action.option_strings]


def _unknown_flag_error(parser: VeilArgumentParser, args, extra) -> CliError:
    from veil.pipelines.options import nearest

    # The innermost subcommand's parser knows the flags that were valid here.
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = subs and getattr(args, subs[0].dest, None)
        if not chosen:
            break
        parser = subs[0].choices[chosen]
    flag = next((a for a in extra if a.startswith("-")), extra[0])
    name = flag.split("=", 1)[0]
    close = nearest(name, parser.option_strings()) if name.startswith("-") else None
    hint = f"; did you mean {close}?" if close else ""
    what = "unknown flag" if name.startswith("-") else "unexpected argument"
    return CliError(f"{what} {name}{hint} (see `{parser.prog} --help`)", EXIT_USAGE)


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
    """A progress bar (records/s) on a terminal; nothing when stderr is not one."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="rec", disable=not sys.stderr.isatty())


# --- veil run -------------------------------------------------------------------------


def cmd_run(args, beam_argv):
    from veil.pipelines.options import ConfigError, check_flags
    from veil.pipelines.sanitize import run
    from veil.schemas.registry import RegistryError
    from veil.transforms.classification import PolicyError

    try:
        for name in check_flags(beam_argv):
            _LOGGER.warning("%s: not a Python pipeline option; passed to the job server", name)
        _check_local_audit_key(beam_argv)
        result = run(beam_argv)
    except (ConfigError, PolicyError, RegistryError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(run_summary(result))
    return 0


def _check_local_audit_key(beam_argv) -> None:
    """On the local runner this process is the worker: --veil_audit_require_key with no
    key anywhere is a configuration error now, not a failure once records flow."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from veil.pipelines.options import LOCAL_RUNNER, ConfigError, VeilConfig
    from veil.pipelines.runners import prepare_argv
    from veil.transforms.audit_chain import AUDIT_KEY_ENV

    options = PipelineOptions(prepare_argv(beam_argv))
    if options.view_as(StandardOptions).runner != LOCAL_RUNNER:
        return  # remote workers may hold $VEIL_AUDIT_KEY_FILE; they check it themselves
    config = VeilConfig.from_options(options)
    if config.audit_require_key and not (
        config.audit_key or os.environ.get(AUDIT_KEY_ENV) or config.key_service
    ):
        raise ConfigError(
            "--veil_audit_require_key: no audit MAC key configured: pass --veil_audit_key "
            f"KEYFILE or set ${AUDIT_KEY_ENV} (create one with `veil keys init PATH`)"
        )


def run_summary(result) -> str:
    """One line from the pipeline's counters: records read, sanitized, dead-lettered
    (by code). Runners that report no metrics give ``no counters reported``."""
    try:
        counters = result.metrics().query()["counters"]
    except Exception:  # a runner without metrics support
        return "veil run finished (no counters reported)"
    totals: dict[tuple, int] = {}
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        key = (counter.key.metric.namespace, counter.key.metric.name)
        totals[key] = totals.get(key, 0) + (value or 0)
    if not totals:
        return "veil run finished (no counters reported)"
    read = totals.get(("veil.kafka", "records_read"), 0)
    sanitized = sum(v for (ns, name), v in totals.items() if name == "sanitized")
    codes: dict[str, int] = {}  # veil.dead_letter.<step>/<CODE>, summed over the steps
    for (ns, name), v in totals.items():
        if v and (ns == "veil.dead_letter" or ns.startswith("veil.dead_letter.")):
            codes[name] = codes.get(name, 0) + v
    dead = sum(codes.values())
    detail = ", ".join(f"{code} {n}" for code, n in sorted(codes.items()))
    return (
        f"veil run finished: {read} record(s) read, {sanitized} sanitized, "
        f"{dead} dead-lettered" + (f" ({detail})" if detail else "")
    )


# --- veil produce ---------------------------------------------------------------------


def cmd_produce(args, _):
    from kafka import KafkaProducer

    from veil.pipelines.files import InputError, encode_record, iter_records
    from veil.schemas import MEDIA_RECORD
    from veil.transforms.kafkaio import MAX_MESSAGE_BYTES, client

    paths = _expand_paths(args.paths)
    schemas = _registry_binding(args, args.topic, MEDIA_RECORD)
    producer = KafkaProducer(
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_MESSAGE_BYTES,
        **client.resolve(_client_config(args)),
    )
    sent = failed = 0
    try:
        for _, _, record in _progress(
            iter_records(paths, args.subject, args.modality), desc="produce"
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


def _expand_paths(paths) -> list:
    """Files, and every regular file below a directory; usage errors exit 2."""
    from veil.pipelines.files import UsageError, collect_inputs

    try:
        return [item.path for item in collect_inputs(paths)]
    except UsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


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
    from veil.pipelines.files import UsageError
    from veil.pipelines.local import sanitize_files
    from veil.pipelines.options import ConfigError, check_flags
    from veil.transforms.classification import PolicyError

    if args.show_originals and not args.report:
        raise CliError("--show-originals needs --report", EXIT_USAGE)
    try:
        check_flags(beam_argv, getattr(args, "own_flags", ()))
        summary = sanitize_files(
            args.paths,
            args.out,
            args.subject,
            args.policy,
            beam_argv,
            overwrite=args.overwrite,
            id_key=args.id_key,
            id_map=args.id_map,
        )
    except (UsageError, ConfigError, PolicyError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    dead = summary["dead_letters"]
    codes = ", ".join(f"{c} {n}" for c, n in sorted(summary["dead_letter_codes"].items()))
    print(
        f"{summary['records']} record(s): {summary['sanitized']} sanitized, "
        f"{dead} dead-lettered" + (f" ({codes})" if codes else "") + f"; outputs in {args.out}"
    )
    for problem in summary["input_errors"]:
        print(f"input error: {problem}", file=sys.stderr)
    heads = " ".join(f"--expect-head {c}={n}" for c, n in sorted(summary["chain_heads"].items()))
    if heads:  # keep this line: it detects a truncated or vanished audit trail later
        audit_log = os.path.join(args.out, "audit.jsonl")
        print(f"audit chain heads: veil audit verify --file {audit_log} {heads}")
    for path, line, code in summary["dead_lettered_inputs"]:
        where = f"{path}:{line}" if line else path
        print(f"dead-lettered: {where} ({code}{_hint(code)})", file=sys.stderr)
    if args.report:  # the review report (veil.pipelines.report)
        from veil.pipelines.report import sanitize_report
        from veil.pipelines.report_cli import audit_keys

        path = sanitize_report(
            summary["inputs"],
            args.out,
            args.subject,
            summary["sanitized_records"],
            args.policy,
            audit_keys(()),
            args.show_originals,
        )
        print(f"report: {path}" + (" (holds RAW personal data)" if args.show_originals else ""))
    if dead and not args.allow_dead_letters:
        letters = os.path.join(args.out, "dead-letter.jsonl")
        print(
            f"veil: {dead} record(s) dead-lettered (see {letters}); exit 3 "
            "(pass --allow-dead-letters to exit 0)",
            file=sys.stderr,
        )
        return EXIT_DEAD_LETTERS
    return EXIT_OK


def _hint(code: str) -> str:
    """What to do about a dead-letter code that means "this machine is not set up"
    (``veil.transforms.fixes``); nothing for codes that mean bad input."""
    from veil.transforms.fixes import FIXES

    if code in ("IMAGE_MODEL_UNAVAILABLE", "VIDEO_MODEL_UNAVAILABLE"):
        from veil.transforms.media.models import cache_dir

        return f": no verified face model in {cache_dir()}; fix: {FIXES[code]}"
    return f"; fix: {FIXES[code]}" if code in FIXES else ""


# --- veil topics ----------------------------------------------------------------------


def cmd_topics(args, _):
    from veil.pipelines.topics import register_schemas, topic_specs
    from veil.schemas.registry import RegistryError, resolve_url
    from veil.transforms.emit import TopicNames
    from veil.transforms.kafkaio import ensure_topics

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
    from veil.pipelines.options import ConfigError, check_flags

    try:
        check_flags(beam_argv)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return run_demo(args.bootstrap, args.prefix, as_run_flags(args) + list(beam_argv))


def parser() -> argparse.ArgumentParser:
    top = VeilArgumentParser(
        prog="veil",
        description="Veil: a streaming privacy pipeline (Kafka -> Apache Beam -> Kafka).",
        epilog="Exit codes: 0 done, 1 failure, 2 usage or configuration error, 3 `veil "
        "sanitize` dead-lettered a record. Settings: --veil_<name> flags or $VEIL_<NAME>.",
        allow_abbrev=False,
    )
    top.add_argument(
        "-v", "--verbose", action="store_true", help="log Veil's progress at INFO level"
    )
    sub = top.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=VeilArgumentParser
    )
    for register in (
        register_run,
        register_produce,
        register_consume,
        register_sanitize,
        register_topics,
        register_keys,
        register_audit,
        register_report,
        register_doctor,
        register_demo,
    ):
        register(sub)
    return top


def with_bootstrap(p):
    """Adds the Kafka connection flags (bootstrap and security) to ``p``."""
    p.add_argument(
        "--veil_bootstrap_servers",
        "--bootstrap",
        dest="bootstrap",
        default=DEFAULT_BOOTSTRAP,
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers (default: $VEIL_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
    )
    from veil.pipelines.kafka_args import add_security_args
    from veil.schemas.registry import default_url

    p.add_argument(
        "--veil_schema_registry",
        "--schema-registry",
        dest="schema_registry",
        default=default_url(),
        metavar="URL",
        help="Confluent-compatible schema registry URL, or 'none' for the local "
        "schema catalog (default: $VEIL_SCHEMA_REGISTRY_URL, else none)",
    )

    return add_security_args(p)  # --veil_security_protocol (--security-protocol), ...


def add_prefix_arg(p):
    p.add_argument(
        "--veil_topic_prefix",
        "--prefix",
        dest="prefix",
        default=os.environ.get("VEIL_TOPIC_PREFIX", "veil"),
        help="topic name prefix (default: $VEIL_TOPIC_PREFIX or veil)",
    )


def register_run(sub):
    sub.add_parser(
        "run",
        usage="veil run [--veil_* flags] [--runner RUNNER] [runner flags]",
        help="run the pipeline; --veil_* and Beam flags pass through",
        description="Runs the Kafka -> Kafka pipeline. Every flag is passed to Beam: "
        "--veil_bootstrap_servers, --veil_topic_prefix, --veil_read_mode "
        "(unbounded|bounded), --veil_consumer_group, --veil_policy, ... "
        "(see `veil run --help` and docs/cli.md), plus --runner and runner flags.",
        add_help=False,
    )


def register_produce(sub):
    p = with_bootstrap(
        sub.add_parser("produce", help="wrap files into MediaRecords and produce them")
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, or .jsonl of MediaRecords")
    p.add_argument("--topic", required=True, help="topic to produce to (e.g. veil.raw)")
    p.add_argument("--subject", default=None, help="subject key (default: per record / file stem)")
    p.add_argument("--modality", default=None, help="declare a modality instead of sniffing")


def register_consume(sub):
    p = with_bootstrap(sub.add_parser("consume", help="print a topic's records as JSON lines"))
    p.add_argument("--topic", required=True, help="topic to read from the beginning")
    p.add_argument("--max", type=int, default=None, help="stop after N records")
    p.add_argument(
        "--idle-timeout", type=float, default=5.0, help="stop after this many idle seconds"
    )


def register_sanitize(sub):
    p = sub.add_parser(
        "sanitize",
        help="run the same transforms on local files, without Kafka",
        usage="veil sanitize PATH... --out DIR [options] [--veil_* flags]",
        description="Runs the graph of `veil run` on local files. Each plain file gives a "
        "sanitized file at the same relative path under DIR, with a sidecar "
        "<name>.veil.json beside it (classification and protected envelopes, for `veil "
        "reveal`); a .jsonl of MediaRecords gives a .jsonl of SanitizedRecords. DIR also "
        "gets audit.jsonl and dead-letter.jsonl. Written files name inputs by opaque ids "
        "only, never by file name.",
        epilog="Every `veil run` flag that applies to local work passes through: "
        "--veil_audit_key, --veil_audit_require_key, --veil_key_store (and the KMS flags), "
        "--veil_step_time_limit_s, --veil_max_payload_bytes, --veil_decoder_isolation, "
        "--veil_audio_key_file, ... (list: `veil run --help`); each also reads "
        "$VEIL_<NAME>. Exit codes: 0 every record sanitized; 3 a record was "
        "dead-lettered (see dead-letter.jsonl; --allow-dead-letters: 0); 2 usage or "
        "configuration error (nothing written); 1 failure.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="input files or directories (every file below, recursively); .jsonl files "
        "hold one MediaRecord per line",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory (created); must not be, hold or lie inside an input "
        "directory; existing outputs are refused unless --overwrite",
    )
    p.add_argument(
        "--subject",
        default=os.environ.get("VEIL_SUBJECT"),
        help="subject key for plain files and records without one (default: $VEIL_SUBJECT, "
        "else each file's stem)",
    )
    p.add_argument(
        "--veil_policy",
        "--policy",
        dest="policy",
        default=os.environ.get("VEIL_POLICY"),
        metavar="FILE",
        help="policy YAML (default: $VEIL_POLICY, else the packaged policy)",
    )
    p.add_argument(
        "--allow-dead-letters",
        action="store_true",
        default=_env_flag("VEIL_ALLOW_DEAD_LETTERS"),
        help="exit 0 even when records were dead-lettered (default: exit 3; "
        "$VEIL_ALLOW_DEAD_LETTERS)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs an earlier run left in DIR (inputs are never overwritten)",
    )
    p.add_argument(
        "--id-key",
        default=None,
        metavar="KEYFILE",
        help="key file (`veil keys init`) for the inputs' opaque ids, stable across runs "
        "(default: $VEIL_ID_KEY_FILE, else a random key per run)",
    )
    p.add_argument(
        "--id-map",
        default=None,
        metavar="FILE",
        help="write the opaque id -> input path table here (0600, outside DIR)",
    )
    p.add_argument(
        "--report", action="store_true", help="also write DIR/report.html with a review gallery"
    )
    p.add_argument(
        "--show-originals",
        action="store_true",
        help="with --report: show the originals beside the sanitized output "
        "(the report then holds raw personal data, and says so on every page)",
    )
    p.set_defaults(own_flags=p.option_strings())  # suggested for a misspelt flag too


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def register_topics(sub):
    p = with_bootstrap(sub.add_parser("topics", help="create Veil's topics with their configs"))
    p.add_argument("action", choices=("create",), help="create the topics that do not exist")
    add_prefix_arg(p)
    p.add_argument("--partitions", type=int, default=3, help="partitions per topic (default 3)")


def register_keys(sub):
    from veil.pipelines.keys_cli import register

    register(sub, with_bootstrap)  # veil keys ..., veil reveal


def register_audit(sub):
    from veil.pipelines.audit_cli import register

    register(sub, with_bootstrap)  # veil audit verify


def register_report(sub):
    from veil.pipelines.report_cli import register

    register(sub, with_bootstrap)  # veil report


def register_doctor(sub):
    from veil.pipelines.doctor import register

    register(sub, with_bootstrap)  # veil setup, veil doctor


def register_demo(sub):
    p = with_bootstrap(sub.add_parser("demo", help="end-to-end demo against a running broker"))
    add_prefix_arg(p)


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


def _print_help(text: str) -> None:
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `veil run --help | head`
        sys.stdout = open(os.devnull, "w")


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


def _report_cli(args, beam_argv):
    from veil.pipelines.report_cli import cmd_report

    return cmd_report(args, beam_argv)


def _configure_logging(verbose: bool) -> None:
    """WARNING for everyone; with ``-v`` INFO for Veil's own loggers only (Beam's and
    kafka-python's INFO lines, e.g. type-hint notes, stay out)."""
    logging.basicConfig(  # a no-op when the embedding process configured logging
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Beam's INFO lines (type-hint notes, runner chatter) are not Veil's, whatever an
    # earlier import or runner set.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    veil = logging.getLogger("veil")
    if verbose and veil.getEffectiveLevel() > logging.INFO:
        veil.setLevel(logging.INFO)
    # kafka-python narrates every connection at INFO and logs record contents at DEBUG:
    # its warnings only, whatever the embedding process configured.
    logging.getLogger("kafka").setLevel(logging.WARNING)


HANDLERS = {
    "run": cmd_run,
    "produce": cmd_produce,
    "consume": cmd_consume,
    "sanitize": cmd_sanitize,
    "topics": cmd_topics,
    "keys": _keys_cli("cmd_keys"),
    "reveal": _keys_cli("cmd_reveal"),
    "audit": _audit_cli,
    "report": _report_cli,
    "setup": _doctor_cli("cmd_setup"),
    "doctor": _doctor_cli("cmd_doctor"),
    "demo": cmd_demo,
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before Beam's import loads numpy: the driver multiplies no matrices, and OpenBLAS's
    # thread pool (one thread per core, started as numpy loads) costs every command CPU.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        top = parser()
        split = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
        if split is not None and argv[split] == "run":
            if any(a in ("-h", "--help") for a in argv[split + 1 :]):
                _print_help(_run_help())
                return 0
            args, beam_argv = top.parse_args(argv[: split + 1]), argv[split + 1 :]
        else:
            args, beam_argv = top.parse_known_args(argv)
            if beam_argv and args.command not in ("sanitize", "demo"):
                raise _unknown_flag_error(top, args, beam_argv)
    except CliError as exc:
        print(f"veil: error: {exc}", file=sys.stderr)
        return exc.code
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    _configure_logging(args.verbose)
    handler = HANDLERS[args.command]
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
