"""Fjord's container image and compose files, run as people run Kafka's: the repository's own
docker-compose.yml (one node, then its 3-node `cluster` profile), three public compose files
with only the image swapped, and bad configurations that must stop a container with a message.

Clients reach the brokers both ways a compose deployment offers: from the host through the
external listener (confluent-kafka, at localhost:<published port>) and from a container on the
compose network through the internal one (kcat in dockerlib's app image, at <service>:<port>).
Everything is built here from nothing (dockerlib.py: the engine, a debootstrap base image,
fjord:latest from the Dockerfile and FJORD_BIN), once per session. Each compose project has its
own name and is removed with its volumes (`down -v`) at the end; a failing test's report carries
its containers' logs. The three public files publish fixed host ports and name their containers,
so they run one at a time (a lock across xdist workers) and are skipped when a port or a name is
taken. Fjord only: no Kafka image can be built here.

How Fjord treats each variable of the public files (the tables below, asserted from each
container's environment and log):
  honoured        a property Fjord acts on, no log line (`CLUSTER_ID` is the image's own variable)
  no effect       a Kafka property Fjord accepts and does not act on: one INFO line
                  "accepted: this Kafka property has no effect in Fjord key=<property>"
  ignored         a KAFKA_* variable that names no Kafka or Fjord property (Confluent Server's
                  own, a typo): one WARN line "ignoring an environment variable that names no
                  Kafka or Fjord property variable=<VAR> key=<property>"
  not a property  a KAFKA_* variable that Kafka's images and scripts read themselves (the JVM's,
                  JMX, log4j): no line at all
  not read        no KAFKA_ prefix (Confluent's images read CONFLUENT_*): no line at all
"""
from __future__ import annotations

import json
import os
import re
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, ElectionType, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import dockerlib as dl
from clientlib import consume, kcat_json_lines
from conftest import FJORD_BIN, REFERENCE, free_port, wait_for

pytestmark = [
    pytest.mark.skipif(REFERENCE, reason="the broker under test is Apache Kafka (reference/kafka-as-fjord): these "
                                         "tests build and run Fjord's container image, and no Kafka image can be "
                                         "built here"),
    pytest.mark.skipif(bool(dl.missing_tools()), reason=f"missing {', '.join(dl.missing_tools())}: "
                                                        "compat-tests/setup.sh installs docker.io, docker-compose "
                                                        "and debootstrap"),
    # The first test of each xdist worker may build the images (or wait for the other worker to):
    # about 2 minutes from nothing on 2 cores.
    pytest.mark.timeout(600),
]

HONOURED = "honoured"
NO_EFFECT = "no effect"
IGNORED = "ignored"
NOT_A_PROPERTY = "not a property"
NOT_READ = "not read"

#: apache/kafka's docker/examples/docker-compose-files/single-node/plaintext (docker/apache-single-node-plaintext.yml).
APACHE_SINGLE_NODE_VARIABLES = {
    "KAFKA_NODE_ID": HONOURED,
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": HONOURED,
    "KAFKA_ADVERTISED_LISTENERS": HONOURED,
    "KAFKA_PROCESS_ROLES": HONOURED,
    "KAFKA_CONTROLLER_QUORUM_VOTERS": HONOURED,
    "KAFKA_LISTENERS": HONOURED,
    "KAFKA_INTER_BROKER_LISTENER_NAME": HONOURED,
    "KAFKA_CONTROLLER_LISTENER_NAMES": HONOURED,
    "CLUSTER_ID": HONOURED,
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": HONOURED,
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": HONOURED,
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": HONOURED,
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": HONOURED,
    # Share groups (KIP-932): Fjord has none.
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": NO_EFFECT,
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": NO_EFFECT,
    "KAFKA_LOG_DIRS": HONOURED,
}

#: apache/kafka's docker/examples/docker-compose-files/cluster/combined/plaintext
#: (docker/apache-cluster-combined-plaintext.yml); each of its three nodes.
APACHE_CLUSTER_VARIABLES = {k: v for k, v in APACHE_SINGLE_NODE_VARIABLES.items() if "SHARE_COORDINATOR" not in k}

