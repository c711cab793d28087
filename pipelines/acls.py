"""Least-privilege Kafka ACLs for Veil's principals (run by ``deploy/kafka/acls.sh``).

The broker denies everything no ACL allows (``allow.everyone.if.no.acl.found=false``);
this module grants each principal exactly what its role needs, on the topic names the
pipeline uses (``TopicNames``: ``<prefix>.raw``, ``<prefix>.sanitized.<modality>``, ...):

* the pipeline reads the raw (input) and erasure topics with its consumer group, and
  writes the sanitized, quarantine, audit and dead-letter topics; it also reads the audit
  topic (the audit chain resumes from its last event) and may use transactional ids under
  its group's name (exactly-once mode). No cluster-wide grant: since Kafka 3.0 (KIP-679)
  an idempotent producer needs only WRITE on some topic, not IdempotentWrite.
* the analyst reads the sanitized topics (not quarantine, dead letters, audit or raw);
* upstream producers write the raw topic and read nothing;
* the auditor reads the audit topic only (``veil audit verify``).

Admins (super users in the broker's config) create topics and apply these ACLs. After
applying, ``apply`` checks that no principal but the pipeline can read a raw topic through
any ACL (literal, prefixed or wildcard) and fails if one can.

Example::

    grants = plan(TopicNames("veil"), Roles())
    apply(admin_client_config, grants, prune=True)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import client

LITERAL, PREFIXED = "LITERAL", "PREFIXED"
TOPIC, GROUP, TRANSACTIONAL_ID = "TOPIC", "GROUP", "TRANSACTIONAL_ID"
READ, WRITE = "READ", "WRITE"


@dataclasses.dataclass(frozen=True)
class Roles:
    """User names of the principals, and the consumer groups they use."""

    pipeline: str = "veil-pipeline"
    analyst: str = "veil-analyst"
    producer: str = "veil-producer"
    auditor: str = "veil-auditor"
    pipeline_group: str = "veil-pipeline"
    analyst_group: str = "veil-analyst"

    def principals(self) -> tuple[str, ...]:
        users = (self.pipeline, self.analyst, self.producer, self.auditor)
        return tuple(f"User:{u}" for u in users)


@dataclasses.dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL (any host). READ and WRITE imply DESCRIBE in Kafka's authorizer."""

    principal: str
    resource: str
    name: str
    pattern: str
    operation: str
    why: str = dataclasses.field(default="", compare=False)


def plan(
    names: TopicNames,
    roles: Roles = Roles(),
    input_topics: tuple = (),
    key_store_topic: str | None = None,
) -> list[Grant]:
    """The ACLs for ``names`` (inputs default to ``names.raw``); sorted, no duplicates."""
    inputs = tuple(input_topics) or (names.raw,)
    pipeline, analyst = f"User:{roles.pipeline}", f"User:{roles.analyst}"
    producer, auditor = f"User:{roles.producer}", f"User:{roles.auditor}"
    sanitized = names.sanitized("")  # "<prefix>.sanitized." : every modality
    quarantine = names.quarantine("")
    grants = [Grant(pipeline, TOPIC, t, LITERAL, READ, "input records") for t in inputs]
    grants += [
        Grant(pipeline, TOPIC, names.erasure, LITERAL, READ, "erasure requests"),
        Grant(pipeline, GROUP, roles.pipeline_group, PREFIXED, READ, "commit source offsets"),
        Grant(pipeline, TOPIC, sanitized, PREFIXED, WRITE, "sanitized records"),
        Grant(pipeline, TOPIC, quarantine, PREFIXED, WRITE, "quarantined records"),
        Grant(pipeline, TOPIC, names.dead_letter, LITERAL, WRITE, "dead letters"),
        Grant(pipeline, TOPIC, names.audit, LITERAL, WRITE, "audit events"),
        Grant(pipeline, TOPIC, names.audit, LITERAL, READ, "resume the audit chain"),
        Grant(
            pipeline, TRANSACTIONAL_ID, f"{roles.pipeline_group}-", PREFIXED, WRITE,
            "exactly-once transactions",
        ),
        Grant(analyst, TOPIC, sanitized, PREFIXED, READ, "read sanitized records"),
        Grant(analyst, GROUP, roles.analyst_group, PREFIXED, READ, "analyst consumer groups"),
        Grant(auditor, TOPIC, names.audit, LITERAL, READ, "veil audit verify"),
    ]  # fmt: skip
    grants += [Grant(producer, TOPIC, t, LITERAL, WRITE, "upstream records") for t in inputs]
    if key_store_topic:
        grants += [
            Grant(pipeline, TOPIC, key_store_topic, LITERAL, op, "data-key store")
            for op in (READ, WRITE)
        ]
    return sorted(set(grants))


def _kafka_acl(grant: Grant):
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    pattern = ResourcePattern(
        ResourceType[grant.resource], grant.name, ACLResourcePatternType[grant.pattern]
    )
    operation = ACLOperation[grant.operation]
    return ACL(grant.principal, "*", operation, ACLPermissionType.ALLOW, pattern)


def _as_grant(acl) -> Grant | None:
    """The ``Grant`` an ALLOW ACL of any host stands for; None for anything else."""
    if acl.permission_type.name != "ALLOW" or acl.host != "*":
        return None
    rp = acl.resource_pattern
    return Grant(acl.principal, rp.resource_type.name, rp.resource_name, rp.pattern_type.name,
                 acl.operation.name)  # fmt: skip


