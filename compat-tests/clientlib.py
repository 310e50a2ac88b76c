"""One round-trip interface over the five clients the compat tests drive.

Every client gets the same two calls:

    produce(CLIENT, bootstrap, topic, records, codec=..., acks=...) -> [Ack]   (one per record, in order)
    consume(CLIENT, bootstrap, topic, count, partition=None, offset="earliest") -> [Rec]

so a test can produce with one client and read back with all of them and compare exact content.
Each adapter configures its client for what Fjord supports today: no consumer group (assign() or
explicit partitions only, no auto commit) and no idempotence (kafka-python 3.x turns it on by
default, and that needs InitProducerId). One request in flight per connection keeps a
non-idempotent producer's order when it retries. FINDINGS.md lists each client quirk handled here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

COMPAT_DIR = Path(__file__).resolve().parent
JAVA_CLASSPATH = f"{COMPAT_DIR}/java/target/classes:{COMPAT_DIR}/java/target/lib/*"

CLIENTS = ("confluent", "kafka-python", "aiokafka", "java", "kcat")
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")

#: How long a client may take for one produce or consume call before the test fails.
CLIENT_TIMEOUT_S = 30.0
#: Extra fetch/request size room the large-record tests give the clients over the broker limit.
LARGE_CLIENT_LIMIT_BYTES = 8_000_000


@dataclass(frozen=True)
class Rec:
    """A record as produced or as read back. Bytes stay bytes; None is a null key/value."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    partition: int | None = None
    timestamp: int | None = None
    offset: int | None = None

    def content(self):
        """What every client must read back identically, whatever the producer."""
        return (self.key, self.value, tuple(self.headers))


@dataclass(frozen=True)
class Ack:
    """A producer's answer for one record: where it landed, or the client's error name."""

    partition: int | None = None
    offset: int | None = None
    timestamp: int | None = None
    error: str | None = None
    message: str = ""


class ClientError(AssertionError):
    """A client failed in a way the test did not ask for (and its output says how)."""


def _h(headers) -> tuple[tuple[str, bytes | None], ...]:
    return tuple((k, v) for k, v in (headers or ()))


# --------------------------------------------------------------------------------------- confluent

def confluent_producer_conf(bootstrap, codec="none", acks="all", large=False, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": str(acks),
        "compression.type": codec,
        "enable.idempotence": False,
        "max.in.flight.requests.per.connection": 1,
        "linger.ms": 5,
        "message.timeout.ms": 30000,
        "request.timeout.ms": 15000,
    }
    if large:
        conf["message.max.bytes"] = LARGE_CLIENT_LIMIT_BYTES
    conf.update(extra)
    return conf


def confluent_consumer_conf(bootstrap, large=False, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        # librdkafka refuses to build a consumer without group.id even for assign(); it is never
        # used for a join or a commit here, but librdkafka does send FindCoordinator for it in the
        # background (FINDINGS.md). A unique id keeps parallel tests apart should that matter.
        "group.id": f"fjord-compat-unused-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    if large:
        conf["fetch.max.bytes"] = LARGE_CLIENT_LIMIT_BYTES
        conf["max.partition.fetch.bytes"] = LARGE_CLIENT_LIMIT_BYTES
        conf["receive.message.max.bytes"] = LARGE_CLIENT_LIMIT_BYTES + 1_000_000
    conf.update(extra)
    return conf


def produce_confluent(bootstrap, topic, records, codec="none", acks="all", large=False, **extra):
    from confluent_kafka import KafkaException, Producer

    p = Producer(confluent_producer_conf(bootstrap, codec, acks, large, **extra))
    acks_out: list[Ack | None] = [None] * len(records)

    def on_delivery(i, err, msg):
        if err is not None:
            acks_out[i] = Ack(error=err.name(), message=err.str())
        else:
            acks_out[i] = Ack(msg.partition(), msg.offset(), msg.timestamp()[1])

    for i, r in enumerate(records):
        kwargs = dict(topic=topic, value=r.value, key=r.key, on_delivery=functools.partial(on_delivery, i))
        if r.headers:
            kwargs["headers"] = list(r.headers)
        if r.partition is not None:
            kwargs["partition"] = r.partition
        if r.timestamp is not None:
            kwargs["timestamp"] = r.timestamp
        while True:
            try:
                p.produce(**kwargs)
                break
            except BufferError:
                p.poll(0.1)
            except KafkaException as e:
                acks_out[i] = Ack(error=e.args[0].name(), message=e.args[0].str())
                break
        p.poll(0)
    left = p.flush(CLIENT_TIMEOUT_S)
    if left:
        raise ClientError(f"confluent-kafka: {left} messages still queued after {CLIENT_TIMEOUT_S}s")
    return [a if a is not None else Ack(error="NoDeliveryReport") for a in acks_out]


def consume_confluent(bootstrap, topic, count, partition=None, offset="earliest",
                      timeout_s=CLIENT_TIMEOUT_S, large=False, **extra):
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

    c = Consumer(confluent_consumer_conf(bootstrap, large, **extra))
    try:
        partitions = [partition] if partition is not None else _confluent_partitions(c, topic)
        start = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END}.get(offset, offset)
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        out: list[Rec] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise ClientError(f"confluent-kafka consume error: {m.error()}")
            out.append(Rec(m.key(), m.value(), _h(m.headers()), m.partition(), m.timestamp()[1], m.offset()))
        return out
    finally:
        c.close()