#: The tutorial-style application stack (docker/app-with-confluent-style-kafka.yml), its broker.
CONFLUENT_STYLE_VARIABLES = {
    "KAFKA_BROKER_ID": HONOURED,  # node.id's old name
    "KAFKA_NODE_ID": HONOURED,
    "KAFKA_PROCESS_ROLES": HONOURED,
    "KAFKA_CONTROLLER_QUORUM_VOTERS": HONOURED,
    "KAFKA_LISTENERS": HONOURED,  # PLAINTEXT://kafka:29092 binds the container's address
    "KAFKA_ADVERTISED_LISTENERS": HONOURED,
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": HONOURED,
    "KAFKA_INTER_BROKER_LISTENER_NAME": HONOURED,
    "KAFKA_CONTROLLER_LISTENER_NAMES": HONOURED,
    "KAFKA_LOG_DIRS": HONOURED,
    "CLUSTER_ID": HONOURED,
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": HONOURED,
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": HONOURED,
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": HONOURED,
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": HONOURED,
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": HONOURED,
    "KAFKA_NUM_PARTITIONS": HONOURED,  # the app's auto-created topic has 3 partitions
    "KAFKA_JMX_PORT": NOT_A_PROPERTY,  # Fjord has no JMX; its metrics are on :9644/metrics
    "KAFKA_JMX_HOSTNAME": NOT_A_PROPERTY,
    "KAFKA_HEAP_OPTS": NOT_A_PROPERTY,
    "KAFKA_LOG4J_ROOT_LOGLEVEL": NOT_A_PROPERTY,  # Fjord's log level: FJORD_LOG
    "KAFKA_TOOLS_LOG4J_LOGLEVEL": NOT_A_PROPERTY,
    "KAFKA_METRIC_REPORTERS": NO_EFFECT,
    "KAFKA_CONFLUENT_LICENSE_TOPIC_REPLICATION_FACTOR": IGNORED,
    "KAFKA_CONFLUENT_BALANCER_TOPIC_REPLICATION_FACTOR": IGNORED,
    "KAFKA_CONFLUENT_SCHEMA_REGISTRY_URL": IGNORED,
    "KAFKA_CONFLUENT_SUPPORT_METRICS_ENABLE": NO_EFFECT,  # an old Confluent key, accepted for old files
    "CONFLUENT_METRICS_REPORTER_BOOTSTRAP_SERVERS": NOT_READ,
    "CONFLUENT_METRICS_REPORTER_TOPIC_REPLICAS": NOT_READ,
    "CONFLUENT_METRICS_ENABLE": NOT_READ,
    "CONFLUENT_SUPPORT_CUSTOMER_ID": NOT_READ,
}

NO_EFFECT_LINE = "accepted: this Kafka property has no effect in Fjord"
IGNORED_LINE = "ignoring an environment variable that names no Kafka or Fjord property"


# ------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="session")
def images():
    """The engine running and fjord:latest + the app image built (once across xdist workers)."""
    if not FJORD_BIN.exists():
        raise AssertionError(f"fjord binary not found at {FJORD_BIN}: build it or set FJORD_BIN")
    if not dl.engine_up() and os.geteuid() != 0:
        pytest.skip("the Docker engine is not running and only root can start it")
    return dl.prepare(FJORD_BIN)


@pytest.fixture
def compose(request, images):
    """compose(file, env=..., profiles=...) -> a dl.Compose with a unique project name, taken
    down with its volumes at the end of the test; its logs go to a failure's report."""
    made: list[dl.Compose] = []

    def make(file, env=None, profiles=()) -> dl.Compose:
        c = dl.Compose(dl.unique_project(request.node.originalname[5:]), file, env=env, profiles=profiles)
        made.append(c)
        return c

    yield make
    for c in made:
        c.down()


@pytest.fixture
def containers(request, images):
    c = dl.Containers(dl.unique_project(request.node.originalname[5:]))
    yield c
    c.remove()


# -------------------------------------------------------------------------------------- helpers

def keyed_records(tag: str, n: int) -> list[tuple[bytes, bytes]]:
    return [(f"{tag}-key-{i}".encode(), f"{tag} value {i} blåbær→✓".encode()) for i in range(n)]


