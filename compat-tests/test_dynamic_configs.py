"""Dynamic broker configs: IncrementalAlterConfigs and AlterConfigs on the BROKER resource
(`""` for every broker, a node id for one), taking effect without a restart, described with
Kafka's sources and synonyms, refused where Kafka refuses them; and Kafka's own
`kafka-configs.sh` (org.apache.kafka.tools.ConfigCommand from kafka-tools 4.4.0) against the
broker. Each test has a broker of its own, since the changes are cluster-wide. Runs on Kafka too.
"""
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from clientlib import java
from conftest import Broker, wait_for

JAVA_DIR = Path(__file__).resolve().parent / "java"


@pytest.fixture
def dyn_broker():
    b = Broker(f"dynamic-{uuid.uuid4().hex[:6]}", {"auto.create.topics.enable": "false"})
    b.start()
    try:
        yield b
    finally:
        b.cleanup(False)


def alter(b, resource, *changes, validate_only=False):
    """IncrementalAlterConfigs through the Java Admin client (confluent-kafka cannot name the
    `""` resource); `changes` are ("set" | "delete" | "append", key, value). None, or the
    error as {"error": exception name, "message": ...}."""
    args = ["admin-alter-configs", "--bootstrap", b.bootstrap]
    args += ["--topic", resource[1]] if isinstance(resource, tuple) else ["--broker", resource]
    for op, k, v in changes:
        args += [f"--{op}", k if op == "delete" else f"{k}={v}"]
    if validate_only:
        args.append("--validate-only")
    (line,) = java(*args, expect_error=None)
    return None if line.get("ok") else line


def describe(b, resource):
    """DescribeConfigs with synonyms (Java Admin): {key: {value, source, read_only, synonyms}}."""
    args = ["admin-describe-configs", "--bootstrap", b.bootstrap]
    args += ["--topic", resource[1]] if isinstance(resource, tuple) else ["--broker", resource]
    (d,) = java(*args)
    return d["configs"]


def synonyms(entry):
    return [tuple(s) for s in entry["synonyms"]]


def produce_one(bootstrap, topic, size, acks="all"):
    """One record of `size` bytes, no retries: None or the error the broker gave."""
    out = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "retries": 0, "enable.idempotence": False,
                  "message.max.bytes": 10_000_000, "linger.ms": 0})
    p.produce(topic, b"x" * size, partition=0, on_delivery=lambda err, msg: out.append(err))
    p.flush(30)
    assert out, "no delivery report"
    return out[0]



def refused_as(b, topic, size, acks, code):
    """Waits until a produce is refused with `code`: Kafka applies a change once its brokers
    have the metadata record, a moment after the answer."""
    last = []

    def refused():
        last[:] = [produce_one(b.bootstrap, topic, size, acks=acks)]
        return last[0] is not None and last[0].code() == code

    wait_for(refused, f"a produce refused with {code}", timeout_s=15)