def _confluent_partitions(client, topic):
    md = client.list_topics(topic, timeout=10)
    t = md.topics[topic]
    if t.error is not None:
        raise ClientError(f"confluent-kafka metadata for {topic}: {t.error}")
    return sorted(t.partitions)


# ------------------------------------------------------------------------------------ kafka-python

def _kp_codec(codec):
    return None if codec == "none" else codec


def _kp_acks(acks):
    return "all" if str(acks) in ("all", "-1") else int(acks)


def kafka_python_producer(bootstrap, codec="none", acks="all", large=False, **extra):
    from kafka import KafkaProducer

    conf = dict(
        bootstrap_servers=bootstrap,
        acks=_kp_acks(acks),
        compression_type=_kp_codec(codec),
        # kafka-python 3.x defaults to True, which starts with InitProducerId (FINDINGS.md).
        enable_idempotence=False,
        max_in_flight_requests_per_connection=1,
        linger_ms=5,
        request_timeout_ms=15000,
    )
    if large:
        conf["max_request_size"] = LARGE_CLIENT_LIMIT_BYTES
    conf.update(extra)
    return KafkaProducer(**conf)


def kafka_python_consumer(bootstrap, large=False, **extra):
    from kafka import KafkaConsumer

    conf = dict(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=20000,
    )
    if large:
        conf["fetch_max_bytes"] = LARGE_CLIENT_LIMIT_BYTES
        conf["max_partition_fetch_bytes"] = LARGE_CLIENT_LIMIT_BYTES
    conf.update(extra)
    return KafkaConsumer(**conf)


def produce_kafka_python(bootstrap, topic, records, codec="none", acks="all", large=False, **extra):
    from kafka.errors import KafkaError

    p = kafka_python_producer(bootstrap, codec, acks, large, **extra)
    try:
        futures = []
        for r in records:
            try:
                futures.append(p.send(topic, value=r.value, key=r.key, headers=list(r.headers) or None,
                                      partition=r.partition, timestamp_ms=r.timestamp))
            except KafkaError as e:
                futures.append(e)
        p.flush(timeout=CLIENT_TIMEOUT_S)
        out = []
        for f in futures:
            if isinstance(f, Exception):
                out.append(Ack(error=type(f).__name__, message=str(f)))
                continue
            try:
                md = f.get(timeout=CLIENT_TIMEOUT_S)
                out.append(Ack(md.partition, md.offset, md.timestamp))
            except KafkaError as e:
                out.append(Ack(error=type(e).__name__, message=str(e)))
        return out
    finally:
        p.close(timeout=10)


