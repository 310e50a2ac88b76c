"""Exactly-once helpers for test_eos*.py: the Java EOS CLI (java/.../Eos.java), confluent-kafka
idempotent and transactional workers run as subprocesses (`python eoslib.py stream|ctp ...`),
read_committed / read_uncommitted readers, and a small raw Kafka protocol client (InitProducerId,
FindCoordinator, AddPartitionsToTxn, EndTxn, Produce with hand-built v2 record batches, Fetch with
isolation level) for what no client will send: sequence gaps, stale epochs, transactional batches
outside a transaction.

Self-contained on purpose (wire.py belongs to other tests); the message layouts are from Kafka's
clients/src/main/resources/common/message/*.json and the record batch format from
DefaultRecordBatch / DefaultRecord.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(COMPAT_DIR))

from clientlib import JAVA_CLASSPATH, ClientError  # noqa: E402

#: How many times the kill tests kill and restart (the broker, or the transactional worker).
KILL_LOOPS = int(os.environ.get("FJORD_EOS_KILL_LOOPS", "1"))

#: Broker settings for the EOS tests, all Kafka property names: the timed-out-transaction sweep
#: every 500 ms instead of 10 s (the timeout test waits for it), and no initial rebalance delay
#: (the consume-transform-produce workers join a group).
EOS_OVERRIDES = {
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500,
    "group.initial.rebalance.delay.ms": 0,
}

# Kafka error codes the tests look for.
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
NOT_LEADER_OR_FOLLOWER = 6
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
CONCURRENT_TRANSACTIONS = 51
PRODUCER_FENCED = 90
TRANSACTION_ABORTABLE = 120
ERROR_NAMES = {0: "NONE", 3: "UNKNOWN_TOPIC_OR_PARTITION", 6: "NOT_LEADER_OR_FOLLOWER", 14: "COORDINATOR_LOAD_IN_PROGRESS",
               15: "COORDINATOR_NOT_AVAILABLE", 16: "NOT_COORDINATOR", 45: "OUT_OF_ORDER_SEQUENCE_NUMBER",
               46: "DUPLICATE_SEQUENCE_NUMBER", 47: "INVALID_PRODUCER_EPOCH", 48: "INVALID_TXN_STATE",
               49: "INVALID_PRODUCER_ID_MAPPING", 51: "CONCURRENT_TRANSACTIONS", 53: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
               59: "UNKNOWN_PRODUCER_ID", 90: "PRODUCER_FENCED", 120: "TRANSACTION_ABORTABLE"}
RETRIABLE_COORDINATOR = {COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, CONCURRENT_TRANSACTIONS}


def err_name(code: int) -> str:
    return f"{ERROR_NAMES.get(code, 'ERROR')}({code})"


# ================================================================================== Java EOS CLI

JAVA_CMD = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", JAVA_CLASSPATH, "dev.fjord.compat.Eos"]


def _check_built():
    if not (COMPAT_DIR / "java/target/classes/dev/fjord/compat/Eos.class").exists():
        raise ClientError("Java EOS CLI not built: run compat-tests/setup.sh")


def _xargs(extra: dict | None) -> list[str]:
    out = []
    for k, v in (extra or {}).items():
        out += ["-X", f"{k}={v}"]
    return out


def eos_java(*args, extra: dict | None = None, timeout_s: float = 90, check: bool = True) -> list[dict]:
    """Runs one Eos subcommand to completion; its JSON lines. Exit 2 (a Kafka error, printed as the
    last line) raises ClientError unless check=False."""
    _check_built()
    cmd = [*JAVA_CMD, *map(str, args), *_xargs(extra)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip().startswith("{")]
    if p.returncode != 0 and check:
        raise ClientError(f"Eos {args[0]} exited {p.returncode}: {lines[-3:]} stderr={p.stderr[-2000:]!r}")
    return lines


class LineProc:
    """A worker subprocess printing JSON lines: read in a thread, queued, and kept in `lines`."""

    def __init__(self, cmd: list[str], name: str):
        self.name = name
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, start_new_session=True)
        self.lines: list[dict] = []
        self.q: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for l in self.proc.stdout:
            l = l.strip()
            if not l.startswith("{"):
                continue
            try:
                d = json.loads(l)
            except ValueError:
                d = {"unparsed": l}
            self.lines.append(d)
            self.q.put(d)
        self.q.put(None)

    def _read_err(self):
        for l in self.proc.stderr:
            self.stderr.append(l)
            del self.stderr[:-200]

    def next(self, timeout_s: float = 60) -> dict:
        """The next line; fails if the process exits or says nothing in time."""
        try:
            d = self.q.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"{self.name}: no output for {timeout_s}s; last lines {self.lines[-3:]}; "
                                 f"stderr {''.join(self.stderr[-20:])!r}") from None
        if d is None:
            self.q.put(None)
            raise AssertionError(f"{self.name}: exited {self.proc.wait()} ; last lines {self.lines[-5:]}; "
                                 f"stderr {''.join(self.stderr[-30:])!r}")
        return d

    def wait_for(self, pred, what: str, timeout_s: float = 60) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            d = self.next(max(0.1, deadline - time.monotonic()))
            if pred(d):
                return d
            if "error" in d and "seq" not in d:
                raise AssertionError(f"{self.name}: error while waiting for {what}: {d}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what} within {timeout_s}s; last {self.lines[-3:]}")

    def send(self, line: str):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill9(self):
        """SIGKILL to the worker (its whole process group: a JVM or a Python process)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def finish(self, timeout_s: float = 120) -> int:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"{self.name}: still running after {timeout_s}s; last {self.lines[-3:]}")

    def close(self):
        if self.proc.poll() is None:
            self.kill9()


