"""``veil keys ...`` (key service administration) and ``veil reveal``.

    veil keys init PATH                         # a local secret key file (pseudonyms, voices)
    veil keys init-keyring                      # a new local keyring (KEK v1)
    veil keys create SUBJECT                    # the subject's data key (idempotent)
    veil keys rotate [SUBJECT] [--kek [--retire-old]]
    veil keys retire SUBJECT VERSION            # that version stops decrypting
    veil keys forget SUBJECT [--bootstrap B]    # crypto-shred; also publishes to veil.erasure
    veil keys list
    veil keys watch-erasures --bootstrap B      # apply requests from veil.erasure
    veil keys add-role ROLE --role-token T --role-pin-env V   # or --role-keyring F
    veil reveal FILE --principal P --role R --role-token T --role-pin-file F
                                                # decrypt protected fields (audited)

The key service is named by flags or environment variables (``$VEIL_KEY_STORE``,
``$VEIL_KEYRING``, ``$VEIL_KMS``, ...); the master key or HSM PIN is read from the
environment variable named by ``--master-key-env`` / ``--pkcs11-pin-env``. Every
``forget`` and ``reveal`` writes audit events to ``--audit-log`` (JSON lines) and/or the
audit topic (``--bootstrap``); ``reveal`` refuses to run with neither.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from veil.pipelines.cli import CliError


def add_key_service_args(p: argparse.ArgumentParser) -> None:
    """The key service flags: `veil run`'s --veil_* names (short aliases kept), each
    defaulting to its $VEIL_* variable."""
    env = os.environ.get

    def add(flag, alias, default=None, **kwargs):
        dest = alias.lstrip("-").replace("-", "_")
        p.add_argument(flag, alias, dest=dest, default=env(flag[2:].upper(), default), **kwargs)

    add(
        "--veil_key_store",
        "--store",
        help="the key service as a key URI (kms:local?store=S&keyring=K, pkcs11:...), or "
        "its data-key store: SQLite file, or kafka://HOST:PORT/TOPIC (kafka://TOPIC with "
        "--bootstrap) [env: $VEIL_KEY_STORE]",
    )
    add("--veil_kms", "--kms", "local", choices=("local", "pkcs11"), help="KEK backend")
    add("--veil_keyring", "--keyring", help="local keyring file [env: $VEIL_KEYRING]")
    add(
        "--veil_master_key_env",
        "--master-key-env",
        "VEIL_MASTER_KEY",
        help="variable holding the keyring's master key (hex)",
    )
    add("--veil_master_key_file", "--master-key-file", help="or a secret file holding it")
    add("--veil_pkcs11_module", "--pkcs11-module", help="PKCS#11 library path")
    add("--veil_pkcs11_token", "--pkcs11-token", help="PKCS#11 token label")
    add(
        "--veil_pkcs11_pin_env",
        "--pkcs11-pin-env",
        "VEIL_HSM_PIN",
        help="variable holding the HSM user PIN",
    )
    add("--veil_audit_log", "--audit-log", help="append audit events here [env: $VEIL_AUDIT_LOG]")
    add("--veil_topic_prefix", "--prefix", "veil", help="topic prefix (audit, erasure)")


def register(sub, with_bootstrap) -> None:
    """Adds ``keys`` and ``reveal`` to the ``veil`` command's subparsers."""
    keys = sub.add_parser("keys", help="key service: create, rotate, forget, list keys")
    actions = keys.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    p = actions.add_parser("init", help="create a local secret key file (0600)")
    p.add_argument("path", metavar="PATH", help="where to write the key file")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p = actions.add_parser(
        "record-id", help="the opaque id Veil writes for a producer's RECORD_ID (needs its key)"
    )
    add_key_service_args(p)
    _store_bootstrap_arg(p)
    p.add_argument("record_id", metavar="RECORD_ID", help="the producer's record id")
    p.add_argument(
        "--key",
        default=None,
        help="record-id key file or kms: URI (default: "
        "$VEIL_RECORD_ID_KEY_FILE, else the key service named by --store)",
    )
    p = actions.add_parser("init-keyring", help="create a local keyring (KEK version 1)")
    add_key_service_args(p)
    for name, help_ in (
        ("create", "create the subject's data key (idempotent)"),
        ("forget", "destroy the subject's data keys (crypto-shredding)"),
    ):
        p = actions.add_parser(name, help=help_)
        add_key_service_args(p)
        _kafka_audit_arg(p)
        p.add_argument("subject", metavar="SUBJECT", help="subject key (or its key id s:...)")
    p = actions.add_parser("rotate", help="new DEK version for SUBJECT, or new KEK (--kek)")
    add_key_service_args(p)
    p.add_argument("subject", nargs="?", metavar="SUBJECT", help="subject key")
    _store_bootstrap_arg(p)
    p.add_argument("--kek", action="store_true", help="rotate the KEK and rewrap every DEK")
    p.add_argument("--retire-old", action="store_true", help="with --kek: destroy old KEKs")
    p = actions.add_parser("retire", help="stop a DEK version from decrypting")
    add_key_service_args(p)
    _store_bootstrap_arg(p)
    p.add_argument("subject", metavar="SUBJECT", help="subject key")
    p.add_argument("version", type=int, metavar="VERSION", help="data-key version to retire")
    p = actions.add_parser(
        "add-role",
        help="create ROLE's key pair on its token (or keyring) and publish its "
        "public key: protected fields are then sealed to the roles the policy allows",
    )
    add_key_service_args(p)
    _store_bootstrap_arg(p)
    _role_args(p)
    p.add_argument("role_name", metavar="ROLE", help="the reveal role (as the policy names it)")
    p = actions.add_parser("list", help="key ids, versions, states (never key material)")
    add_key_service_args(p)
    _store_bootstrap_arg(p)
    p = with_bootstrap(actions.add_parser("watch-erasures", help="apply veil.erasure requests"))
    add_key_service_args(p)
    p.add_argument("--idle-timeout", type=float, default=None, help="stop when idle (s)")

    p = sub.add_parser("reveal", help="decrypt protected fields of sanitized records (audited)")
    add_key_service_args(p)
    _kafka_audit_arg(p)
    p.add_argument("path", metavar="FILE", help="JSON lines from `veil consume` ('-': stdin)")
    p.add_argument("--principal", required=True, help="who reveals (recorded in the audit)")
    p.add_argument("--role", required=True, help="the role the policy's reidentification checks")
    _role_args(p)
    p.add_argument("--policy", default=None, help="policy YAML (default: packaged policy)")


