"""A seeded fault schedule against a 3-node cluster under real clients, with a checker.

Not part of the test suite (pytest collects test_*.py only): `make fault-schedule` runs it.
Each run starts a fresh 3-node cluster and a topic of 3 partitions, replication factor 3,
min.insync.replicas=2, and keeps two real clients busy for the whole run:

- an idempotent acks=all confluent-kafka producer writing numbered records to every partition;
- the same from the Java client (kafka-clients, through the compat suite's Java CLI) into a
  topic of its own;
- a KIP-848 consumer group (group.protocol=consumer) reading them and committing offsets every
  half second, while another client samples the group's committed offsets;
- a transactional consume-transform-produce job (a classic group, read_committed): it copies each
  record to the same partition of an output topic and commits its input offsets in the same
  transaction; every fifth transaction instead writes records it then aborts.

Meanwhile a schedule drawn from the run's seed applies faults one after the other, each given
time to heal before the next: kill -9 of a partition leader, kill -9 of the controller leader
(both restarted a little later), a follower paused (SIGSTOP) past replica.lag.time.max.ms, a
rolling restart (SIGTERM, start) of every node, a partition leader cut off from both other
nodes (still reachable by the clients) for 2-8 s, and one link between two nodes cut for 2-8 s.
Each node runs in a network namespace of its own (netlab.py) so that links can be cut. At the end the checker reads every partition
from its start and proves:

- every acknowledged record is there, once, at the offset it was acknowledged with;
- nothing is there that was never sent, and what was sent is in the order it was sent;
- the committed offsets the group reported never went backwards;
- a read_committed read of the output topic holds, per partition, exactly the input records up
  to the transactional job's committed offset, once each and in order, and no aborted record;
- every node answers with the same leaders and a full ISR again.

Environment: FAULT_RUNS (default 1), FAULT_SEED (the first run's seed; default: from the
clock), FAULT_STEPS (faults per run, default 5), FAULT_OUT (a JSON-lines file for the results).
A failure names its seed; FAULT_SEED=<seed> FAULT_RUNS=1 replays the same schedule.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import netlab
from clientlib import JAVA_CLASSPATH
from conftest import _ALL, wait_for

RUNS = int(os.environ.get("FAULT_RUNS", "1"))
FIRST_SEED = int(os.environ.get("FAULT_SEED", str(int(time.time()) % 1_000_000)))
STEPS = int(os.environ.get("FAULT_STEPS", "5"))
OUT = os.environ.get("FAULT_OUT")
PARTITIONS = 3
FAULTS = ["kill-leader", "kill-controller", "pause-follower", "rolling-restart", "partition-leader", "cut-link"]
# Short enough that a run takes about a minute, long enough for a busy two-core machine.
CLUSTER = {
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
    "replica.lag.time.max.ms": 4000,
    "group.consumer.session.timeout.ms": 10000,
    "group.consumer.heartbeat.interval.ms": 1000,
    "offsets.topic.num.partitions": 6,
    "transaction.state.log.num.partitions": 6,
}


def txn_debug() -> dict:
    """librdkafka debug logging for the transactional job's clients, on stderr (run with -s),
    when FAULT_TXN_DEBUG names the contexts (for example `eos,cgrp,protocol,broker`): to see
    what a slow run waits on. (A Python `logger` would only see the lines when the client is
    polled, which a stuck call is not.)"""
    contexts = os.environ.get("FAULT_TXN_DEBUG")
    return {"debug": contexts} if contexts else {}


class Workload:
    """The producer and the consumer group, on threads, with what they saw."""

    def __init__(self, bootstrap: str, topic: str, group: str):
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.stop = threading.Event()
        self.sent = {p: 0 for p in range(PARTITIONS)}
        self.acked: dict[int, dict[int, int]] = {p: {} for p in range(PARTITIONS)}  # offset -> seq
        self.failed: list[str] = []
        self.commits: list[dict[int, int]] = []
        self.consumed = 0
        self.errors: list[str] = []
        self.output = f"{topic}-out"
        self.java_topic = f"{topic}-java"
        self.java_sent = {p: 0 for p in range(PARTITIONS)}
        self.java_acked: dict[int, dict[int, int]] = {p: {} for p in range(PARTITIONS)}
        self.txn = {"committed": 0, "aborted": 0, "retried": 0, "rewound": 0}
        #: The transactional job's slowest call of each kind, in seconds, and the sum: where a
        #: slow run spends its time.
        self.txn_slowest: dict[str, float] = {}
        self.txn_total: dict[str, float] = {}
        self.threads = [threading.Thread(target=f, name=f.__name__.lstrip("_"), daemon=True)
                        for f in (self._produce, self._consume, self._sample_commits, self._transform,
                                  self._produce_java)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        #: How long each client took to stop, in seconds (a slow run's time may be here).
        self.finish_s = {}
        #: Where each client that did not stop in time was stuck: its thread's innermost frames.
        self.stuck = {}
        for t in self.threads:
            started = time.monotonic()
            t.join(120)
            self.finish_s[t.name] = round(time.monotonic() - started, 2)
            frame = sys._current_frames().get(t.ident) if t.is_alive() else None
            if frame is not None:
                self.stuck[t.name] = [f"{fs.name}:{fs.lineno} {fs.line}" for fs in traceback.extract_stack(frame)[-4:]]

    def _produce(self):
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 120000})

        def report(err, msg, seq):
            if err is not None:
                self.failed.append(f"{msg.partition()}:{seq}: {err}")
            else:
                self.acked[msg.partition()][msg.offset()] = seq

        while not self.stop.is_set():
            for p in range(PARTITIONS):
                seq = self.sent[p]
                self.sent[p] += 1
                producer.produce(self.topic, value=f"{p}-{seq}".encode(), partition=p,
                                 on_delivery=lambda err, msg, seq=seq: report(err, msg, seq))
            producer.poll(0.01)
        if producer.flush(120) != 0:
            self.errors.append("the producer could not deliver everything within 120 s")

    def _consume(self):
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                             "group.protocol": "consumer", "auto.offset.reset": "earliest",
                             "enable.auto.commit": False})
        consumer.subscribe([self.topic])
        last_commit = time.monotonic()
        try:
            while not self.stop.is_set():
                msgs = consumer.consume(500, timeout=0.2)
                self.consumed += sum(1 for m in msgs if m.error() is None)
                if time.monotonic() - last_commit >= 0.5:
                    last_commit = time.monotonic()
                    try:
                        consumer.commit(asynchronous=False)
                    except KafkaException:
                        pass  # no offsets yet, or a coordinator moving: the next commit tries again
        finally:
            consumer.close()

    def _produce_java(self):
        cmd = ["java", "-XX:+UseSerialGC", "-cp", JAVA_CLASSPATH, "dev.fjord.compat.Cli", "stream-produce",
               "--bootstrap", self.bootstrap, "--topic", self.java_topic]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, bufsize=1)

        def read_acks():
            for line in proc.stdout:
                ack = json.loads(line)
                part, seq = ack["value"].split("-")
                if "error" in ack:
                    self.failed.append(f"java {ack['value']}: {ack['error']}: {ack.get('message')}")
                else:
                    self.java_acked[int(part)][ack["offset"]] = int(seq)

        reader = threading.Thread(target=read_acks, daemon=True)
        reader.start()
        try:
            while not self.stop.wait(0.01):
                for p in range(PARTITIONS):
                    seq = self.java_sent[p]
                    self.java_sent[p] += 1
                    proc.stdin.write(json.dumps({"partition": p, "value": f"{p}-{seq}"}) + "\n")
            proc.stdin.close()
            if proc.wait(150) != 0:
                self.errors.append(f"the Java producer exited with {proc.returncode}")
        except (OSError, subprocess.TimeoutExpired) as e:
            self.errors.append(f"the Java producer failed: {e!r}")
            proc.kill()
        reader.join(10)

    def _timed(self, what: str, call, *args):
        started = time.monotonic()
        try:
            return call(*args)
        finally:
            took = time.monotonic() - started
            self.txn_slowest[what] = round(max(self.txn_slowest.get(what, 0.0), took), 2)
            self.txn_total[what] = round(self.txn_total.get(what, 0.0) + took, 2)

    def _transactional_producer(self):
        producer = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": f"{self.group}-eos",
                             "transaction.timeout.ms": 60000, "linger.ms": 5, **txn_debug()})
        self._timed("init_transactions", producer.init_transactions, 120)
        return producer

    def _transform(self):
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{self.group}-eos",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "isolation.level": "read_committed", "session.timeout.ms": 10000, **txn_debug()})
        consumer.subscribe([self.topic])
        try:
            producer = self._transactional_producer()
        except KafkaException as e:
            self.errors.append(f"the transactional job could not start: {e}")
            consumer.close()
            return
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                if n % 5 == 0:
                    self._abort_one(producer, n)
                    continue
                msgs = [m for m in self._timed("consume", consumer.consume, 200, 0.2) if m.error() is None]
                if not msgs:
                    continue
                try:
                    producer.begin_transaction()
                    for m in msgs:
                        producer.produce(self.output, value=m.value(), partition=m.partition())
                    self._timed("send_offsets", producer.send_offsets_to_transaction,
                                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 60)
                    self._timed("commit", self._commit, producer)
                    self.txn["committed"] += 1
                except KafkaException as e:
                    producer = self._recover(producer, consumer, e.args[0])
        finally:
            self._timed("close", consumer.close)

    def _commit(self, producer):
        """Commits, retrying what the client calls retriable (a coordinator moving)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                producer.commit_transaction(30)
                return
            except KafkaException as e:
                if not e.args[0].retriable() or time.monotonic() > deadline:
                    raise
                self.txn["retried"] += 1

    def _abort_one(self, producer, n):
        try:
            producer.begin_transaction()
            for p in range(PARTITIONS):
                producer.produce(self.output, value=f"aborted-{n}".encode(), partition=p)
            self._timed("abort_flush", producer.flush, 30)
            self._timed("abort", producer.abort_transaction, 60)
            self.txn["aborted"] += 1
        except KafkaException as e:
            self.errors.append(f"an abort failed: {e.args[0]}")

    def _recover(self, producer, consumer, err):
        """After a failed transaction: abort it (or start a new producer when the client says
        the old one is done for) and read again from the committed offsets."""
        if err.txn_requires_abort():
            try:
                producer.abort_transaction(60)
            except KafkaException as e:
                self.errors.append(f"could not abort after {err}: {e.args[0]}")
        else:
            self.errors.append(f"a transaction failed for good: {err}")
            producer = self._transactional_producer()
        self.txn["rewound"] += 1
        try:
            for tp in consumer.committed(consumer.assignment(), timeout=30):
                consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
        except KafkaException as e:
            self.errors.append(f"could not rewind to the committed offsets: {e.args[0]}")
        return producer

    def _sample_commits(self):
        # Not a member: OffsetFetch reads a group's commits whatever its protocol.
        sampler = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                            "enable.auto.commit": False})
        try:
            while not self.stop.wait(0.5):
                try:
                    got = sampler.committed([TopicPartition(self.topic, p) for p in range(PARTITIONS)], timeout=5)
                except KafkaException:
                    continue
                self.commits.append({tp.partition: tp.offset for tp in got if tp.offset >= 0})
        finally:
            sampler.close()


