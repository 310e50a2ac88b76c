"""Kafka Connect 4.4.0 on the broker: a distributed worker (connect-runtime's own
org.apache.kafka.connect.cli.ConnectDistributed) with its config, offset and status topics, and
the FileStream connectors (connect-file) created through its REST API: a source reads a file into
a topic, a sink writes the topic into another file. The worker is SIGKILLed while lines are
flowing, more lines are appended while it is down, and after a restart every line reaches the sink
file: at least once, so duplicates are allowed, but each line is there and the first occurrences
are in the order the lines were written.

Exercises what Connect needs of a broker: CreateTopics with cleanup.policy=compact and
DescribeConfigs (the worker refuses internal topics that are not compacted), a classic group with
protocol type "connect" (the workers' group; the sink's consumer group beside it), the internal
topics read to their end through assign() and ListOffsets, offset commits. Runs on Kafka too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest

from appslib import APP_JAVA, JavaProc, check_built, logs_on_failure, topic_configs
from conftest import free_port, group_overrides
from eoslib import read_confluent

#: How long a worker may take to come up (JVM start, internal topics, the group) before failing.
READY_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def cb(start_broker):
    return start_broker("connect", **group_overrides(**{"auto.create.topics.enable": "false", "num.partitions": 1,
                                                         "group.initial.rebalance.delay.ms": 0}))


class Worker:
    """One Connect worker process, restartable on the same config (same REST port: the same
    worker id)."""

    def __init__(self, tmp_path, bootstrap: str, prefix: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.topics = {"config": f"{prefix}-configs", "offset": f"{prefix}-offsets", "status": f"{prefix}-status"}
        self.props = tmp_path / "worker.properties"
        self.log_path = tmp_path / "connect.log"
        settings = {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}-cluster",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter",
            "config.storage.topic": self.topics["config"],
            "offset.storage.topic": self.topics["offset"],
            "status.storage.topic": self.topics["status"],
            "config.storage.replication.factor": 1,
            "offset.storage.replication.factor": 1,
            "status.storage.replication.factor": 1,
            "offset.storage.partitions": 3,
            "status.storage.partitions": 2,
            # Source offsets and sink commits every 500 ms (default 60 s): a kill -9 repeats little.
            "offset.flush.interval.ms": 500,
            "listeners": self.url,
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": self.port,
            # The connectors are on the class path with their ServiceLoader manifests.
            "plugin.discovery": "service_load",
            # A restarted worker does not wait out the killed one (its session: 6 s; no delay
            # before reassigning what it ran), nor does the sink's consumer group.
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "scheduled.rebalance.max.delay.ms": 0,
            "consumer.session.timeout.ms": 6000,
            "consumer.heartbeat.interval.ms": 1000,
        }
        self.props.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.proc: JavaProc | None = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.proc = JavaProc([*APP_JAVA, "org.apache.kafka.connect.cli.ConnectDistributed", str(self.props)],
                             f"connect worker #{self.starts}", self.log_path)
        # GET /health is 200 once the worker has joined its group and read the config topic.
        self.wait(lambda: self.request("GET", "/health")[0] == 200, "the worker healthy (GET /health 200)",
                  READY_TIMEOUT_S)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def wait(self, cond, what: str, timeout_s: float):
        """Polls `cond` (connection errors count as not yet); fails if the worker dies."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise AssertionError(f"{self.proc.name} exited {self.proc.proc.returncode} waiting for {what}")
            try:
                v = cond()
                if v:
                    return v
            except (OSError, urllib.error.URLError) as e:
                last = e
            time.sleep(0.2)
        raise AssertionError(f"{self.proc.name}: no {what} within {timeout_s}s (last error: {last!r})")

    def create_connector(self, name: str, config: dict):
        """POST /connectors, retried while the worker answers 409 (a rebalance in progress)."""
        def attempt():
            status, body = self.request("POST", "/connectors", {"name": name, "config": config})
            if status == 409:
                return None
            assert status == 201, f"POST /connectors {name}: {status} {body}"
            return body

        return self.wait(attempt, f"connector {name} created", 30)

    def running(self, name: str) -> bool:
        """The connector and its one task RUNNING; a FAILED one fails the test with its trace."""
        status, body = self.request("GET", f"/connectors/{name}/status")
        if status != 200:
            return False
        states = [body["connector"]] + body.get("tasks", [])
        failed = [s for s in states if s.get("state") == "FAILED"]
        assert not failed, f"{name}: {failed}"
        return body["connector"]["state"] == "RUNNING" and len(body["tasks"]) == 1 \
            and body["tasks"][0]["state"] == "RUNNING"

    def close(self):
        if self.proc is not None:
            self.proc.kill9()