def _role_args(p):
    """Where a reveal role's key is and how its holder authenticates (never a PIN or
    secret on the command line: only the variable or file that holds it)."""
    g = p.add_argument_group("reveal role key (PKCS#11 token per role, or a local role keyring)")
    g.add_argument("--role-token", default=None, help="the role's PKCS#11 token label "
                   "(library: --pkcs11-module)")  # fmt: skip
    g.add_argument("--role-pin-env", default=None, help="variable holding the role token's PIN")
    g.add_argument("--role-pin-file", default=None, help="or a 0600 file holding it")
    g.add_argument("--role-keyring", default=None, help="local mode: the role's keyring file")
    g.add_argument("--role-secret-env", default=None, help="variable holding the role "
                   "keyring's secret (64 hex digits)")  # fmt: skip
    g.add_argument("--role-secret-file", default=None, help="or a 0600 file holding it")


def _role_given(args) -> bool:
    return bool(args.role_token or args.role_keyring)


def _open_role(args, role: str, create: bool = False):
    """The role's key, authenticated (token login / keyring secret); ``KmsError`` if not."""
    from veil.transforms.crypto.kms import (
        SOFTHSM_MODULE,
        KmsError,
        LocalRoleKey,
        Pkcs11RoleKey,
    )

    if args.role_token:
        return Pkcs11RoleKey(
            args.pkcs11_module or SOFTHSM_MODULE,
            args.role_token,
            role,
            args.role_pin_env,
            args.role_pin_file,
            create=create,
        )
    if args.role_keyring:
        if create and not os.path.exists(args.role_keyring):
            return LocalRoleKey.create(
                args.role_keyring, role, args.role_secret_env, args.role_secret_file
            )
        key = LocalRoleKey(args.role_keyring, args.role_secret_env, args.role_secret_file)
        if key.role != role:
            raise KmsError("the role keyring belongs to another role")
        return key
    raise KmsError("no role key: pass --role-token or --role-keyring")


def _store_bootstrap_arg(p):
    p.add_argument(
        "--veil_bootstrap_servers",
        "--bootstrap",
        dest="bootstrap",
        default=os.environ.get("VEIL_BOOTSTRAP_SERVERS"),
        help="Kafka bootstrap servers of a kafka://TOPIC store",
    )


