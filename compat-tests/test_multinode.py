"""Three nodes as one cluster, used by real clients through any node.

Each node is a broker and a controller voter (`controller.quorum.voters`). A topic's partitions
are spread over the three brokers; every client bootstraps from one node and must follow Metadata
to the leader of each partition and FindCoordinator to its group's coordinator on another node.
Partitions have one replica (Fjord does not replicate partitions between brokers yet), so these
tests use replication factor 1 on both brokers.
"""

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clientlib import CLIENTS, assert_ok, consume, expected_layout, layout_mismatch, produce, sample_records
from conftest import wait_for

PARTITIONS = 6


@pytest.fixture(scope="module")
def nodes(start_cluster):
    return start_cluster("multinode", 3)


def create_spread_topic(nodes, name):
    """Creates `name` through node 1 and waits until every node's Metadata shows every partition
    with a leader; returns {partition: leader}."""
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)], operation_timeout=20, request_timeout=20)[name].result(timeout=30)

    def leaders(node):
        md = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(name, timeout=5)
        t = md.topics.get(name)
        if t is None or t.error is not None or len(t.partitions) != PARTITIONS:
            return None
        out = {p: pm.leader for p, pm in t.partitions.items()}
        return out if all(l >= 0 for l in out.values()) else None

    seen = [wait_for(lambda n=n: leaders(n), f"{name} led everywhere in {n.name}'s Metadata") for n in nodes]
    assert all(s == seen[0] for s in seen), f"the nodes disagree on the leaders: {seen}"
    return seen[0]


# Three records per partition: 18 in all, below the first record sample_records gives neither a key
# nor a value (kafka-python refuses to send one).
@pytest.mark.parametrize("client", CLIENTS)
def test_produce_through_one_node_and_consume_through_another(nodes, client, topic_name):
    leaders = create_spread_topic(nodes, topic_name)
    assert set(leaders.values()) == {1, 2, 3}, f"partitions spread over the brokers: {leaders}"
    records = sample_records(client, partitions=PARTITIONS, per_partition=3, kcat_compatible=client == "kcat")
    acks = produce(client, nodes[1].bootstrap, topic_name, records)
    assert_ok(acks)
    got = consume(client, nodes[2].bootstrap, topic_name, len(records))
    problem = layout_mismatch(got, expected_layout(records, acks))
    assert problem is None, problem


def test_a_group_commits_through_one_node_and_resumes_through_another(nodes, topic_name):
    create_spread_topic(nodes, topic_name)
    records = sample_records("group", partitions=PARTITIONS, per_partition=3)
    assert_ok(produce("confluent", nodes[0].bootstrap, topic_name, records))
    group = f"multinode-{uuid.uuid4().hex[:8]}"

    def consumer(node):
        return Consumer({"bootstrap.servers": node.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})

    first = consumer(nodes[2])
    first.subscribe([topic_name])
    read = 0
    try:
        def poll_all():
            nonlocal read
            m = first.poll(0.5)
            if m is not None and m.error() is None:
                read += 1
            return read >= len(records)

        wait_for(poll_all, f"{len(records)} records through node 3", timeout_s=60, interval_s=0)
        first.commit(asynchronous=False)
    finally:
        first.close()

    # Another member of the group, bootstrapped elsewhere, finds the same coordinator and the
    # committed offsets: the end of every partition.
    second = consumer(nodes[0])
    try:
        committed = second.committed([TopicPartition(topic_name, p) for p in range(PARTITIONS)], timeout=20)
        by_partition = {tp.partition: tp.offset for tp in committed}
        expected = {p: sum(1 for r in records if r.partition == p) for p in range(PARTITIONS)}
        assert by_partition == expected, f"committed {by_partition}, expected {expected}"
    finally:
        second.close()


def test_describe_metadata_quorum_from_every_node(nodes):
    """Admin.describeMetadataQuorum (DescribeQuorum, what kafka-metadata-quorum.sh describe
    --status prints), asked of each node: the same leader, the three voters, each caught up and
    heard from; with v2, their controller endpoints."""
    from clientlib import java

    def described(node):
        (q,) = java("admin-describe-quorum", "--bootstrap", node.bootstrap)
        voters = {v["id"]: v for v in q["voters"]}
        ready = (sorted(voters) == [1, 2, 3]
                 and all(v["log_end_offset"] >= q["high_watermark"] > 0 for v in voters.values())
                 and all(v["last_fetch_ms"] > 0 and v["last_caught_up_ms"] > 0 for v in voters.values()))
        return q if ready else None

    answers = [wait_for(lambda n=n: described(n), f"a caught-up quorum described by {n.name}", timeout_s=30) for n in nodes]
    assert len({a["leader_id"] for a in answers}) == 1, answers
    assert answers[0]["leader_id"] in (1, 2, 3)
    assert answers[0]["observers"] == 0
    controller_ports = {n.node_id: n.overrides["listeners"].rsplit(":", 1)[1] for n in nodes}
    for a in answers:
        for node in a["nodes"]:
            assert node["endpoints"] == [f"CONTROLLER://127.0.0.1:{controller_ports[node['id']]}"], a
        if not nodes[0].is_reference:
            assert sorted(n["id"] for n in a["nodes"]) == [1, 2, 3], a
