#!/usr/bin/env python3
"""One consumer-group member as a process of its own, for the group tests (test_groups*.py).

    groupworker.py CLIENT --bootstrap HOST:PORT --topic T --group G [--protocol classic|consumer]
                   [--assignor range|roundrobin|cooperative-sticky|uniform] [--instance-id ID]
                   [--session-ms N] [--heartbeat-ms N] [--metadata TEXT] [-X key=value]...

CLIENT is confluent, kafka-python or aiokafka. The member subscribes to T, reads from the earliest
offset when the group has no committed one, and after every poll that returned records commits
(synchronously) the offset after the last record of each partition, with TEXT as commit metadata.
It prints one JSON object per line on stdout, flushed at once:

    {"ev": "subscribed"}                                   subscribe() was called
    {"ev": "assigned", "added": [p...], "now": [p...]}     a rebalance callback gave partitions
    {"ev": "revoked", "removed": [p...], "now": [p...]}    ... took them away (cleanly)
    {"ev": "lost", "removed": [p...], "now": [p...]}       ... took them away (session lost)
    {"ev": "rec", "p": p, "o": offset, "v": "value"}       a record, in the order read
    {"ev": "committed", "offsets": {"p": next offset}}     a commit succeeded
    {"ev": "commit_failed", "error": "..."}                a commit failed (at-least-once: re-read)
    {"ev": "paused"} / {"ev": "resumed"}                   after the stdin commands below
    {"ev": "closed"}                                       close() returned (a clean leave)
    {"ev": "error", "error": "..."}                        anything unexpected

"now" is the member's whole assignment after the callback, for eager and cooperative protocols
alike. Commands on stdin, one per line: `close` (close the consumer cleanly and exit), `pause` /
`resume` (stop/restart fetching every assigned partition, staying in the group). End of stdin is
`close`. The Java CLI's `group-consume` subcommand prints the same lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Commands:
    """Reads stdin in a thread; the poll loop asks it what to do between polls."""

    def __init__(self):
        self.close = threading.Event()
        self.pending: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "close":
                break
            with self.lock:
                self.pending.append(cmd)
        self.close.set()

    def take(self) -> list[str]:
        with self.lock:
            out, self.pending = self.pending, []
        return out


class Assignment:
    """The member's current partitions, updated from the rebalance callbacks."""

    def __init__(self):
        self.now: set[int] = set()

    def added(self, parts):
        parts = sorted(parts)
        self.now |= set(parts)
        emit(ev="assigned", added=parts, now=sorted(self.now))

    def removed(self, parts, lost=False):
        parts = sorted(parts)
        self.now -= set(parts)
        emit(ev="lost" if lost else "revoked", removed=parts, now=sorted(self.now))


def next_offsets(records) -> dict[int, int]:
    out: dict[int, int] = {}
    for p, o in records:
        out[p] = max(out.get(p, 0), o + 1)
    return out


# ------------------------------------------------------------------------------------ confluent

def run_confluent(a, extra):
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "group.protocol": a.protocol,
    }
    if a.protocol == "classic":
        conf["session.timeout.ms"] = a.session_ms
        conf["heartbeat.interval.ms"] = a.heartbeat_ms
        conf["partition.assignment.strategy"] = a.assignor or "range"
    elif a.assignor:
        conf["group.remote.assignor"] = a.assignor
    if a.instance_id:
        conf["group.instance.id"] = a.instance_id
    conf.update(extra)
    c = Consumer(conf)
    asg = Assignment()
    c.subscribe([a.topic],
                on_assign=lambda _c, ps: asg.added(tp.partition for tp in ps),
                on_revoke=lambda _c, ps: asg.removed(tp.partition for tp in ps),
                on_lost=lambda _c, ps: asg.removed((tp.partition for tp in ps), lost=True))
    emit(ev="subscribed")
    cmds = Commands()
    while not cmds.close.is_set():
        for cmd in cmds.take():
            parts = [TopicPartition(a.topic, p) for p in sorted(asg.now)]
            if cmd == "pause":
                c.pause(parts)
                emit(ev="paused", partitions=sorted(asg.now))
            elif cmd == "resume":
                c.resume(parts)
                emit(ev="resumed", partitions=sorted(asg.now))
        got = []
        for m in c.consume(num_messages=500, timeout=0.2):
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    emit(ev="error", error=str(m.error()))
                continue
            emit(ev="rec", p=m.partition(), o=m.offset(), v=m.value().decode() if m.value() is not None else None)
            got.append((m.partition(), m.offset()))
        if got:
            offs = next_offsets(got)
            try:
                c.commit(offsets=[TopicPartition(a.topic, p, o, a.metadata) for p, o in offs.items()],
                         asynchronous=False)
                emit(ev="committed", offsets={str(p): o for p, o in offs.items()})
            except KafkaException as e:
                emit(ev="commit_failed", error=e.args[0].name())
    c.close()
    emit(ev="closed")


# --------------------------------------------------------------------------------- kafka-python