def _kafka_audit_arg(p):
    p.add_argument(
        "--veil_bootstrap_servers",
        "--bootstrap",
        dest="bootstrap",
        default=None,
        help="Kafka bootstrap servers: audit events also go to <prefix>.audit (and "
        "`forget` publishes to <prefix>.erasure)",
    )
    from veil.pipelines.kafka_args import add_security_args

    add_security_args(p)


def _service(args):
    from veil.transforms.crypto import KeyServiceConfig
    from veil.transforms.key_uri import KeyUriError, is_key_service_uri, key_service_config

    if not args.store:
        raise CliError("no data-key store: pass --store or set $VEIL_KEY_STORE", 2)
    if is_key_service_uri(args.store):  # the whole key service as one key URI
        try:
            config = dataclasses.replace(
                key_service_config(args.store),
                bootstrap=getattr(args, "bootstrap", None),
                kafka_client=_kafka_client(args),
            )
        except KeyUriError as exc:
            raise CliError(f"--veil_key_store: {exc}", 2) from None
        return _open(config)
    config = KeyServiceConfig(
        store=args.store,
        backend=args.kms,
        keyring=args.keyring,
        master_key_env=args.master_key_env,
        master_key_file=args.master_key_file,
        pkcs11_module=args.pkcs11_module,
        pkcs11_token=args.pkcs11_token,
        pkcs11_pin_env=args.pkcs11_pin_env,
        bootstrap=getattr(args, "bootstrap", None),
        kafka_client=_kafka_client(args),
    )
    return _open(config)


def _open(config):
    from veil.transforms.crypto import KmsError

    try:
        return config.open()
    except KmsError as exc:
        raise CliError(f"key service unavailable: {exc}", 2) from None


def _kafka_client(args) -> tuple:
    """Kafka security settings (flags or ``$VEIL_*``) when the store is a topic."""
    if not str(args.store).startswith("kafka://"):
        return ()
    from veil.pipelines.kafka_args import checked_security

    return tuple(sorted(checked_security(args).items()))


class _Audit:
    """Audit events to a JSON-lines file and/or the audit topic, chained and MACed.

    Each command run is one chain (``source.topic`` = ``<prefix>.keys-cli/<run id>``,
    from genesis), MACed with the audit key the pipeline uses (``$VEIL_AUDIT_KEY_FILE``,
    else the key service's audit key), so ``veil audit verify`` checks reveal and
    forget events like the pipeline's. The file gets the same JSON form as ``veil
    sanitize``'s ``audit.jsonl`` (one time format: ISO 8601).
    """

    def __init__(self, args, kafka: bool, service=None):
        import secrets

        self._path = args.audit_log
        if self._path and os.path.exists(self._path) and not os.path.isfile(self._path):
            # /dev/null, a pipe, a terminal: the trail would not be kept.
            raise CliError("--audit-log must be a regular file", 2)
        self._producer = None
        self._topic = f"{args.prefix}.audit"
        self._sequence, self._prev = -1, None
        if self._path:
            # One chain per audit file, continued by every run: a run's events cannot be
            # cut out unnoticed (only the last ones, as for any chain's head).
            self._chain = f"{args.prefix}.keys-cli"
            self._continue_file_chain()
        else:  # the topic alone: one chain per run
            self._chain = f"{args.prefix}.keys-cli/{secrets.token_hex(8)}"
        self._service = service
        self._key = None
        if kafka and getattr(args, "bootstrap", None):
            from kafka import KafkaProducer

            from veil.pipelines.kafka_args import client_config
            from veil.transforms.kafkaio import client

            self._producer = KafkaProducer(acks="all", **client.resolve(client_config(args)))

    @property
    def configured(self) -> bool:
        return bool(self._path or self._producer)

    def _continue_file_chain(self) -> None:
        from veil.transforms.audit_chain import chain_id, event_hash, read_file

        if not os.path.isfile(self._path) or os.path.getsize(self._path) == 0:
            return
        label = f"{self._chain}/0"
        for located in read_file(self._path):
            event = located.event
            if event is None or not event.get("chain") or chain_id(event) != label:
                continue
            self._sequence = int(event["chain"]["sequence"])
            self._prev = event_hash(event)

    def _mac_key(self):
        from veil.transforms.audit_chain import AuditKeyUnavailable, resolve_mac_key

        if self._key is None:
            config = getattr(self._service, "_config", None)
            try:
                self._key = resolve_mac_key(None, key_service=config)
            except AuditKeyUnavailable as exc:
                raise CliError(f"audit key unavailable: {exc}", 2) from None
        return self._key

    def write(self, event: dict) -> None:
        from veil.pipelines.files import to_json
        from veil.schemas import AUDIT_EVENT, catalog
        from veil.transforms.audit_chain import GENESIS_HASH, link_event

        event = dict(event)
        self._sequence += 1
        event["source"] = {"topic": self._chain, "partition": 0, "offset": self._sequence}
        prev = GENESIS_HASH if self._prev is None else self._prev
        self._prev = link_event(event, self._sequence, prev, self._mac_key())
        cat = catalog()
        value = cat.encode(AUDIT_EVENT, event)
        if self._path:
            _, decoded = cat.decode(value)
            with open(self._path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(to_json(AUDIT_EVENT, decoded), sort_keys=True) + "\n")
        if self._producer:
            self._producer.send(self._topic, key=event["event_id"].encode(), value=value)

    def close(self):
        if self._producer:
            self._producer.flush()
            self._producer.close()