def produce_keyed(bootstrap: str, topic: str, records, partition: int | None = None) -> dict:
    """acks=all (idempotent); returns {(partition, offset): (key, value)} from the delivery reports."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 60000})
    out, errors = {}, []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            out[(msg.partition(), msg.offset())] = (msg.key(), msg.value())

    for k, v in records:
        kw = {"partition": partition} if partition is not None else {}
        p.produce(topic, key=k, value=v, on_delivery=report, **kw)
        p.poll(0)
    assert p.flush(60) == 0, "records still queued after 60 s"
    assert not errors and len(out) == len(records), (errors[:3], len(out))
    return out


def read_all(bootstrap: str, topic: str, count: int) -> dict:
    """Everything from the beginning, assign() mode: {(partition, offset): (key, value)}."""
    return {(r.partition, r.offset): (r.key, r.value) for r in consume("confluent", bootstrap, topic, count)}


def group_read(bootstrap: str, topic: str, group: str, count: int, timeout_s: float = 45) -> dict:
    """A subscribed member of `group` reads `count` records and commits them (sync)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 10000})
    c.subscribe([topic])
    got = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got[(m.partition(), m.offset())] = (m.key(), m.value())
        if got:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def end_offsets(layout: dict) -> dict[int, int]:
    out: dict[int, int] = {}
    for p, o in layout:
        out[p] = max(out.get(p, 0), o + 1)
    return out