def run_kafka_python(a, extra):
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.errors import KafkaError

    assignors = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
                 "cooperative-sticky": CooperativeStickyAssignor}
    _work_around_kafka_python_lost_join()
    c = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group, group_instance_id=a.instance_id,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      session_timeout_ms=a.session_ms, heartbeat_interval_ms=a.heartbeat_ms,
                      partition_assignment_strategy=[assignors[a.assignor or "range"]],
                      request_timeout_ms=20000, **extra)
    asg = Assignment()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            asg.removed(tp.partition for tp in revoked)

        def on_partitions_assigned(self, assigned):
            asg.added(tp.partition for tp in assigned)

        def on_partitions_lost(self, lost):
            asg.removed((tp.partition for tp in lost), lost=True)

    c.subscribe(topics=[a.topic], listener=Listener())
    emit(ev="subscribed")
    cmds = Commands()
    while not cmds.close.is_set():
        for cmd in cmds.take():
            parts = [TopicPartition(a.topic, p) for p in sorted(asg.now)]
            if cmd == "pause":
                c.pause(*parts)
                emit(ev="paused", partitions=sorted(asg.now))
            elif cmd == "resume":
                c.resume(*parts)
                emit(ev="resumed", partitions=sorted(asg.now))
        got = []
        for tp, msgs in c.poll(timeout_ms=200).items():
            for m in msgs:
                emit(ev="rec", p=m.partition, o=m.offset, v=m.value.decode() if m.value is not None else None)
                got.append((m.partition, m.offset))
        if got:
            offs = next_offsets(got)
            try:
                c.commit({TopicPartition(a.topic, p): OffsetAndMetadata(o, a.metadata, -1) for p, o in offs.items()})
                emit(ev="committed", offsets={str(p): o for p, o in offs.items()})
            except KafkaError as e:
                emit(ev="commit_failed", error=type(e).__name__)
    c.close()
    emit(ev="closed")


def _work_around_kafka_python_lost_join():
    """kafka-python 3.0.12 can drop a finished join on the floor (FINDINGS.md, 34): a leader that
    rejoins because its metadata changed stops needing to rejoin the moment it computes the new
    assignment, so if poll()'s timeout ends during its SyncGroup, no later poll looks at the
    finished join again. The member then neither applies its assignment nor heartbeats until its
    session times out. Counting an unfinished join as a reason to rejoin makes the next poll go
    on with it (at worst one extra rebalance), as the client's own comment intends."""
    from kafka.coordinator.consumer import ConsumerCoordinator

    need_rejoin = ConsumerCoordinator.need_rejoin
    if getattr(need_rejoin, "fjord_patched", False):
        return

    def patched(self):
        return need_rejoin(self) or getattr(self, "_join_task", None) is not None

    patched.fjord_patched = True
    ConsumerCoordinator.need_rejoin = patched


# ------------------------------------------------------------------------------------- aiokafka

def run_aiokafka(a, extra):
    import asyncio

    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.errors import KafkaError
    from aiokafka.structs import OffsetAndMetadata

    assignors = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}

    async def go():
        c = AIOKafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group, group_instance_id=a.instance_id,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=a.session_ms, heartbeat_interval_ms=a.heartbeat_ms,
                             partition_assignment_strategy=(assignors[a.assignor or "range"],),
                             request_timeout_ms=20000, **extra)
        await c.start()
        asg = Assignment()

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                asg.removed(tp.partition for tp in revoked)

            def on_partitions_assigned(self, assigned):
                asg.added(tp.partition for tp in assigned)

        c.subscribe(topics=[a.topic], listener=Listener())
        emit(ev="subscribed")
        cmds = Commands()
        while not cmds.close.is_set():
            for cmd in cmds.take():
                parts = [TopicPartition(a.topic, p) for p in sorted(asg.now)]
                if cmd == "pause":
                    c.pause(*parts)
                    emit(ev="paused", partitions=sorted(asg.now))
                elif cmd == "resume":
                    c.resume(*parts)
                    emit(ev="resumed", partitions=sorted(asg.now))
            got = []
            for tp, msgs in (await c.getmany(timeout_ms=200)).items():
                for m in msgs:
                    emit(ev="rec", p=m.partition, o=m.offset, v=m.value.decode() if m.value is not None else None)
                    got.append((m.partition, m.offset))
            if got:
                offs = next_offsets(got)
                try:
                    await c.commit({TopicPartition(a.topic, p): OffsetAndMetadata(o, a.metadata) for p, o in offs.items()})
                    emit(ev="committed", offsets={str(p): o for p, o in offs.items()})
                except KafkaError as e:
                    emit(ev="commit_failed", error=type(e).__name__)
        await c.stop()
        emit(ev="closed")

    asyncio.run(go())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("client", choices=["confluent", "kafka-python", "aiokafka"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--protocol", default="classic", choices=["classic", "consumer"])
    ap.add_argument("--assignor")
    ap.add_argument("--instance-id")
    ap.add_argument("--session-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-ms", type=int, default=500)
    ap.add_argument("--metadata", default="")
    ap.add_argument("-X", action="append", default=[], help="key=value client setting")
    a = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in a.X)
    if os.environ.get("FJORD_WORKER_LOG_DIR"):
        # For chasing a client's side of a group problem: the Python clients' own DEBUG log,
        # one file per member process.
        import logging
        name = f"{a.client}-{a.instance_id or 'dynamic'}-{os.getpid()}.log"
        logging.basicConfig(filename=os.path.join(os.environ["FJORD_WORKER_LOG_DIR"], name), level=logging.DEBUG,
                            format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    if a.protocol == "consumer" and a.client != "confluent":
        sys.exit(f"{a.client}: no group.protocol=consumer (KIP-848) support")
    try:
        {"confluent": run_confluent, "kafka-python": run_kafka_python, "aiokafka": run_aiokafka}[a.client](a, extra)
    except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
        emit(ev="error", error=f"{type(e).__name__}: {e}")
        raise


if __name__ == "__main__":
    main()
