"""Failover time of a replicated partition, measured the same way for Fjord and for Apache Kafka.

Not part of the test suite (pytest collects test_*.py only): `make bench-failover` runs it once
against Fjord and once against Kafka (the compat suite's reference broker, through
`reference/kafka-as-fjord`), on the same machine, both on their defaults and both with the same
shorter timeouts.

Each run: a 3-node cluster (kept across runs), a new topic of one partition, replication factor
3, min.insync.replicas=2; an idempotent acks=all confluent-kafka producer sends a record every
5 ms; the partition leader is killed (SIGKILL) or stopped (SIGTERM, a controlled shutdown); the
time measured is from the signal to the acknowledgement of the first record sent after it. The
node then comes back and rejoins the ISR before the next run.

Environment: FAILOVER_RUNS (default 10), FAILOVER_MODE (`kill` or `stop`), FAILOVER_TUNED (1:
broker.session.timeout.ms=2000, broker.heartbeat.interval.ms=500 on both brokers),
FAILOVER_OUT (a JSON file for the results), FAILOVER_ACKS (`all`, the default, with idempotence;
`1` without, to tell the client's share from the ISR wait).
"""

import json
import os
import statistics
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import REFERENCE, wait_for

RUNS = int(os.environ.get("FAILOVER_RUNS", "10"))
MODE = os.environ.get("FAILOVER_MODE", "kill")
TUNED = os.environ.get("FAILOVER_TUNED", "0") == "1"
OUT = os.environ.get("FAILOVER_OUT")
ACKS = os.environ.get("FAILOVER_ACKS", "all")
SEND_EVERY_S = 0.005


def partition_state(admin, topic):
    t = admin.list_topics(topic, timeout=5).topics.get(topic)
    if t is None or t.error is not None or 0 not in t.partitions:
        return None
    return t.partitions[0]


@pytest.mark.timeout(7200)
def test_failover(start_cluster):
    overrides = {"broker.session.timeout.ms": 2000, "broker.heartbeat.interval.ms": 500} if TUNED else {}
    nodes = start_cluster("failover-bench", 3, **overrides)
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    times = []
    # From the signal to a survivor's Metadata naming a new leader: the broker's part of the
    # failover, without the client's retries.
    led_again = []
    for run in range(RUNS):
        topic = f"failover-{run}-{uuid.uuid4().hex[:6]}"
        admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})],
                            operation_timeout=30, request_timeout=30)[topic].result(timeout=60)
        first = wait_for(lambda: (p := partition_state(admin, topic)) is not None and p.leader >= 0
                         and len(p.isrs) == 3 and p, "three in-sync replicas", timeout_s=60)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": ACKS, "enable.idempotence": ACKS == "all",
                             "linger.ms": 0, "message.timeout.ms": 120000})
        acked_at = {}
        lock = threading.Lock()

        def report(err, msg, sent=None):
            if err is None:
                with lock:
                    acked_at[int(msg.value())] = time.monotonic()

        stop = threading.Event()
        sent_at = {}

        def send():
            i = 0
            while not stop.is_set():
                sent_at[i] = time.monotonic()
                producer.produce(topic, value=str(i).encode(), partition=0, on_delivery=report)
                producer.poll(0)
                i += 1
                time.sleep(SEND_EVERY_S)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        wait_for(lambda: len(acked_at) > 50, "records acknowledged before the failure", timeout_s=30)
        victim = next(n for n in nodes if n.node_id == first.leader)
        signalled = time.monotonic()
        if MODE == "kill":
            victim.kill()
        else:
            victim.stop()

        survivors = AdminClient({"bootstrap.servers": ",".join(n.bootstrap for n in nodes if n is not victim)})
        moved = wait_for(lambda: (p := partition_state(survivors, topic)) is not None
                         and p.leader not in (-1, first.leader) and time.monotonic(),
                         "a new leader in Metadata", timeout_s=120, interval_s=0.02)
        led_again.append(moved - signalled)

        def first_after():
            with lock:
                after = [acked_at[i] for i, t in list(sent_at.items()) if t > signalled and i in acked_at]
            return min(after) if after else None

        done = wait_for(first_after, "a record sent after the failure acknowledged", timeout_s=120)
        took = done - signalled
        times.append(took)
        stop.set()
        sender.join()
        producer.flush(30)
        print(f"run {run}: {MODE} of leader {first.leader}: new leader in Metadata after "
              f"{led_again[-1] * 1000:.0f} ms, first acknowledged produce after {took * 1000:.0f} ms", flush=True)
        victim.spawn()
        victim.wait_ready(timeout_s=120)
        wait_for(lambda: (p := partition_state(admin, topic)) is not None and len(p.isrs) == 3,
                 "the node back in the ISR", timeout_s=120)
    broker = "kafka" if REFERENCE else "fjord"
    q = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else times * 99
    summary = {"broker": broker, "mode": MODE, "tuned": TUNED, "runs": len(times),
               "ms": [round(t * 1000) for t in times],
               "min_ms": round(min(times) * 1000), "median_ms": round(statistics.median(times) * 1000),
               "p99_ms": round(q[98] * 1000), "max_ms": round(max(times) * 1000),
               "metadata_ms": [round(t * 1000) for t in led_again]}
    print(json.dumps(summary), flush=True)
    if OUT:
        with open(OUT, "a") as f:
            f.write(json.dumps(summary) + "\n")
