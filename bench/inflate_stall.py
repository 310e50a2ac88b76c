"""How long a small, highly compressible Produce holds up other producers.

A zstd batch of a few dozen kilobytes can inflate to a gigabyte; validating it walks every
inflated byte. The broker validates on a reactor thread only within an inflate budget and moves a
batch past it to the blocking pool, so the other connections on that thread keep being served.
This measures that from outside: one client sends such a batch every two seconds over a raw
connection while a librdkafka producer sends small records one at a time (acks=all) and records
how long each took to be acknowledged.

    .venv/bin/python bench/inflate_stall.py --bootstrap 127.0.0.1:9092 [--seconds 20] [--inflate-mib 1024]

Needs a running broker with auto topic creation (the default) and the compat-tests venv
(confluent-kafka, zstandard, crc32c). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import threading
import time
from pathlib import Path

import crc32c
import zstandard
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compat-tests"))
from wire import Conn, Reader, Writer  # noqa: E402

API_PRODUCE = 0


def zigzag(n: int) -> bytes:
    return Writer().uvarint((n << 1) ^ (n >> 63)).bytes()


def bomb_batch(inflated: int) -> bytes:
    """One record whose value is `inflated` zero bytes, zstd-compressed, in a v2 batch."""
    body_head = b"\x00" + zigzag(0) + zigzag(0) + zigzag(-1) + zigzag(inflated)
    body_len = len(body_head) + inflated + 1  # + the header count
    z = zstandard.ZstdCompressor(level=3).compressobj()
    parts = [z.compress(zigzag(body_len) + body_head)]
    zeros = bytes(1 << 20)
    for _ in range(inflated // len(zeros)):
        parts.append(z.compress(zeros))
    parts.append(z.compress(bytes(inflated % len(zeros)) + zigzag(0)))
    parts.append(z.flush())
    records = b"".join(parts)
    now = int(time.time() * 1000)
    after_crc = (
        Writer().i16(4).i32(0).i64(now).i64(now).i64(-1).i16(-1).i32(-1).i32(1).bytes() + records
    )
    crc = crc32c.crc32c(after_crc)
    rest = Writer().i32(-1).i8(2).raw(struct.pack(">I", crc)).bytes() + after_crc
    return Writer().i64(0).i32(len(rest)).bytes() + rest


def produce_raw(conn: Conn, topic: str, batch: bytes) -> int:
    w = Writer().string(None).i16(-1).i32(60_000).i32(1).string(topic).i32(1).i32(0)
    w.i32(len(batch)).raw(batch)
    cid = conn.send(API_PRODUCE, 7, w.bytes(), flexible=False)
    r: Reader = conn.receive(cid, flexible_header=False)
    r.i32()  # topics
    r.string()
    r.i32()  # partitions
    r.i32()
    return r.i16()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--inflate-mib", type=int, default=1024)
    args = ap.parse_args()

    batch = bomb_batch(args.inflate_mib << 20)
    stop = threading.Event()
    bombs: list[tuple[float, int]] = []

    def bomber():
        with Conn(args.bootstrap, timeout_s=120) as c:
            while not stop.is_set():
                t = time.perf_counter()
                code = produce_raw(c, "inflate-bomb", batch)
                bombs.append((time.perf_counter() - t, code))
                stop.wait(2.0)

    p = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 0})
    # Create the topics and warm the connection before measuring.
    p.produce("inflate-latency", b"warm")
    p.produce("inflate-bomb", b"warm")  # Produce does not create topics; librdkafka's Metadata does
    p.flush(30)
    with Conn(args.bootstrap) as c:
        produce_raw(c, "inflate-bomb", bomb_batch(1 << 20))

    t = threading.Thread(target=bomber)
    t.start()
    latencies: list[float] = []
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        sent = time.perf_counter()
        done = []
        p.produce("inflate-latency", b"x" * 100, on_delivery=lambda err, msg: done.append(err))
        while not done:
            p.poll(0.001)
        latencies.append(time.perf_counter() - sent)
        time.sleep(0.005)
    stop.set()
    t.join()
    latencies.sort()
    ms = lambda s: round(s * 1000, 2)  # noqa: E731
    print(
        json.dumps(
            {
                "compressed_bytes": len(batch),
                "inflated_bytes": args.inflate_mib << 20,
                "bombs": len(bombs),
                "bomb_codes": sorted({c for _, c in bombs}),
                "bomb_answer_ms_median": ms(statistics.median(d for d, _ in bombs)) if bombs else None,
                "small_produces": len(latencies),
                "small_ack_ms_p50": ms(latencies[len(latencies) // 2]),
                "small_ack_ms_p99": ms(latencies[int(len(latencies) * 0.99)]),
                "small_ack_ms_max": ms(latencies[-1]),
            }
        )
    )


if __name__ == "__main__":
    main()
