"""The least-privilege ACL plan (``deploy/kafka/acls.sh``); applied on a real broker in
tests/integration/test_secured_kafka.py."""

from __future__ import annotations

import pytest

from veil.pipelines import acls
from veil.pipelines.acls import PREFIXED, READ, TOPIC, WRITE, Grant, Roles, plan
from veil.transforms.emit import TopicNames
from veil.transforms.records import Modality

NAMES = TopicNames("veil")


def _covers(grant: Grant, resource: str, name: str) -> bool:
    if grant.resource != resource:
        return False
    return name.startswith(grant.name) if grant.pattern == PREFIXED else name == grant.name


def _allowed(grants, principal: str, operation: str, resource: str, name: str) -> bool:
    return any(
        g.principal == principal and g.operation == operation and _covers(g, resource, name)
        for g in grants
    )


def _every_topic(names: TopicNames) -> list[str]:
    topics = [names.raw, names.audit, names.dead_letter, names.erasure]
    topics += [names.sanitized(m) for m in Modality.ALL]
    topics += [names.quarantine(m) for m in Modality.ALL]
    return topics


PIPELINE, ANALYST = "User:veil-pipeline", "User:veil-analyst"
PRODUCER, AUDITOR = "User:veil-producer", "User:veil-auditor"

# principal -> (topics it may read, topics it may write); everything else is refused.
EXPECTED = {
    PIPELINE: (
        {NAMES.raw, NAMES.erasure, NAMES.audit},
        {NAMES.audit, NAMES.dead_letter}
        | {NAMES.sanitized(m) for m in Modality.ALL}
        | {NAMES.quarantine(m) for m in Modality.ALL},
    ),
    ANALYST: ({NAMES.sanitized(m) for m in Modality.ALL}, set()),
    PRODUCER: (set(), {NAMES.raw}),
    AUDITOR: ({NAMES.audit}, set()),
}


@pytest.mark.parametrize("principal", sorted(EXPECTED))
def test_each_principal_gets_exactly_its_topics(principal):
    grants = plan(NAMES)
    reads, writes = EXPECTED[principal]
    for topic in _every_topic(NAMES):
        assert _allowed(grants, principal, READ, TOPIC, topic) == (topic in reads), topic
        assert _allowed(grants, principal, WRITE, TOPIC, topic) == (topic in writes), topic


def test_only_the_pipeline_reads_raw_and_nobody_gets_cluster_rights():
    grants = plan(NAMES)
    readers = {g.principal for g in grants if g.operation == READ and _covers(g, TOPIC, NAMES.raw)}
    assert readers == {PIPELINE}
    assert not [g for g in grants if g.resource == "CLUSTER" or g.name in ("*", "")]
    assert {g.operation for g in grants} == {READ, WRITE}


def test_prefixes_stop_at_a_dot_so_lookalike_topics_are_not_covered():
    grants = plan(NAMES)
    for lookalike in ("veil.sanitizedX", "veil.sanitized", "veil.rawer", "veil.quarantined"):
        assert not any(
            g.operation == READ and g.principal != PIPELINE and _covers(g, TOPIC, lookalike)
            for g in grants
        ), lookalike


def test_groups_and_transactional_ids_follow_the_configured_names():
    roles = Roles(pipeline="p", analyst="a", pipeline_group="etl", analyst_group="bi")
    names = TopicNames("acme")
    grants = plan(names, roles, input_topics=("in.a", "in.b"), key_store_topic="acme.keys")
    assert _allowed(grants, "User:p", READ, "GROUP", "etl")
    assert _allowed(grants, "User:p", WRITE, "TRANSACTIONAL_ID", "etl-in.a-0")
    assert not _allowed(grants, "User:p", WRITE, "TRANSACTIONAL_ID", "other-in.a-0")
    assert _allowed(grants, "User:a", READ, "GROUP", "bi-dashboards")
    assert not _allowed(grants, "User:a", READ, "GROUP", "etl")
    for topic in ("in.a", "in.b"):
        assert _allowed(grants, "User:p", READ, TOPIC, topic)
        assert _allowed(grants, "User:veil-producer", WRITE, TOPIC, topic)
    assert not _allowed(grants, "User:p", READ, TOPIC, "acme.raw")  # inputs replace raw
    assert _allowed(grants, "User:p", READ, TOPIC, "acme.keys")
    assert _allowed(grants, "User:p", WRITE, TOPIC, "acme.keys")
    assert not _allowed(grants, "User:a", READ, TOPIC, "acme.keys")


def test_kafka_acls_round_trip_to_grants():
    """``--prune`` compares the broker's ACLs with the plan through this round trip."""
    for grant in plan(NAMES):
        assert acls._as_grant(acls._kafka_acl(grant)) == grant


def test_dry_run_prints_the_table_without_a_broker(capsys):
    assert acls.main(["--dry-run", "--prefix", "demo", "--bootstrap", "127.0.0.1:1"]) == 0
    out = capsys.readouterr().out
    header = ["PRINCIPAL", "RESOURCE", "NAME", "PATTERN", "OPERATION"]
    assert out.splitlines()[0].split()[:5] == header
    assert "User:veil-analyst   TOPIC             demo.sanitized.   PREFIXED  READ" in out
    assert len(out.splitlines()) == 1 + len(plan(TopicNames("demo")))


def test_a_bad_security_combination_is_a_usage_error(capsys):
    code = acls.main(["--prefix", "demo", "--sasl-username", "admin"])
    assert code == 2
    assert "--sasl-username needs --security-protocol" in capsys.readouterr().err