def partitions(admin, topic):
    t = admin.list_topics(topic, timeout=5).topics.get(topic)
    if t is None or t.error is not None or len(t.partitions) != PARTITIONS:
        return None
    return t.partitions


def healed(admin, topic):
    ps = partitions(admin, topic)
    return ps is not None and all(p.leader >= 0 and len(p.isrs) == 3 for p in ps.values())


def controller_leader(admin) -> int:
    return admin.describe_cluster(request_timeout=5).result(timeout=10).controller.id


def apply_fault(fault, rng, nodes, network, admin, topic, log):
    by_id = {n.node_id: n for n in nodes}
    if fault == "kill-leader":
        leader = partitions(admin, topic)[rng.randrange(PARTITIONS)].leader
        log(f"kill -9 node {leader} (a partition leader)")
        by_id[leader].kill()
        time.sleep(rng.uniform(1, 4))
        by_id[leader].start()
    elif fault == "kill-controller":
        leader = controller_leader(admin)
        log(f"kill -9 node {leader} (the controller leader)")
        by_id[leader].kill()
        time.sleep(rng.uniform(1, 4))
        by_id[leader].start()
    elif fault == "pause-follower":
        p = partitions(admin, topic)[rng.randrange(PARTITIONS)]
        follower = rng.choice([r for r in p.replicas if r != p.leader])
        log(f"SIGSTOP node {follower} (a follower) for 6 s")
        by_id[follower].pause()
        time.sleep(6)
        by_id[follower].resume()
    elif fault == "rolling-restart":
        for n in nodes:
            log(f"SIGTERM and restart node {n.node_id}")
            n.stop()
            n.start()
            wait_for(lambda: healed(admin, topic), "the ISR full again after a restart", timeout_s=60)
    elif fault == "partition-leader":
        leader = partitions(admin, topic)[rng.randrange(PARTITIONS)].leader
        others = [n.node_id for n in nodes if n.node_id != leader]
        seconds = rng.uniform(2, 8)
        log(f"cut node {leader} (a partition leader) off from nodes {others} for {seconds:.1f} s")
        for o in others:
            network.cut(leader, o)
        time.sleep(seconds)
        network.heal_all()
    elif fault == "cut-link":
        a, b = rng.sample([n.node_id for n in nodes], 2)
        seconds = rng.uniform(2, 8)
        log(f"cut the link between nodes {a} and {b} for {seconds:.1f} s")
        network.cut(a, b)
        time.sleep(seconds)
        network.heal_all()
    else:
        raise AssertionError(fault)


