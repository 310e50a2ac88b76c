"""Configuration as deployments hand it over: `KAFKA_*` environment variables meant for other
images and tools (Confluent's, the JVM's) are ignored with a WARN line naming them, bitnami's
`KAFKA_CFG_*` are read, keys Kafka deployments set that mean nothing to Fjord get an INFO line,
and an unknown key in an override (a typo) stops the broker with a message naming it. Fjord's
own start-up rules: Kafka logs unknown keys and starts, so these run against Fjord only.
"""
import subprocess

import pytest
from confluent_kafka.admin import AdminClient

from conftest import FJORD_BIN, Broker, wait_for


@pytest.fixture
def reference_skip():
    if FJORD_BIN.name == "kafka-as-fjord":
        pytest.skip("Fjord's start-up checks")


def test_variables_meant_for_others_are_ignored_and_bitnami_style_ones_read(reference_skip, topic_name):
    b = Broker("config-env", {"zookeeper.connect": "zk:2181"})
    b.env = {"KAFKA_JMX_PORT": "9101", "KAFKA_HEAP_OPTS": "-Xmx1G", "KAFKA_VERSION": "4.4.0",
             "KAFKA_CONFLUENT_SUPPORT_CUSTOMER_ID": "anonymous", "KAFKA_CFG_NUM_PARTITIONS": "3"}
    try:
        b.start()
        log = b.log_text()
        assert "variable=KAFKA_CONFLUENT_SUPPORT_CUSTOMER_ID key=confluent.support.customer.id" in log, log
        for quiet in ("KAFKA_JMX_PORT", "KAFKA_HEAP_OPTS", "KAFKA_VERSION"):
            assert f"variable={quiet}" not in log, f"{quiet} is not a property"
        assert "no effect in Fjord key=zookeeper.connect" in log, log
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.list_topics(topic_name, timeout=10)  # auto-created with num.partitions
        t = wait_for(lambda: (t := admin.list_topics(topic_name, timeout=5).topics.get(topic_name)) is not None
                     and t.error is None and t, "the auto-created topic")
        assert len(t.partitions) == 3, "KAFKA_CFG_NUM_PARTITIONS read as num.partitions"
    finally:
        b.cleanup(False)


@pytest.mark.parametrize("source", ["override", "file"])
def test_an_unknown_key_outside_the_environment_stops_the_broker(reference_skip, tmp_path, source):
    args = [str(FJORD_BIN), "--override", f"log.dirs={tmp_path / 'data'}", "--override", "metrics.listener=none"]
    if source == "file":
        props = tmp_path / "server.properties"
        props.write_text("num.partitons=3\n")
        args.insert(1, str(props))
    else:
        args += ["--override", "num.partitons=3"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=20,
                       env={"KAFKA_NUM_PARTITONS": "3", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "unknown configuration property 'num.partitons'" in p.stderr, p.stderr


def test_cluster_id_from_the_environment_is_the_clusters_and_another_one_is_refused(reference_skip):
    """The apache/kafka image's CLUSTER_ID: a new node takes it as its cluster id; started
    again on the same data with another one, it stops naming both; a malformed one stops it at
    once."""
    from clientlib import java

    first, second = "MkU3OEVBNTcwNTJENDM2Qg", "q1Sh-9_ISia_zwGINzRvyQ"
    b = Broker("config-cluster-id")
    b.env = {"CLUSTER_ID": first}
    try:
        b.start()
        (cluster,) = java("admin-describe-cluster", "--bootstrap", b.bootstrap)
        assert cluster["cluster_id"] == first
        assert b.stop() == 0
        b.env = {"CLUSTER_ID": second}
        b.spawn()
        assert b.proc.wait(20) == 1
        log = b.log_text()
        assert f"belongs to cluster {first} (meta.properties), but cluster.id (CLUSTER_ID) is {second}" in log, \
            b.log_tail()
        b.env = {"CLUSTER_ID": "not-a-cluster-id"}
        b.spawn()
        assert b.proc.wait(20) == 1
        assert "invalid value 'not-a-cluster-id' for configuration property 'cluster.id'" in b.log_text(), b.log_tail()
    finally:
        b.cleanup(False)


def test_an_internal_and_an_external_listener_each_advertise_their_own_address(topic_name):
    """The classic compose setup, "PLAINTEXT://kafka:29092,PLAINTEXT_HOST://localhost:9092"
    with its protocol map: a client of each listener is told that listener's advertised
    address and works through it. Runs on Kafka too."""
    from clientlib import assert_ok, consume, expected_layout, layout_mismatch, produce, sample_records
    from conftest import free_port

    b = Broker("config-listeners")
    external = free_port()
    b.overrides.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{b.port},PLAINTEXT_HOST://127.0.0.1:{external}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{b.port},PLAINTEXT_HOST://localhost:{external}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT,CONTROLLER:PLAINTEXT",
    })
    try:
        b.start()
        inside = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
        outside = AdminClient({"bootstrap.servers": f"localhost:{external}"}).list_topics(timeout=10)
        assert {(m.host, m.port) for m in inside.brokers.values()} == {("127.0.0.1", b.port)}
        assert {(m.host, m.port) for m in outside.brokers.values()} == {("localhost", external)}
        records = sample_records("confluent", partitions=1, per_partition=10)
        acks = produce("confluent", f"localhost:{external}", topic_name, records)
        assert_ok(acks)
        got = consume("confluent", b.bootstrap, topic_name, len(records))
        problem = layout_mismatch(got, expected_layout(records, acks))
        assert problem is None, problem
    finally:
        b.cleanup(False)