def test_cluster_and_broker_configs_take_effect_without_a_restart(dyn_broker):
    b = dyn_broker
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topic, pinned = "dyn-plain", "dyn-pinned"
    for name, cfg in ((topic, {}), (pinned, {"max.message.bytes": "100000"})):
        admin.create_topics([NewTopic(name, 1, 1, config=cfg)])[name].result(30)
    assert produce_one(b.bootstrap, topic, 5000) is None
    # Kafka 4.4's storage format sets min.insync.replicas cluster-wide (for KIP-966's eligible
    # leader replicas); Fjord sets nothing. What is there at the start is there at the end.
    before = cluster_defaults(b.bootstrap)
    assert set(before) <= {"min.insync.replicas"}, before

    # The cluster-wide default: topics without their own value follow it at once.
    assert alter(b, "", ("set", "message.max.bytes", "2000"), ("set", "log.retention.ms", "3600000")) is None
    refused_as(b, topic, 5000, "all", KafkaError.MSG_SIZE_TOO_LARGE)
    assert produce_one(b.bootstrap, pinned, 5000) is None, "a topic's own value wins"
    t = describe(b, ("topic", topic))
    assert (t["max.message.bytes"]["value"], t["max.message.bytes"]["source"]) == ("2000", "DYNAMIC_DEFAULT_BROKER_CONFIG")
    assert t["retention.ms"]["value"] == "3600000"
    assert synonyms(t["retention.ms"]) == [("log.retention.ms", "3600000", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
                                          ("log.retention.hours", "168", "DEFAULT_CONFIG")]
    p = describe(b, ("topic", pinned))
    assert synonyms(p["max.message.bytes"])[:2] == [("max.message.bytes", "100000", "DYNAMIC_TOPIC_CONFIG"),
                                                   ("message.max.bytes", "2000", "DYNAMIC_DEFAULT_BROKER_CONFIG")]
    assert cluster_defaults(b.bootstrap) == before | {"message.max.bytes": "2000", "log.retention.ms": "3600000"}

    # This broker's own value wins over the cluster's.
    node = str(b.node_id)
    assert alter(b, node, ("set", "message.max.bytes", "8000")) is None
    wait_for(lambda: produce_one(b.bootstrap, topic, 5000) is None, "a 5000-byte record taken again")
    # The cleanup policy too: compacted, the topic refuses a record without a key.
    assert alter(b, "", ("set", "log.cleanup.policy", "compact")) is None
    refused_as(b, topic, 10, "all", KafkaError.INVALID_RECORD)
    mine = describe(b, node)
    mmb = mine["message.max.bytes"]
    assert (mmb["value"], mmb["source"], mmb["read_only"]) == ("8000", "DYNAMIC_BROKER_CONFIG", False)
    assert synonyms(mmb) == [("message.max.bytes", "8000", "DYNAMIC_BROKER_CONFIG"),
                             ("message.max.bytes", "2000", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
                             ("message.max.bytes", "1048588", "DEFAULT_CONFIG")]
    assert mine["log.retention.hours"]["read_only"] and not mine["log.retention.ms"]["read_only"]

    # Deleted: back to what the broker started with.
    assert alter(b, node, ("delete", "message.max.bytes", None)) is None
    assert alter(b, "", ("delete", "message.max.bytes", None), ("delete", "log.retention.ms", None),
                 ("delete", "log.cleanup.policy", None)) is None
    wait_for(lambda: produce_one(b.bootstrap, topic, 5000) is None, "a keyless 5000-byte record taken again")
    assert cluster_defaults(b.bootstrap) == before
    t = describe(b, ("topic", topic))
    assert (t["max.message.bytes"]["value"], t["max.message.bytes"]["source"]) == ("1048588", "DEFAULT_CONFIG")


@pytest.mark.parametrize("resource,change,error,message", [
    pytest.param("", ("set", "log.retention.hours", "1"), "InvalidRequestException",
                 "Cannot update these configs dynamically: [log.retention.hours]",
                 marks=pytest.mark.kafka_min_version("4.4", reason="Kafka 4.1 names the keys as a Scala Set: "
                                                     "'Cannot update these configs dynamically: Set(log.retention.hours)'")),
    ("{node}", ("set", "log.retention.ms", "abc"), "InvalidRequestException",
     "Invalid value abc for configuration log.retention.ms: Not a number of type LONG"),
    ("", ("append", "log.retention.ms", "1"), "InvalidConfigurationException",
     "Config value append is not allowed for config key: log.retention.ms"),
])
def test_broker_config_changes_are_refused_as_kafka_refuses_them(dyn_broker, resource, change, error, message):
    name = resource.format(node=dyn_broker.node_id)
    before = cluster_defaults(dyn_broker.bootstrap)
    for validate_only in (True, False):
        err = alter(dyn_broker, name, change, validate_only=validate_only)
        assert err is not None and err["error"] == error, err
        assert message in err["message"], err
    assert cluster_defaults(dyn_broker.bootstrap) == before


def test_legacy_alter_configs_replaces_a_topics_overrides(dyn_broker):
    admin = AdminClient({"bootstrap.servers": dyn_broker.bootstrap})
    topic = "dyn-legacy"
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "1000", "cleanup.policy": "compact"})])[topic].result(30)
    (fut,) = admin.alter_configs([ConfigResource(ResourceType.TOPIC, topic, set_config={"segment.bytes": "1048576"})]).values()
    fut.result(30)
    t = describe(dyn_broker, ("topic", topic))
    overridden = {k: v["value"] for k, v in t.items() if v["source"] == "DYNAMIC_TOPIC_CONFIG"}
    assert overridden == {"segment.bytes": "1048576"}, "AlterConfigs leaves only what it names"