def _acls_of(admin, principal: str | None, resource=None, name=None, pattern="ANY"):
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    rtype = ResourceType[resource] if resource else ResourceType.ANY
    acl_filter = ACLFilter(
        principal, None, ACLOperation.ANY, ACLPermissionType.ANY,
        ResourcePatternFilter(rtype, name, ACLResourcePatternType[pattern]),
    )  # fmt: skip
    acls, _ = admin.describe_acls(acl_filter)
    return acls


class AclError(RuntimeError):
    """The broker refused an ACL change, or the result would let others read raw data."""


def apply(admin_config: dict, grants: list[Grant], roles: Roles = Roles(), prune: bool = False,
          raw_topics: tuple = ()) -> dict:  # fmt: skip
    """Creates ``grants`` (idempotent); with ``prune``, deletes the managed principals'
    other ACLs. Then checks that only the pipeline reads ``raw_topics``.

    Returns ``{"created": n, "deleted": n}``; raises ``AclError``.
    """
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**client.resolve(admin_config))
    try:
        result = admin.create_acls([_kafka_acl(g) for g in grants])
        if result["failed"]:
            failed = result["failed"]
            raise AclError(f"broker refused {len(failed)} ACL(s): {failed[0]!r}")
        deleted = _prune(admin, grants, roles) if prune else 0
        for topic in raw_topics:
            readers = raw_readers(admin, topic)
            others = sorted(readers - {f"User:{roles.pipeline}"})
            if others:
                raise AclError(f"besides the pipeline, {others} can read {topic}")
        return {"created": len(grants), "deleted": deleted}
    finally:
        admin.close()


def _prune(admin, grants: list[Grant], roles: Roles) -> int:
    from kafka.admin import ACLFilter

    wanted = set(grants)
    stale = []
    for principal in roles.principals():
        for acl in _acls_of(admin, principal):
            if _as_grant(acl) not in wanted:
                stale.append(acl)
    if stale:
        filters = [
            ACLFilter(a.principal, a.host, a.operation, a.permission_type, a.resource_pattern)
            for a in stale
        ]
        admin.delete_acls(filters)
    return len(stale)


def raw_readers(admin, topic: str) -> set[str]:
    """Principals an ALLOW ACL lets read ``topic`` (literal, prefixed or wildcard match)."""
    readers = set()
    for acl in _acls_of(admin, None, TOPIC, topic, "MATCH"):
        if acl.permission_type.name == "ALLOW" and acl.operation.name in ("READ", "ALL"):
            readers.add(acl.principal)
    return readers


def table(grants: list[Grant]) -> str:
    """The grants as a fixed-width table (principal, resource, pattern, operation, why)."""
    rows = [("PRINCIPAL", "RESOURCE", "NAME", "PATTERN", "OPERATION", "WHY")]
    rows += [(g.principal, g.resource, g.name, g.pattern, g.operation, g.why) for g in grants]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths)) + "  " + row[5] for row in rows
    )


def parser() -> argparse.ArgumentParser:
    from veil.pipelines.cli import DEFAULT_BOOTSTRAP
    from veil.pipelines.kafka_args import add_security_args

    p = argparse.ArgumentParser(
        prog="acls.sh",
        description="Apply Veil's least-privilege ACLs (run as a super user of the broker).",
    )
    p.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, help="Kafka bootstrap servers")
    add_security_args(p)
    d = Roles()
    p.add_argument("--prefix", default="veil", help="topic prefix, as --veil_topic_prefix")
    p.add_argument(
        "--input-topics", default=None, help="as --veil_input_topics (default <prefix>.raw)"
    )
    p.add_argument("--consumer-group", default=d.pipeline_group, help="as --veil_consumer_group")
    p.add_argument("--analyst-group", default=d.analyst_group, help="analysts' group prefix")
    p.add_argument("--pipeline-user", default=d.pipeline)
    p.add_argument("--analyst-user", default=d.analyst)
    p.add_argument("--producer-user", default=d.producer)
    p.add_argument("--auditor-user", default=d.auditor)
    p.add_argument("--key-store-topic", default=None, help="kafka:// data-key store topic")
    p.add_argument("--prune", action="store_true", help="delete these users' other ACLs")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return p


def main(argv=None) -> int:
    from veil.pipelines.cli import CliError
    from veil.pipelines.kafka_args import client_config

    args = parser().parse_args(argv)
    names = TopicNames(args.prefix)
    inputs = tuple(t.strip() for t in (args.input_topics or names.raw).split(",") if t.strip())
    roles = Roles(args.pipeline_user, args.analyst_user, args.producer_user, args.auditor_user,
                  args.consumer_group, args.analyst_group)  # fmt: skip
    grants = plan(names, roles, inputs, args.key_store_topic)
    print(table(grants))
    if args.dry_run:
        return 0
    try:
        result = apply(client_config(args), grants, roles, args.prune, inputs)
    except CliError as exc:
        print(f"acls: error: {exc}", file=sys.stderr)
        return exc.code
    except AclError as exc:
        print(f"acls: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # class name only, like the veil command
        print(f"acls: error: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"applied {result['created']} ACL(s), pruned {result['deleted']}; "
          f"only {roles.pipeline} reads {', '.join(inputs)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