def read_partition(bootstrap: str, topic: str, p: int, committed: bool) -> tuple[dict[int, str], int]:
    """Every record of one partition (offset -> value) up to its end, and that end (the last
    stable offset for a read_committed read)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"checker-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed" if committed else "read_uncommitted"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        consumer.assign([TopicPartition(topic, p, 0)])
        log: dict[int, str] = {}
        deadline = time.monotonic() + 60
        quiet = 0
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, timeout=0.5)
            for m in msgs:
                if m.error() is None:
                    log[m.offset()] = m.value().decode()
            position = consumer.position([TopicPartition(topic, p)])[0].offset
            quiet = 0 if msgs else quiet + 1
            if not msgs and (high == 0 or position >= high):
                break
            # A read_committed position stops before a log that ends in an aborted transaction
            # (its records and marker are skipped): the clients have stopped, so once records
            # came, three quiet seconds mean the end.
            if committed and quiet >= 6 and log:
                break
        return log, high
    finally:
        consumer.close()


def check_transformed(w: Workload, bootstrap: str, inputs: dict[int, dict[int, int]]) -> list[str]:
    """The output topic against the input and the transactional job's committed offsets."""
    problems = []
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{w.group}-eos", "enable.auto.commit": False})
    try:
        committed = {tp.partition: tp.offset
                     for tp in reader.committed([TopicPartition(w.topic, p) for p in range(PARTITIONS)], timeout=30)}
    finally:
        reader.close()
    for p in range(PARTITIONS):
        out, _ = read_partition(bootstrap, w.output, p, committed=True)
        values = [out[o] for o in sorted(out)]
        aborted = [v for v in values if v.startswith("aborted-")]
        if aborted:
            problems.append(f"output partition {p}: {len(aborted)} aborted records read as committed")
        upto = max(committed.get(p, 0), 0)
        want = [f"{p}-{inputs[p][o]}" for o in sorted(inputs[p]) if o < upto]
        got = [v for v in values if not v.startswith("aborted-")]
        if got != want:
            extra = len(got) - len(want)
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            problems.append(f"output partition {p}: {len(got)} records for {len(want)} inputs below the committed "
                            f"offset {upto} ({extra:+}), first difference at {first}")
    return problems


