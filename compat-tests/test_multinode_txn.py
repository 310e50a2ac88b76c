"""Transactions in a three-node cluster.

A transaction's coordinator is the leader of its transactional id's partition of
`__transaction_state`; the partitions it writes to are led by every broker, so ending it sends
markers to the other brokers (WriteTxnMarkers), and its offsets go to a group coordinator that may be a third
broker. The transaction state is replicated: when the coordinator is killed, the next leader of
its partition takes the open transaction over and the producer commits it there.
"""

import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_for

PARTITIONS = 3
# The reference wrapper gives Kafka's internal topics one replica unless told otherwise.
REPLICATED_STATE = {
    "broker.session.timeout.ms": 2000,
    "broker.heartbeat.interval.ms": 300,
    "offsets.topic.replication.factor": 3,
    "transaction.state.log.replication.factor": 3,
    "transaction.state.log.min.isr": 2,
}


def java_hash_partition(key: str, partitions: int) -> int:
    """Kafka's `Utils.abs(key.hashCode()) % partitions` (String.hashCode over UTF-16 units)."""
    data = key.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (h * 31 + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    return 0 if h == -(1 << 31) else abs(h) % partitions


def leaders(admin, topic):
    t = admin.list_topics(topic, timeout=5).topics.get(topic)
    if t is None or t.error is not None:
        return None
    out = {p: pm.leader for p, pm in t.partitions.items()}
    return out if out and all(l >= 0 for l in out.values()) else None


def create_topic(admin, name):
    admin.create_topics([NewTopic(name, PARTITIONS, 3, config={"min.insync.replicas": "2"})],
                        operation_timeout=20, request_timeout=20)[name].result(timeout=30)
    return wait_for(lambda: leaders(admin, name), f"{name} led")


def read_committed(bootstrap, topic, count):
    """Every record of `topic` a read_committed consumer sees, once `count` have arrived and
    a further second brings nothing more."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"rc-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = []
    try:
        def enough():
            got.extend(m.value().decode() for m in consumer.consume(100, timeout=0.5) if m.error() is None)
            return len(got) >= count

        wait_for(enough, f"{count} committed records", timeout_s=60, interval_s=0)
        got.extend(m.value().decode() for m in consumer.consume(100, timeout=1.0) if m.error() is None)
    finally:
        consumer.close()
    return got


def test_a_transaction_spans_partitions_led_by_every_broker(start_cluster, topic_name):
    """Consume-transform-produce across the cluster: a transaction writes to partitions led by
    all three brokers and commits its input offsets; the next aborts. A read_committed consumer
    sees the first transaction's records only, and the group's offsets are those the committed
    transaction carried."""
    nodes = start_cluster("txn-span", 3, **REPLICATED_STATE)
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    create_topic(admin, source)
    led = create_topic(admin, sink)
    assert set(led.values()) == {1, 2, 3}, f"the sink's partitions are spread over the brokers: {led}"
    feeder = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(30):
        feeder.produce(source, value=f"in-{i}".encode(), partition=i % PARTITIONS)
    assert feeder.flush(30) == 0

    group = f"txn-span-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"span-{uuid.uuid4().hex[:8]}",
                         "transaction.timeout.ms": 60000})
    try:
        producer.init_transactions(30)
        consumer.subscribe([source])
        read = []

        def read_all():
            read.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
            return len(read) >= 30

        wait_for(read_all, "the 30 input records", timeout_s=60, interval_s=0)
        producer.begin_transaction()
        for m in read:
            producer.produce(sink, value=m.value().replace(b"in-", b"out-"), partition=m.partition())
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)

        producer.begin_transaction()
        for p in range(PARTITIONS):
            producer.produce(sink, value=f"aborted-{p}".encode(), partition=p)
        producer.send_offsets_to_transaction([TopicPartition(source, p, 0) for p in range(PARTITIONS)],
                                             consumer.consumer_group_metadata(), 30)
        producer.abort_transaction(30)
    finally:
        consumer.close()

    got = read_committed(bootstrap, sink, 30)
    assert sorted(got) == sorted(f"out-{i}" for i in range(30)), "the committed records, once each, none aborted"
    check = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = check.committed([TopicPartition(source, p) for p in range(PARTITIONS)], timeout=20)
    finally:
        check.close()
    assert {tp.partition: tp.offset for tp in committed} == {p: 10 for p in range(PARTITIONS)}


def test_an_open_transaction_survives_the_death_of_its_coordinator(start_cluster, topic_name):
    """A transaction is open when its coordinator is killed with -9. The producer finds the new
    coordinator, which loaded the transaction from the replicated state, and commits it there;
    the next transaction works too, and an aborted one stays invisible."""
    nodes = start_cluster("txn-coord", 3, **REPLICATED_STATE)
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(admin, topic_name)
    tid = f"coord-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "transaction.timeout.ms": 60000,
                         "enable.idempotence": True})
    producer.init_transactions(60)

    def batch(name):
        for p in range(PARTITIONS):
            for i in range(5):
                producer.produce(topic_name, value=f"{name}-{p}-{i}".encode(), partition=p)

    producer.begin_transaction()
    batch("first")
    producer.commit_transaction(30)

    producer.begin_transaction()
    batch("second")
    assert producer.flush(30) == 0
    state_partition = java_hash_partition(tid, 50)
    coordinator = wait_for(lambda: (l := leaders(admin, "__transaction_state")) and l.get(state_partition),
                           "the transaction state partition's leader")
    victim = next(n for n in nodes if n.node_id == coordinator)
    victim.kill()

    def commit():
        try:
            producer.commit_transaction(10)
            return True
        except KafkaException as e:
            err = e.args[0]
            assert err.retriable() and not err.txn_requires_abort(), f"commit failed for good: {err}"
            return False

    wait_for(commit, "the open transaction committed through the new coordinator", timeout_s=90, interval_s=0)

    producer.begin_transaction()
    batch("third")
    producer.commit_transaction(30)
    producer.begin_transaction()
    batch("aborted")
    producer.abort_transaction(30)

    survivors = ",".join(n.bootstrap for n in nodes if n is not victim)
    got = read_committed(survivors, topic_name, 45)
    want = [f"{name}-{p}-{i}" for name in ("first", "second", "third") for p in range(PARTITIONS) for i in range(5)]
    assert sorted(got) == sorted(want), "every committed record once, no aborted one"


def test_transactional_offsets_reach_a_group_coordinated_elsewhere(start_cluster, topic_name):
    """The group's coordinator and the transaction's coordinator are different brokers: the
    offsets a committed transaction carries become the group's, and the group resumes there."""
    nodes = start_cluster("txn-group", 3, **REPLICATED_STATE)
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(admin, topic_name)
    feeder = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(30):
        feeder.produce(topic_name, value=f"r{i}".encode(), partition=i % PARTITIONS)
    assert feeder.flush(30) == 0

    tid = f"group-{uuid.uuid4().hex[:8]}"
    # A group whose __consumer_offsets partition another broker leads than the transactional
    # id's __transaction_state partition (both topics exist once a coordinator was asked for).
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "transaction.timeout.ms": 60000})
    producer.init_transactions(60)
    state_leaders = wait_for(lambda: leaders(admin, "__transaction_state"), "__transaction_state led")
    txn_node = state_leaders[java_hash_partition(tid, 50)]
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "enable.auto.commit": False})
    try:
        # Makes __consumer_offsets. Kafka 4.1 may answer NOT_COORDINATOR while it loads the new
        # topic's partitions, which librdkafka hands back rather than retries: ask again.
        wait_for(lambda: probe.committed([TopicPartition(topic_name, 0)], timeout=10) is not None,
                 "an OffsetFetch answered", timeout_s=60)
    finally:
        probe.close()
    offset_leaders = wait_for(lambda: leaders(admin, "__consumer_offsets"), "__consumer_offsets led")
    group = next(g for g in (f"g-{i}-{uuid.uuid4().hex[:6]}" for i in range(1000))
                 if offset_leaders[java_hash_partition(g, 50)] != txn_node)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "group.protocol": "consumer"})
    try:
        consumer.subscribe([topic_name])
        read = []

        def read_all():
            read.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
            return len(read) >= 30

        wait_for(read_all, "30 records", timeout_s=60, interval_s=0)
        producer.begin_transaction()
        producer.send_offsets_to_transaction([TopicPartition(topic_name, p, 7) for p in range(PARTITIONS)],
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        producer.begin_transaction()
        producer.send_offsets_to_transaction([TopicPartition(topic_name, p, 9) for p in range(PARTITIONS)],
                                             consumer.consumer_group_metadata(), 30)
        producer.abort_transaction(30)
        committed = consumer.committed([TopicPartition(topic_name, p) for p in range(PARTITIONS)], timeout=20)
    finally:
        consumer.close()
    assert {tp.partition: tp.offset for tp in committed} == {p: 7 for p in range(PARTITIONS)}
