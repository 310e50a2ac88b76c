"""Compacted topics (`cleanup.policy=compact`), as Kafka's LogValidator guards them: a record
without a key is refused with INVALID_RECORD, since compaction keeps the latest record per key
and a keyless one has none. Runs on Kafka too.
"""
import pytest
from confluent_kafka import KafkaError, Producer


@pytest.mark.parametrize("policy", ["compact", "compact,delete"])
def test_a_compacted_topic_refuses_a_record_without_a_key(broker, new_topic, policy):
    topic = new_topic(broker, partitions=1, configs={"cleanup.policy": policy})
    results = []
    # INVALID_RECORD is not retriable, so retries (for a partition still loading on Kafka) leave
    # the refusal to show.
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for key in (b"k1", None, b"k2"):
        # One batch each, so that the keyless record fails alone.
        p.produce(topic, value=b"v", key=key, partition=0,
                  on_delivery=lambda err, msg, key=key: results.append((key, err, msg.offset())))
        p.flush(20)
    assert [k for k, _, _ in results] == [b"k1", None, b"k2"], results
    (_, ok1, off1), (_, refused, _), (_, ok2, off2) = results
    assert ok1 is None and ok2 is None, results
    assert (off1, off2) == (0, 1), "the refused record took no offset"
    assert refused is not None and refused.code() == KafkaError.INVALID_RECORD, refused


