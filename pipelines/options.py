"""Veil's pipeline options (one ``PipelineOptions`` subclass, ``--veil_*`` flags) and the
typed, validated configuration built from them before the graph is built.

No secret values travel in options: security settings name files (CA, certificates)
or environment variables, resolved on the workers.
"""

from __future__ import annotations

import dataclasses
import math
import os

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio.client import (
    DEFAULT_PASSWORD_ENV,
    PROTOCOLS,
    SASL_MECHANISMS,
    SecurityConfigError,
    security_config,
)
from veil.transforms.key_uri import is_key_service_uri

LOCAL_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"

# Runners that hand options Python does not know to a Java job server (Flink's
# --checkpointing_interval and friends): unknown flags other than --veil_* pass there.
JOB_SERVER_RUNNERS = ("FlinkRunner", "PortableRunner", "SparkRunner", "PrismRunner")


class ConfigError(ValueError):
    """An option is missing or out of range; the message names the flag."""


def env_name(flag: str) -> str:
    """The environment variable of a ``--veil_*`` setting: ``--veil_topic_prefix`` ->
    ``VEIL_TOPIC_PREFIX``. Every setting has one; the flag wins over the variable."""
    return flag.lstrip("-").upper()


class _EnvDefaults:
    """Wraps an argparse parser so each ``--veil_*`` flag's default comes from its
    environment variable (``env_name``) when that is set; help says so."""

    def __init__(self, parser):
        self._parser = parser

    def add_argument(self, flag, **kwargs):
        name = env_name(flag)
        value = os.environ.get(name)
        if value is not None:
            if kwargs.get("action") == "store_true":
                kwargs["default"] = value.strip().lower() in ("1", "true", "yes", "on")
            else:
                kwargs["default"] = value
        help_ = kwargs.get("help", "")
        if f"${name}" not in help_:
            kwargs["help"] = f"{help_} [env: ${name}]".strip()
        return self._parser.add_argument(flag, **kwargs)


class VeilOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser = _EnvDefaults(parser)
        parser.add_argument(
            "--veil_bootstrap_servers",
            default=os.environ.get("VEIL_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            help="Kafka bootstrap servers, host:port[,host:port] "
            "(default: $VEIL_BOOTSTRAP_SERVERS or 127.0.0.1:9092).",
        )
        parser.add_argument(
            "--veil_topic_prefix",
            default="veil",
            help="Topic names: <prefix>.raw, <prefix>.sanitized.<modality>, "
            "<prefix>.audit, <prefix>.dead-letter (default: veil).",
        )
        parser.add_argument(
            "--veil_input_topics",
            default=None,
            help="Comma-separated input topics (default: <prefix>.raw).",
        )
        parser.add_argument(
            "--veil_consumer_group",
            default="veil-pipeline",
            help="Consumer group whose committed offsets the pipeline resumes from.",
        )
        parser.add_argument(
            "--veil_read_mode",
            choices=("unbounded", "bounded"),
            default="unbounded",
            help="unbounded: stream forever (or until --veil_idle_stop_s); "
            "bounded: read to the end offsets seen at start, then finish.",
        )
        parser.add_argument(
            "--veil_start_offset",
            choices=("earliest", "latest"),
            default="earliest",
            help="Where to start on partitions the group never committed.",
        )
        parser.add_argument(
            "--veil_idle_stop_s",
            type=float,
            default=0.0,
            help="Unbounded mode: finish a partition after this many seconds without "
            "records (0: never).",
        )
        parser.add_argument(
            "--veil_delivery",
            choices=("at_least_once", "exactly_once"),
            default="at_least_once",
            help="at_least_once: replays after a crash repeat records with the same keys; "
            "exactly_once: Kafka transactions per source partition, for read_committed "
            "readers (local FnApiRunner only; see veil.pipelines.delivery).",
        )
        parser.add_argument(
            "--veil_redistribute",
            choices=("auto", "on", "off"),
            default="auto",
            help="Spread the privacy steps round robin over the subtasks after the read, "
            "whatever the partition assignment (Flink only; auto: on at parallelism > 1). "
            "Source offsets then commit one completed checkpoint later, so a job submitted "
            "afresh after a crash loses nothing (see veil.pipelines.scaleout).",
        )
        parser.add_argument(
            "--veil_schema_registry",
            default=None,
            help="Confluent-compatible schema registry URL (e.g. "
            "http://HOST:8080/apis/ccompat/v7): Veil registers its schemas as "
            "<topic>-value (BACKWARD), frames output with the registry's ids and resolves "
            "input ids through it; 'none': the local schema catalog, offline "
            "(default: $VEIL_SCHEMA_REGISTRY_URL, else none).",
        )
        parser.add_argument(
            "--veil_policy",
            default=None,
            help="Policy YAML file (default: the packaged default policy).",
        )
        parser.add_argument(
            "--veil_max_payload_bytes",
            type=int,
            default=8 * 1024 * 1024,
            help="Larger payloads are dead-lettered with PAYLOAD_TOO_LARGE.",
        )
        parser.add_argument(
            "--veil_step_time_limit_s",
            type=float,
            default=10.0,
            help="A record whose privacy step takes longer is dead-lettered "
            "(PRIVACY_STEP_TIMEOUT).",
        )
        parser.add_argument(
            "--veil_audio_time_limit_s",
            type=float,
            default=120.0,
            help="The same limit for the audio step (speech recognition runs at about 5x "
            "real time per core).",
        )
        parser.add_argument(
            "--veil_max_records_per_bundle",
            type=int,
            default=500,
            help="Records per partition per bundle before the source checkpoints.",
        )
        # Kafka security, for every client the pipeline creates (source, sink, admin).
        # Defaults come from the same $VEIL_* variables the `veil` commands read.
        env = os.environ.get
        parser.add_argument(
            "--veil_security_protocol",
            choices=PROTOCOLS,
            default=env("VEIL_SECURITY_PROTOCOL", "PLAINTEXT"),
            help="Kafka security protocol (default: $VEIL_SECURITY_PROTOCOL or PLAINTEXT).",
        )
        parser.add_argument(
            "--veil_ssl_cafile",
            default=env("VEIL_SSL_CAFILE"),
            help="CA file that signs the brokers' certificates, on the workers "
            "(SSL/SASL_SSL; default: $VEIL_SSL_CAFILE, else the system CAs).",
        )
        parser.add_argument(
            "--veil_sasl_mechanism",
            default=env("VEIL_SASL_MECHANISM"),
            help=f"SASL mechanism: {', '.join(SASL_MECHANISMS)} (default: $VEIL_SASL_MECHANISM).",
        )
        parser.add_argument(
            "--veil_sasl_username",
            default=env("VEIL_SASL_USERNAME"),
            help="SASL user name, the pipeline's principal (default: $VEIL_SASL_USERNAME).",
        )
        parser.add_argument(
            "--veil_sasl_password_env",
            default=env("VEIL_SASL_PASSWORD_ENV", DEFAULT_PASSWORD_ENV),
            help="Name of the environment variable holding the SASL password on workers "
            f"(default: $VEIL_SASL_PASSWORD_ENV or {DEFAULT_PASSWORD_ENV}).",
        )
        # The key service (envelope encryption of originals). Names of files and
        # environment variables only; the workers read them.
        parser.add_argument(
            "--veil_key_store",
            default=None,
            help="The key service as one key URI (kms:local?store=S&keyring=K, "
            "pkcs11:token=T?module-path=LIB&store=S; docs/keys.md), or its data-key "
            "store alone with the flags below (alias): a SQLite file (one machine), or "
            "kafka://TOPIC (a compacted topic on the pipeline's brokers, for a cluster) "
            "or kafka://HOST:PORT/TOPIC. Enables the protection stage and dead-letter "
            "originals; unset: both stay off.",
        )
        parser.add_argument(
            "--veil_kms", choices=("local", "pkcs11"), default="local", help="KEK backend."
        )
        parser.add_argument("--veil_keyring", default=None, help="Local keyring file (local KMS).")
        parser.add_argument(
            "--veil_master_key_env",
            default="VEIL_MASTER_KEY",
            help="Environment variable holding the keyring's master key (hex) on workers.",
        )
        parser.add_argument(
            "--veil_master_key_file", default=None, help="Or a secret file holding it."
        )
        parser.add_argument("--veil_pkcs11_module", default=None, help="PKCS#11 library path.")
        parser.add_argument("--veil_pkcs11_token", default=None, help="PKCS#11 token label.")
        parser.add_argument(
            "--veil_pkcs11_pin_env",
            default="VEIL_HSM_PIN",
            help="Environment variable holding the HSM user PIN on workers.",
        )
        # The audit chain's MAC key (see veil.transforms.audit_chain): a name, not a key.
        parser.add_argument(
            "--veil_audit_key",
            default=None,
            help="Audit MAC key: a key URI (file:PATH, env:NAME, kms:..., pkcs11:...; a "
            "bare path is file:), read on the "
            "workers (default: $VEIL_AUDIT_KEY_FILE there, else the key service's audit "
            "key when --veil_key_store is set, else hash chain without MAC).",
        )
        parser.add_argument(
            "--veil_step_isolation",
            choices=("on", "off"),
            default="on",
            help="Run the text and structured steps in a child process that is killed at "
            "--veil_step_time_limit_s, so a stalling record cannot hold its partition "
            "(off: the limit is checked only after the step returns).",
        )
        parser.add_argument(
            "--veil_record_id_key",
            default=None,
            help="Record-id key: a key URI (file:PATH, env:NAME, kms:...; a bare path "
            "is file:), read on the "
            "workers (default: $VEIL_RECORD_ID_KEY_FILE there, else the key service's "
            "record-id key when --veil_key_store is set). Producer ids leave Veil as its "
            "keyed hash; without any key only already-opaque ids (32 hex digits or a "
            "UUID) are accepted and others are dead-lettered INVALID_RECORD.",
        )
        parser.add_argument(
            "--veil_audit_require_key",
            action="store_true",
            default=False,
            help="Refuse to run without an audit MAC key (production).",
        )
        parser.add_argument(
            "--veil_erasure_listener",
            choices=("on", "off"),
            default="on",
            help="With --veil_key_store: workers follow <prefix>.erasure on the pipeline's "
            "brokers and drop erased subjects' keys at once (off: `veil sanitize`, which "
            "has no broker; erasure then takes effect within --veil_key_cache_ttl_s).",
        )
        parser.add_argument(
            "--veil_key_cache_ttl_s",
            type=float,
            default=60.0,
            help="How long workers keep an unwrapped data key (bounds erasure latency).",
        )
        parser.add_argument(
            "--veil_audio_key_file",
            default=None,
            help="The voice key on the workers: a key URI (file:PATH, env:NAME, kms:...; "
            "a bare path is file:, a key file from `veil keys init`); "
            "unset: $VEIL_AUDIO_KEY_FILE there, else audio records are dead-lettered "
            "AUDIO_KEY_UNAVAILABLE.",
        )
        parser.add_argument(
            "--veil_decoder_isolation",
            choices=("on", "off"),
            default="on",
            help="Decode images, audio and video in sandboxed worker processes with memory, "
            "CPU and time limits (a crash there is a DECODER_* dead letter).",
        )


def _check_key_uri(flag: str, value: str | None) -> None:
    """A flag naming a key takes a key URI (veil.transforms.key_uri) or a path."""
    from veil.transforms.key_uri import KeyUriError, parse_key_uri

    if value:
        try:
            parse_key_uri(value)
        except KeyUriError as exc:
            raise ConfigError(f"--{flag}: {exc}") from None


def _key_service_from_uri(o, servers: str, security: dict, topics):
    """``--veil_key_store kms:...`` / ``pkcs11:...``: the whole key service in one URI
    (the --veil_kms, --veil_keyring, ... flags spell the same settings out)."""
    from veil.transforms.key_uri import KeyUriError, key_service_config

    try:
        config = key_service_config(o.veil_key_store)
    except KeyUriError as exc:
        raise ConfigError(f"--veil_key_store: {exc}") from None
    ttl = config.cache_ttl_s if "cache_ttl_s=" in o.veil_key_store else o.veil_key_cache_ttl_s
    if not 0 < ttl <= 3600:
        raise ConfigError("--veil_key_store: cache_ttl_s must be in (0, 3600]")
    _check_key_store(config.store, servers)
    return dataclasses.replace(
        config,
        cache_ttl_s=ttl,
        bootstrap=servers,
        kafka_client=tuple(sorted(security.items())),
        erasure_topic=topics.erasure if o.veil_erasure_listener != "off" else None,
    )


def _check_key_store(store: str, servers: str) -> None:
    """A ``kafka:`` key store URL must parse (SQLite paths are checked on the workers)."""
    from veil.transforms.crypto.kafka_store import KafkaStoreUrl, is_kafka_url
    from veil.transforms.crypto.kms import KmsError

    if is_kafka_url(store):
        try:
            KafkaStoreUrl.parse(store, servers)
        except (KmsError, ValueError) as exc:
            raise ConfigError(f"--veil_key_store: {exc}") from None


@dataclasses.dataclass(frozen=True)
class VeilConfig:
    bootstrap_servers: str
    topics: TopicNames
    input_topics: tuple
    consumer_group: str
    bounded: bool
    start_offset: str
    idle_stop_s: float
    policy_path: str | None
    max_payload_bytes: int
    step_time_limit_s: float
    audio_time_limit_s: float
    max_records_per_bundle: int
    security: dict
    key_service: object = None  # a KeyServiceConfig, or None: no protection stage
    delivery: str = "at_least_once"  # or "exactly_once" (veil.pipelines.delivery)
    decoder_isolation: bool = True  # native decoders in veil.transforms.sandbox workers
    audit_key: str | None = None  # audit MAC key file or kms: URI (resolved on workers)
    audit_require_key: bool = False
    audio_key_file: str | None = None  # voice key file on the workers
    schema_registry: str | None = None  # registry URL, or None: the local catalog
    record_id_key: str | None = None  # record-id key file or kms: URI (resolved on workers)
    preempt_steps: bool = True  # text/structured steps in a killable child process
    redistribute: bool = False  # Flink: round robin after the read (veil.pipelines.scaleout)

    @classmethod
    def from_options(cls, options: PipelineOptions) -> VeilConfig:
        o = options.view_as(VeilOptions)
        _check_choices(o)
        servers = (o.veil_bootstrap_servers or "").strip()
        if not servers or not all(_is_host_port(s) for s in servers.split(",")):
            raise ConfigError("--veil_bootstrap_servers must be host:port[,host:port]")
        topics = TopicNames(o.veil_topic_prefix)
        inputs = tuple(
            t.strip() for t in (o.veil_input_topics or topics.raw).split(",") if t.strip()
        )
        if not inputs:
            raise ConfigError("--veil_input_topics names no topic")
        if o.veil_max_payload_bytes <= 0:
            raise ConfigError("--veil_max_payload_bytes must be positive")
        for flag in ("veil_step_time_limit_s", "veil_audio_time_limit_s"):
            value = getattr(o, flag)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"--{flag} must be a positive number of seconds")
        if o.veil_max_records_per_bundle <= 0:
            raise ConfigError("--veil_max_records_per_bundle must be positive")
        if o.veil_idle_stop_s < 0:
            raise ConfigError("--veil_idle_stop_s must be >= 0")
        from veil.pipelines.delivery import check_delivery, runner_name
        from veil.pipelines.scaleout import check_redistribute

        delivery = check_delivery(options, o.veil_delivery)
        redistribute = check_redistribute(
            options, o.veil_redistribute, runner_name(options), delivery
        )
        from veil.schemas.registry import RegistryError, default_url, resolve_url

        try:
            registry = resolve_url(
                default_url() if o.veil_schema_registry is None else o.veil_schema_registry
            )
        except RegistryError as exc:
            raise ConfigError(f"--veil_schema_registry: {exc}") from None
        if o.veil_policy and not os.path.isfile(o.veil_policy):
            raise ConfigError(f"--veil_policy {o.veil_policy}: no such file")
        try:
            security = security_config(
                o.veil_security_protocol,
                cafile=o.veil_ssl_cafile,
                mechanism=o.veil_sasl_mechanism,
                username=o.veil_sasl_username,
                password_env=o.veil_sasl_password_env,
                flag=lambda name: f"--veil_{name}",
            )
        except SecurityConfigError as exc:
            raise ConfigError(str(exc)) from None
        for flag in ("veil_audit_key", "veil_record_id_key", "veil_audio_key_file"):
            _check_key_uri(flag, getattr(o, flag))
        key_service = None
        if o.veil_key_store and is_key_service_uri(o.veil_key_store):
            key_service = _key_service_from_uri(o, servers, security, topics)
        elif o.veil_key_store:
            from veil.transforms.crypto.service import KeyServiceConfig

            if not 0 < o.veil_key_cache_ttl_s <= 3600:
                raise ConfigError("--veil_key_cache_ttl_s must be in (0, 3600]")
            if o.veil_kms == "local" and not o.veil_keyring:
                raise ConfigError("--veil_kms local needs --veil_keyring")
            if o.veil_kms == "pkcs11" and not (o.veil_pkcs11_module and o.veil_pkcs11_token):
                raise ConfigError(
                    "--veil_kms pkcs11 needs --veil_pkcs11_module and --veil_pkcs11_token"
                )
            key_service = KeyServiceConfig(
                store=o.veil_key_store,
                backend=o.veil_kms,
                keyring=o.veil_keyring,
                master_key_env=o.veil_master_key_env,
                master_key_file=o.veil_master_key_file,
                pkcs11_module=o.veil_pkcs11_module,
                pkcs11_token=o.veil_pkcs11_token,
                pkcs11_pin_env=o.veil_pkcs11_pin_env,
                cache_ttl_s=o.veil_key_cache_ttl_s,
                # The Kafka key store (kafka://TOPIC) and the workers' erasure listener
                # use the pipeline's brokers and security settings (names, no secrets).
                bootstrap=servers,
                kafka_client=tuple(sorted(security.items())),
                erasure_topic=topics.erasure if o.veil_erasure_listener != "off" else None,
            )
            _check_key_store(o.veil_key_store, servers)
        return cls(
            bootstrap_servers=servers,
            topics=topics,
            input_topics=inputs,
            consumer_group=o.veil_consumer_group,
            bounded=o.veil_read_mode == "bounded",
            start_offset=o.veil_start_offset,
            idle_stop_s=o.veil_idle_stop_s,
            policy_path=o.veil_policy,
            max_payload_bytes=o.veil_max_payload_bytes,
            step_time_limit_s=o.veil_step_time_limit_s,
            audio_time_limit_s=o.veil_audio_time_limit_s,
            max_records_per_bundle=o.veil_max_records_per_bundle,
            security=security,
            key_service=key_service,
            delivery=delivery,
            decoder_isolation=o.veil_decoder_isolation != "off",
            audit_key=o.veil_audit_key,
            audit_require_key=bool(o.veil_audit_require_key),
            audio_key_file=o.veil_audio_key_file or None,
            schema_registry=registry,
            record_id_key=o.veil_record_id_key,
            preempt_steps=o.veil_step_isolation != "off",
            redistribute=redistribute,
        )

    def audit_chain(self, schemas=None):
        """How the Kafka sink chains audit events (``AuditChainSpec``); ``schemas``: the
        ``RegistryBinding`` audit events are framed with (None: the local catalog)."""
        from veil.transforms.kafkaio.audit_chainer import AuditChainSpec

        return AuditChainSpec(
            topic=self.topics.audit,
            key_ref=self.audit_key,
            key_service=self.key_service,
            require_key=self.audit_require_key,
            schemas=schemas,
        )

    def client_config(self) -> dict:
        """kafka-python settings without secrets (see ``veil.transforms.kafkaio.client``)."""
        config = {"bootstrap_servers": self.bootstrap_servers.split(",")}
        config.update({k: v for k, v in self.security.items() if v is not None})
        return config