def config_command(bootstrap, *args):
    cp = f"{JAVA_DIR}/target/classes:{JAVA_DIR}/target/lib/*"
    p = subprocess.run(["java", "-cp", cp, "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bootstrap,
                        *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"kafka-configs {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def cluster_defaults(bootstrap):
    """The cluster-wide dynamic configs (the `""` broker resource, which confluent-kafka cannot
    name), as kafka-configs.sh --describe --entity-default lists them."""
    out = config_command(bootstrap, "--entity-type", "brokers", "--entity-default", "--describe")
    assert "Default configs for brokers in the cluster are:" in out, out
    return dict(line.strip().split(" sensitive=")[0].split("=", 1) for line in out.splitlines()
                if line.startswith("  "))


def described(bootstrap, *args, lines):
    """kafka-configs.sh --describe until its output holds every one of `lines`: a broker applies
    a change once it has the metadata record, a moment after the alter's answer (Kafka)."""
    last = []

    def holds():
        last[:] = [config_command(bootstrap, *args, "--describe")]
        return all(line in last[0] for line in lines)

    try:
        wait_for(holds, f"kafka-configs {' '.join(args)} --describe showing {lines}", timeout_s=15)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{last[0] if last else ''}") from None
    return last[0]


def test_kafka_configs_sh_alters_and_describes_brokers_and_topics(dyn_broker):
    b = dyn_broker
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    before = cluster_defaults(b.bootstrap)
    admin.create_topics([NewTopic("dyn-tool", 1, 1)])["dyn-tool"].result(30)
    out = config_command(b.bootstrap, "--entity-type", "brokers", "--entity-default", "--alter",
                         "--add-config", "log.cleaner.threads=2,log.retention.ms=5000")
    assert "Completed updating default config for brokers in the cluster." in out, out
    out = config_command(b.bootstrap, "--entity-type", "brokers", "--entity-name", str(b.node_id), "--alter",
                         "--add-config", "log.cleaner.backoff.ms=1000")
    assert f"Completed updating config for broker {b.node_id}." in out, out
    described(b.bootstrap, "--entity-type", "brokers", "--entity-default", lines=[
        "Default configs for brokers in the cluster are:",
        "  log.retention.ms=5000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=5000}"])
    described(b.bootstrap, "--entity-type", "brokers", "--entity-name", str(b.node_id), lines=[
        f"Dynamic configs for broker {b.node_id} are:",
        "  log.cleaner.backoff.ms=1000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.cleaner.backoff.ms=1000, "
        "DEFAULT_CONFIG:log.cleaner.backoff.ms=15000}"])
    out = config_command(b.bootstrap, "--entity-type", "topics", "--entity-name", "dyn-tool", "--alter",
                         "--add-config", "retention.ms=1000")
    assert "Completed updating config for topic dyn-tool." in out, out
    described(b.bootstrap, "--entity-type", "topics", "--entity-name", "dyn-tool", lines=[
        "Dynamic configs for topic dyn-tool are:",
        "  retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000, "
        "DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=5000, DEFAULT_CONFIG:log.retention.hours=168}"])
    out = config_command(b.bootstrap, "--entity-type", "brokers", "--entity-default", "--alter",
                         "--delete-config", "log.cleaner.threads,log.retention.ms")
    wait_for(lambda: cluster_defaults(b.bootstrap) == before, f"the cluster-wide configs back to {before}",
             timeout_s=15)
