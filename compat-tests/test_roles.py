"""Dedicated roles, as KRaft deployments run them: three controller-only nodes
(`process.roles=controller`, the voters) and three broker-only nodes (`process.roles=broker`,
observers of the metadata quorum that find it through `controller.quorum.voters`). Clients see the
brokers alone; the cluster keeps every acknowledged record and goes on taking metadata writes when
the active controller and a partition leader are killed, and the killed nodes rejoin. The same
tests run against Kafka 4.4 (reference/kafka-as-fjord), less two Fjord-only checks: AddRaftVoter
refused for a broker-only node, and a node refusing the leader of another cluster.
"""
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from clientlib import assert_ok, consume, expected_layout, java, layout_mismatch, produce, sample_records
from conftest import Broker, wait_for
from test_multinode import acks_all_producer, assert_read_back_once, replicated_partition

SESSION = {"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 300}


@pytest.fixture(scope="module")
def split(start_split_cluster):
    return start_split_cluster("roles", 3, 3, **SESSION)


def quorum(via):
    (q,) = java("admin-describe-quorum", "--bootstrap", via)
    return q


def test_clients_see_only_the_brokers_and_the_quorum_only_the_controllers(split, topic_name):
    controllers, brokers = split
    bootstrap = ",".join(b.bootstrap for b in brokers)
    (cluster,) = java("admin-describe-cluster", "--bootstrap", bootstrap)
    assert sorted(n["id"] for n in cluster["nodes"]) == [4, 5, 6], cluster
    # A controller-only node serves no clients: brokers name one of themselves instead, as
    # Kafka's name a random live broker.
    assert cluster["controller"]["id"] in (4, 5, 6), cluster
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    assert sorted(md.brokers) == [4, 5, 6]
    assert md.controller_id in (4, 5, 6)

    def described():
        q = quorum(brokers[0].bootstrap)
        ok = (sorted(v["id"] for v in q["voters"]) == [1, 2, 3] and sorted(q["observer_ids"]) == [4, 5, 6]
              and all(v["log_end_offset"] >= q["high_watermark"] > 0 for v in q["voters"]))
        return q if ok else None

    q = wait_for(described, "three caught-up voters and three observers")
    assert q["leader_id"] in (1, 2, 3)
    for node in q["nodes"]:
        c = controllers[node["id"] - 1]
        assert node["endpoints"] == [f"CONTROLLER://127.0.0.1:{c.port}"], q

    # Replicas go to brokers only.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 6, 3)], operation_timeout=20, request_timeout=20)[topic_name].result(timeout=30)
    replicas = wait_for(lambda: (t := admin.list_topics(topic_name, timeout=5).topics.get(topic_name)) is not None
                        and t.error is None and len(t.partitions) == 6
                        and all(p.leader >= 0 for p in t.partitions.values())
                        and {r for p in t.partitions.values() for r in p.replicas}, "six led partitions")
    assert replicas == {4, 5, 6}
    records = sample_records("confluent", partitions=6, per_partition=5)
    acks = produce("confluent", brokers[0].bootstrap, topic_name, records)
    assert_ok(acks)
    got = consume("confluent", brokers[2].bootstrap, topic_name, len(records))
    problem = layout_mismatch(got, expected_layout(records, acks))
    assert problem is None, problem


def test_killing_the_active_controller_and_a_leader_loses_nothing(split, topic_name):
    """RF=3, min.insync.replicas=2, an idempotent acks=all producer: kill -9 the active
    controller, create a topic (a metadata write the new active controller takes), kill -9 the
    partition leader; every acknowledged record is read back once, in order. Both killed nodes
    restart and rejoin: the controller as a caught-up voter, the broker into the ISR."""
    controllers, brokers = split
    bootstrap = ",".join(b.bootstrap for b in brokers)
    partition, first = replicated_partition(bootstrap, topic_name)
    producer, report, acked, failed = acks_all_producer(bootstrap, 60000)
    for i in range(200):
        producer.produce(topic_name, value=f"before-{i}".encode(), partition=0, on_delivery=report)
    assert producer.flush(30) == 0

    active = controllers[quorum(bootstrap)["leader_id"] - 1]
    active.kill()
    wait_for(lambda: quorum(bootstrap)["leader_id"] not in (-1, active.node_id), "a new active controller",
             timeout_s=30)
    # Through the Java client, which follows the controller id each broker gives it.
    (created,) = java("admin-create-topic", "--bootstrap", bootstrap, "--topic", f"{topic_name}-after",
                      "--partitions", 1, "--replication-factor", 3)
    assert created["ok"] is True
    for i in range(200):
        producer.produce(topic_name, value=f"between-{i}".encode(), partition=0, on_delivery=report)
    assert producer.flush(30) == 0

    victim = next(b for b in brokers if b.node_id == first.leader)
    victim.kill()
    for i in range(200):
        producer.produce(topic_name, value=f"after-{i}".encode(), partition=0, on_delivery=report)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failed == [], failed[:5]
    wait_for(lambda: (p := partition()) is not None and p.leader not in (-1, first.leader), "a new leader")
    assert_read_back_once(",".join(b.bootstrap for b in brokers if b is not victim), topic_name, acked)

    active.start()
    victim.start()
    wait_for(lambda: (p := partition()) is not None and len(p.isrs) == 3, "the restarted broker back in the ISR",
             timeout_s=60)
    wait_for(lambda: (q := quorum(bootstrap)) and sorted(v["id"] for v in q["voters"]) == [1, 2, 3]
             and all(v["log_end_offset"] >= q["high_watermark"] for v in q["voters"]),
             "the restarted controller a caught-up voter", timeout_s=60)
    assert_read_back_once(victim.bootstrap, topic_name, acked)


def test_a_broker_only_node_cannot_be_made_a_voter(split):
    """Fjord refuses AddRaftVoter for a node without the controller role (INVALID_REQUEST);
    Kafka would check the endpoint given, which here is no controller listener at all."""
    controllers, brokers = split
    if brokers[0].is_reference:
        pytest.skip("Fjord's refusal; Kafka has no such check")
    b = brokers[0]
    (err,) = java("admin-add-voter", "--bootstrap", b.bootstrap, "--id", b.node_id,
                  "--directory-id", "AAAAAAAAAAAAAAAAAAAAAA", "--host", b.host, "--port", b.port, expect_error=True)
    assert err["error"] == "InvalidRequestException", err
    assert "broker-only" in err["message"], err
    assert sorted(v["id"] for v in quorum(b.bootstrap)["voters"]) == [1, 2, 3]


def test_a_node_refuses_the_leader_of_another_cluster(start_cluster, topic_name):
    """A cluster loses a node, and a new single node takes its controller address: the old
    cluster's leader keeps replicating there. The new node refuses it (the cluster ids differ,
    Kafka's INCONSISTENT_CLUSTER_ID) and keeps its own metadata."""
    old = start_cluster("stale", 3, **SESSION)
    if old[0].is_reference:
        pytest.skip("kafka-as-fjord gives every cluster the same id")
    admin = AdminClient({"bootstrap.servers": old[0].bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1)], operation_timeout=20, request_timeout=20)[topic_name].result(timeout=30)
    gone = old[2]
    controller_port = int(gone.overrides["listeners"].rsplit(":", 1)[1])
    gone.kill()
    new = Broker("stale-new")
    new.overrides.update({"listeners": f"PLAINTEXT://127.0.0.1:{new.port},CONTROLLER://127.0.0.1:{controller_port}",
                          "controller.listener.names": "CONTROLLER"})
    try:
        refused_by(new.start(), old, topic_name)
    finally:
        new.cleanup(False)


def refused_by(new, old, topic_name):
    wait_for(lambda: "refusing a controller connection from another cluster" in new.log_text(),
             "the old leader refused", timeout_s=30)
    (old_cluster,) = java("admin-describe-cluster", "--bootstrap", old[0].bootstrap)
    (new_cluster,) = java("admin-describe-cluster", "--bootstrap", new.bootstrap)
    assert new_cluster["cluster_id"] != old_cluster["cluster_id"]
    assert [n["id"] for n in new_cluster["nodes"]] == [1]
    assert topic_name not in AdminClient({"bootstrap.servers": new.bootstrap}).list_topics(timeout=10).topics
    records = sample_records("confluent", partitions=1, per_partition=10)
    acks = produce("confluent", new.bootstrap, f"{topic_name}-new", records)
    assert_ok(acks)
    got = consume("confluent", new.bootstrap, f"{topic_name}-new", len(records))
    problem = layout_mismatch(got, expected_layout(records, acks))
    assert problem is None, problem