def consume_kafka_python(bootstrap, topic, count, partition=None, offset="earliest",
                         timeout_s=CLIENT_TIMEOUT_S, large=False, **extra):
    from kafka import TopicPartition

    c = kafka_python_consumer(bootstrap, large, **extra)
    try:
        if partition is None:
            parts = c.partitions_for_topic(topic)
            deadline = time.monotonic() + 10
            while not parts and time.monotonic() < deadline:
                time.sleep(0.1)  # kafka-python refreshes metadata in the background
                parts = c.partitions_for_topic(topic)
            if not parts:
                raise ClientError(f"kafka-python: no partitions known for {topic}")
            partitions = sorted(parts)
        else:
            partitions = [partition]
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        if offset == "earliest":
            c.seek_to_beginning(*tps)
        elif offset == "latest":
            c.seek_to_end(*tps)
        else:
            for tp in tps:
                c.seek(tp, offset)
        out: list[Rec] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for tp, msgs in c.poll(timeout_ms=200).items():
                for m in msgs:
                    out.append(Rec(m.key, m.value, _h(m.headers), m.partition, m.timestamp, m.offset))
        return out[:count]
    finally:
        c.close()


# ---------------------------------------------------------------------------------------- aiokafka

def _run(coro):
    return asyncio.run(coro)


def _aio_producer_conf(bootstrap, codec, acks, large, extra):
    conf = dict(
        bootstrap_servers=bootstrap,
        acks=_kp_acks(acks),
        compression_type=_kp_codec(codec),
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=15000,
    )
    if large:
        conf["max_request_size"] = LARGE_CLIENT_LIMIT_BYTES
    conf.update(extra)
    return conf


def _aio_consumer_conf(bootstrap, large, extra):
    conf = dict(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=20000,
    )
    if large:
        conf["fetch_max_bytes"] = LARGE_CLIENT_LIMIT_BYTES
        conf["max_partition_fetch_bytes"] = LARGE_CLIENT_LIMIT_BYTES
    conf.update(extra)
    return conf


def produce_aiokafka(bootstrap, topic, records, codec="none", acks="all", large=False, **extra):
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    async def go():
        p = AIOKafkaProducer(**_aio_producer_conf(bootstrap, codec, acks, large, extra))
        await p.start()
        try:
            futures = []
            for r in records:
                try:
                    futures.append(await p.send(topic, value=r.value, key=r.key, partition=r.partition,
                                                timestamp_ms=r.timestamp, headers=list(r.headers) or None))
                except KafkaError as e:
                    futures.append(e)
            out = []
            for f in futures:
                if isinstance(f, Exception):
                    out.append(Ack(error=type(f).__name__, message=str(f)))
                    continue
                try:
                    md = await asyncio.wait_for(f, CLIENT_TIMEOUT_S)
                    # acks=0 resolves to None: nothing is known but that it was sent.
                    out.append(Ack() if md is None else Ack(md.partition, md.offset, md.timestamp))
                except KafkaError as e:
                    out.append(Ack(error=type(e).__name__, message=str(e)))
            return out
        finally:
            await p.stop()

    return _run(go())


def consume_aiokafka(bootstrap, topic, count, partition=None, offset="earliest",
                     timeout_s=CLIENT_TIMEOUT_S, large=False, **extra):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go():
        c = AIOKafkaConsumer(**_aio_consumer_conf(bootstrap, large, extra))
        await c.start()
        try:
            if partition is None:
                parts = c.partitions_for_topic(topic)
                deadline = time.monotonic() + 10
                while not parts and time.monotonic() < deadline:
                    await c._client.force_metadata_update()
                    c._client.add_topic(topic)
                    parts = c.partitions_for_topic(topic)
                    if not parts:
                        await asyncio.sleep(0.1)
                if not parts:
                    raise ClientError(f"aiokafka: no partitions known for {topic}")
                partitions = sorted(parts)
            else:
                partitions = [partition]
            tps = [TopicPartition(topic, p) for p in partitions]
            c.assign(tps)
            if offset == "earliest":
                await c.seek_to_beginning(*tps)
            elif offset == "latest":
                await c.seek_to_end(*tps)
            else:
                for tp in tps:
                    c.seek(tp, offset)
            out: list[Rec] = []
            deadline = time.monotonic() + timeout_s
            while len(out) < count and time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=200)
                for tp, msgs in batch.items():
                    for m in msgs:
                        out.append(Rec(m.key, m.value, _h(m.headers), m.partition, m.timestamp, m.offset))
            return out[:count]
        finally:
            await c.stop()

    return _run(go())


