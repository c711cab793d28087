"""``veil audit verify``: check the audit chain of a topic or a file.

    veil audit verify --topic veil.audit [--bootstrap HOST:PORT] [--key KEYFILE|kms:URI]
    veil audit verify --file audit.jsonl [--key ...] [--expect-head CHAIN=SEQ]

Prints one line per problem (kind, chain, sequence, where) and a summary; exit code 0
when every chain verifies, 1 when a problem was found, 2 for usage errors. The logic
lives in ``veil.transforms.audit_chain``.
"""

from __future__ import annotations

import os
import sys


def register(sub, with_bootstrap) -> None:
    p = with_bootstrap(
        sub.add_parser(
            "audit",
            help="verify the tamper-evident audit chain",
            description="Checks every audit chain (one per source partition) of a topic, "
            "read from the beginning, or of a file (JSON lines as `veil consume` or `veil "
            "sanitize` write them, or an Avro container file): modified, deleted, inserted "
            "and reordered events, and where.",
        )
    )
    p.add_argument("action", choices=("verify",), help="verify: check every chain")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--topic", help="audit topic (e.g. veil.audit)")
    source.add_argument("--file", help="a file of audit events")
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEYFILE|kms:URI",
        help="audit MAC key(s) to check MACs with (repeat for rotated keys; default "
        "$VEIL_AUDIT_KEY_FILE). Without a key only the hash links are checked.",
    )
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="with --key: accept events without a MAC (written with no key configured)",
    )
    p.add_argument(
        "--expect-head",
        action="append",
        default=[],
        metavar="CHAIN=SEQ",
        help="the chain (e.g. veil.raw/0) must reach sequence SEQ: a head recorded "
        "earlier, the only check against deleting a chain's newest events",
    )
    p.add_argument("--max-problems", type=int, default=50, help="problems printed (all counted)")


def cmd_audit(args, _):
    from veil.pipelines.cli import CliError, _client_config
    from veil.transforms.audit_chain import (
        AUDIT_KEY_ENV,
        AuditKeyUnavailable,
        read_file,
        read_topic,
        resolve_mac_key,
        verify,
    )

    refs = list(args.key) or ([os.environ[AUDIT_KEY_ENV]] if os.environ.get(AUDIT_KEY_ENV) else [])
    try:
        keys = [resolve_mac_key(ref, env=None) for ref in refs]
    except AuditKeyUnavailable:
        raise CliError("an audit key given with --key cannot be read", 2) from None
    heads = {}
    for item in args.expect_head:
        chain, sep, seq = item.rpartition("=")
        if not sep or not chain or not seq.isdigit():
            raise CliError(f"--expect-head {item}: expected CHAIN=SEQ", 2)
        heads[chain] = int(seq)
    if args.file:
        if not os.path.isfile(args.file):
            raise CliError(f"{args.file}: no such file", 2)
        events = read_file(args.file)
    else:
        from veil.pipelines.cli import _registry_binding

        # With TLS/SASL settings; registry ids resolved through --schema-registry.
        events = read_topic(
            _client_config(args), args.topic, schemas=_registry_binding(args, args.topic, None)
        )
    try:
        report = verify(events, keys, allow_unsigned=args.allow_unsigned, expect_heads=heads)
    except LookupError as exc:
        raise CliError(str(exc), 2) from None
    for problem in report.problems[: args.max_problems]:
        print(problem)
    if len(report.problems) > args.max_problems:
        print(f"... and {len(report.problems) - args.max_problems} more")
    for name, (seq, digest) in sorted(report.chains.items()):
        print(f"chain {name}: head sequence {seq}, hash {digest}")
    if not keys:
        print("note: no --key given: MACs not checked (hash links only)", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1
