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