def java_proc(*args, extra: dict | None = None, name: str = "java") -> LineProc:
    _check_built()
    return LineProc([*JAVA_CMD, *map(str, args), *_xargs(extra)], f"Eos {args[0]} ({name})")


def python_proc(*args, name: str = "python") -> LineProc:
    return LineProc([sys.executable, str(Path(__file__).resolve()), *map(str, args)], f"eoslib {args[0]} ({name})")


class TxnSession:
    """A Java transactional producer in its own process, one command at a time:
    s.call("init"), s.call("begin"), s.call("send", topic, partition, count, prefix) -> offsets,
    s.call("commit"). A failed call returns {"error": SimpleName, "chain": [...], ...}."""

    def __init__(self, bootstrap: str, txn_id: str, extra: dict | None = None, name: str = "session"):
        self.p = java_proc("session", "--bootstrap", bootstrap, "--txn-id", txn_id, extra=extra, name=name)
        first = self.p.next(30)
        assert first.get("ok"), first

    def call(self, op: str, *args, timeout_s: float = 90) -> dict:
        self.p.send("\t".join([op, *map(str, args)]))
        d = self.p.next(timeout_s)
        assert d.get("op") == op, (op, d)
        return d

    def ok(self, op: str, *args, timeout_s: float = 90) -> dict:
        d = self.call(op, *args, timeout_s=timeout_s)
        assert d.get("ok"), f"{op} {args}: {d}"
        return d

    def close(self):
        try:
            self.p.send("exit")
            self.p.finish(30)
        except Exception:  # noqa: BLE001 - already dead is fine
            self.p.close()


def java_end_offsets(bootstrap: str, topic: str, isolation: str) -> dict[int, int]:
    return {l["p"]: l["o"] for l in eos_java("end-offsets", "--bootstrap", bootstrap, "--topic", topic,
                                              "--isolation", isolation)}


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: str | None
    value: str | None


def read_java(bootstrap: str, topic: str, isolation: str) -> list[Read]:
    """Everything from the beginning up to the end offsets of `isolation` (LSO or high watermark)."""
    lines = eos_java("consume", "--bootstrap", bootstrap, "--topic", topic, "--isolation", isolation)
    assert "end" in lines[-1], lines[-1]
    return [Read(l["p"], l["o"], l["k"], l["v"]) for l in lines[:-1]]


