"""Just enough of the Kafka wire protocol to test what no client shows: ApiVersions ranges and the
timing of Fetch long polls. Hand-written from the message schemas in Kafka's
clients/src/main/resources/common/message/ (ApiVersionsRequest/Response.json,
FetchRequest/Response.json, RequestHeader.json, ResponseHeader.json).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18

#: Frames larger than this are a broken response, not data (the tests fetch a few KB).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class Writer:
    def __init__(self):
        self.parts: list[bytes] = []

    def raw(self, b: bytes):
        self.parts.append(b)
        return self

    def i8(self, v):
        return self.raw(struct.pack(">b", v))

    def i16(self, v):
        return self.raw(struct.pack(">h", v))

    def i32(self, v):
        return self.raw(struct.pack(">i", v))

    def i64(self, v):
        return self.raw(struct.pack(">q", v))

    def uvarint(self, v):
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out.append(b | 0x80)
            else:
                out.append(b)
                return self.raw(bytes(out))

    def string(self, s: str | None):
        if s is None:
            return self.i16(-1)
        b = s.encode()
        return self.i16(len(b)).raw(b)

    def compact_string(self, s: str | None):
        if s is None:
            return self.uvarint(0)
        b = s.encode()
        return self.uvarint(len(b) + 1).raw(b)

    def tags(self):
        """An empty tagged-field section."""
        return self.uvarint(0)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


class Reader:
    def __init__(self, b: bytes):
        self.b = b
        self.i = 0

    def take(self, n) -> bytes:
        if self.i + n > len(self.b):
            raise ValueError(f"response truncated: wanted {n} bytes at {self.i} of {len(self.b)}")
        out = self.b[self.i:self.i + n]
        self.i += n
        return out

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self):
        shift = value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def compact_bytes(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1)

    def nullable_bytes(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())

    def array_len(self, compact: bool) -> int:
        return self.uvarint() - 1 if compact else self.i32()


class Conn:
    """One TCP connection; requests are sent and answered one at a time."""

    def __init__(self, bootstrap: str, timeout_s: float = 30.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.correlation_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, api_key: int, api_version: int, body: bytes, flexible: bool, client_id="fjord-compat-wire") -> int:
        self.correlation_id += 1
        h = Writer().i16(api_key).i16(api_version).i32(self.correlation_id).string(client_id)
        if flexible:
            h.tags()  # request header v2
        frame = h.bytes() + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        return self.correlation_id

    def receive(self, correlation_id: int, flexible_header: bool) -> Reader:
        size = struct.unpack(">i", self._read(4))[0]
        if not 0 <= size <= MAX_RESPONSE_BYTES:
            raise ValueError(f"bad response size {size}")
        r = Reader(self._read(size))
        got = r.i32()
        if got != correlation_id:
            raise ValueError(f"correlation id {got}, expected {correlation_id}")
        if flexible_header:
            r.skip_tags()  # response header v1
        return r

    def _read(self, n) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"broker closed the connection after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)


# ------------------------------------------------------------------------------ ApiVersions

@dataclass
class ApiVersions:
    error_code: int
    ranges: dict[int, tuple[int, int]]  # api key -> (min, max)


def api_versions(conn: Conn, version: int = 3) -> ApiVersions:
    """ApiVersions at `version`. Its response header is always v0 (no tagged fields), and a
    broker that does not know `version` answers in the v0 body layout (KIP-511)."""
    flexible = version >= 3
    body = Writer()
    if flexible:
        body.compact_string("fjord-compat").compact_string("0.1").tags()
    cid = conn.send(API_API_VERSIONS, version, body.bytes(), flexible)
    r = conn.receive(cid, flexible_header=False)
    error = r.i16()
    # An UNSUPPORTED_VERSION answer uses the v0 layout whatever version was asked.
    layout_flexible = flexible and error != 35
    ranges = {}
    for _ in range(r.array_len(layout_flexible)):
        key, lo, hi = r.i16(), r.i16(), r.i16()
        if layout_flexible:
            r.skip_tags()
        ranges[key] = (lo, hi)
    return ApiVersions(error, ranges)


# ------------------------------------------------------------------------------------ Fetch

@dataclass
class FetchedPartition:
    error_code: int
    high_watermark: int
    records: bytes | None


@dataclass
class FetchResponse:
    error_code: int
    session_id: int
    partitions: dict[tuple[str, int], FetchedPartition]  # (topic name or id hex, partition)


#: session_epoch values of KIP-227: a full fetch that opens a session, and one that uses none.
SESSION_EPOCH_INITIAL = 0
SESSION_EPOCH_FINAL = -1


def fetch_many(conn: Conn, version: int, wanted: list[tuple[str, int, int]], max_wait_ms: int,
               min_bytes: int = 1, max_bytes: int = 1 << 20, session_id: int = 0,
               session_epoch: int = SESSION_EPOCH_FINAL, topic_ids: dict[str, bytes] | None = None) -> FetchResponse:
    """A Fetch for (topic, partition, offset) triples. Versions 4-11 (topic names, classic
    encoding), 12 (flexible) and 13+ (topic ids: `topic_ids` maps names to 16 raw bytes).
    session_id/session_epoch: 0/-1 no session, 0/0 open one, S/n incremental (v7+, KIP-227)."""
    flexible = version >= 12
    w = Writer()
    if version <= 14:
        w.i32(-1)  # replica_id: a consumer
    w.i32(max_wait_ms).i32(min_bytes).i32(max_bytes).i8(0)  # isolation_level READ_UNCOMMITTED
    if version >= 7:
        w.i32(session_id).i32(session_epoch)

    def arr(n):
        return w.uvarint(n + 1) if flexible else w.i32(n)

    by_topic: dict[str, list[tuple[int, int]]] = {}
    for topic, partition, offset in wanted:
        by_topic.setdefault(topic, []).append((partition, offset))
    arr(len(by_topic))
    for topic, parts in by_topic.items():
        if version >= 13:
            w.raw(topic_ids[topic])
        elif flexible:
            w.compact_string(topic)
        else:
            w.string(topic)
        arr(len(parts))
        for partition, offset in parts:
            w.i32(partition)
            if version >= 9:
                w.i32(-1)  # current_leader_epoch: unknown
            w.i64(offset)
            if version >= 12:
                w.i32(-1)  # last_fetched_epoch
            if version >= 5:
                w.i64(-1)  # log_start_offset (followers only)
            w.i32(max_bytes)
            if flexible:
                w.tags()
        if flexible:
            w.tags()
    if version >= 7:
        arr(0)  # forgotten_topics_data
    if version >= 11:
        w.compact_string("") if flexible else w.string("")  # rack_id
    if flexible:
        w.tags()
    cid = conn.send(API_FETCH, version, w.bytes(), flexible)
    r = conn.receive(cid, flexible_header=flexible)

    names = {v: k for k, v in (topic_ids or {}).items()}
    r.i32()  # throttle_time_ms (v1+)
    top_error = r.i16() if version >= 7 else 0
    sid = r.i32() if version >= 7 else 0
    out: dict[tuple[str, int], FetchedPartition] = {}
    for _ in range(max(0, r.array_len(flexible))):
        if version >= 13:
            raw = r.take(16)
            topic = names.get(raw, raw.hex())
        elif flexible:
            topic = r.compact_string()
        else:
            topic = r.string()
        for _ in range(max(0, r.array_len(flexible))):
            index = r.i32()
            error = r.i16()
            hw = r.i64()
            r.i64()  # last_stable_offset (v4+)
            if version >= 5:
                r.i64()  # log_start_offset
            for _ in range(max(0, r.array_len(flexible))):  # aborted_transactions
                r.i64()
                r.i64()
                if flexible:
                    r.skip_tags()
            if version >= 11:
                r.i32()  # preferred_read_replica
            records = r.compact_bytes() if flexible else r.nullable_bytes()
            if flexible:
                r.skip_tags()
            out[(topic, index)] = FetchedPartition(error, hw, records)
        if flexible:
            r.skip_tags()
    return FetchResponse(top_error, sid, out)


def fetch(conn: Conn, version: int, topic: str, partition: int, offset: int, max_wait_ms: int,
          min_bytes: int = 1, max_bytes: int = 1 << 20, topic_id: bytes | None = None) -> tuple[int, FetchedPartition]:
    """One Fetch for one partition without a fetch session: (top-level error, the partition)."""
    resp = fetch_many(conn, version, [(topic, partition, offset)], max_wait_ms, min_bytes, max_bytes,
                      topic_ids=None if topic_id is None else {topic: topic_id})
    assert list(resp.partitions) == [(topic, partition)], f"asked for {topic}-{partition}, got {list(resp.partitions)}"
    return resp.error_code, resp.partitions[(topic, partition)]


# ------------------------------------------------------------------------------ record batches

#: The codec in bits 0-2 of a v2 record batch's attributes.
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@dataclass
class BatchInfo:
    base_offset: int
    magic: int
    codec: int
    record_count: int


def record_batches(data: bytes | None) -> list[BatchInfo]:
    """The headers of the v2 record batches in a Fetch response's records field. A partial batch
    at the end (the broker may cut at max_bytes) is ignored."""
    out = []
    i = 0
    data = data or b""
    while i + 61 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, i)
        if i + 12 + length > len(data):
            break
        magic = data[i + 16]
        attributes = struct.unpack_from(">h", data, i + 21)[0]
        count = struct.unpack_from(">i", data, i + 57)[0]
        out.append(BatchInfo(base_offset, magic, attributes & 0x7, count))
        i += 12 + length
    return out


def pick_version(ranges: dict[int, tuple[int, int]], api_key: int, implemented: range) -> int:
    """The highest version both this module and the broker speak."""
    lo, hi = ranges[api_key]
    common = [v for v in implemented if lo <= v <= hi]
    if not common:
        raise AssertionError(f"broker offers api {api_key} versions {lo}-{hi}, this module speaks {implemented}")
    return max(common)


def fetch_batches(bootstrap: str, topic: str, partition: int, offset: int = 0,
                  topic_id: bytes | None = None) -> list[BatchInfo]:
    """Every complete batch from `offset` on (one Fetch, up to 8 MiB), read straight off the wire."""
    with Conn(bootstrap) as c:
        ranges = api_versions(c).ranges
        # Topic names up to v12; v13+ needs the topic id, which only the caller can give.
        version = pick_version(ranges, API_FETCH, range(4, 13) if topic_id is None else range(4, 19))
        err, p = fetch(c, version, topic, partition, offset, max_wait_ms=0, min_bytes=0, max_bytes=8 << 20,
                       topic_id=topic_id)
        assert err == 0 and p.error_code == 0, (err, p.error_code)
        return record_batches(p.records)


#: Errors a fresh topic may answer with while its partitions come up (clients retry these).
RETRIABLE_WHILE_CREATING = {3, 5, 6}  # UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER


def wait_fetchable(bootstrap: str, topic: str, partitions: int, timeout_s: float = 20.0):
    """Until a sessionless Fetch of every partition answers without error. Metadata may list a
    new topic's leader a moment before the leader serves it; a client retries, a wire test waits."""
    import time

    deadline = time.monotonic() + timeout_s
    with Conn(bootstrap) as c:
        v = pick_version(api_versions(c).ranges, API_FETCH, range(4, 13))
        while True:
            r = fetch_many(c, v, [(topic, p, 0) for p in range(partitions)], max_wait_ms=0, min_bytes=0)
            errors = {k: p.error_code for k, p in r.partitions.items() if p.error_code}
            if r.error_code == 0 and not errors and len(r.partitions) == partitions:
                return
            unexpected = {k: e for k, e in errors.items() if e not in RETRIABLE_WHILE_CREATING}
            assert r.error_code == 0 and not unexpected, f"fetch of a new topic failed: {r}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: partitions still answer {errors} after {timeout_s}s")
            time.sleep(0.05)


# ---------------------------------------------------------------------------- FindCoordinator

API_FIND_COORDINATOR = 10


def find_coordinator(conn: Conn, version: int, group: str) -> tuple[int, int]:
    """FindCoordinator v0-3 for a consumer group: (error_code, node_id)."""
    assert 0 <= version <= 3, version
    flexible = version >= 3
    w = Writer()
    w.compact_string(group) if flexible else w.string(group)
    if version >= 1:
        w.i8(0)  # key_type: GROUP
    if flexible:
        w.tags()
    cid = conn.send(API_FIND_COORDINATOR, version, w.bytes(), flexible)
    r = conn.receive(cid, flexible_header=flexible)
    if version >= 1:
        r.i32()  # throttle_time_ms
    error = r.i16()
    if version >= 1:
        r.compact_string() if flexible else r.string()  # error_message
    node = r.i32()
    return error, node
