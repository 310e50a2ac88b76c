"""Three nodes as one cluster, used by real clients through any node.

Each node is a broker and a controller voter (`controller.quorum.voters`). A topic's partitions
are spread over the three brokers; every client bootstraps from one node and must follow Metadata
to the leader of each partition and FindCoordinator to its group's coordinator on another node.
Most tests use replication factor 1; the failover test replicates a partition three ways and
kills its leader under an idempotent acks=all producer.
"""

import base64
import threading
import time
import uuid

import pytest
from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, ElectionType, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

import netlab
from clientlib import CLIENTS, assert_ok, consume, expected_layout, layout_mismatch, produce, sample_records
from conftest import Broker, free_port, wait_for

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


def acks_all_producer(bootstrap, message_timeout_ms):
    """An idempotent acks=all confluent producer, its delivery callback, and the values it had
    acknowledged and the errors it reported, each in the order they came."""
    acked, failed = [], []

    def report(err, msg):
        (failed if err is not None else acked).append(err if err is not None else msg.value())

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": message_timeout_ms})
    return producer, report, acked, failed


def replicated_partition(bootstrap, topic):
    """Creates `topic` with one partition, RF=3 and min.insync.replicas=2, and waits until its
    three replicas are in sync. Returns a function that reads partition 0 from Metadata (None
    while the topic is unknown) and the partition as it was then."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})],
                        operation_timeout=20, request_timeout=20)[topic].result(timeout=30)

    def partition():
        t = admin.list_topics(topic, timeout=5).topics.get(topic)
        return t.partitions.get(0) if t is not None and t.error is None else None

    first = wait_for(lambda: (p := partition()) is not None and p.leader >= 0 and len(p.isrs) == 3 and p,
                     "three in-sync replicas")
    return partition, first


def assert_read_back_once(bootstrap, topic, acked):
    """Reads partition 0 of `topic` from the start and proves it holds exactly `acked`, in
    order: nothing lost, nothing twice, nothing extra."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-back-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    try:
        def read_all():
            # A batch per call: wait_for pauses between calls.
            got.extend(m.value() for m in consumer.consume(1000, timeout=0.5) if m.error() is None)
            return len(got) >= len(acked)

        wait_for(read_all, "every acknowledged record read back", timeout_s=60, interval_s=0)
        m = consumer.poll(2)
        assert m is None or m.error() is not None, f"an extra record: {m.value()}"
    finally:
        consumer.close()
    assert got == acked, "acknowledged records, once each, in the order they were acknowledged"


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


