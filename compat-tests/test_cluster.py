"""ApiVersions on the wire, DescribeCluster, DescribeLogDirs and broker configs.

The version table below is what Apache Kafka 4.4.0 advertises (read off a running 4.4.0 broker
with wire.api_versions; 4.1.1's differed only in lower tops for ListOffsets, ApiVersions and
DescribeLogDirs). Fjord may offer less, never more, for the APIs it implements.
"""

import os
from pathlib import Path

import pytest

from adminlib import UNSUPPORTED_VERSION
from clientlib import Rec, assert_ok, java, produce
from wire import Conn, api_versions, find_coordinator, pick_version

COORDINATOR_NOT_AVAILABLE = 15

#: api key -> (name, Kafka 4.4 min, Kafka 4.4 max).
KAFKA_44 = {
    0: ("Produce", 0, 13),
    1: ("Fetch", 4, 18),
    2: ("ListOffsets", 1, 11),
    3: ("Metadata", 0, 13),
    18: ("ApiVersions", 0, 5),
    19: ("CreateTopics", 2, 7),
    20: ("DeleteTopics", 1, 6),
    21: ("DeleteRecords", 0, 2),
    32: ("DescribeConfigs", 1, 4),
    33: ("AlterConfigs", 0, 2),
    35: ("DescribeLogDirs", 1, 5),
    37: ("CreatePartitions", 0, 3),
    44: ("IncrementalAlterConfigs", 0, 1),
    60: ("DescribeCluster", 0, 2),
    75: ("DescribeTopicPartitions", 0, 0),
}


def test_api_versions_cover_the_supported_apis(broker):
    with Conn(broker.bootstrap) as c:
        av = api_versions(c, 3)
    assert av.error_code == 0
    problems = []
    for key, (name, lo, hi) in KAFKA_44.items():
        if key not in av.ranges:
            problems.append(f"{name} ({key}) not advertised")
            continue
        flo, fhi = av.ranges[key]
        if not (flo <= fhi and lo <= flo and fhi <= hi):
            problems.append(f"{name} ({key}) advertised {flo}-{fhi}, Kafka 4.4 has {lo}-{hi}")
    assert not problems, "\n".join(problems)


def test_api_versions_what_librdkafka_probes(broker):
    """librdkafka does not ask the broker which codecs it takes: it infers "features" from the
    ApiVersions table, and silently sends uncompressed batches when a probe fails. Seen in its
    debug=feature log against this broker:
      - kcat 1.7.1 / librdkafka 2.0.2 compresses gzip, snappy and lz4 only if Produce v0 is in
        the table. Kafka 4.x accepts only Produce v3+ yet advertises v0 for exactly this reason
        (KAFKA-18659, librdkafka #4956).
      - librdkafka 2.0.2 and 2.16 enable lz4 only if FindCoordinator is advertised ("Feature
        LZ4: FindCoordinator (0..32767) NOT supported by broker"), groups or not.
    test_round_trip_matrix shows the effect on the stored batches."""
    with Conn(broker.bootstrap) as c:
        av = api_versions(c, 3)
    problems = []
    produce = av.ranges.get(0)
    if produce is None or produce[0] != 0:
        problems.append(f"Produce advertised as {produce}: must start at v0, or librdkafka < 2.8 "
                        "(kcat) sends gzip/snappy/lz4 uncompressed (KAFKA-18659)")
    fc = av.ranges.get(10)
    if fc is None or fc[0] != 0:
        problems.append(f"FindCoordinator advertised as {fc}: librdkafka needs it (v0) to enable lz4; "
                        "answering COORDINATOR_NOT_AVAILABLE is enough without groups")
    assert not problems, "\n".join(problems)


def test_find_coordinator_is_answered(broker):
    """If FindCoordinator is advertised (see above), a request gets an answer: the coordinator,
    or COORDINATOR_NOT_AVAILABLE while there are no groups; never a closed connection.
    librdkafka consumers send it in the background even for assign() (FINDINGS.md)."""
    with Conn(broker.bootstrap) as c:
        ranges = api_versions(c, 3).ranges
        if 10 not in ranges:
            pytest.skip("FindCoordinator not advertised (test_api_versions_what_librdkafka_probes fails for it)")
        v = pick_version(ranges, 10, range(0, 4))
        error, node = find_coordinator(c, v, "fjord-compat-group")
        assert api_versions(c, 3).error_code == 0, "the connection is still usable"
    assert error == COORDINATOR_NOT_AVAILABLE or (error, node) == (0, broker.node_id), (error, node)


def test_api_versions_old_and_unknown_versions(broker):
    """v0 (no body) answers with the same table; a version the broker does not know gets
    UNSUPPORTED_VERSION in the v0 layout, still listing ApiVersions' own range, so that a
    newer client can retry lower (KIP-511)."""
    with Conn(broker.bootstrap) as c:
        v3 = api_versions(c, 3)
        v0 = api_versions(c, 0)
        assert v0.error_code == 0
        assert v0.ranges == v3.ranges
        future = api_versions(c, 127)
        assert future.error_code == UNSUPPORTED_VERSION
        assert future.ranges.get(18, (None, None))[0] == 0, future.ranges
        # The connection stays usable after the refusal.
        assert api_versions(c, 3).error_code == 0


