"""The log cleaner under a steady load, measured the same way for Fjord and for Apache Kafka.

Not part of the test suite (pytest collects test_*.py only): `make bench-cleaner-soak` runs it
against Fjord with its cleaner, Fjord without it (`log.cleaner.enable=false`, the latency
baseline), and Kafka (the compat suite's reference broker, through `reference/kafka-as-fjord`)
with its cleaner, one after the other on the same machine.

Each run: a fresh single-node broker; one producer (confluent-kafka, acks=all, linger.ms=5)
writes at a steady rate into a compacted topic (SOAK_KEYS keys, updated over and over) and into
a retained one (retention.bytes per partition), both with 16 MiB segments, for SOAK_S seconds.
Sampled every 5 s: the data directory's size, the broker's CPU and, for Kafka, the CPU of its
cleaner threads (`kafka-log-cleaner-thread-*`, from /proc). Fjord reports its cleaner's CPU per
pass (`fjord_cleaner_pass_cpu_seconds`) and bytes read (`fjord_cleaner_bytes_read_total`);
Kafka's bytes come from its cleaner's summaries ("MB of log processed"). At the end every key of
the compacted topic is read back and checked against the last value acknowledged for it.

Environment: SOAK_S (1200), SOAK_MB_PER_S (per topic, 2.0), SOAK_KEYS (20000), SOAK_CLEANER
(1; 0 sets log.cleaner.enable=false), SOAK_OUT (a JSON-lines file for the result), SOAK_LABEL.
"""

import json
import os
import re
import statistics
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import FJORD_BIN, Broker

SOAK_S = int(os.environ.get("SOAK_S", "1200"))
MB_PER_S = float(os.environ.get("SOAK_MB_PER_S", "2.0"))
KEYS = int(os.environ.get("SOAK_KEYS", "20000"))
CLEANER = os.environ.get("SOAK_CLEANER", "1") == "1"
OUT = os.environ.get("SOAK_OUT")
VALUE_BYTES = 1000
PARTITIONS = 2
SEGMENT_BYTES = 16 << 20
RETENTION_BYTES = 128 << 20
SAMPLE_S = 5
WARMUP_S = 30
KAFKA = FJORD_BIN.name == "kafka-as-fjord"
LABEL = os.environ.get("SOAK_LABEL") or ("kafka" if KAFKA else "fjord") + ("" if CLEANER else "-no-cleaner")


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def proc_cpu_s(pid: int, name_prefix: str | None = None) -> float:
    """CPU seconds of the process, or of its threads whose name starts with `name_prefix`."""
    tick = os.sysconf("SC_CLK_TCK")
    if name_prefix is None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if not (task / "comm").read_text().startswith(name_prefix):
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except FileNotFoundError:
            pass
    return total