def test_an_acks_all_producer_loses_nothing_when_the_leader_is_killed(start_cluster, topic_name):
    """RF=3, min.insync.replicas=2: kill -9 the partition leader while an idempotent acks=all
    producer writes; every acknowledged record is read back once, in order, from the survivors."""
    nodes = start_cluster("failover", 3, **{"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 300})
    bootstrap = ",".join(n.bootstrap for n in nodes)
    partition, first = replicated_partition(bootstrap, topic_name)
    producer, report, acked, failed = acks_all_producer(bootstrap, 60000)
    for i in range(300):
        producer.produce(topic_name, value=f"before-{i}".encode(), partition=0, on_delivery=report)
    assert producer.flush(30) == 0
    victim = next(n for n in nodes if n.node_id == first.leader)
    victim.kill()
    for i in range(300):
        producer.produce(topic_name, value=f"after-{i}".encode(), partition=0, on_delivery=report)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failed == [], failed[:5]
    new_leader = wait_for(lambda: (p := partition()) is not None and p.leader not in (-1, first.leader) and p,
                          "a new leader").leader
    assert new_leader != first.leader

    assert_read_back_once(",".join(n.bootstrap for n in nodes if n is not victim), topic_name, acked)


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_committed_offsets_survive_the_death_of_the_coordinator(start_cluster, topic_name, protocol):
    """A group commits through its coordinator; kill -9 the coordinator; a new member, through
    the survivors, finds the new coordinator and resumes at the committed offsets, and the
    admin API reads them back from it."""
    # The reference wrapper gives Kafka's internal topics one replica unless told otherwise.
    nodes = start_cluster(f"coordinator-{protocol}", 3,
                          **{"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 300,
                             "offsets.topic.replication.factor": 3})
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 3, 3, config={"min.insync.replicas": "2"})],
                        operation_timeout=20, request_timeout=20)[topic_name].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(90):
        producer.produce(topic_name, value=f"r{i}".encode(), partition=i % 3)
    assert producer.flush(30) == 0

    group = f"coord-{protocol}-{uuid.uuid4().hex[:8]}"
    settings = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": False, "group.protocol": protocol}
    if protocol == "classic":
        settings["session.timeout.ms"] = 6000
    first = Consumer(settings)
    first.subscribe([topic_name])
    read = []
    try:
        def read_some():
            read.extend(m for m in first.consume(100, timeout=0.5) if m.error() is None)
            return len(read) >= 90

        wait_for(read_some, "90 records", timeout_s=60, interval_s=0)
        # Commit 10 of the 30 records of each partition (offset 10 is the next to read).
        first.commit(offsets=[TopicPartition(topic_name, p, 10) for p in range(3)], asynchronous=False)
    finally:
        first.close()

    described = admin.describe_consumer_groups([group])[group].result(timeout=20)
    victim = next(n for n in nodes if n.node_id == described.coordinator.id)
    victim.kill()
    survivors = ",".join(n.bootstrap for n in nodes if n is not victim)

    # The consumer first: librdkafka's admin client can abort the process when a coordinator
    # request meets a dead broker (librdkafka issues #3663, #4605), on Kafka as here.
    second = Consumer({**settings, "bootstrap.servers": survivors})
    resumed = []
    try:
        def committed():
            try:
                got = second.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=5)
            except KafkaException:
                return None
            return {tp.partition: tp.offset for tp in got}

        offsets = wait_for(committed, "the committed offsets from the new coordinator", timeout_s=60)
        assert offsets == {0: 10, 1: 10, 2: 10}, offsets
        second.subscribe([topic_name])

        def read_rest():
            resumed.extend(m for m in second.consume(100, timeout=0.5) if m.error() is None)
            return len(resumed) >= 60

        wait_for(read_rest, "the 60 records after the committed offsets", timeout_s=60, interval_s=0)
    finally:
        second.close()
    admin = AdminClient({"bootstrap.servers": survivors})
    moved = admin.describe_consumer_groups([group])[group].result(timeout=20)
    assert moved.coordinator.id != victim.node_id
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=20)
    assert {tp.partition: tp.offset for tp in listed.topic_partitions} == {0: 10, 1: 10, 2: 10}
    assert sorted((m.partition(), m.offset()) for m in resumed) == [(p, o) for p in range(3) for o in range(10, 30)]