def check_log(bootstrap: str, topic: str, sent: dict[int, int], acked: dict[int, dict[int, int]],
              problems: list[str]) -> dict[int, dict[int, int]]:
    """One producer's topic: every acknowledged record at its offset, once, in the order sent,
    nothing never sent. Returns the log read (partition -> offset -> sequence number)."""
    logs: dict[int, dict[int, int]] = {}
    for p in range(PARTITIONS):
        raw, high = read_partition(bootstrap, topic, p, committed=False)
        log: dict[int, int] = {}
        for offset, value in raw.items():
            part, seq = value.split("-")
            if int(part) != p:
                problems.append(f"{topic} partition {p} offset {offset}: a record of partition {part}")
            log[offset] = int(seq)
        logs[p] = log
        if len(log) < high:
            problems.append(f"{topic} partition {p}: read {len(log)} of {high} records")
        for offset, seq in acked[p].items():
            if log.get(offset) != seq:
                problems.append(f"{topic} partition {p}: acknowledged {seq} at {offset}, found {log.get(offset)}")
        seqs = [log[o] for o in sorted(log)]
        if len(set(seqs)) != len(seqs):
            problems.append(f"{topic} partition {p}: a record twice")
        if seqs != sorted(seqs):
            problems.append(f"{topic} partition {p}: out of the order sent")
        if seqs and max(seqs) >= sent[p]:
            problems.append(f"{topic} partition {p}: a record never sent ({max(seqs)} of {sent[p]})")
    return logs