def test_describe_metadata_quorum(broker):
    """Admin.describeMetadataQuorum (DescribeQuorum) on a single node: it leads a quorum of
    itself, caught up."""
    (q,) = java("admin-describe-quorum", "--bootstrap", broker.bootstrap)
    assert q["leader_id"] == broker.node_id, q
    assert q["high_watermark"] > 0, q
    assert [v["id"] for v in q["voters"]] == [broker.node_id], q
    assert q["voters"][0]["log_end_offset"] >= q["high_watermark"], q
    assert q["observers"] == 0, q


def test_describe_cluster(broker):
    """Java AdminClient.describeCluster (DescribeCluster API): this one node, its id and the
    advertised address, a cluster id, and itself as the controller clients see."""
    (d,) = java("admin-describe-cluster", "--bootstrap", broker.bootstrap)
    node = {"id": broker.node_id, "host": "127.0.0.1", "port": broker.port, "rack": None}
    assert d["nodes"] == [node]
    assert d["controller"] == node
    assert d["cluster_id"], d

    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # must outlive its futures
    c = admin.describe_cluster(request_timeout=20).result(30)
    assert c.cluster_id == d["cluster_id"]
    assert [(n.id, n.host, n.port) for n in c.nodes] == [(broker.node_id, "127.0.0.1", broker.port)]

    from kafka.admin import KafkaAdminClient

    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        kd = k.describe_cluster()
    finally:
        k.close()
    assert kd["cluster_id"] == d["cluster_id"]
    assert [(b["broker_id"], b["host"], b["port"]) for b in kd["brokers"]] == [(broker.node_id, "127.0.0.1", broker.port)]


def test_describe_log_dirs(broker, new_topic):
    """Java AdminClient.describeLogDirs: the configured log dir, holding every partition of the
    topic, with a size that grows when records arrive."""
    topic = new_topic(broker, partitions=3)
    records = [Rec(b"k", b"x" * 1000, (), 1) for _ in range(20)]
    assert_ok(produce("confluent", broker.bootstrap, topic, records))
    (d,) = java("admin-describe-log-dirs", "--bootstrap", broker.bootstrap, "--broker", broker.node_id)
    dirs = d["dirs"]
    assert len(dirs) == 1, dirs
    ((path, desc),) = dirs.items()
    assert Path(os.path.realpath(path)) == Path(os.path.realpath(broker.data_dir)), \
        f"DescribeLogDirs names {path}; the broker was started with log.dirs={broker.data_dir}"
    assert desc["error"] is None
    mine = {k: v for k, v in desc["partitions"].items() if k.rsplit("-", 1)[0] == topic}
    assert sorted(mine) == [f"{topic}-{p}" for p in range(3)]
    assert mine[f"{topic}-1"]["size"] >= 20 * 1000, "partition 1 holds 20 KB of values"
    assert mine[f"{topic}-0"]["size"] < mine[f"{topic}-1"]["size"]
    assert all(v["offset_lag"] == 0 and not v["future"] for v in mine.values())


def test_describe_broker_configs(broker):
    """DescribeConfigs on the broker resource reports the settings the broker was started with."""
    (d,) = java("admin-describe-configs", "--bootstrap", broker.bootstrap, "--broker", broker.node_id)
    c = d["configs"]
    assert c["auto.create.topics.enable"]["value"] == "false"
    assert c["num.partitions"]["value"] == "1"
    assert c["node.id"]["value"] == str(broker.node_id)
    assert c["advertised.listeners"]["value"] == f"PLAINTEXT://127.0.0.1:{broker.port}"
    # Defaults that differ by design (README): Fjord's send buffer is 256 KiB and its receive
    # buffer is left to the kernel; Kafka's are 100 KiB each.
    buffers = ("102400", "102400") if broker.is_reference else ("262144", "-1")
    assert (c["socket.send.buffer.bytes"]["value"], c["socket.receive.buffer.bytes"]["value"]) == buffers


def test_deleting_a_broker_config_that_is_not_set_changes_nothing(broker):
    """IncrementalAlterConfigs DELETE on the broker resource, as `kafka-reassign-partitions.sh
    --verify` sends it to clear replication throttles: no dynamic config is set, so it succeeds
    and the configs described are the same."""
    def described():
        (d,) = java("admin-describe-configs", "--bootstrap", broker.bootstrap, "--broker", broker.node_id)
        return {k: v["value"] for k, v in d["configs"].items()}

    before = described()
    assert java("admin-alter-configs", "--bootstrap", broker.bootstrap, "--broker", broker.node_id,
                "--delete", "leader.replication.throttled.rate",
                "--delete", "follower.replication.throttled.rate") == [{"ok": True}]
    assert described() == before