def cmd_keys(args, _):
    action = args.keys_action
    if action == "init":
        from veil.pipelines.cli import cmd_keys_init

        return cmd_keys_init(args, _)
    if action == "init-keyring":
        from veil.transforms.crypto import KmsError, LocalKeyring

        if not args.keyring:
            raise CliError("pass --keyring or set $VEIL_KEYRING", 2)
        try:
            LocalKeyring.create(args.keyring, args.master_key_env, args.master_key_file)
        except FileExistsError:
            raise CliError(f"{args.keyring} exists", 2) from None
        except KmsError as exc:
            raise CliError(str(exc), 2) from None
        print(f"created keyring {args.keyring} (KEK version 1)")
        return 0
    if action == "record-id":
        return _record_id(args)
    service = _service(args)
    if action == "add-role":
        return _add_role(service, args)
    if action == "create":
        row = service.create(service.subject_key_id(args.subject))
        print(json.dumps({"key_id": row.key_id, "version": row.version}))
    elif action == "rotate":
        if args.kek:
            print(json.dumps(service.rotate_kek(retire_old=args.retire_old)))
        elif args.subject:
            row = service.rotate(service.subject_key_id(args.subject))
            print(json.dumps({"key_id": row.key_id, "version": row.version}))
        else:
            raise CliError("name a SUBJECT or pass --kek", 2)
    elif action == "retire":
        service.retire(service.subject_key_id(args.subject), args.version)
        print(json.dumps({"retired": args.version}))
    elif action == "list":
        for row in service.list_keys():
            print(json.dumps(row))
    elif action == "forget":
        key_id, count = forget(service, args.subject, args, "cli")
        print(json.dumps({"key_id": key_id, "destroyed": count}))
    elif action == "watch-erasures":
        count = watch_erasures(service, args)
        print(json.dumps({"requests": count}))
    return 0


def _add_role(service, args) -> int:
    from veil.transforms.crypto.aead import public_key_fingerprint
    from veil.transforms.crypto.kms import KmsError

    try:
        key = _open_role(args, args.role_name, create=True)
    except KmsError as exc:
        raise CliError(f"role key unavailable: {exc}", 2) from None
    row = service.register_role(args.role_name, key.public_der)
    getattr(key, "close", lambda: None)()
    print(
        json.dumps(
            {
                "role": args.role_name,
                "key_id": row.key_id,
                "version": row.version,
                "fingerprint": public_key_fingerprint(row.wrapped),
            }
        )
    )
    return 0


def _record_id(args) -> int:
    """Prints the opaque id of a producer id (the mapping needs the record-id key)."""
    from veil.transforms.ids import IdKeyUnavailable, opaque_id, resolve_id_key

    config = _service(args)._config if args.store else None
    try:
        key = resolve_id_key(args.key, config)
    except IdKeyUnavailable:
        raise CliError("the record-id key cannot be read", 2) from None
    opaque = opaque_id(key.key, args.record_id)
    if opaque is None:
        raise CliError("no record-id key: pass --key, set $VEIL_RECORD_ID_KEY_FILE or --store", 2)
    print(json.dumps({"record_id": opaque, "key_id": key.key_id}))
    return 0