# -------------------------------------------------------------------------------------------- java

def java(*args, input_lines: Iterable[dict] | None = None, timeout_s=CLIENT_TIMEOUT_S + 30,
         expect_error: bool | None = False) -> list[dict]:
    """Runs the Java CLI (java/ module) and returns its JSON lines.

    A Kafka error ends the output with {"error": ExceptionSimpleName, "message": ...} and exit 2:
    that raises ClientError unless `expect_error` is True (it must fail) or None (either way)."""
    stdin = None
    if input_lines is not None:
        stdin = "".join(json.dumps(line) + "\n" for line in input_lines)
    if not Path(COMPAT_DIR / "java/target/classes/dev/fjord/compat/Cli.class").exists():
        raise ClientError("Java CLI not built: run compat-tests/setup.sh")
    # C1 only and serial GC: these JVMs live for a second or two, start-up time is what counts.
    cmd = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", JAVA_CLASSPATH,
           "dev.fjord.compat.Cli", *map(str, args)]
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout_s)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    if p.returncode == 2 and expect_error is not False:
        return lines
    if p.returncode != 0:
        raise ClientError(f"java CLI {args[0]} exited {p.returncode}: stdout={p.stdout[-2000:]!r} "
                          f"stderr={p.stderr[-2000:]!r}")
    if expect_error:
        raise ClientError(f"java CLI {args[0]} succeeded but an error was expected: {lines}")
    return lines


def _hex(b):
    return None if b is None else b.hex()


def _unhex(s):
    return None if s is None else bytes.fromhex(s)


def produce_java(bootstrap, topic, records, codec="none", acks="all", large=False, **extra):
    args = ["produce", "--bootstrap", bootstrap, "--topic", topic, "--codec", codec, "--acks", str(acks), "--input", "-"]
    if large:
        args += ["--max-request-size", LARGE_CLIENT_LIMIT_BYTES]
    for k, v in extra.items():
        args += ["-X", f"{k}={v}"]
    lines = java(*args, input_lines=[
        {"key": _hex(r.key), "value": _hex(r.value), "headers": [[k, _hex(v)] for k, v in r.headers],
         "partition": r.partition, "timestamp": r.timestamp} for r in records])
    lines.sort(key=lambda l: l["i"])
    assert [l["i"] for l in lines] == list(range(len(records))), lines
    return [Ack(error=l["error"], message=l.get("message", "")) if "error" in l
            else Ack(l["partition"], l["offset"], l["timestamp"]) for l in lines]


def java_record(l) -> Rec:
    return Rec(_unhex(l["key"]), _unhex(l["value"]), tuple((k, _unhex(v)) for k, v in l["headers"]),
               l["partition"], l["timestamp"], l["offset"])


def consume_java(bootstrap, topic, count, partition=None, offset="earliest",
                 timeout_s=CLIENT_TIMEOUT_S, large=False, **extra):
    args = ["consume", "--bootstrap", bootstrap, "--topic", topic, "--count", count,
            "--partition", "all" if partition is None else partition, "--from-offset", offset,
            "--timeout-ms", int(timeout_s * 1000)]
    if large:
        args += ["--max-fetch-bytes", LARGE_CLIENT_LIMIT_BYTES]
    for k, v in extra.items():
        args += ["-X", f"{k}={v}"]
    return [java_record(l) for l in java(*args, timeout_s=timeout_s + 30) if "offset" in l]


# -------------------------------------------------------------------------------------------- kcat

KCAT = shutil.which("kcat") or "kcat"