def test_a_keyless_record_is_fine_where_the_topic_is_not_compacted(broker, new_topic):
    topic = new_topic(broker, partitions=1, configs={"cleanup.policy": "delete"})
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    p.produce(topic, value=b"v", partition=0, on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    assert errors == [None]


# ---------------------------------------------------------------------------------------------
# The log cleaner. Segments roll by time (segment.ms, counted from record timestamps, so the
# producer waits between rounds), the cleaner looks every 100 ms and any dirty segment is worth
# cleaning (min.cleanable.dirty.ratio=0.01). What a consumer reads back from the start is
# checked, never how the broker got there, so the same test holds Fjord and Kafka to Kafka's
# semantics.

import time
import uuid

from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

CLEANER = {"log.cleaner.backoff.ms": 100, "auto.create.topics.enable": "false"}
ROLL_MS = 100


def compacted(broker, new_topic, **extra):
    configs = {"cleanup.policy": "compact", "segment.ms": str(ROLL_MS), "min.cleanable.dirty.ratio": "0.01",
               "min.compaction.lag.ms": "0"}
    configs.update({k.replace("_", "."): str(v) for k, v in extra.items()})
    return new_topic(broker, partitions=1, configs=configs)


def produce_round(p, topic, records):
    """One round of (key, value) records; waits past segment.ms so the next round rolls the
    segment this one went to."""
    for k, v in records:
        p.produce(topic, key=k, value=v, partition=0)
    assert p.flush(20) == 0
    time.sleep(ROLL_MS * 1.5 / 1000)


def read_all(broker, topic, isolation="read_uncommitted"):
    """Every record from the start of partition 0 up to its end: (offset, key, value)."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": True, "isolation.level": isolation})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            m = c.poll(1)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(m.error())
            out.append((m.offset(), m.key(), m.value()))
        raise AssertionError(f"no end of partition within 30 s; read {len(out)}")
    finally:
        c.close()


def wait_for(what, check, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s} s; last read: {last}")


def latest_per_key(records):
    m = {}
    for _, k, v in records:
        m[k] = v
    return m


@pytest.fixture(scope="module")
def cleaner_broker(start_broker):
    return start_broker("cleaner", **CLEANER)


def test_the_cleaner_keeps_the_latest_record_per_key_and_drops_tombstones_after_their_horizon(cleaner_broker, new_topic):
    b = cleaner_broker
    topic = compacted(b, new_topic, delete_retention_ms=3000)
    keys = [f"k{i:02}".encode() for i in range(20)]
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    rounds = 6
    expected = {}
    for r in range(rounds):
        recs = []
        for k in keys:
            # The last round deletes the first five keys.
            v = None if (r == rounds - 1 and k in keys[:5]) else f"{k.decode()}-{r}".encode()
            recs.append((k, v))
            expected[k] = v
        produce_round(p, topic, recs)
    # A record in a later segment makes the last round's segment cleanable.
    produce_round(p, topic, [(b"roll", b"1")])
    expected[b"roll"] = b"1"
    produced = rounds * len(keys) + 1

    def compacted_once():
        got = read_all(b, topic)
        per_key = [k for _, k, _ in got if k != b"roll"]
        return len(per_key) == len(keys), got

    got = wait_for("one record per key after cleaning", compacted_once)
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), offsets
    assert offsets[-1] == produced - 1, "the log end is where it was"
    assert len(got) < produced, "consumers see gaps where records were removed"
    assert latest_per_key(got) == expected, got
    tombstones = [k for _, k, v in got if v is None]
    assert sorted(tombstones) == keys[:5], "tombstones are kept until delete.retention.ms has passed"

    # Past the horizon, the next cleaning (brought on by new dirty data) removes them.
    time.sleep(3.5)
    produce_round(p, topic, [(b"later", b"1")])
    produce_round(p, topic, [(b"roll", b"2")])
    expected.update({b"later": b"1", b"roll": b"2"})
    for k in keys[:5]:
        del expected[k]

    def tombstones_gone():
        got = read_all(b, topic)
        return all(v is not None for _, _, v in got) and latest_per_key(got) == expected, got

    got = wait_for("tombstones removed after delete.retention.ms", tombstones_gone)
    assert latest_per_key(got) == expected


def test_the_cleaner_removes_aborted_transactions(cleaner_broker, new_topic):
    b = cleaner_broker
    topic = compacted(b, new_topic, delete_retention_ms=60000)
    p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex[:8]}", "linger.ms": 0})
    p.init_transactions(30)
    for value, commit in ((b"committed", True), (b"aborted", False), (b"committed-2", True)):
        p.begin_transaction()
        for i in range(5):
            p.produce(topic, key=f"t{i}".encode(), value=value, partition=0)
        p.produce(topic, key=b"only-" + value, value=value, partition=0)
        p.flush(20)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
        time.sleep(ROLL_MS * 1.5 / 1000)
    plain = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
    produce_round(plain, topic, [(b"roll", b"1")])

    def aborted_gone():
        got = read_all(b, topic)
        t0 = [v for _, k, v in got if k == b"t0"]
        return not any(v == b"aborted" for _, _, v in got) and t0 == [b"committed-2"], got

    got = wait_for("aborted records removed by the cleaner", aborted_gone)
    m = latest_per_key(got)
    assert {k: m[k] for k in (b"t0", b"t4", b"only-committed", b"only-committed-2")} == {
        b"t0": b"committed-2", b"t4": b"committed-2", b"only-committed": b"committed",
        b"only-committed-2": b"committed-2"}, got
    assert b"only-aborted" not in m
    committed = read_all(b, topic, "read_committed")
    assert latest_per_key(committed) == m


def test_a_replica_that_copied_a_cleaned_log_takes_over_with_the_same_records(start_cluster, topic_name):
    """Three nodes, a compacted partition on all three. One replica is down while the leader
    cleans; it comes back and copies the cleaned log, gaps and all, from the leader; when the
    leader dies, that replica (next in the assignment) leads, and a consumer reads from it the
    latest record of every key at the offsets the leader had."""
    from types import SimpleNamespace

    from confluent_kafka.admin import AdminClient, NewTopic

    nodes = start_cluster("compact-replicas", 3, **CLEANER, **{
        "broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 300, "replica.lag.time.max.ms": 2000})
    by_id = {n.node_id: n for n in nodes}
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    configs = {"cleanup.policy": "compact", "segment.ms": str(ROLL_MS), "min.cleanable.dirty.ratio": "0.01",
               "min.compaction.lag.ms": "0", "delete.retention.ms": "60000"}
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replica_assignment=[[1, 3, 2]], config=configs)],
                        operation_timeout=20, request_timeout=20)[topic_name].result(timeout=30)

    def partition():
        t = admin.list_topics(topic_name, timeout=5).topics.get(topic_name)
        return t.partitions.get(0) if t is not None and t.error is None else None

    wait_for("three in-sync replicas", lambda: ((p := partition()) is not None and len(p.isrs) == 3, p))
    by_id[3].kill()
    wait_for("the stopped replica out of the ISR", lambda: ((p := partition()) is not None and 3 not in p.isrs, p))

    keys = [f"k{i:02}".encode() for i in range(10)]
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    expected = {}
    for r in range(5):
        recs = [(k, f"{k.decode()}-{r}".encode()) for k in keys]
        expected.update(recs)
        produce_round(p, topic_name, recs)
    produce_round(p, topic_name, [(b"roll", b"1")])
    expected[b"roll"] = b"1"
    produced = 5 * len(keys) + 1
    leader_view = SimpleNamespace(bootstrap=by_id[1].bootstrap)

    def compacted_on_the_leader():
        got = read_all(leader_view, topic_name)
        return len([k for _, k, _ in got if k != b"roll"]) == len(keys), got

    cleaned = wait_for("one record per key on the leader", compacted_on_the_leader)
    assert len(cleaned) < produced

    by_id[3].start()
    wait_for("the returning replica in sync again", lambda: ((p := partition()) is not None and len(p.isrs) == 3, p))
    by_id[1].kill()
    moved = wait_for("a new leader", lambda: ((p := partition()) is not None and p.leader not in (-1, 1), p))
    assert moved.leader == 3, f"the first in-sync replica of the assignment leads: {moved}"
    got = read_all(SimpleNamespace(bootstrap=by_id[3].bootstrap), topic_name)
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(offsets) and offsets[-1] == produced - 1, offsets
    assert latest_per_key(got) == expected, got
    # What the old leader kept, the copy has (it may have cleaned more on its own since).
    assert set(offsets) <= {o for o, _, _ in cleaned}, (offsets, cleaned)