def create_topic(bootstrap: str, topic: str, partitions: int, rf: int, assignment=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    nt = (NewTopic(topic, num_partitions=partitions, replica_assignment=assignment) if assignment
          else NewTopic(topic, partitions, rf))
    admin.create_topics([nt], operation_timeout=30, request_timeout=30)[topic].result(timeout=40)
    wait_for(lambda: (t := admin.list_topics(topic, timeout=5).topics.get(topic)) is not None and t.error is None
             and len(t.partitions) == partitions and all(p.leader >= 0 and len(p.isrs) == rf
                                                         for p in t.partitions.values()),
             f"topic {topic}: {partitions} led partitions, {rf} in sync", timeout_s=60)


def kcat_produce(stack: dl.Compose, bootstrap: str, topic: str, records):
    lines = "".join(f"{k.decode()}|{v.decode()}\n" for k, v in records)
    stack.kcat("-P", "-b", bootstrap, "-t", topic, "-K", "|", "-X", "acks=all", input=lines)


def kcat_read(stack: dl.Compose, bootstrap: str, topic: str) -> dict:
    """Everything up to the end of every partition, through kcat in the app container."""
    out = stack.kcat("-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q").stdout
    return {(d["partition"], d["offset"]): (d["key"].encode(), d["payload"].encode())
            for d in kcat_json_lines(out.encode())}


def same_records(got: dict, expected: dict) -> str | None:
    if got == expected:
        return None
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    return (f"read {len(got)} records, expected {len(expected)}; missing {missing[:5]}, unexpected {extra[:5]}, "
            f"different content at {differ[:5]}")


def env_to_key(variable: str) -> str:
    """As Fjord (and the apache/kafka image) map it: KAFKA_LOG_DIRS -> log.dirs."""
    rest = variable.removeprefix("KAFKA_")
    return rest.lower().replace("___", "-").replace("__", "\0").replace("_", ".").replace("\0", "_")


def variable_problems(container: str, table: dict[str, str]) -> list[str]:
    """Where the container's environment or log disagrees with `table`: every variable the
    compose file sets (beyond the image's own ENV) is in the table, and each has the log
    line of its treatment, and only that."""
    problems = []
    info = dl.inspect(container)
    env = {e.split("=", 1)[0] for e in info["Config"]["Env"]}
    image_env = {e.split("=", 1)[0] for e in json.loads(
        dl.docker("image", "inspect", "-f", "{{json .Config.Env}}", info["Image"]).stdout)}
    unlisted = sorted(env - image_env - set(table))
    if unlisted:
        problems.append(f"variables the table does not list: {unlisted}")
    absent = sorted(set(table) - env)
    if absent:
        problems.append(f"the table lists variables the container does not have: {absent}")
    log = dl.logs(container)
    for var, treatment in table.items():
        key = env_to_key(var)
        warned = f"{IGNORED_LINE} variable={var} key={key}" in log
        no_effect = re.search(rf"{re.escape(NO_EFFECT_LINE)} key={re.escape(key)}$", log, re.M) is not None
        named = re.search(rf"\b{re.escape(var)}\b", log) is not None
        want = {HONOURED: (False, False), NO_EFFECT: (False, True), IGNORED: (True, False),
                NOT_A_PROPERTY: (False, False), NOT_READ: (False, False)}[treatment]
        if (warned, no_effect) != want or (treatment in (NOT_A_PROPERTY, NOT_READ, HONOURED) and named):
            problems.append(f"{var} ({treatment}): WARN line {warned}, INFO no-effect line {no_effect}, "
                            f"named in the log {named}")
    return problems


def assert_clean_exit_logs(text: str):
    assert "panicked" not in text and "backtrace" not in text.lower(), text[-3000:]


# -------------------------------------------------------------------- the repository's compose file

def test_single_node_compose_file_keeps_data_and_offsets_across_restart_and_down(request, compose):
    """The repository's docker-compose.yml, service `fjord`: healthy, running as uid 1000; the host
    produces keyed records and a group reads and commits them; a container on the compose network
    produces and consumes through fjord:19092; `docker-compose restart`, then `down` (volume
    kept) and `up`: the records and the group's offsets are there, and the group goes on from
    them; `docker stop` is a clean shutdown well within docker's 10 s."""
    port, http_port = free_port(), free_port()
    stack = compose(dl.REPO / "docker-compose.yml", env={"FJORD_PORT": port, "FJORD_HTTP_PORT": http_port})
    host = f"localhost:{port}"
    topic, from_app, group = "orders", "from-app", "billing"
    with dl.logs_on_failure(request, stack):
        stack.up()
        fjord = stack.container("fjord")
        dl.wait_healthy(fjord)
        assert dl.pid1_uid(fjord) == 1000, "fjord runs as appuser (uid 1000)"
        with urllib.request.urlopen(f"http://localhost:{http_port}/readyz", timeout=10) as r:
            assert r.status == 200, "the HTTP listener is published at FJORD_HTTP_PORT"
        md = AdminClient({"bootstrap.servers": host}).list_topics(timeout=10)
        assert {(b.host, b.port) for b in md.brokers.values()} == {("localhost", port)}

        create_topic(host, topic, 3, 1)
        produced = produce_keyed(host, topic, keyed_records("host", 30))
        assert {p for p, _ in produced} == {0, 1, 2}, "keys spread over the partitions"
        assert group_read(host, topic, group, 30) == produced
        offsets = end_offsets(produced)
        assert committed(host, group) == offsets

        stack.start_app()
        assert kcat_read(stack, "fjord:19092", topic) == produced, "the internal listener serves the same records"
        app_records = keyed_records("app", 12)
        kcat_produce(stack, "fjord:19092", from_app, app_records)
        from_app_layout = read_all(host, from_app, len(app_records))
        assert sorted(from_app_layout.values()) == sorted(app_records)

        def still_there(what):
            problem = same_records(read_all(host, topic, len(produced)), produced)
            assert problem is None, f"{what}: {topic}: {problem}"
            assert read_all(host, from_app, len(app_records)) == from_app_layout, what
            assert committed(host, group) == offsets, what

        stack("restart", "fjord")
        dl.wait_healthy(fjord)
        still_there("after docker-compose restart")

        stack.stop_app()
        stack("down")
        volume = f"{stack.name}_fjord-data"
        assert dl.docker("volume", "inspect", volume, check=False).returncode == 0, "down keeps the volume"
        stack.up()
        fjord = stack.container("fjord")
        dl.wait_healthy(fjord)
        still_there("after docker-compose down and up")
        more = produce_keyed(host, topic, keyed_records("later", 9))
        assert group_read(host, topic, group, 9) == more, "the group goes on from its committed offsets"

        started = time.monotonic()
        dl.docker("stop", fjord)
        took = time.monotonic() - started
        state = dl.inspect(fjord)["State"]
        logs = dl.logs(fjord)
        assert state["ExitCode"] == 0, (state, logs[-2000:])
        assert "fjord stopped" in logs.rpartition("SIGTERM received")[2], logs[-2000:]
        stdout = dl.docker("logs", fjord, check=False).stdout
        assert "fjord started" in stdout and "fjord stopped" in stdout, "the image logs on stdout"
        assert took < 5, f"docker stop took {took:.1f}s (docker kills at 10 s)"
        assert_clean_exit_logs(logs)


def test_cluster_profile_survives_a_stopped_node_which_catches_up(request, compose):
    """The `cluster` profile of docker-compose.yml: three combined nodes, RF 3, min ISR 2. A
    topic whose partitions all prefer fjord-2; acks=all records; `docker-compose stop fjord-2`
    and the clients go on producing and consuming; `start` it again: it rejoins every ISR, and
    after a preferred election it leads every partition and serves every record, including
    those written while it was down."""
    ports = {f"FJORD_{i}_{kind}PORT": free_port() for i in (1, 2, 3) for kind in ("", "HTTP_")}
    stack = compose(dl.REPO / "docker-compose.yml", env=ports, profiles=["cluster"])
    bootstrap = ",".join(f"localhost:{ports[f'FJORD_{i}_PORT']}" for i in (1, 2, 3))
    topic = "payments"
    with dl.logs_on_failure(request, stack):
        stack.up("fjord-1", "fjord-2", "fjord-3")
        nodes = {i: stack.container(f"fjord-{i}") for i in (1, 2, 3)}
        dl.wait_healthy(*nodes.values())
        admin = AdminClient({"bootstrap.servers": bootstrap})
        md = wait_for(lambda: (m := admin.list_topics(timeout=10)) and len(m.brokers) == 3 and m, "three brokers")
        assert {b.id: (b.host, b.port) for b in md.brokers.values()} == \
            {i: ("localhost", ports[f"FJORD_{i}_PORT"]) for i in (1, 2, 3)}

        create_topic(bootstrap, topic, 3, 3, assignment=[[2, 1, 3], [2, 3, 1], [2, 1, 3]])
        before = {}
        for p in range(3):
            before.update(produce_keyed(bootstrap, topic, keyed_records(f"before-p{p}", 20), partition=p))

        stack("stop", "fjord-2")
        assert dl.inspect(nodes[2])["State"]["ExitCode"] == 0
        during = {}
        for p in range(3):
            during.update(produce_keyed(bootstrap, topic, keyed_records(f"during-p{p}", 20), partition=p))
        assert all(o >= 20 for _, o in during), "appended after the first records"
        problem = same_records(read_all(bootstrap, topic, 120), {**before, **during})
        assert problem is None, f"read while fjord-2 is stopped: {problem}"

        def partitions():
            t = admin.list_topics(topic, timeout=5).topics[topic]
            return t.partitions.values()

        assert all(p.leader != 2 for p in partitions()), "the stopped node leads nothing"
        stack("start", "fjord-2")
        dl.wait_healthy(nodes[2])
        wait_for(lambda: all(2 in p.isrs for p in partitions()), "fjord-2 back in every ISR", timeout_s=90)

        tps = [TopicPartition(topic, p) for p in range(3)]
        elected = admin.elect_leaders(ElectionType.PREFERRED, tps).result(timeout=30)
        for tp, err in elected.items():
            assert err is None or err.code() == KafkaError.ELECTION_NOT_NEEDED, (tp, err)
        wait_for(lambda: all(p.leader == 2 for p in partitions()), "fjord-2 leading every partition")
        only_2 = f"localhost:{ports['FJORD_2_PORT']}"
        problem = same_records(read_all(only_2, topic, 120), {**before, **during})
        assert problem is None, f"read from fjord-2 as the leader: {problem}"


# --------------------------------------------------------------------------- public compose files

PUBLIC_FILES = {
    "apache-single-node": dict(
        file="apache-single-node-plaintext.yml", env={"IMAGE": dl.FJORD_IMAGE},
        brokers={"broker": (1, 9092, "broker:19092")}, variables=APACHE_SINGLE_NODE_VARIABLES,
        cluster_id="4L6g3nShT-eMCtK--X86sw", log_dir="/tmp/kraft-combined-logs", ports=[9092]),
    "apache-cluster-combined": dict(
        file="apache-cluster-combined-plaintext.yml", env={"IMAGE": dl.FJORD_IMAGE},
        brokers={"kafka-1": (1, 29092, "kafka-1:19092"), "kafka-2": (2, 39092, "kafka-2:19092"),
                 "kafka-3": (3, 49092, "kafka-3:19092")},
        variables=APACHE_CLUSTER_VARIABLES, cluster_id="4L6g3nShT-eMCtK--X86sw",
        log_dir="/tmp/kraft-combined-logs", ports=[29092, 39092, 49092]),
    "app-with-confluent-style-kafka": dict(
        file="app-with-confluent-style-kafka.yml", env={},
        brokers={"kafka": (1, 9092, "kafka:29092")}, variables=CONFLUENT_STYLE_VARIABLES,
        cluster_id="MkU3OEVBNTcwNTJENDM2Qk", log_dir="/tmp/kraft-combined-logs", ports=[9092, 9101],
        app=("app", "orders", "order-service")),
}


@pytest.mark.parametrize("name", list(PUBLIC_FILES))
def test_public_compose_file_with_fjords_image(request, images, name):
    """A compose file people use with Kafka, only the image swapped: every node healthy and
    advertising its published port, a host client produces and consumes through the external
    listener, a container on the compose network through the internal one (and the tutorial's
    own app service, started once the broker is healthy, through it as a consumer group), the
    cluster id and log dir are the file's; each variable treated as the tables above say."""
    spec = PUBLIC_FILES[name]
    brokers = spec["brokers"]
    with dl.file_lock("fixed-ports"):
        busy = [p for p in spec["ports"] if not dl.port_free(p)]
        if busy:
            pytest.skip(f"{spec['file']} publishes fixed host ports, and {busy} are taken")
        taken = [n for n in brokers if dl.container_exists(n)]
        if taken:
            pytest.skip(f"{spec['file']} names its containers, and {taken} exist")
        stack = dl.Compose(dl.unique_project(name), dl.COMPOSE_DIR / spec["file"], env=spec["env"])
        external = ",".join(f"localhost:{port}" for _, port, _ in brokers.values())
        internal = ",".join(addr for _, _, addr in brokers.values())
        try:
            with dl.logs_on_failure(request, stack):
                _public_file_round_trips(stack, spec, external, internal)
        finally:
            stack.down()


def _public_file_round_trips(stack, spec, external, internal):
    brokers = spec["brokers"]
    stack.up()
    ids = {svc: stack.container(svc) for svc in brokers}
    dl.wait_healthy(*ids.values())
    admin = AdminClient({"bootstrap.servers": external})
    md = wait_for(lambda: (m := admin.list_topics(timeout=10)) and len(m.brokers) == len(brokers) and m,
                  "every broker in Metadata")
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == \
        {node: ("localhost", port) for node, port, _ in brokers.values()}
    assert md.cluster_id == spec["cluster_id"]
    for svc, cid in ids.items():
        started = next(l for l in dl.logs(cid).splitlines() if "fjord started" in l)
        assert f"data_dir={spec['log_dir']}" in started, started

    rf = len(brokers)
    create_topic(external, "from-host", 3, rf)
    produced = produce_keyed(external, "from-host", keyed_records("host", 30))
    problem = same_records(read_all(external, "from-host", 30), produced)
    assert problem is None, f"host -> host: {problem}"
    stack.start_app()
    problem = same_records(kcat_read(stack, internal, "from-host"), produced)
    assert problem is None, f"host -> container: {problem}"
    app_records = keyed_records("container", 12)
    create_topic(external, "from-container", 3, rf)
    kcat_produce(stack, internal, "from-container", app_records)
    got = read_all(external, "from-container", 12)
    assert sorted(got.values()) == sorted(app_records), "container -> host"

    if "app" in spec:
        service, topic, group = spec["app"]
        app = stack.container(service)
        assert dl.wait_exit(app, 90) == 0, dl.logs(app)
        app_log = dl.logs(app)
        orders = [d for line in app_log.splitlines() if line.startswith("{")
                  for d in kcat_json_lines(line.encode())]
        assert sorted(d["key"] for d in orders) == sorted(f"order-{i}" for i in range(1, 11)), app_log
        on_host = read_all(external, topic, 10)
        assert {(d["partition"], d["offset"]): (d["key"].encode(), d["payload"].encode()) for d in orders} == on_host
        assert {p for p, _ in on_host} == {0, 1, 2}, "auto-created with KAFKA_NUM_PARTITIONS=3"
        assert wait_for(lambda: sum(committed(external, group).values()) == 10 or None,
                        f"group {group}'s commits (kcat -G commits on close)")

    for svc, cid in ids.items():
        problems = variable_problems(cid, spec["variables"])
        assert not problems, f"{svc}: " + "; ".join(problems)


# ----------------------------------------------------------------------------- bad configuration

BAD_CONFIGS = {
    "misspelled-key-in-properties-file": dict(
        properties="process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@localhost:9093\n"
                   "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\ncontroller.listener.names=CONTROLLER\n"
                   "log.dirs=/var/lib/kafka/data\nlog.retention.hourss=168\n",
        env={}, expect=["unknown configuration property", "log.retention.hourss"]),
    "listener-missing-from-protocol-map": dict(
        env={"KAFKA_LISTENERS": "PLAINTEXT://:19092,PLAINTEXT_HOST://:9092",
             "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://fjord:19092,PLAINTEXT_HOST://localhost:9092",
             "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT"},
        expect=["listener.security.protocol.map", "PLAINTEXT_HOST"]),
    "node-id-missing-from-voters": dict(
        env={"KAFKA_NODE_ID": "2", "KAFKA_PROCESS_ROLES": "broker,controller",
             "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka-1:9093,3@kafka-3:9093",
             "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093", "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
             "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"},
        expect=["controller.quorum.voters", "node.id=2"]),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_bad_configuration_stops_the_container_with_a_message(request, containers, tmp_path, case):
    """The container exits (restart: no) with a non-zero code and a message naming the problem,
    and no panic or backtrace."""
    spec = BAD_CONFIGS[case]
    args = ["--restart", "no"]
    for k, v in spec["env"].items():
        args += ["-e", f"{k}={v}"]
    command = []
    if "properties" in spec:
        config = tmp_path / "config"
        config.mkdir(mode=0o755)
        config.chmod(0o755)
        (config / "server.properties").write_text(spec["properties"])
        (config / "server.properties").chmod(0o644)
        args += ["-v", f"{config}:/mnt/shared/config:ro"]
        command = ["/mnt/shared/config/server.properties"]
    with dl.logs_on_failure(request, containers):
        name = containers.run(*args, dl.FJORD_IMAGE, *command)
        code = dl.wait_exit(name, 30)
        logs = dl.logs(name)
        assert code != 0, logs
        info = dl.inspect(name)
        assert info["RestartCount"] == 0 and info["HostConfig"]["RestartPolicy"]["Name"] == "no"
        line = next((l for l in logs.splitlines() if all(e in l for e in spec["expect"])), None)
        assert line is not None, f"no line naming {spec['expect']}:\n{logs}"
        assert_clean_exit_logs(logs)


def test_an_unknown_kafka_variable_is_named_and_the_node_still_starts(request, containers):
    """KAFKA_SOME_UNKNOWN_THING: a WARN line naming it and its property; KAFKA_JMX_PORT and
    KAFKA_VERSION (the JVM's and the image's, not properties): no line; KAFKA_NUM_PARTITIONS
    honoured quietly; the node becomes healthy."""
    with dl.logs_on_failure(request, containers):
        name = containers.run("--restart", "no", "-e", "KAFKA_SOME_UNKNOWN_THING=42", "-e", "KAFKA_JMX_PORT=9101",
                              "-e", "KAFKA_VERSION=4.0.0", "-e", "KAFKA_NUM_PARTITIONS=2", dl.FJORD_IMAGE)
        dl.wait_healthy(name, timeout_s=60)
        logs = dl.logs(name)
        warns = [l for l in logs.splitlines() if IGNORED_LINE in l]
        assert len(warns) == 1 and " WARN " in warns[0], warns
        assert warns[0].endswith("variable=KAFKA_SOME_UNKNOWN_THING key=some.unknown.thing"), warns
        for quiet in ("KAFKA_JMX_PORT", "jmx.port", "KAFKA_VERSION", "KAFKA_NUM_PARTITIONS", "num.partitions"):
            assert quiet not in logs, f"{quiet} named in the log:\n{logs}"