def read_confluent(bootstrap: str, topic: str, isolation: str, timeout_s: float = 30) -> list[Read]:
    """Everything from the beginning until every partition reports its end (for read_committed,
    librdkafka's end is the last stable offset)."""
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"eos-reader-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "isolation.level": isolation, "enable.partition.eof": True,
                  "auto.offset.reset": "earliest"})
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        at_end: set[int] = set()
        out: list[Read] = []
        deadline = time.monotonic() + timeout_s
        while at_end != set(parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"confluent {isolation} reader: partitions {set(parts) - at_end} never reached their end")
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                    continue
                raise ClientError(f"confluent consume: {m.error()}")
            at_end.discard(m.partition())
            out.append(Read(m.partition(), m.offset(), None if m.key() is None else m.key().decode(),
                            None if m.value() is None else m.value().decode()))
        return out
    finally:
        c.close()


# ==================================================================== confluent-kafka workers

def _emit(d: dict):
    sys.stdout.write(json.dumps(d) + "\n")
    sys.stdout.flush()


def _stdin_stop_event() -> threading.Event:
    ev = threading.Event()

    def watch():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        ev.set()

    threading.Thread(target=watch, daemon=True).start()
    return ev


def worker_stream_confluent(bootstrap: str, topic: str, partitions: int):
    """Idempotent producer sending seq-N to partition N % partitions until stdin says stop; ten
    minutes of retries per message, so a broker that is killed and restarted loses nothing."""
    from confluent_kafka import Producer

    stop = _stdin_stop_event()
    counts = {"acked": 0, "failed": 0}

    def on_delivery(seq, err, msg):
        if err is not None:
            counts["failed"] += 1
            _emit({"seq": seq, "error": err.name(), "message": err.str()})
        else:
            counts["acked"] += 1
            _emit({"seq": seq, "p": msg.partition(), "o": msg.offset()})

    def on_error(err):
        if err.fatal():
            _emit({"fatal": err.name(), "message": err.str()})

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 2,
                  "message.timeout.ms": 600_000, "request.timeout.ms": 10_000, "reconnect.backoff.max.ms": 500,
                  "error_cb": on_error})
    seq = 0
    while not stop.is_set():
        try:
            p.produce(topic, key=b"s-%d" % seq, value=b"seq-%d" % seq, partition=seq % partitions,
                      on_delivery=lambda err, msg, seq=seq: on_delivery(seq, err, msg))
        except BufferError:
            p.poll(0.05)
            continue
        seq += 1
        p.poll(0)
        if seq % 10 == 0:
            time.sleep(0.01)
    left = p.flush(600)
    _emit({"event": "done", "sent": seq, "acked": counts["acked"], "failed": counts["failed"], "unflushed": left})