def read_lines(path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def first_occurrences(lines: list[str]) -> list[str]:
    seen, out = set(), []
    for l in lines:
        if l not in seen:
            seen.add(l)
            out.append(l)
    return out


def append(path, lines: list[str]):
    with open(path, "a") as f:
        f.writelines(l + "\n" for l in lines)


def source_position(w: Worker, name: str) -> int | None:
    """The source's committed file position, from GET /connectors/NAME/offsets (KIP-875: the
    worker reads it back from its offset topic)."""
    status, body = w.request("GET", f"/connectors/{name}/offsets")
    assert status == 200, (status, body)
    positions = [o["offset"]["position"] for o in body["offsets"]]
    return max(positions) if positions else None


def sink_offset(w: Worker, name: str) -> int | None:
    """The sink's committed consumer offset (partition 0), from GET /connectors/NAME/offsets (the
    worker reads it with the Admin client's ListConsumerGroupOffsets)."""
    status, body = w.request("GET", f"/connectors/{name}/offsets")
    assert status == 200, (status, body)
    offsets = [o["offset"]["kafka_offset"] for o in body["offsets"] if o["partition"]["kafka_partition"] == 0]
    return offsets[0] if offsets else None


@pytest.mark.timeout(300)
def test_file_source_and_sink_survive_a_worker_kill_9(cb, new_topic, tmp_path):
    """Three batches of 30 lines: the first goes through and both connectors commit their offsets
    for it; the worker is killed once the second is flowing; the third is appended while it is
    down. After the restart: every line in the sink file, first occurrences in order; the first
    batch exactly once in the topic and in the sink file (the source resumed from its committed
    file position, the sink from its committed offset); the committed offsets reach the end."""
    check_built("connect-runtime-*.jar", "Kafka Connect")
    check_built("connect-file-*.jar", "Kafka Connect's FileStream connectors")
    topic = new_topic(cb, partitions=1)
    prefix = f"connect-{uuid.uuid4().hex[:8]}"
    source_file, sink_file = tmp_path / "source.txt", tmp_path / "sink.txt"
    source_file.touch()
    batches = [[f"batch{b}-line{i:03}-{uuid.uuid4().hex[:6]}" for i in range(30)] for b in range(3)]
    written: list[str] = []

    def sink_has(lines: list[str]) -> bool:
        return set(lines) <= set(read_lines(sink_file))

    def all_running():
        return all(w.running(name) for name in ("file-source", "file-sink"))

    w = Worker(tmp_path, cb.bootstrap, prefix)
    with logs_on_failure(w.log_path):
        try:
            w.start()
            w.create_connector("file-source", {
                "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "tasks.max": "1", "file": str(source_file), "topic": topic})
            w.create_connector("file-sink", {
                "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
                "tasks.max": "1", "file": str(sink_file), "topics": topic})
            w.wait(all_running, "both connectors and their tasks RUNNING", 60)

            # The first batch goes through, in order, each line once, and both ends commit it.
            append(source_file, batches[0])
            written += batches[0]
            w.wait(lambda: sink_has(written), "the first batch in the sink file", 60)
            assert read_lines(sink_file) == written, "one worker, no failure: each line once, in order"
            size0 = source_file.stat().st_size
            w.wait(lambda: source_position(w, "file-source") == size0,
                   f"the source's committed position at {size0} (the first batch)", 30)
            w.wait(lambda: sink_offset(w, "file-sink") == len(batches[0]),
                   f"the sink's committed offset at {len(batches[0])}", 30)

            # The second batch is appended, and the worker killed once it is flowing.
            append(source_file, batches[1])
            written += batches[1]
            w.wait(lambda: set(read_lines(sink_file)) & set(batches[1]), "the second batch flowing", 60)
            w.proc.kill9()
            append(source_file, batches[2])
            written += batches[2]

            w.start()
            w.wait(all_running, "both connectors and their tasks RUNNING after the restart", 60)
            w.wait(lambda: sink_has(written), "every line in the sink file after the restart", 90)
            got = read_lines(sink_file)
            assert set(got) == set(written), f"lines nobody wrote: {set(got) - set(written)}"
            assert first_occurrences(got) == written, "first occurrences out of order"
            in_topic = [r.value for r in sorted(read_confluent(cb.bootstrap, topic, "read_uncommitted"),
                                                key=lambda r: r.offset)]
            assert first_occurrences(in_topic) == written, "the topic's first occurrences out of order"
            # Committed before the kill, so never repeated: the restarted source started at or after
            # its position, the sink at or after its offset.
            assert in_topic[:len(batches[0])] == batches[0] and not set(in_topic[len(batches[0]):]) & set(batches[0]), \
                "the source repeated lines from before its committed position"
            assert got[:len(batches[0])] == batches[0] and not set(got[len(batches[0]):]) & set(batches[0]), \
                "the sink repeated records from before its committed offset"
            # Only the second batch, in flight at the kill, may repeat (at least once).
            repeated = {l for l in written if got.count(l) > 1 or in_topic.count(l) > 1}
            assert repeated <= set(batches[1]), f"repeated outside the second batch: {repeated - set(batches[1])}"
            print(f"topic: {len(in_topic)} records, sink file: {len(got)} lines, for {len(written)} lines written "
                  f"({len(repeated)} of the second batch repeated)")

            # The restarted worker commits up to the end on both sides.
            size = source_file.stat().st_size
            w.wait(lambda: source_position(w, "file-source") == size, f"the source's position at {size}", 30)
            w.wait(lambda: sink_offset(w, "file-sink") == len(in_topic), f"the sink's offset at {len(in_topic)}", 30)

            # The worker's internal topics, as it created them: compacted.
            for kind, name in w.topics.items():
                configs = topic_configs(cb.bootstrap, name)
                assert configs.get("cleanup.policy") == "compact", f"{kind} topic {name}: {configs}"
            status, connectors = w.request("GET", "/connectors")
            assert status == 200 and sorted(connectors) == ["file-sink", "file-source"], (status, connectors)
        finally:
            w.close()