def test_a_preferred_election_gives_leadership_back_to_the_first_replica(start_cluster, topic_name):
    """ElectLeaders (Admin.elect_leaders, what kafka-leader-election.sh sends): the leader of a
    3-replica partition dies and comes back; once it is in sync again, a preferred election makes
    it lead again with every acknowledged record; asked again, the election is not needed."""
    nodes = start_cluster("elect", 3, **{"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 300})
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 3)], operation_timeout=20, request_timeout=20)[topic_name].result(timeout=30)

    def partition():
        t = admin.list_topics(topic_name, timeout=5).topics.get(topic_name)
        return t.partitions.get(0) if t is not None and t.error is None else None

    first = wait_for(lambda: (p := partition()) is not None and p.leader >= 0 and len(p.isrs) == 3 and p,
                     "three in-sync replicas")
    preferred = first.replicas[0]
    assert first.leader == preferred, "a new partition is led by its first replica"
    tp = TopicPartition(topic_name, 0)
    again = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert again[tp] is not None and again[tp].code() == KafkaError.ELECTION_NOT_NEEDED, again

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(20):
        producer.produce(topic_name, value=f"before-{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    victim = next(n for n in nodes if n.node_id == preferred)
    victim.kill()
    wait_for(lambda: (p := partition()) is not None and p.leader not in (-1, preferred), "another leader")
    for i in range(20):
        producer.produce(topic_name, value=f"after-{i}".encode(), partition=0)
    assert producer.flush(60) == 0
    victim.start()
    wait_for(lambda: (p := partition()) is not None and len(p.isrs) == 3, "the first replica in sync again",
             timeout_s=60)

    elected = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert elected == {tp: None}, elected
    wait_for(lambda: (p := partition()) is not None and p.leader == preferred, "the first replica leading")

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"elect-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    got = []
    try:
        def read_all():
            got.extend(m.value() for m in consumer.consume(100, timeout=0.5) if m.error() is None)
            return len(got) >= 40

        wait_for(read_all, "every acknowledged record from the preferred leader", timeout_s=60, interval_s=0)
    finally:
        consumer.close()
    assert got == [f"before-{i}".encode() for i in range(20)] + [f"after-{i}".encode() for i in range(20)]


def meta_properties(node) -> dict:
    """The `meta.properties` Kafka (and Fjord) keep in `log.dirs`."""
    return dict(l.split("=", 1) for l in (node.data_dir / "meta.properties").read_text().splitlines()
                if "=" in l and not l.startswith("#"))


def test_controller_voters_are_added_and_removed_online(start_cluster, topic_name):
    """KIP-853: a fourth node started with controller.quorum.bootstrap.servers (no voters)
    joins the quorum as an observer and serves as a broker; AddRaftVoter makes it a voter,
    RemoveRaftVoter turns voter 1 into an observer (DescribeQuorum shows each step, and a
    second add or remove gets DUPLICATE_VOTER or VOTER_NOT_FOUND); the new quorum keeps a
    majority when voter 2 dies, and node 4 restarts as a voter from its own metadata log."""
    from clientlib import java

    nodes = start_cluster("voters", 3, **{"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 300})
    if nodes[0].is_reference:
        # Kafka changes the voters of a quorum started with controller.quorum.voters only once
        # kraft.version is 1 (Fjord has no such feature; UpdateFeatures is not served).
        # The voters must first have told the leader what they support.
        wait_for(lambda: java("admin-upgrade-feature", "--bootstrap", nodes[0].bootstrap, "--feature", "kraft.version",
                              "--level", 1, expect_error=None) == [{"ok": True}],
                 "kraft.version 1", timeout_s=60, interval_s=1)
    controllers = [n.overrides["listeners"].split("CONTROLLER://", 1)[1] for n in nodes]
    fourth = Broker("voters-node4")
    fourth.node_id = 4
    controller_port = free_port()
    fourth.overrides.update({
        "node.id": 4,
        "listeners": f"PLAINTEXT://127.0.0.1:{fourth.port},CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.bootstrap.servers": ",".join(controllers),
        "process.roles": "broker,controller",
        "broker.session.timeout.ms": 2000,
        "broker.heartbeat.interval.ms": 300,
    })
    try:
        fourth.start()
        via = nodes[2].bootstrap

        def quorum():
            (q,) = java("admin-describe-quorum", "--bootstrap", via)
            return sorted(v["id"] for v in q["voters"]), sorted(q["observer_ids"])

        wait_for(lambda: quorum() == ([1, 2, 3], [4]), "node 4 observing the quorum")

        def refusal(args):
            """The error a change is refused with, once no election is under way (a leader that
            removed itself hands over meanwhile)."""
            def answer():
                err = java(*args, expect_error=True)[-1]["error"]
                return None if err in ("NotLeaderOrFollowerException", "NotControllerException") else err
            return wait_for(answer, f"an answer to {args[0]}", timeout_s=30, interval_s=0.5)

        # kafka-metadata-quorum.sh add-controller reads the node's directory id from here.
        props = meta_properties(fourth)
        assert props["node.id"] == "4" and props["version"] == "1" and len(props["directory.id"]) == 22, props
        # It is a broker of the cluster: a topic with a replica on every node, used through it.
        admin = AdminClient({"bootstrap.servers": fourth.bootstrap})
        admin.create_topics([NewTopic(topic_name, 1, 4)], operation_timeout=20, request_timeout=20)[topic_name].result(timeout=30)
        records = sample_records("confluent", partitions=1, per_partition=20)
        acks = produce("confluent", fourth.bootstrap, topic_name, records)
        assert_ok(acks)

        add = ["admin-add-voter", "--bootstrap", via, "--id", 4, "--directory-id", props["directory.id"],
               "--host", "127.0.0.1", "--port", controller_port]
        assert java(*add) == [{"ok": True}]
        wait_for(lambda: quorum() == ([1, 2, 3, 4], []), "node 4 a voter")
        assert refusal(add) == "DuplicateVoterException"

        remove = ["admin-remove-voter", "--bootstrap", via, "--id", 1,
                  "--directory-id", meta_properties(nodes[0])["directory.id"]]
        assert java(*remove) == [{"ok": True}]
        wait_for(lambda: quorum() == ([2, 3, 4], [1]), "voter 1 an observer")
        assert refusal(remove) == "VoterNotFoundException"

        # Voters 3 and 4 are a majority of {2, 3, 4}: one of them takes over, and metadata
        # writes go on without node 2. (Through the Java client: librdkafka's admin can wait
        # forever on a controller that left Metadata, on Kafka as here.)
        nodes[1].kill()
        wait_for(lambda: java("admin-describe-quorum", "--bootstrap", fourth.bootstrap)[0]["leader_id"] in (3, 4),
                 "a voter of the new quorum leading it", timeout_s=30)
        (created,) = java("admin-create-topic", "--bootstrap", f"{nodes[2].bootstrap},{fourth.bootstrap}",
                          "--topic", f"{topic_name}-after", "--partitions", 1)
        assert created["ok"] is True

        fourth.stop()
        fourth.start()
        wait_for(lambda: (q := java("admin-describe-quorum", "--bootstrap", fourth.bootstrap)[0])
                 and sorted(v["id"] for v in q["voters"]) == [2, 3, 4]
                 and all(v["log_end_offset"] >= q["high_watermark"] for v in q["voters"] if v["id"] != 2),
                 "node 4 back as a caught-up voter")
        got = consume("confluent", fourth.bootstrap, topic_name, len(records))
        problem = layout_mismatch(got, expected_layout(records, acks))
        assert problem is None, problem
    finally:
        fourth.kill()
        fourth.cleanup(False)


def test_a_manual_replica_assignment_is_honoured(nodes, topic_name):
    """CreateTopics and CreatePartitions with `assignments` (kafka-topics.sh
    --replica-assignment): each partition gets exactly the replicas asked for, preferred leader
    first; an assignment naming an unknown broker, a broker twice, or lists of different lengths
    is refused with INVALID_REPLICA_ASSIGNMENT and creates nothing."""
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})

    def refused(new_topic):
        with pytest.raises(KafkaException) as e:
            admin.create_topics([new_topic], operation_timeout=20, request_timeout=20)[new_topic.topic].result(timeout=30)
        return e.value.args[0].code()

    for i, bad in enumerate([[[1, 99]], [[2, 2]], [[1, 2], [3]]]):
        assert refused(NewTopic(f"{topic_name}-bad{i}", num_partitions=len(bad), replica_assignment=bad)) == KafkaError.INVALID_REPLICA_ASSIGNMENT, bad
    assert not any(t.startswith(f"{topic_name}-bad") for t in admin.list_topics(timeout=10).topics)

    admin.create_topics([NewTopic(topic_name, num_partitions=3, replica_assignment=[[2, 3], [3, 1], [1, 2]])],
                        operation_timeout=20, request_timeout=20)[topic_name].result(timeout=30)

    def layout():
        t = admin.list_topics(topic_name, timeout=5).topics.get(topic_name)
        if t is None or t.error is not None:
            return None
        return {p: (pm.replicas, pm.leader, sorted(pm.isrs)) for p, pm in t.partitions.items()}

    want = {0: ([2, 3], 2, [2, 3]), 1: ([3, 1], 3, [1, 3]), 2: ([1, 2], 1, [1, 2])}
    wait_for(lambda: layout() == want, f"the assignment {want}")

    bad = admin.create_partitions([NewPartitions(topic_name, 4, replica_assignment=[[3]])])[topic_name]
    with pytest.raises(KafkaException) as e:
        bad.result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    admin.create_partitions([NewPartitions(topic_name, 4, replica_assignment=[[3, 2]])])[topic_name].result(timeout=30)
    want[3] = ([3, 2], 3, [2, 3])
    wait_for(lambda: layout() == want, f"the new partition on 3 and 2: {want}")


def test_replicas_of_new_partitions_go_to_distinct_racks(start_cluster, topic_name):
    """`broker.rack`: four nodes on two racks; every partition of a new 2-replica topic has a
    replica on each rack (Kafka's rack-aware placement), and DescribeCluster reports each
    broker's rack."""
    from clientlib import java

    racks = {1: "rack-a", 2: "rack-a", 3: "rack-b", 4: "rack-b"}
    nodes = start_cluster("racks", 4, per_node=[{"broker.rack": racks[i]} for i in (1, 2, 3, 4)])
    bootstrap = ",".join(n.bootstrap for n in nodes)
    (cluster,) = java("admin-describe-cluster", "--bootstrap", bootstrap)
    assert {n["id"]: n["rack"] for n in cluster["nodes"]} == racks
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 8, 2)], operation_timeout=20, request_timeout=20)[topic_name].result(timeout=30)
    (d,) = java("admin-describe-topic", "--bootstrap", bootstrap, "--topic", topic_name)
    assert len(d["partitions"]) == 8
    for p in d["partitions"]:
        assert sorted(racks[r] for r in p["replicas"]) == ["rack-a", "rack-b"], p