def worker_ctp_confluent(bootstrap: str, input_topic: str, output_topic: str, group: str, txn_id: str,
                         hang_after_commits: int, per_txn: int):
    """Consume-transform-produce with a transaction per poll: what Eos ctp does, with librdkafka."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "transaction.timeout.ms": 60000})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 1000})
    p.init_transactions(60)
    _emit({"event": "ready"})
    nparts = len(c.list_topics(input_topic, timeout=10).topics[input_topic].partitions)
    c.subscribe([input_topic])
    commits = 0
    while True:
        msgs = c.consume(per_txn, 0.2)
        for m in msgs:
            if m.error():
                raise RuntimeError(f"consume error: {m.error()}")
        if not msgs:
            assignment = c.assignment()
            if len(assignment) == nparts and _confluent_consumed_all(c, assignment):
                _emit({"event": "done", "commits": commits})
                c.close()
                return
            continue
        p.begin_transaction()
        outs, ins, offsets = [], [], {}
        for m in msgs:
            v = b"out:" + m.value()
            p.produce(output_topic, key=m.key(), value=v, partition=m.partition())
            outs.append(v.decode())
            ins.append(m.value().decode())
            offsets[m.partition()] = m.offset() + 1
        p.send_offsets_to_transaction([TopicPartition(input_topic, q, o) for q, o in offsets.items()],
                                      c.consumer_group_metadata(), 30)
        if commits == hang_after_commits:
            assert p.flush(30) == 0
            _emit({"event": "hanging", "outputs": outs})
            while True:
                time.sleep(3600)
        p.commit_transaction(30)
        commits += 1
        _emit({"event": "committed", "inputs": ins})


def _confluent_consumed_all(c, assignment) -> bool:
    committed = {tp.partition: tp.offset for tp in c.committed(assignment, timeout=10)}
    for tp in c.position(assignment):
        pos = tp.offset if tp.offset >= 0 else committed.get(tp.partition, -1)
        lo, hi = c.get_watermark_offsets(tp, timeout=10, cached=False)
        if pos < 0:
            pos = lo
        if pos < hi:
            return False
    return True


# ================================================================================ raw protocol

API_PRODUCE = 0
API_FETCH = 1
API_FIND_COORDINATOR = 10
API_API_VERSIONS = 18
API_INIT_PRODUCER_ID = 22
API_ADD_PARTITIONS_TO_TXN = 24
API_END_TXN = 26


class W:
    """Big-endian request body writer; `compact` picks the flexible (KIP-482) encodings."""

    def __init__(self, compact: bool = True):
        self.b = bytearray()
        self.compact = compact

    def i8(self, v): self.b += struct.pack(">b", v); return self
    def i16(self, v): self.b += struct.pack(">h", v); return self
    def i32(self, v): self.b += struct.pack(">i", v); return self
    def i64(self, v): self.b += struct.pack(">q", v); return self
    def raw(self, v): self.b += v; return self

    def uvarint(self, v):
        while True:
            if v < 0x80:
                self.b.append(v)
                return self
            self.b.append((v & 0x7F) | 0x80)
            v >>= 7

    def str(self, s):
        if self.compact:
            return self.uvarint(0) if s is None else self.uvarint(len(s.encode()) + 1).raw(s.encode())
        return self.i16(-1) if s is None else self.i16(len(s.encode())).raw(s.encode())

    def bytes_(self, v):
        if self.compact:
            return self.uvarint(0) if v is None else self.uvarint(len(v) + 1).raw(v)
        return self.i32(-1) if v is None else self.i32(len(v)).raw(v)

    def arr(self, n):
        return self.uvarint(n + 1) if self.compact else self.i32(n)

    def tags(self):
        return self.uvarint(0) if self.compact else self


class R:
    def __init__(self, b: bytes, compact: bool = True):
        self.b, self.i, self.compact = b, 0, compact

    def take(self, n):
        if self.i + n > len(self.b):
            raise ValueError(f"truncated: {n} bytes at {self.i} of {len(self.b)}")
        out = self.b[self.i:self.i + n]
        self.i += n
        return out

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]

    def uvarint(self):
        shift = v = 0
        while True:
            x = self.take(1)[0]
            v |= (x & 0x7F) << shift
            if not x & 0x80:
                return v
            shift += 7

    def str(self):
        if self.compact:
            n = self.uvarint() - 1
        else:
            n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes_(self):
        n = self.uvarint() - 1 if self.compact else self.i32()
        return None if n < 0 else self.take(n)

    def arr(self) -> int:
        return max(0, self.uvarint() - 1 if self.compact else self.i32())

    def tags(self):
        if self.compact:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.take(self.uvarint())


class Conn:
    """One connection, one request at a time."""

    def __init__(self, bootstrap: str, timeout_s: float = 30):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.cid = 0
        self.versions = self._api_versions()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, api: int, version: int, body: bytes, flexible: bool) -> R:
        self.cid += 1
        h = W(compact=False).i16(api).i16(version).i32(self.cid).str("fjord-compat-eos")
        if flexible:
            h.uvarint(0)
        frame = bytes(h.b) + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._read(4))[0]
        r = R(self._read(size), compact=flexible)
        cid = r.i32()
        assert cid == self.cid, (cid, self.cid)
        if flexible and api != API_API_VERSIONS:  # ApiVersions answers with header v0 always
            r.tags()
        return r

    def _read(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)

    def _api_versions(self) -> dict[int, tuple[int, int]]:
        body = W().str("fjord-compat-eos").str("0.1").tags()
        r = self.request(API_API_VERSIONS, 3, bytes(body.b), flexible=True)
        err = r.i16()
        assert err == 0, f"ApiVersions v3: error {err}"
        out = {}
        for _ in range(r.arr()):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            r.tags()
            out[k] = (lo, hi)
        return out

    def version(self, api: int, implemented: range) -> int:
        lo, hi = self.versions[api]
        common = [v for v in implemented if lo <= v <= hi]
        assert common, f"api {api}: broker offers {lo}-{hi}, eoslib speaks {implemented.start}-{implemented.stop - 1}"
        return max(common)

    # ------------------------------------------------------------------ coordinator calls

    def find_coordinator(self, key: str, key_type: int = 1, timeout_s: float = 30) -> int:
        """FindCoordinator v3 (transaction: key_type 1): the node id, once there is one."""
        deadline = time.monotonic() + timeout_s
        while True:
            w = W().str(key).i8(key_type).tags()
            r = self.request(API_FIND_COORDINATOR, 3, bytes(w.b), True)
            r.i32()
            err = r.i16()
            r.str()
            node = r.i32()
            if err == 0:
                return node
            if err not in RETRIABLE_COORDINATOR or time.monotonic() > deadline:
                raise AssertionError(f"FindCoordinator {key}: {err_name(err)}")
            time.sleep(0.2)

    def init_producer_id(self, txn_id: str | None = None, timeout_ms: int = 60000, producer_id: int = -1,
                         epoch: int = -1, retry_s: float = 30) -> tuple[int, int, int]:
        """InitProducerId v2-4: (error, producer_id, epoch). Coordinator-not-ready errors are retried."""
        v = self.version(API_INIT_PRODUCER_ID, range(2, 5))
        deadline = time.monotonic() + retry_s
        while True:
            w = W().str(txn_id).i32(timeout_ms)
            if v >= 3:
                w.i64(producer_id).i16(epoch)
            w.tags()
            r = self.request(API_INIT_PRODUCER_ID, v, bytes(w.b), True)
            r.i32()
            err, pid, ep = r.i16(), r.i64(), r.i16()
            if err in RETRIABLE_COORDINATOR and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            return err, pid, ep

    def add_partitions_to_txn(self, txn_id: str, pid: int, epoch: int, topic: str, partitions: list[int],
                              retry_s: float = 30) -> dict[int, int]:
        """AddPartitionsToTxn v3 (the client form): {partition: error}."""
        self.version(API_ADD_PARTITIONS_TO_TXN, range(3, 4))
        deadline = time.monotonic() + retry_s
        while True:
            w = W().str(txn_id).i64(pid).i16(epoch).arr(1).str(topic).arr(len(partitions))
            for p in partitions:
                w.i32(p)
            w.tags().tags()
            r = self.request(API_ADD_PARTITIONS_TO_TXN, 3, bytes(w.b), True)
            r.i32()
            out = {}
            for _ in range(r.arr()):
                r.str()
                for _ in range(r.arr()):
                    partition = r.i32()
                    out[partition] = r.i16()
                    r.tags()
                r.tags()
            if set(out.values()) & RETRIABLE_COORDINATOR and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            return out

    def end_txn(self, txn_id: str, pid: int, epoch: int, commit: bool, retry_s: float = 30) -> int:
        """EndTxn v3 (what a client without transaction version 2 sends): the error code."""
        return self.end_txn_v(txn_id, pid, epoch, commit, 3, retry_s)[0]

    def end_txn_v(self, txn_id: str, pid: int, epoch: int, commit: bool, version: int,
                  retry_s: float = 30) -> tuple[int, int | None, int | None]:
        """EndTxn v3-5: (error, producer id, epoch); the last two only from v5 (KIP-890, the
        epoch the coordinator bumped to), else None."""
        self.version(API_END_TXN, range(version, version + 1))
        assert 3 <= version <= 5, version
        deadline = time.monotonic() + retry_s
        while True:
            w = W().str(txn_id).i64(pid).i16(epoch).i8(1 if commit else 0).tags()
            r = self.request(API_END_TXN, version, bytes(w.b), True)
            r.i32()
            err = r.i16()
            if err in RETRIABLE_COORDINATOR and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            if version >= 5:
                return err, r.i64(), r.i16()
            return err, None, None

    # ------------------------------------------------------------------ produce / fetch

    def wait_ready(self, topic: str, partitions: int, timeout_s: float = 20):
        """Until every partition answers a Fetch without error: Metadata may list a new topic's
        leader a moment before the leader serves it (NOT_LEADER_OR_FOLLOWER); clients retry, the
        raw tests must not (a retried produce is itself a test case)."""
        deadline = time.monotonic() + timeout_s
        for p in range(partitions):
            while (err := self.fetch(topic, p).error) != NONE:
                if err not in (UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER) or time.monotonic() > deadline:
                    raise AssertionError(f"{topic}-{p}: fetch answers {err_name(err)}")
                time.sleep(0.05)

    def produce(self, topic: str, partition: int, batch: bytes, txn_id: str | None = None,
                version: int | None = None) -> "ProduceResult":
        """Produce v9-11 (flexible, topic names), acks=all, one batch to one partition."""
        v = version if version is not None else self.version(API_PRODUCE, range(9, 12))
        w = W().str(txn_id).i16(-1).i32(15000).arr(1).str(topic).arr(1).i32(partition).bytes_(batch).tags().tags().tags()
        r = self.request(API_PRODUCE, v, bytes(w.b), True)
        res = None
        for _ in range(r.arr()):
            r.str()
            for _ in range(r.arr()):
                index, err, base, _append_time, log_start = r.i32(), r.i16(), r.i64(), r.i64(), r.i64()
                record_errors = []
                for _ in range(r.arr()):
                    record_errors.append((r.i32(), r.str()))
                    r.tags()
                msg = r.str()
                r.tags()
                res = ProduceResult(err, base, log_start, msg, record_errors, v)
            r.tags()
        assert res is not None, "empty produce response"
        return res

    def fetch(self, topic: str, partition: int, offset: int = 0, read_committed: bool = False,
              max_bytes: int = 4 << 20) -> "FetchResult":
        """Fetch v11 (no session, topic names) of one partition with an isolation level."""
        self.version(API_FETCH, range(11, 12))
        w = W(compact=False).i32(-1).i32(0).i32(0).i32(max_bytes).i8(1 if read_committed else 0).i32(0).i32(-1)
        w.arr(1).str(topic).arr(1).i32(partition).i32(-1).i64(offset).i64(-1).i32(max_bytes)
        w.arr(0).str("")
        r = self.request(API_FETCH, 11, bytes(w.b), False)
        r.i32()
        top = r.i16()
        r.i32()
        assert top == 0, f"fetch: top-level error {top}"
        for _ in range(r.arr()):
            r.str()
            for _ in range(r.arr()):
                r.i32()
                err, hw, lso, log_start = r.i16(), r.i64(), r.i64(), r.i64()
                n = r.i32()
                aborted = [(r.i64(), r.i64()) for _ in range(max(0, n))]
                r.i32()
                records = r.bytes_()
                return FetchResult(err, hw, lso, log_start, aborted, parse_batches(records or b""))
        raise AssertionError("fetch: no partition in the response")


@dataclass
class ProduceResult:
    error: int
    base_offset: int
    log_start_offset: int
    message: str | None
    record_errors: list
    version: int


@dataclass
class Batch:
    base_offset: int
    last_offset: int
    attributes: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    count: int
    control_type: int | None = None  # 0 abort, 1 commit (control batches)
    values: list = field(default_factory=list)  # uncompressed batches only

    @property
    def transactional(self) -> bool:
        return bool(self.attributes & 0x10)

    @property
    def control(self) -> bool:
        return bool(self.attributes & 0x20)


@dataclass
class FetchResult:
    error: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    aborted: list  # (producer_id, first_offset)
    batches: list


# ================================================================================ record batches

def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _varint(n: int) -> bytes:
    w = W()
    w.uvarint(_zigzag(n))
    return bytes(w.b)


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
    shift = v = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << shift
        if not x & 0x80:
            return (v >> 1) ^ -(v & 1), i
        shift += 7


def encode_batch(values: list[bytes], producer_id: int = -1, epoch: int = -1, base_sequence: int = -1,
                 transactional: bool = False, keys: list[bytes | None] | None = None) -> bytes:
    """A magic-2 record batch (uncompressed, no headers), base offset 0, CRC-32C as Kafka wants."""
    import crc32c

    now = int(time.time() * 1000)
    recs = bytearray()
    for i, v in enumerate(values):
        k = keys[i] if keys else None
        body = b"\x00" + _varint(0) + _varint(i)
        body += _varint(-1) if k is None else _varint(len(k)) + k
        body += _varint(len(v)) + v + _varint(0)
        recs += _varint(len(body)) + body
    attrs = 0x10 if transactional else 0
    after_crc = struct.pack(">hiqqqhii", attrs, len(values) - 1, now, now, producer_id, epoch, base_sequence,
                            len(values)) + bytes(recs)
    crc = crc32c.crc32c(after_crc)
    rest = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(rest)) + rest


def parse_batches(data: bytes) -> list[Batch]:
    """Every complete v2 batch; records' values for uncompressed ones, the marker type for control ones."""
    out = []
    i = 0
    while i + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, i)
        end = i + 12 + length
        if end > len(data):
            break
        attrs, last_delta = struct.unpack_from(">hi", data, i + 21)
        pid, epoch, seq, count = struct.unpack_from(">qhii", data, i + 43)
        b = Batch(base, base + last_delta, attrs, pid, epoch, seq, count)
        if attrs & 0x7 == 0:
            j = i + 61
            for _ in range(count):
                ln, j = _read_varint(data, j)
                rec_end = j + ln
                j += 1  # attributes
                _, j = _read_varint(data, j)  # timestamp delta
                _, j = _read_varint(data, j)  # offset delta
                kl, j = _read_varint(data, j)
                key = None if kl < 0 else data[j:j + kl]
                j += max(0, kl)
                vl, j = _read_varint(data, j)
                val = None if vl < 0 else data[j:j + vl]
                if b.control:
                    b.control_type = struct.unpack(">hh", key)[1]
                else:
                    b.values.append(val)
                j = rec_end
        out.append(b)
        i = end
    return out


# ================================================================================== main

def main(argv: list[str]):
    import argparse

    ap = argparse.ArgumentParser(prog="eoslib.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stream")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, required=True)
    c = sub.add_parser("ctp")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--input", required=True)
    c.add_argument("--output", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--txn-id", required=True)
    c.add_argument("--hang-after-commits", type=int, default=-1)
    c.add_argument("--per-txn", type=int, default=10)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "stream":
            worker_stream_confluent(a.bootstrap, a.topic, a.partitions)
        else:
            worker_ctp_confluent(a.bootstrap, a.input, a.output, a.group, a.txn_id, a.hang_after_commits, a.per_txn)
    except Exception as e:  # noqa: BLE001 - reported as a line, like the Java CLI
        _emit({"error": type(e).__name__, "message": str(e)})
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
