"""Topic administration through three admin clients, and auto-creation through Metadata.

CreateTopics (partitions, configs, validate_only, TOPIC_ALREADY_EXISTS and other refusals),
CreatePartitions, DeleteTopics, DescribeConfigs, IncrementalAlterConfigs, Metadata and
DescribeTopicPartitions, each through confluent-kafka, kafka-python and the Java AdminClient;
auto-creation (auto.create.topics.enable, num.partitions, allow_auto_topic_creation) through kcat
and the Java producer.
"""

import pytest

from adminlib import (ADMINS, INVALID_CONFIG, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR,
                      INVALID_TOPIC_EXCEPTION, TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION,
                      KafkaCallError, make_admin)
from clientlib import Rec, assert_ok, consume, kcat, produce
from conftest import wait_for

NODE = 1


def partition_count(admin, name):
    try:
        return len(admin.describe_topic(name).leaders)
    except KafkaCallError:
        return -1


@pytest.mark.parametrize("client", ADMINS)
def test_topic_lifecycle(broker, topic_name, client):
    """create -> describe -> already exists -> grow -> produce/consume -> delete -> re-create."""
    admin = make_admin(client, broker.bootstrap)
    admin.create_topic(topic_name, 3, configs={"retention.ms": 3600000, "compression.type": "zstd"})
    wait_for(lambda: partition_count(admin, topic_name) == 3, "3 partitions in Metadata")
    info = admin.describe_topic(topic_name)
    assert info.name == topic_name
    assert info.leaders == {0: NODE, 1: NODE, 2: NODE}
    assert topic_name in admin.list_topics()

    configs = admin.describe_configs(topic_name)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == "DYNAMIC_TOPIC_CONFIG"
    assert not configs["retention.ms"].is_default
    assert configs["compression.type"].value == "zstd"
    assert configs["cleanup.policy"].value == "delete", "a config nobody set still has its default"

    with pytest.raises(KafkaCallError) as e:
        admin.create_topic(topic_name, 3)
    assert e.value.code == TOPIC_ALREADY_EXISTS, e.value

    # The topic-level compression.type=zstd may make the broker recompress: content must survive.
    records = [Rec(b"k%d" % i, b"v%d" % i, (("h", b"x"),), i % 3) for i in range(9)]
    assert_ok(produce("confluent", broker.bootstrap, topic_name, records, codec="none"))

    admin.create_partitions(topic_name, 5)
    wait_for(lambda: partition_count(admin, topic_name) == 5, "5 partitions after CreatePartitions")
    with pytest.raises(KafkaCallError) as e:
        admin.create_partitions(topic_name, 2)
    assert e.value.code == INVALID_PARTITIONS, e.value
    new = [Rec(b"new", b"in partition 4", (), 4)]
    assert_ok(produce("java", broker.bootstrap, topic_name, new))
    got = consume("confluent", broker.bootstrap, topic_name, 10)
    assert sorted((r.partition, r.offset, r.content()) for r in got) == sorted(
        [(i % 3, i // 3, records[i].content()) for i in range(9)] + [(4, 0, new[0].content())])

    old_id = info.topic_id
    admin.delete_topic(topic_name)
    wait_for(lambda: topic_name not in admin.list_topics(), "the topic gone from the topic list")
    with pytest.raises(KafkaCallError) as e:
        admin.delete_topic(topic_name)
    assert e.value.code == UNKNOWN_TOPIC_OR_PARTITION, e.value

    # Same name again: a new topic (new id), empty, with default configs.
    admin.create_topic(topic_name, 1)
    wait_for(lambda: partition_count(admin, topic_name) == 1, "the re-created topic")
    assert admin.describe_topic(topic_name).topic_id != old_id
    assert admin.describe_configs(topic_name)["retention.ms"].source != "DYNAMIC_TOPIC_CONFIG"
    assert consume("kafka-python", broker.bootstrap, topic_name, 1, timeout_s=2) == []


@pytest.mark.parametrize("client", ADMINS)
def test_validate_only(broker, topic_name, client):
    """validate_only checks the request and creates nothing; it still sees existing topics."""
    admin = make_admin(client, broker.bootstrap)
    admin.create_topic(topic_name, 2, configs={"retention.ms": 1000}, validate_only=True)
    assert topic_name not in admin.list_topics()
    with pytest.raises(KafkaCallError) as e:
        admin.describe_topic(topic_name)
    assert e.value.code == UNKNOWN_TOPIC_OR_PARTITION, e.value

    admin.create_topic(topic_name, 2)
    wait_for(lambda: partition_count(admin, topic_name) == 2, "the topic")
    with pytest.raises(KafkaCallError) as e:
        admin.create_topic(topic_name, 2, validate_only=True)
    assert e.value.code == TOPIC_ALREADY_EXISTS, e.value
    with pytest.raises(KafkaCallError) as e:
        admin.create_topic(f"{topic_name}-x", 1, configs={"retention.ms": "not-a-number"}, validate_only=True)
    assert e.value.code == INVALID_CONFIG, e.value


@pytest.mark.parametrize("client", ADMINS)
def test_incremental_alter_configs(broker, new_topic, client):
    """SET shows up in DescribeConfigs as a topic override; DELETE brings back the default."""
    topic = new_topic(broker, partitions=1)
    admin = make_admin(client, broker.bootstrap)
    default = admin.describe_configs(topic)["retention.ms"]
    assert default.source != "DYNAMIC_TOPIC_CONFIG"

    admin.alter_configs(topic, set_={"retention.ms": 7200000, "max.message.bytes": 500000})
    wait_for(lambda: admin.describe_configs(topic)["retention.ms"].value == "7200000", "retention.ms=7200000")
    c = admin.describe_configs(topic)
    assert c["retention.ms"].source == "DYNAMIC_TOPIC_CONFIG"
    assert c["max.message.bytes"].value == "500000"

    admin.alter_configs(topic, delete=["retention.ms"])
    wait_for(lambda: admin.describe_configs(topic)["retention.ms"].source != "DYNAMIC_TOPIC_CONFIG", "retention.ms reset")
    c = admin.describe_configs(topic)
    assert c["retention.ms"] == default
    assert c["max.message.bytes"].value == "500000", "DELETE of one key leaves the others"


def test_create_topics_refusals(broker, topic_name):
    """The broker refuses bad CreateTopics requests with Kafka's error codes (Java AdminClient)."""
    admin = make_admin("java", broker.bootstrap)
    cases = [
        (dict(name=topic_name, partitions=0), INVALID_PARTITIONS),
        (dict(name=topic_name, partitions=1, configs={"retention.ms": "abc"}), INVALID_CONFIG),
        (dict(name=topic_name, partitions=1, configs={"no.such.config": "1"}), INVALID_CONFIG),
        (dict(name=topic_name + "/bad", partitions=1), INVALID_TOPIC_EXCEPTION),
    ]
    for kwargs, code in cases:
        with pytest.raises(KafkaCallError) as e:
            admin.create_topic(**kwargs)
        assert e.value.code == code, (kwargs, e.value)
    with pytest.raises(KafkaCallError) as e:
        java_rf3 = make_admin("java", broker.bootstrap)
        java_rf3._run("admin-create-topic", "--topic", topic_name, "--partitions", 1, "--replication-factor", 3)
    assert e.value.code == INVALID_REPLICATION_FACTOR, e.value
    assert topic_name not in admin.list_topics(), "no refused request may leave a topic behind"


def test_describe_topic_ids_agree(broker, new_topic):
    """The topic id from Metadata (kafka-python), DescribeTopicPartitions (Java, KIP-966) and
    confluent-kafka's describe_topics is one id."""
    topic = new_topic(broker, partitions=2)
    ids = {c: make_admin(c, broker.bootstrap).describe_topic(topic).topic_id for c in ADMINS}
    java_id = ids["java"]
    assert java_id and java_id != "AAAAAAAAAAAAAAAAAAAAAA", ids
    # kafka-python prints the UUID with dashes, Java/confluent in Kafka's base64: compare bytes.
    import base64
    import uuid

    def raw(s):
        return uuid.UUID(s).bytes if len(s) == 36 else base64.urlsafe_b64decode(s + "==")

    assert len({raw(v) for v in ids.values()}) == 1, ids


# ------------------------------------------------------------------------------ auto-creation

@pytest.fixture(scope="module")
def auto_broker(start_broker):
    return start_broker("auto-create", **{"auto.create.topics.enable": "true", "num.partitions": 3})


def kcat_partitions(bootstrap, topic, *extra):
    """Partition count kcat -L reports for `topic`, or None when the broker says it is unknown."""
    out = kcat("-L", "-b", bootstrap, "-t", topic, "-J", *extra).stdout
    import json

    md = json.loads(out)
    (t,) = [t for t in md["topics"] if t["topic"] == topic]
    return None if t.get("error") else len(t["partitions"])


def test_auto_create_via_metadata(auto_broker, topic_name):
    """A Metadata request with allow_auto_topic_creation creates the topic with num.partitions;
    one without it does not."""
    b = auto_broker
    # librdkafka's default is true for producers, and kcat -L runs a producer: say false.
    no = ("-X", "allow.auto.create.topics=false")
    assert kcat_partitions(b.bootstrap, topic_name + "-no", *no) is None
    assert kcat_partitions(b.bootstrap, topic_name + "-no", *no) is None, "allow_auto_topic_creation=false must not create"
    assert topic_name + "-no" not in make_admin("java", b.bootstrap).list_topics()

    wait_for(lambda: kcat_partitions(b.bootstrap, topic_name, "-X", "allow.auto.create.topics=true") == 3,
             "kcat's Metadata request to auto-create the topic with num.partitions=3")
    assert make_admin("java", b.bootstrap).describe_topic(topic_name).leaders == {0: NODE, 1: NODE, 2: NODE}


@pytest.mark.parametrize("client", ["kcat", "java"])
def test_auto_create_by_producing(auto_broker, topic_name, client):
    """Producing to a missing topic creates it (the producer's Metadata asks for it)."""
    records = [Rec(b"k", b"first record of an auto-created topic", (("h", b"v"),), 0)]
    assert_ok(produce(client, auto_broker.bootstrap, topic_name, records))
    got = consume("confluent", auto_broker.bootstrap, topic_name, 1, partition=0)
    assert [(r.offset, r.content()) for r in got] == [(0, records[0].content())]
    assert make_admin("confluent", auto_broker.bootstrap).describe_topic(topic_name).leaders.keys() == {0, 1, 2}


def test_no_auto_create_when_disabled(broker, topic_name):
    """auto.create.topics.enable=false: even allow_auto_topic_creation=true creates nothing."""
    assert kcat_partitions(broker.bootstrap, topic_name, "-X", "allow.auto.create.topics=true") is None
    assert topic_name not in make_admin("java", broker.bootstrap).list_topics()