def fjord_metrics(broker) -> dict[str, float]:
    with urllib.request.urlopen(broker.metrics_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("fjord_cleaner_pass_cpu_seconds_sum", "fjord_cleaner_bytes_read_total",
                            "fjord_cleaner_passes_total")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def kafka_cleaned_bytes(log: str) -> float:
    """Bytes Kafka's cleaner read, from its per-pass summaries (MB of 2^20 bytes)."""
    return sum(float(m.replace(",", "")) * (1 << 20) for m in re.findall(r"([\d,]+\.\d) MB of log processed", log))


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


@pytest.mark.timeout(7200)
def test_cleaner_soak():
    overrides = {"log.retention.check.interval.ms": 10000, "auto.create.topics.enable": "false"}
    if not CLEANER:
        overrides["log.cleaner.enable"] = "false"
    b = Broker(f"soak-{LABEL}", overrides)
    b.start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        compacted, retained = f"soak-compacted-{uuid.uuid4().hex[:6]}", f"soak-retained-{uuid.uuid4().hex[:6]}"
        common = {"segment.bytes": str(SEGMENT_BYTES)}
        futures = admin.create_topics([
            NewTopic(compacted, PARTITIONS, 1, config={**common, "cleanup.policy": "compact"}),
            NewTopic(retained, PARTITIONS, 1, config={**common, "retention.bytes": str(RETENTION_BYTES)}),
        ])
        for f in futures.values():
            f.result(30)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5,
                      "compression.type": "none", "queue.buffering.max.messages": 1000000})
        latencies: list[float] = []
        last_acked: dict[bytes, bytes] = {}
        errors = []
        started = time.monotonic()

        def delivered(err, msg, sent=None, key=None):
            if err is not None:
                errors.append(err)
                return
            now = time.monotonic()
            if now - started > WARMUP_S:
                latencies.append((now - sent) * 1000)
            if key is not None:
                last_acked[key] = msg.value()

        per_s = MB_PER_S * 1e6 / VALUE_BYTES  # records per topic and second
        seq = 0
        samples = []
        next_sample = started
        pid = b.proc.pid
        while (now := time.monotonic()) - started < SOAK_S:
            # As many as are due by now: a steady rate, whatever each turn of the loop took.
            while seq < (now - started) * per_s:
                seq += 1
                key = f"key-{seq % KEYS:06}".encode()
                value = (f"{seq:012}".encode() * (VALUE_BYTES // 12 + 1))[:VALUE_BYTES]
                t = time.monotonic()
                p.produce(compacted, key=key, value=value,
                          on_delivery=lambda err, msg, t=t, key=key: delivered(err, msg, t, key))
                p.produce(retained, value=value, on_delivery=lambda err, msg, t=t: delivered(err, msg, t))
            p.poll(0)
            if now >= next_sample:
                next_sample += SAMPLE_S
                sample = {"t": round(now - started, 1), "disk": dir_bytes(b.data_dir), "cpu": proc_cpu_s(pid)}
                if KAFKA:
                    sample["cleaner_cpu"] = proc_cpu_s(pid, "kafka-log-clean")
                samples.append(sample)
            # Waiting in poll: acknowledgements are timed as they come, not at the next tick.
            p.poll(max(0.0, 0.01 - (time.monotonic() - now)))
        assert p.flush(60) == 0
        elapsed = time.monotonic() - started
        assert not errors, errors[:5]

        # Correctness: the latest value of every key, as last acknowledged.
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"soak-check-{uuid.uuid4().hex[:6]}",
                      "enable.auto.commit": False, "enable.partition.eof": True})
        c.assign([TopicPartition(compacted, i, OFFSET_BEGINNING) for i in range(PARTITIONS)])
        seen, eof, read = {}, set(), 0
        deadline = time.monotonic() + 300
        while len(eof) < PARTITIONS and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=1):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                        continue
                    raise AssertionError(m.error())
                seen[m.key()] = m.value()
                read += 1
        c.close()
        assert seen == last_acked, f"{sum(1 for k in last_acked if seen.get(k) != last_acked[k])} keys differ"

        if KAFKA:
            cleaner_cpu = samples[-1]["cleaner_cpu"] if samples else 0.0
            cleaned = kafka_cleaned_bytes(b.log_text())
        else:
            m = fjord_metrics(b)
            cleaner_cpu = m.get("fjord_cleaner_pass_cpu_seconds_sum", 0.0)
            cleaned = m.get("fjord_cleaner_bytes_read_total", 0.0)
        second_half = [s["disk"] for s in samples if s["t"] >= SOAK_S / 2]
        result = {
            "label": LABEL, "broker": "kafka" if KAFKA else "fjord", "cleaner": CLEANER,
            "soak_s": round(elapsed), "mb_per_s_per_topic": MB_PER_S, "keys": KEYS, "value_bytes": VALUE_BYTES,
            "records": 2 * seq, "latency_ms": {q: round(pct(latencies, v), 2) for q, v in
                                               (("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999))}
            | {"max": round(max(latencies), 1), "mean": round(statistics.fmean(latencies), 2)},
            "disk_bytes": {"at_5min": next((s["disk"] for s in samples if s["t"] >= 300), None),
                           "second_half_min": min(second_half, default=None),
                           "second_half_max": max(second_half, default=None), "end": samples[-1]["disk"]},
            "broker_cpu_s": round(samples[-1]["cpu"] - samples[0]["cpu"], 1),
            "cleaner_cpu_s": round(cleaner_cpu, 2), "cleaner_bytes_read": int(cleaned),
            "cleaner_cpu_s_per_gb": round(cleaner_cpu / (cleaned / 1e9), 2) if cleaned else None,
            "compacted_records_read_back": read, "disk_samples": [(s["t"], s["disk"]) for s in samples],
        }
        print("\n" + json.dumps({k: v for k, v in result.items() if k != "disk_samples"}, indent=1))
        if OUT:
            with open(OUT, "a") as f:
                f.write(json.dumps(result) + "\n")
    finally:
        b.stop()
        b.cleanup(False)