def test_a_replica_moves_to_another_broker_while_a_producer_writes(start_cluster, topic_name):
    """AlterPartitionReassignments and ListPartitionReassignments (Admin.alterPartitionReassignments
    and listPartitionReassignments, what kafka-reassign-partitions.sh --execute, --verify and
    --cancel send), with the Java client: a 2-replica partition moves off one broker onto the
    third while an idempotent acks=all producer writes. The move waits for its new replica
    (down at first, so that the pending move can be listed and cancelled), completes once that
    replica is back and has caught up, and the dropped broker no longer hosts the partition. Every
    acknowledged record is read back once, in order, and refusals carry Kafka's errors."""
    from clientlib import java

    nodes = start_cluster("reassign", 3, **{"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 300})
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 2)], operation_timeout=20, request_timeout=20)[topic_name].result(timeout=30)

    # While a node is down, the admin calls go through the others.
    via = {"bootstrap": bootstrap}

    def described():
        (d,) = java("admin-describe-topic", "--bootstrap", via["bootstrap"], "--topic", topic_name)
        return d

    def moving():
        (r,) = java("admin-list-reassignments", "--bootstrap", via["bootstrap"], "--topic", topic_name)
        return r["reassignments"]

    def reassign(*moves, keep_rf=False):
        args = ["admin-reassign", "--bootstrap", via["bootstrap"], "--topic", topic_name]
        for m in moves:
            args += ["--move", m]
        return [l.get("error", "ok") for l in java(*args, *(["--keep-replication-factor"] if keep_rf else []))]

    first = wait_for(lambda: (d := described())["partitions"][0]["leader"] is not None
                     and len(d["partitions"][0]["isr"]) == 2 and d["partitions"][0], "two in-sync replicas")
    a, b = first["replicas"]
    (c,) = {1, 2, 3} - {a, b}

    assert reassign(f"0={a},99") == ["InvalidReplicaAssignmentException"]
    assert reassign(f"0={a},{a}") == ["InvalidReplicaAssignmentException"]
    assert reassign(f"5={a},{b}") == ["UnknownTopicOrPartitionException"]
    assert reassign("0=cancel") == ["NoReassignmentInProgressException"]
    assert reassign(f"0={a},{b},{c}", keep_rf=True) == ["InvalidReplicationFactorException"]
    assert moving() == [] and described()["partitions"][0]["replicas"] == [a, b], "a refused move changes nothing"

    producer, report, acked, failed = acks_all_producer(bootstrap, 120000)
    for i in range(2000):
        producer.produce(topic_name, value=f"before-{i}".encode(), partition=0, on_delivery=report)
    assert producer.flush(30) == 0

    # The new replica is down at first (killed rather than paused: a paused active controller
    # holds Kafka's forwarded admin requests until they time out).
    target = next(n for n in nodes if n.node_id == c)
    target.kill()
    try:
        # Once fenced, the dead node is out of Metadata, and clients stop choosing it.
        via["bootstrap"] = ",".join(n.bootstrap for n in nodes if n is not target)
        others = AdminClient({"bootstrap.servers": via["bootstrap"]})
        wait_for(lambda: c not in others.list_topics(timeout=5).brokers, f"node {c} fenced")
        # If it was the active controller, the others have elected another.
        wait_for(lambda: java("admin-describe-quorum", "--bootstrap", via["bootstrap"])[0]["leader_id"] != c,
                 "an active controller among the others", timeout_s=30)
        assert reassign(f"0={b},{c}") == ["ok"]
        pending = {"topic": topic_name, "partition": 0, "replicas": [b, c, a], "adding": [c], "removing": [a]}
        assert moving() == [pending], "the move waits for its new replica"
        assert reassign("0=cancel") == ["ok"]
        assert moving() == []
        assert sorted(described()["partitions"][0]["replicas"]) == sorted([a, b]), "cancelled: back to a and b"
        assert reassign(f"0={b},{c}") == ["ok"]
        assert moving() == [pending]
        for i in range(200):
            producer.produce(topic_name, value=f"pending-{i}".encode(), partition=0, on_delivery=report)
            producer.poll(0)
        assert producer.flush(30) == 0
    finally:
        target.start()

    stop = threading.Event()

    def keep_producing():
        i = 0
        while not stop.is_set():
            producer.produce(topic_name, value=f"during-{i}".encode(), partition=0, on_delivery=report)
            producer.poll(0.002)
            i += 1

    writer = threading.Thread(target=keep_producing)
    writer.start()
    try:
        wait_for(lambda: moving() == [], "the move complete", timeout_s=90, interval_s=0.5)
    finally:
        stop.set()
        writer.join()
    assert producer.flush(60) == 0
    assert failed == [], failed[:5]
    after = wait_for(lambda: (p := described()["partitions"][0])["leader"] in (b, c) and len(p["isr"]) == 2 and p,
                     "the new replicas leading and in sync")
    assert after["replicas"] == [b, c] and sorted(after["isr"]) == sorted([b, c]), after
    assert any(v.startswith(b"during-") for v in acked), "records were written during the move"

    assert_read_back_once(bootstrap, topic_name, acked)

    # The dropped broker no longer reports the partition, and (Fjord's layout) its copy is gone.
    dropped = next(n for n in nodes if n.node_id == a)
    (dirs,) = java("admin-describe-log-dirs", "--bootstrap", bootstrap, "--broker", a)
    assert all(f"{topic_name}-0" not in d["partitions"] for d in dirs["dirs"].values()), dirs
    if not dropped.is_reference:
        topic_hex = base64.urlsafe_b64decode(described()["topic_id"] + "==").hex()
        gone = dropped.data_dir / "logs" / "segments" / f"{topic_hex}-0"
        wait_for(lambda: not gone.exists(), f"{gone} deleted")