def forget(service, subject: str, args, requested_by: str, publish: bool = True):
    """Destroys a subject's keys, audits it, and tells other sites through the topic."""
    from veil.transforms.crypto.reveal import erasure_audit_event

    audit = _Audit(args, kafka=True, service=service)
    if not audit.configured:
        raise CliError("forget needs an audit sink: --audit-log FILE or --bootstrap", 2)
    audit._mac_key()  # no key destroyed without its audit event
    if subject.startswith("s:"):
        key_id, count = subject, service.forget_key_id(subject)
    else:
        key_id, count = service.forget(subject)
    try:
        audit.write(erasure_audit_event(key_id, count, requested_by))
        if publish and getattr(args, "bootstrap", None) and audit._producer:
            # Keyed by the key id, so the compacted topic never holds raw subject keys.
            audit._producer.send(f"{args.prefix}.erasure", key=key_id.encode(), value=b"{}")
    finally:
        audit.close()
    return key_id, count


JOIN_TIMEOUT_S = 60.0


def watch_erasures(service, args) -> int:
    """Applies every request on ``<prefix>.erasure`` (key = subject key or key id)."""
    from kafka import KafkaConsumer

    from veil.pipelines.kafka_args import client_config
    from veil.transforms.kafkaio import client

    consumer = KafkaConsumer(
        f"{args.prefix}.erasure",
        **client.resolve(client_config(args)),
        group_id=f"{args.prefix}-erasure",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    # The idle clock starts once the group has handed this consumer its partitions: on a
    # loaded machine joining can take longer than the idle timeout itself, and a watcher
    # that gave up before it was assigned anything would silently apply nothing.
    count, last = 0, None
    join_deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        while (
            args.idle_timeout is None
            or last is None
            or (time.monotonic() - last < args.idle_timeout)
        ):
            batch = consumer.poll(timeout_ms=500)
            if last is None:
                if consumer.assignment():
                    last = time.monotonic()
                elif time.monotonic() > join_deadline:
                    raise CliError(
                        f"no partition of {args.prefix}.erasure was assigned within "
                        f"{JOIN_TIMEOUT_S:.0f} s: is the topic there and the broker reachable?",
                        1,
                    )
            for records in batch.values():
                for rec in records:
                    if rec.key:
                        forget(service, rec.key.decode("utf-8"), args, "erasure-topic", False)
                        count += 1
                last = time.monotonic()
            if batch:
                consumer.commit()
    finally:
        consumer.close()
    return count


def _records(path):
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        for line in stream:
            if line.strip():
                doc = json.loads(line)
                yield doc.get("value", doc) if "value" in doc else doc


def cmd_reveal(args, _):
    from veil.transforms.crypto.kms import KmsError
    from veil.transforms.crypto.reveal import RevealPolicy, reveal_record

    if not (args.audit_log or getattr(args, "bootstrap", None)):
        raise CliError("reveal needs an audit sink: --audit-log FILE or --bootstrap", 2)
    service = _service(args)
    audit = _Audit(args, kafka=True, service=service)
    audit._mac_key()
    policy = RevealPolicy.load(args.policy)
    role_key, auth_failed = None, False
    if _role_given(args):
        try:
            role_key = _open_role(args, args.role)
            registered = service.role_public_key(args.role)
            if registered is not None and registered != role_key.public_der:
                # A key the caller made for the role on a token of their own.
                getattr(role_key, "close", lambda: None)()
                role_key = None
                raise KmsError("not the registered key of the role")
        except KmsError:  # wrong PIN or secret, another role's key: every record denied
            auth_failed = True
    denied = 0
    try:
        for record in _records(args.path):
            if auth_failed:
                reason = f"ROLE_AUTH_FAILED:{args.principal}/{args.role}"
                fields, event = [], _denied(record, policy, reason)
            else:
                fields, event = reveal_record(
                    service, policy, record, args.principal, args.role, role_key
                )
            audit.write(event)
            if event["action"] == "REVEAL_DENIED":
                denied += 1
            for field_path, value in fields:
                print(
                    json.dumps(
                        {
                            "record_id": record.get("record_id"),
                            "field_path": field_path,
                            "value": value.decode("utf-8", "replace"),
                        },
                        ensure_ascii=False,
                    )
                )
    finally:
        audit.close()
        getattr(role_key, "close", lambda: None)()
    if auth_failed:
        raise CliError(f"role {args.role!r}: the role key did not authenticate", 1)
    if denied:
        raise CliError(f"role {args.role!r} may not reveal {denied} record(s)", 1)
    return 0


def _denied(record, policy, reason):
    from veil.transforms.crypto.reveal import _event

    return _event(record, "REVEAL_DENIED", "FAILED", reason, policy.version)