def kcat(*args, input_bytes: bytes | None = None, timeout_s=CLIENT_TIMEOUT_S, check=True):
    """Runs kcat; returns the CompletedProcess (stdout/stderr as bytes)."""
    p = subprocess.run([KCAT, *map(str, args)], input=input_bytes, capture_output=True, timeout=timeout_s)
    if check and p.returncode != 0:
        raise ClientError(f"kcat {' '.join(map(str, args))} exited {p.returncode}: {p.stderr[-2000:]!r}")
    return p


def kcat_can_produce(records: Sequence[Rec]) -> bool:
    """kcat reads text lines: no newline/tab inside, no empty (it would become NULL), one header set."""
    if not records:
        return True
    hs = records[0].headers
    for r in records:
        if r.timestamp is not None or r.headers != hs or r.partition is None:
            return False
        for b in (r.key, r.value):
            if b is not None and (b == b"" or b"\n" in b or b"\t" in b):
                return False
    return all(v is not None for _, v in hs)


def produce_kcat(bootstrap, topic, records, codec="none", acks="all", large=False, **extra):
    """kcat -P, one run per partition (kcat reports no offsets, so the acks carry none)."""
    assert kcat_can_produce(records), "these records cannot be expressed as kcat input"
    by_partition: dict[int, list[Rec]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r)
    for part, recs in by_partition.items():
        args = ["-P", "-b", bootstrap, "-t", topic, "-p", part, "-K", "\t", "-Z", "-z", codec,
                "-X", f"acks={acks}", "-X", "enable.idempotence=false", "-X", "max.in.flight=1"]
        for k, v in recs[0].headers:
            args += ["-H", f"{k}={v.decode()}"]
        if large:
            args += ["-X", f"message.max.bytes={LARGE_CLIENT_LIMIT_BYTES}"]
        for k, v in extra.items():
            args += ["-X", f"{k}={v}"]
        data = b"".join((r.key or b"") + b"\t" + (r.value or b"") + b"\n" for r in recs)
        kcat(*args, input_bytes=data, timeout_s=CLIENT_TIMEOUT_S + 10)
    return [Ack(r.partition) for r in records]


def kcat_json_lines(stdout: bytes) -> list[dict]:
    # kcat -J writes payloads raw, not UTF-8-checked: surrogateescape round-trips any byte.
    return [json.loads(l) for l in stdout.decode("utf-8", "surrogateescape").splitlines() if l.strip()]


def _kb(s):
    return None if s is None else s.encode("utf-8", "surrogateescape")


def kcat_record(d) -> Rec:
    hs = d.get("headers") or []
    headers = tuple((hs[i], _kb(hs[i + 1])) for i in range(0, len(hs), 2))
    return Rec(_kb(d["key"]), _kb(d["payload"]), headers, d["partition"], d["ts"], d["offset"])


def consume_kcat(bootstrap, topic, count, partition=None, offset="earliest",
                 timeout_s=CLIENT_TIMEOUT_S, large=False, **extra):
    args = ["-C", "-b", bootstrap, "-t", topic, "-c", count, "-J", "-q",
            "-o", "beginning" if offset == "earliest" else "end" if offset == "latest" else offset]
    if partition is not None:
        args += ["-p", partition]
    if large:
        args += ["-X", f"fetch.message.max.bytes={LARGE_CLIENT_LIMIT_BYTES}",
                 "-X", f"fetch.max.bytes={LARGE_CLIENT_LIMIT_BYTES}",
                 "-X", f"receive.message.max.bytes={LARGE_CLIENT_LIMIT_BYTES + 1_000_000}"]
    for k, v in extra.items():
        args += ["-X", f"{k}={v}"]
    try:
        out = kcat(*args, timeout_s=timeout_s).stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""  # fewer records than asked: the test's count assertion says so
    return [kcat_record(d) for d in kcat_json_lines(out)]


# -------------------------------------------------------------------------------------- dispatch

_PRODUCERS = {
    "confluent": produce_confluent,
    "kafka-python": produce_kafka_python,
    "aiokafka": produce_aiokafka,
    "java": produce_java,
    "kcat": produce_kcat,
}
_CONSUMERS = {
    "confluent": consume_confluent,
    "kafka-python": consume_kafka_python,
    "aiokafka": consume_aiokafka,
    "java": consume_java,
    "kcat": consume_kcat,
}