@pytest.mark.skipif(not netlab.available(), reason="cutting links needs root and the ip tool")
def test_a_node_cut_off_from_the_others_moves_no_other_leadership(start_cluster, topic_name):
    """Each node in a network namespace of its own; the controller leader (as DescribeCluster
    names it) is cut off from both other nodes for twice the broker session. It sees every
    broker go silent, but what it decides alone must not take effect: once the links heal, the
    partitions the other two nodes led are still theirs, and every partition takes acks=all
    writes again."""
    network = netlab.Network(3)
    nodes = []
    try:
        nodes = start_cluster("netsplit", 3, network=network,
                              **{"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 300})
        bootstrap = ",".join(n.bootstrap for n in nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic_name, 3, 3)], operation_timeout=20,
                            request_timeout=20)[topic_name].result(timeout=30)

        def in_sync(via):
            t = via.list_topics(topic_name, timeout=5).topics.get(topic_name)
            if t is None or t.error is not None or len(t.partitions) != 3:
                return None
            ps = t.partitions.values()
            return {p.id: p.leader for p in ps} if all(p.leader >= 0 and len(p.isrs) == 3 for p in ps) else None

        before = wait_for(lambda: in_sync(admin), "three in-sync replicas everywhere")
        cut_off = admin.describe_cluster(request_timeout=10).result(timeout=20).controller.id
        others = [n.node_id for n in nodes if n.node_id != cut_off]
        for o in others:
            network.cut(cut_off, o)
        time.sleep(4)
        network.heal_all()
        after = wait_for(lambda: in_sync(admin), "in sync again after the links healed", timeout_s=60)
        kept = {p: l for p, l in before.items() if l != cut_off}
        assert {p: after[p] for p in kept} == kept, f"leaders before {before}, after {after}; {cut_off} was cut off"

        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
        for p in range(3):
            producer.produce(topic_name, value=f"after-{p}".encode(), partition=p)
        assert producer.flush(30) == 0
    finally:
        for n in nodes:
            n.kill()
        network.teardown()
