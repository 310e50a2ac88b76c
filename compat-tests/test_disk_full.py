"""A full disk, with a real client against a real broker whose log directory is on a small
file system (a tmpfs mounted for the test). Producers fill it: once less than the reserve
(`log.dir.min.free.bytes`) is free, producing is refused with KAFKA_STORAGE_ERROR, reads go on,
nothing acknowledged is lost, the broker stays up, and it takes data again without a restart
once DeleteRecords frees space.

Fjord only: Kafka keeps no reserve. A write that fails for want of space takes its log
directory offline, and a broker whose last log directory is offline stops (to meet the same
full disk at its next start). The fault tests (tests/tests/disk_faults.rs) cover a segment
write that runs out of space inside the reserve.
"""
import hashlib
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import FJORD_BIN, Broker

FS_BYTES = 256 << 20
RESERVE = 48 << 20
VALUE_BYTES = 32 << 10


@pytest.fixture
def small_disk():
    if FJORD_BIN.name == "kafka-as-fjord":
        pytest.skip("Kafka keeps no reserve: a full disk stops it")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="fjord-disk-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def value(offset_tag: int) -> bytes:
    """Incompressible and checkable: a SHA-256 chain seeded by the record's number."""
    seed = hashlib.sha256(offset_tag.to_bytes(8, "big")).digest()
    return (seed * (VALUE_BYTES // len(seed) + 1))[:VALUE_BYTES]


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def metric(broker, name: str) -> float | None:
    with urllib.request.urlopen(broker.metrics_url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def status(broker) -> dict:
    with urllib.request.urlopen(broker.metrics_url + "/api/status", timeout=5) as r:
        return json.loads(r.read())["broker"]


def read_all(broker, topic: str, start: int, end: int) -> dict[int, bytes]:
    """Every record of partition 0 in [start, end), by offset."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"read-{time.time_ns()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 8 << 20})
    c.assign([TopicPartition(topic, 0, start if start > 0 else OFFSET_BEGINNING)])
    got: dict[int, bytes] = {}
    deadline = time.monotonic() + 60
    try:
        while len(got) < end - start and time.monotonic() < deadline:
            for m in c.consume(500, timeout=1):
                assert m.error() is None, m.error()
                got[m.offset()] = m.value()
    finally:
        c.close()
    return got


def test_a_full_disk_refuses_produce_keeps_reads_and_takes_data_again_once_space_is_freed(small_disk):
    b = Broker("disk-full", {"log.dirs": str(small_disk / "data"), "log.dir.min.free.bytes": RESERVE})
    try:
        b.start()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        topic = "fill"
        (fut,) = admin.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": str(4 << 20)})]).values()
        fut.result(20)

        # Without retries, each refused batch reports the broker's error itself.
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "retries": 0, "linger.ms": 5,
                      "enable.idempotence": False, "batch.size": 1 << 20, "compression.type": "none"})
        acked: dict[int, int] = {}  # offset -> record number
        errors: list[KafkaError] = []

        def on_delivery(err, msg, n):
            if err is None:
                acked[msg.offset()] = n
            else:
                errors.append(err)

        n = 0
        while not errors:
            assert n * VALUE_BYTES < 2 * FS_BYTES, "nothing was refused after twice the file system's size"
            for _ in range(64):
                p.produce(topic, value(n), partition=0, on_delivery=lambda err, msg, n=n: on_delivery(err, msg, n))
                n += 1
            p.flush(30)
        assert {e.code() for e in errors} == {KafkaError.KAFKA_STORAGE_ERROR}, errors
        filled = len(acked) * VALUE_BYTES
        assert filled > FS_BYTES // 2, f"refused after only {filled} bytes"
        # The reserve held: the file system itself never filled up.
        assert free_bytes(small_disk) > RESERVE // 2, free_bytes(small_disk)
        assert b.proc.poll() is None, "the broker stopped\n" + b.log_tail()
        end = max(acked) + 1
        assert sorted(acked) == list(range(end)), "acknowledged offsets are not dense"

        # Still refused, reads go on, and what was acknowledged is all there.
        p.produce(topic, value(n), partition=0, on_delivery=lambda err, msg: errors.append(err))
        p.flush(30)
        assert errors[-1] is not None and errors[-1].code() == KafkaError.KAFKA_STORAGE_ERROR, errors[-1]
        got = read_all(b, topic, 0, end)
        assert sorted(got) == list(range(end)), f"read {len(got)} of {end} acknowledged records"
        assert all(got[o] == value(acked[o]) for o in range(end)), "a record read back differs"
        assert metric(b, "fjord_log_dir_full") == 1.0
        assert status(b)["disk_full"] is True
        assert "the log directory is full" in b.log_text()

        # DeleteRecords frees the first half's segments: producing is taken again.
        half = end // 2
        (fut,) = admin.delete_records([TopicPartition(topic, 0, half)]).values()
        assert fut.result(20).low_watermark == half
        retrying = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0,
                             "message.timeout.ms": 30000})
        late: list = []
        retrying.produce(topic, value(n), partition=0, on_delivery=lambda err, msg: late.append((err, msg.offset())))
        retrying.flush(40)
        assert late and late[0][0] is None, late
        assert late[0][1] == end, "the first record after the full disk takes the next offset"
        assert b.proc.poll() is None
        assert "has space again" in b.log_text()
        assert metric(b, "fjord_log_dir_full") == 0.0
        got = read_all(b, topic, half, end + 1)
        assert sorted(got) == list(range(half, end + 1))
        assert all(got[o] == value(acked[o]) for o in range(half, end)) and got[end] == value(n)
    finally:
        b.cleanup(False)