def check(w: Workload, bootstrap: str, topic: str) -> list[str]:
    problems = list(w.errors)
    inputs = check_log(bootstrap, topic, w.sent, w.acked, problems)
    check_log(bootstrap, w.java_topic, w.java_sent, w.java_acked, problems)
    problems += check_transformed(w, bootstrap, inputs)
    last: dict[int, int] = {}
    for sample in w.commits:
        for p, offset in sample.items():
            if offset < last.get(p, -1):
                problems.append(f"partition {p}: committed offset went back from {last[p]} to {offset}")
            last[p] = max(last.get(p, -1), offset)
    return problems


@pytest.mark.timeout(7200)
@pytest.mark.parametrize("run", range(RUNS))
def test_fault_schedule(start_cluster, run):
    seed = FIRST_SEED + run
    rng = random.Random(seed)
    schedule = [rng.choice(FAULTS) for _ in range(STEPS)]
    started = time.monotonic()

    def log(what):
        print(f"[seed {seed} +{time.monotonic() - started:5.1f}s] {what}", flush=True)

    log(f"schedule: {schedule}")
    network = netlab.Network(3)
    try:
        run_schedule(start_cluster, network, seed, rng, schedule, started, log)
    finally:
        for n in list(_ALL):
            if n.netns in network.namespaces:
                n.kill()
        network.teardown()


def run_schedule(start_cluster, network, seed, rng, schedule, started, log):
    nodes = start_cluster(f"faults-{seed}", 3, network=network, **CLUSTER)
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"faults-{seed}"
    for name in (topic, f"{topic}-out", f"{topic}-java"):
        admin.create_topics([NewTopic(name, PARTITIONS, 3, config={"min.insync.replicas": "2"})],
                            operation_timeout=20, request_timeout=20)[name].result(timeout=30)
        wait_for(lambda: healed(admin, name), f"{name} in sync")
    w = Workload(bootstrap, topic, f"faults-{seed}")
    w.start()
    try:
        time.sleep(3)
        for fault in schedule:
            apply_fault(fault, rng, nodes, network, admin, topic, log)
            wait_for(lambda: healed(admin, topic), f"the cluster healed after {fault}", timeout_s=90)
            time.sleep(2)
    finally:
        network.heal_all()
        for n in nodes:
            n.resume()
        w.finish()
    problems = check(w, bootstrap, topic)
    acked = sum(len(a) for a in w.acked.values())
    java_acked = sum(len(a) for a in w.java_acked.values())
    result = {"seed": seed, "schedule": schedule, "acked": acked, "java_acked": java_acked,
              "failed_deliveries": len(w.failed),
              "consumed": w.consumed, "commit_samples": len(w.commits), "transactions": w.txn,
              "txn_slowest_s": w.txn_slowest, "txn_total_s": w.txn_total, "finish_s": w.finish_s, "stuck": w.stuck,
              "problems": problems[:20],
              "seconds": round(time.monotonic() - started, 1)}
    log(json.dumps(result))
    if OUT:
        with open(OUT, "a") as f:
            f.write(json.dumps(result) + "\n")
    for n in nodes:
        n.stop()
    assert not problems, f"seed {seed}: {problems[:10]}"
    assert acked > 0 and java_acked > 0 and w.consumed > 0 and w.txn["committed"] > 0, \
        f"seed {seed}: a client did nothing"
