"""A seeded fault schedule against a 3-node cluster under real clients, with a checker.

Not part of the test suite (pytest collects test_*.py only): `make fault-schedule` runs it.
Each run starts a fresh 3-node cluster and a topic of 3 partitions, replication factor 3,
min.insync.replicas=2, and keeps two real clients busy for the whole run:

- an idempotent acks=all confluent-kafka producer writing numbered records to every partition;
- a KIP-848 consumer group (group.protocol=consumer) reading them and committing offsets every
  half second, while another client samples the group's committed offsets.

Meanwhile a schedule drawn from the run's seed applies faults one after the other, each given
time to heal before the next: kill -9 of a partition leader, kill -9 of the controller leader
(both restarted a little later), a follower paused (SIGSTOP) past replica.lag.time.max.ms, and
a rolling restart (SIGTERM, start) of every node. At the end the checker reads every partition
from its start and proves:

- every acknowledged record is there, once, at the offset it was acknowledged with;
- nothing is there that was never sent, and what was sent is in the order it was sent;
- the committed offsets the group reported never went backwards;
- every node answers with the same leaders and a full ISR again.

Not yet in the schedule: network cuts between nodes, and a transactional job (transactions are
refused by a cluster of several nodes until WriteTxnMarkers reaches other brokers).

Environment: FAULT_RUNS (default 1), FAULT_SEED (the first run's seed; default: from the
clock), FAULT_STEPS (faults per run, default 5), FAULT_OUT (a JSON-lines file for the results).
A failure names its seed; FAULT_SEED=<seed> FAULT_RUNS=1 replays the same schedule.
"""

import json
import os
import random
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_for

RUNS = int(os.environ.get("FAULT_RUNS", "1"))
FIRST_SEED = int(os.environ.get("FAULT_SEED", str(int(time.time()) % 1_000_000)))
STEPS = int(os.environ.get("FAULT_STEPS", "5"))
OUT = os.environ.get("FAULT_OUT")
PARTITIONS = 3
FAULTS = ["kill-leader", "kill-controller", "pause-follower", "rolling-restart"]
# Short enough that a run takes about a minute, long enough for a busy two-core machine.
CLUSTER = {
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
    "replica.lag.time.max.ms": 4000,
    "group.consumer.session.timeout.ms": 10000,
    "group.consumer.heartbeat.interval.ms": 1000,
    "offsets.topic.num.partitions": 6,
}


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
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True),
                        threading.Thread(target=self._sample_commits, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(120)

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


def apply_fault(fault, rng, nodes, admin, topic, log):
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
    else:
        raise AssertionError(fault)


def check(w: Workload, bootstrap: str, topic: str) -> list[str]:
    problems = list(w.errors)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"checker-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        for p in range(PARTITIONS):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            consumer.assign([TopicPartition(topic, p, 0)])
            log: dict[int, int] = {}
            deadline = time.monotonic() + 60
            while len(log) < high and time.monotonic() < deadline:
                for m in consumer.consume(1000, timeout=0.5):
                    if m.error() is None:
                        part, seq = m.value().decode().split("-")
                        if int(part) != p:
                            problems.append(f"partition {p} offset {m.offset()}: a record of partition {part}")
                        log[m.offset()] = int(seq)
            if len(log) < high:
                problems.append(f"partition {p}: read {len(log)} of {high} records")
            for offset, seq in w.acked[p].items():
                if log.get(offset) != seq:
                    problems.append(f"partition {p}: acknowledged {seq} at {offset}, found {log.get(offset)}")
            seqs = [log[o] for o in sorted(log)]
            if len(set(seqs)) != len(seqs):
                problems.append(f"partition {p}: a record twice")
            if seqs != sorted(seqs):
                problems.append(f"partition {p}: out of the order sent")
            if seqs and max(seqs) >= w.sent[p]:
                problems.append(f"partition {p}: a record never sent ({max(seqs)} of {w.sent[p]})")
    finally:
        consumer.close()
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
    nodes = start_cluster(f"faults-{seed}", 3, **CLUSTER)
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"faults-{seed}"
    admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})],
                        operation_timeout=20, request_timeout=20)[topic].result(timeout=30)
    wait_for(lambda: healed(admin, topic), "the topic in sync")
    w = Workload(bootstrap, topic, f"faults-{seed}")
    w.start()
    try:
        time.sleep(3)
        for fault in schedule:
            apply_fault(fault, rng, nodes, admin, topic, log)
            wait_for(lambda: healed(admin, topic), f"the cluster healed after {fault}", timeout_s=90)
            time.sleep(2)
    finally:
        for n in nodes:
            n.resume()
        w.finish()
    problems = check(w, bootstrap, topic)
    acked = sum(len(a) for a in w.acked.values())
    result = {"seed": seed, "schedule": schedule, "acked": acked, "failed_deliveries": len(w.failed),
              "consumed": w.consumed, "commit_samples": len(w.commits), "problems": problems[:20],
              "seconds": round(time.monotonic() - started, 1)}
    log(json.dumps(result))
    if OUT:
        with open(OUT, "a") as f:
            f.write(json.dumps(result) + "\n")
    for n in nodes:
        n.stop()
    assert not problems, f"seed {seed}: {problems[:10]}"
    assert acked > 0 and w.consumed > 0, f"seed {seed}: the clients did nothing"