def produce(client, bootstrap, topic, records, codec="none", acks="all", large=False, **extra) -> list[Ack]:
    """Produces `records` in order; returns one Ack per record (offset None where the client
    does not report it: kcat, and acks=0 where the client reports -1)."""
    return _PRODUCERS[client](bootstrap, topic, list(records), codec=codec, acks=acks, large=large, **extra)


def consume(client, bootstrap, topic, count, partition=None, offset="earliest",
            timeout_s=CLIENT_TIMEOUT_S, large=False, **extra) -> list[Rec]:
    """Reads up to `count` records (all partitions when `partition` is None) from `offset`
    ("earliest", "latest" or a number); returns fewer if `timeout_s` passes first."""
    return _CONSUMERS[client](bootstrap, topic, count, partition=partition, offset=offset,
                              timeout_s=timeout_s, large=large, **extra)


def by_partition(recs: Iterable[Rec]) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {}
    for r in recs:
        out.setdefault(r.partition, []).append(r)
    return out


def assert_ok(acks: Sequence[Ack]):
    bad = [(i, a) for i, a in enumerate(acks) if a.error]
    assert not bad, f"{len(bad)} of {len(acks)} records failed: {bad[:5]}"


# ------------------------------------------------------------------------------------ test data

def sample_records(tag: str, partitions: int = 3, per_partition: int = 6, kcat_compatible: bool = False) -> list[Rec]:
    """Records spread round-robin over `partitions`, with keys, null keys, null values, non-ASCII
    text and headers (an empty header value, and for non-kcat producers a per-record header and a
    repeated header name, whose order must survive). kcat_compatible keeps to what kcat -P can
    send: text without tabs/newlines, one header set for all records."""
    out = []
    for i in range(partitions * per_partition):
        key = None if i % 4 == 3 else f"key-{i}".encode()
        value = None if i % 5 == 4 else f"{tag} #{i} blåbær→✓".encode()
        if kcat_compatible:
            headers = (("h-client", tag.encode()), ("h-empty", b""))
        else:
            headers = (("h-index", str(i).encode()), ("h-client", tag.encode()), ("h-empty", b""),
                       ("h-dup", b"first"), ("h-dup", b"second"))
        out.append(Rec(key, value, headers, i % partitions))
    return out


def expected_layout(records: Sequence[Rec], acks: Sequence[Ack]) -> dict[int, list[tuple[int, tuple]]]:
    """{partition: [(offset, content)]} in produce order. Producers that report offsets must
    report 0, 1, 2, ... per partition of a fresh topic; for kcat (no offsets) that is assumed."""
    layout: dict[int, list[tuple[int, tuple]]] = {}
    for r, a in zip(records, acks, strict=True):
        assert a.error is None, a
        p = a.partition if a.partition is not None else r.partition
        if r.partition is not None:
            assert p == r.partition, f"asked for partition {r.partition}, the ack says {p}"
        rows = layout.setdefault(p, [])
        expected_offset = len(rows)
        if a.offset is not None and a.offset >= 0:
            assert a.offset == expected_offset, f"partition {p}: ack offset {a.offset}, expected {expected_offset}"
        rows.append((expected_offset, r.content()))
    return layout


def layout_mismatch(got: Sequence[Rec], expected: dict[int, list[tuple[int, tuple]]]) -> str | None:
    """None if `got` holds exactly `expected`, in order per partition; else what differs."""
    have = {p: [(r.offset, r.content()) for r in rs] for p, rs in by_partition(got).items()}
    problems = []
    for p in sorted(set(have) | set(expected)):
        h, e = have.get(p, []), expected.get(p, [])
        if h != e:
            first = next((i for i, (x, y) in enumerate(zip(h, e)) if x != y), min(len(h), len(e)))
            problems.append(f"partition {p}: read {len(h)} records, expected {len(e)}; first difference at "
                            f"index {first}: read {h[first] if first < len(h) else None!r}, "
                            f"expected {e[first] if first < len(e) else None!r}")
    return "; ".join(problems) or None