def test_a_listener_without_a_security_protocol_stops_the_broker(reference_skip, tmp_path):
    p = subprocess.run([str(FJORD_BIN), "--override", f"log.dirs={tmp_path / 'data'}", "--override", "metrics.listener=none",
                        "--override", "listeners=PLAINTEXT://127.0.0.1:0,PLAINTEXT_HOST://127.0.0.1:0"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "no security protocol defined for listener PLAINTEXT_HOST" in p.stderr, p.stderr


def test_without_listeners_the_advertised_ones_are_listened_on(reference_skip):
    """As the apache/kafka image derives them: only KAFKA_ADVERTISED_LISTENERS set (the
    common compose block), and the broker listens on every address at those ports."""
    from conftest import free_port

    b = Broker("config-derived")
    external = free_port()
    b.overrides.pop("listeners")
    b.overrides.pop("advertised.listeners")
    b.env = {"KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{b.port},PLAINTEXT_HOST://localhost:{external}",
             "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT"}
    try:
        b.start()
        outside = AdminClient({"bootstrap.servers": f"localhost:{external}"}).list_topics(timeout=10)
        assert {(m.host, m.port) for m in outside.brokers.values()} == {("localhost", external)}
    finally:
        b.cleanup(False)


def test_every_kafka_broker_key_is_accepted_and_described_as_kafka_describes_it():
    """Keys of a stock Kafka configuration that Fjord does not act on (thread counts) start it
    with an INFO line each, and keys it does act on (the cleaner's) do not; DescribeConfigs lists
    every broker key Kafka lists, with the value given or Kafka's default, and hides passwords.
    Runs on Kafka too."""
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

    b = Broker("config-kafka-keys", {"log.cleaner.backoff.ms": 1000, "num.io.threads": 4,
                                     "background.threads": 6, "log.cleaner.dedupe.buffer.size": 67108864})
    try:
        b.start()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        (fut,) = admin.describe_configs([ConfigResource(ResourceType.BROKER, str(b.node_id))]).values()
        configs = fut.result(timeout=20)
        given = configs["num.io.threads"]
        assert (given.value, given.source) == ("4", ConfigSource.STATIC_BROKER_CONFIG.value), given
        assert configs["log.cleaner.backoff.ms"].value == "1000"
        default = configs["num.network.threads"]
        assert (default.value, default.source) == ("3", ConfigSource.DEFAULT_CONFIG.value), default
        password = configs["ssl.keystore.password"]
        assert password.is_sensitive and password.value is None, password
        # A sample across Kafka's families of broker keys.
        for key in ("log.cleaner.threads", "sasl.enabled.mechanisms", "group.share.delivery.count.limit", "remote.log.storage.system.enable",
                    "quota.window.num", "replica.selector.class", "transaction.partition.verification.enable"):
            assert key in configs, key
        if FJORD_BIN.name != "kafka-as-fjord":
            log = b.log_text()
            for key in ("num.io.threads", "background.threads"):
                assert f"no effect in Fjord key={key}" in log, log
            for key in ("log.cleaner.backoff.ms", "log.cleaner.dedupe.buffer.size"):
                assert f"no effect in Fjord key={key}" not in log, log
    finally:
        b.cleanup(False)


@pytest.mark.parametrize("key,value,reason", [
    ("num.io.threads", "0", "Value must be at least 1"),
    ("log.cleaner.enable", "maybe", "Expected value to be either true or false"),
    ("log.message.timestamp.type", "WallClock", "String must be one of: CreateTime, LogAppendTime"),
])
def test_a_value_kafka_refuses_stops_the_broker_naming_the_key(reference_skip, tmp_path, key, value, reason):
    p = subprocess.run([str(FJORD_BIN), "--override", f"log.dirs={tmp_path / 'data'}", "--override", "metrics.listener=none",
                        "--override", f"{key}={value}"], capture_output=True, text=True, timeout=20)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert f"invalid value '{value}' for configuration property '{key}': {reason}" in p.stderr, p.stderr


def test_each_listener_of_a_cluster_lists_every_broker_at_its_own_address(start_cluster):
    """A 3-node cluster with an internal and an external listener per node (the compose
    cluster setup): a client of the external listener is told every broker's external
    address, and one of the internal listener the internal ones; coordinators too. Runs on
    Kafka too."""
    from conftest import free_port

    external = [free_port() for _ in range(3)]
    per_node = [{
        "listeners": "PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},"
                     f"PLAINTEXT_HOST://127.0.0.1:{external[i]}",
        "advertised.listeners": "PLAINTEXT://127.0.0.1:{port},PLAINTEXT_HOST://localhost:" + str(external[i]),
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
    } for i in range(3)]
    nodes = start_cluster("config-listeners-cluster", per_node=per_node)
    internal = [n.port for n in nodes]
    outside = AdminClient({"bootstrap.servers": f"localhost:{external[0]}"})
    inside = AdminClient({"bootstrap.servers": f"127.0.0.1:{internal[1]}"})
    want_outside = {(n.node_id, "localhost", p) for n, p in zip(nodes, external)}
    want_inside = {(n.node_id, "127.0.0.1", p) for n, p in zip(nodes, internal)}
    brokers = lambda admin: {(m.id, m.host, m.port) for m in admin.list_topics(timeout=10).brokers.values()}
    wait_for(lambda: brokers(outside) == want_outside, "every broker at its external address")
    wait_for(lambda: brokers(inside) == want_inside, "every broker at its internal address")

    def coordinator():
        # Kafka answers NOT_COORDINATOR while its new __consumer_offsets partitions load.
        try:
            g = outside.describe_consumer_groups(["config-listeners-group"])["config-listeners-group"].result(timeout=10)
        except Exception:  # noqa: BLE001 - retried
            return None
        return g.coordinator

    c = wait_for(coordinator, "the group's coordinator")
    assert (c.id, c.host, c.port) in want_outside, c


def test_a_properties_file_with_every_kafka_broker_key_at_its_default_starts_the_broker(reference_skip, tmp_path):
    """Every broker key of Kafka 4.4 (broker/src/kafka_configs.tsv, generated from Kafka's own
    definitions) at Kafka's default, in one properties file: Fjord starts, and names each key
    it does not act on in one INFO line."""
    from pathlib import Path

    tsv = Path(__file__).resolve().parent.parent / "broker" / "src" / "kafka_configs.tsv"
    # Keys whose default does not stand alone (a role needs voters, node.id has none) or that
    # the fixture sets.
    skip = {"process.roles", "node.id", "controller.listener.names", "controller.quorum.voters", "listeners"}
    keys = {}
    for line in tsv.read_text().splitlines()[1:]:
        scope, name, _type, default, _validator, _dynamic, internal, _synonyms = line.split("\t")
        if scope == "broker" and internal == "false" and default != r"\N" and name not in skip:
            keys[name] = default.replace("\\\\", "\\")
    assert len(keys) > 250, len(keys)
    props = tmp_path / "server.properties"
    props.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    b = Broker("config-every-key")
    b.properties_file = props
    try:
        b.start()
        log = b.log_text()
        quiet = [k for k in keys if f"no effect in Fjord key={k}" not in log]
        loud = len(keys) - len(quiet)
        assert loud > 100, f"only {loud} keys named as without effect"
        assert "num.io.threads" not in quiet and "background.threads" not in quiet
        for honoured in ("num.partitions", "message.max.bytes", "log.cleaner.threads", "log.cleaner.backoff.ms"):
            assert honoured in quiet, f"honoured key {honoured} named as without effect"
    finally:
        b.cleanup(False)