_CHOICES = {
    "veil_read_mode": ("unbounded", "bounded"),
    "veil_start_offset": ("earliest", "latest"),
    "veil_delivery": ("at_least_once", "exactly_once"),
    "veil_kms": ("local", "pkcs11"),
    "veil_decoder_isolation": ("on", "off"),
    "veil_erasure_listener": ("on", "off"),
    "veil_security_protocol": PROTOCOLS,
}


def _check_choices(o) -> None:
    """Values from environment variables skip argparse's choices: check them here."""
    for flag, choices in _CHOICES.items():
        value = getattr(o, flag)
        if value not in choices:
            raise ConfigError(
                f"--{flag} (or ${env_name(flag)}) {value!r}: must be one of {list(choices)}"
            )


def nearest(name: str, candidates) -> str | None:
    """The candidate closest to ``name`` (hyphens and underscores alike), or None."""
    import difflib

    def norm(flag):
        return flag.lstrip("-").replace("-", "_").lower()

    by_norm = {norm(c): c for c in candidates}
    if norm(name) in by_norm:
        return by_norm[norm(name)]
    match = difflib.get_close_matches(norm(name), list(by_norm), n=1, cutoff=0.6)
    return by_norm[match[0]] if match else None


def check_flags(argv, own_flags=()) -> list[str]:
    """Refuses flags no options class knows, naming the nearest valid one.

    Every ``--veil_*`` flag must be one of ``VeilOptions``'; other unknown flags are
    errors too, except with a runner that forwards them to a Java job server
    (``JOB_SERVER_RUNNERS``), where they are returned so the caller can say they pass
    unchecked. ``own_flags``: the command's own flags, suggested too. Raises
    ``ConfigError``.
    """
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    class _Parser(_BeamArgumentParser):
        def error(self, message):
            raise ConfigError(message)

    parser = _Parser(allow_abbrev=False, add_help=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    known, unknown = parser.parse_known_args(list(argv))
    runner = str(getattr(known, "runner", None) or "").rsplit(".", 1)[-1]
    flags = [a for a in unknown if a.startswith("-")]
    valid = [o for o in parser._option_string_actions if o.startswith("--")]
    valid += [o for o in own_flags if o.startswith("--")]
    passed = []
    for flag in flags:
        name = flag.split("=", 1)[0]
        veil = name.lstrip("-").replace("-", "_").lower().startswith("veil")
        if runner in JOB_SERVER_RUNNERS and not veil:
            passed.append(name)
            continue
        close = nearest(name, [v for v in valid if v.startswith("--veil")] if veil else valid)
        hint = f"; did you mean {close}?" if close else " (see `veil run --help`)"
        raise ConfigError(f"unknown flag {name}{hint}")
    return passed


def _is_host_port(value: str) -> bool:
    host, sep, port = value.strip().rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def check_runner(options: PipelineOptions) -> None:
    """Rejects runners that would download anything at run time."""
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = LOCAL_RUNNER
    name = str(standard.runner).rsplit(".", 1)[-1]
    if name in ("DirectRunner", "SwitchingDirectRunner", "PrismRunner", "TestDirectRunner"):
        prism = options.get_all_options().get("prism_location")
        if name != "PrismRunner" or not prism:
            raise ConfigError(
                f"--runner {name} would download the Prism runner binary at run time; "
                f"use --runner {LOCAL_RUNNER} (the local default), FlinkRunner or "
                "DataflowRunner, or PrismRunner with --prism_location pointing at a local binary"
            )
