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
               session_epoch: int = SESSION_EPOCH_FINAL, topic_ids: dict[str, bytes] | None = None,
               forget: list[tuple[str, int]] = ()) -> FetchResponse:
    """A Fetch for (topic, partition, offset) triples. Versions 4-11 (topic names, classic
    encoding), 12 (flexible) and 13+ (topic ids: `topic_ids` maps names to 16 raw bytes).
    session_id/session_epoch: 0/-1 no session, 0/0 open one, S/n incremental (v7+, KIP-227);
    `forget` lists (topic, partition) pairs an incremental fetch drops from its session."""
    flexible = version >= 12
    w = Writer()
    if version <= 14:
        w.i32(-1)  # replica_id: a consumer
    w.i32(max_wait_ms).i32(min_bytes).i32(max_bytes).i8(0)  # isolation_level READ_UNCOMMITTED
    if version >= 7:
        w.i32(session_id).i32(session_epoch)

    def arr(n):
        return w.uvarint(n + 1) if flexible else w.i32(n)

    def topic_ref(topic):
        """A topic as this version names it: by id from v13, else by name."""
        if version >= 13:
            w.raw(topic_ids[topic])
        elif flexible:
            w.compact_string(topic)
        else:
            w.string(topic)

    by_topic: dict[str, list[tuple[int, int]]] = {}
    for topic, partition, offset in wanted:
        by_topic.setdefault(topic, []).append((partition, offset))
    arr(len(by_topic))
    for topic, parts in by_topic.items():
        topic_ref(topic)
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
        forgotten: dict[str, list[int]] = {}
        for topic, partition in forget:
            forgotten.setdefault(topic, []).append(partition)
        arr(len(forgotten))  # forgotten_topics_data
        for topic, parts in forgotten.items():
            topic_ref(topic)
            arr(len(parts))
            for partition in parts:
                w.i32(partition)
            if flexible:
                w.tags()
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


# ------------------------------------------------------------------------- consumer groups
#
# From JoinGroup/SyncGroup/Heartbeat/LeaveGroup/OffsetCommit/OffsetFetch/DescribeGroups/
# FindCoordinator Request/Response.json and ConsumerProtocolSubscription/Assignment.json.

API_OFFSET_COMMIT = 8
API_OFFSET_FETCH = 9
API_JOIN_GROUP = 11
API_HEARTBEAT = 12
API_LEAVE_GROUP = 13
API_SYNC_GROUP = 14
API_DESCRIBE_GROUPS = 15

#: The first flexible (compact, tagged-field) version of each group API.
FLEXIBLE_FROM = {API_OFFSET_COMMIT: 8, API_OFFSET_FETCH: 6, API_FIND_COORDINATOR: 3, API_JOIN_GROUP: 6,
                 API_HEARTBEAT: 4, API_LEAVE_GROUP: 4, API_SYNC_GROUP: 4, API_DESCRIBE_GROUPS: 5}


class Enc(Writer):
    """A Writer that encodes strings, bytes and arrays the way one message version wants."""

    def __init__(self, flexible: bool):
        super().__init__()
        self.flexible = flexible

    def str_(self, s: str | None):
        return self.compact_string(s) if self.flexible else self.string(s)

    def bytes_(self, b: bytes | None):
        if self.flexible:
            return self.uvarint(0) if b is None else self.uvarint(len(b) + 1).raw(b)
        return self.i32(-1) if b is None else self.i32(len(b)).raw(b)

    def arr(self, n: int | None):
        if self.flexible:
            return self.uvarint(0 if n is None else n + 1)
        return self.i32(-1 if n is None else n)

    def tags_(self):
        return self.tags() if self.flexible else self


class Dec:
    """Reads a response body the way one message version encodes it."""

    def __init__(self, r: Reader, flexible: bool):
        self.r = r
        self.flexible = flexible

    def __getattr__(self, name):  # i8, i16, i32, i64, take
        return getattr(self.r, name)

    def str_(self):
        return self.r.compact_string() if self.flexible else self.r.string()

    def bytes_(self):
        return self.r.compact_bytes() if self.flexible else self.r.nullable_bytes()

    def arr(self) -> int:
        return max(0, self.r.array_len(self.flexible))

    def tags_(self):
        if self.flexible:
            self.r.skip_tags()


def _call(conn: Conn, api_key: int, version: int, build) -> Dec:
    flexible = version >= FLEXIBLE_FROM[api_key]
    w = Enc(flexible)
    build(w)
    w.tags_()
    cid = conn.send(api_key, version, w.bytes(), flexible)
    return Dec(conn.receive(cid, flexible_header=flexible), flexible)


def consumer_subscription(topics: list[str], user_data: bytes | None = None) -> bytes:
    """ConsumerProtocolSubscription v0: what a consumer puts in JoinGroup's protocol metadata."""
    w = Enc(False).i16(0).arr(len(topics))
    for t in topics:
        w.string(t)
    return w.bytes_(user_data).bytes()


def consumer_assignment(partitions: dict[str, list[int]]) -> bytes:
    """ConsumerProtocolAssignment v0: what the leader sends each member in SyncGroup."""
    w = Enc(False).i16(0).arr(len(partitions))
    for t, ps in partitions.items():
        w.string(t).arr(len(ps))
        for p in ps:
            w.i32(p)
    return w.bytes_(None).bytes()


def parse_consumer_assignment(b: bytes | None) -> dict[str, list[int]]:
    if not b:
        return {}
    d = Dec(Reader(b), False)
    d.i16()
    out = {}
    for _ in range(d.arr()):
        t = d.r.string()
        out[t] = [d.i32() for _ in range(d.arr())]
    return out


@dataclass
class JoinGroupResponse:
    error_code: int
    generation_id: int
    protocol_type: str | None
    protocol_name: str | None
    leader: str
    skip_assignment: bool
    member_id: str
    members: list[tuple[str, str | None, bytes]]  # (member id, instance id, metadata)


def join_group(conn: Conn, version: int, group: str, member_id: str = "", protocol_type: str = "consumer",
               protocols: list[tuple[str, bytes]] = (), session_timeout_ms: int = 6000,
               rebalance_timeout_ms: int = 10000, instance_id: str | None = None) -> JoinGroupResponse:
    """JoinGroup v2-9."""
    assert 2 <= version <= 9, version

    def build(w: Enc):
        w.str_(group).i32(session_timeout_ms).i32(rebalance_timeout_ms).str_(member_id)
        if version >= 5:
            w.str_(instance_id)
        w.str_(protocol_type).arr(len(protocols))
        for name, metadata in protocols:
            w.str_(name).bytes_(metadata).tags_()
        if version >= 8:
            w.str_(None)  # reason

    d = _call(conn, API_JOIN_GROUP, version, build)
    d.i32()  # throttle_time_ms
    error, generation = d.i16(), d.i32()
    ptype = d.str_() if version >= 7 else None
    pname = d.str_()
    leader = d.str_()
    skip = bool(d.i8()) if version >= 9 else False
    member = d.str_()
    members = []
    for _ in range(d.arr()):
        mid = d.str_()
        iid = d.str_() if version >= 5 else None
        members.append((mid, iid, d.bytes_()))
        d.tags_()
    return JoinGroupResponse(error, generation, ptype, pname, leader, skip, member, members)


def sync_group(conn: Conn, version: int, group: str, generation: int, member_id: str,
               assignments: dict[str, bytes] | None = None, protocol_type: str | None = "consumer",
               protocol_name: str | None = None, instance_id: str | None = None) -> tuple[int, bytes | None]:
    """SyncGroup v3-5: (error_code, this member's assignment)."""
    assert 3 <= version <= 5, version

    def build(w: Enc):
        w.str_(group).i32(generation).str_(member_id).str_(instance_id)
        if version >= 5:
            w.str_(protocol_type).str_(protocol_name)
        w.arr(len(assignments or {}))
        for mid, a in (assignments or {}).items():
            w.str_(mid).bytes_(a).tags_()

    d = _call(conn, API_SYNC_GROUP, version, build)
    d.i32()
    error = d.i16()
    if version >= 5:
        d.str_()
        d.str_()
    return error, d.bytes_()


def heartbeat(conn: Conn, version: int, group: str, generation: int, member_id: str,
              instance_id: str | None = None) -> int:
    """Heartbeat v3-4: the error code."""
    assert 3 <= version <= 4, version
    d = _call(conn, API_HEARTBEAT, version,
              lambda w: w.str_(group).i32(generation).str_(member_id).str_(instance_id))
    d.i32()
    return d.i16()


def leave_group(conn: Conn, version: int, group: str, members: list[tuple[str, str | None]]) -> tuple[int, list[tuple[str, int]]]:
    """LeaveGroup v3-5 (batched members): (error_code, [(member id, error_code)])."""
    assert 3 <= version <= 5, version

    def build(w: Enc):
        w.str_(group).arr(len(members))
        for mid, iid in members:
            w.str_(mid).str_(iid)
            if version >= 5:
                w.str_(None)  # reason
            w.tags_()

    d = _call(conn, API_LEAVE_GROUP, version, build)
    d.i32()
    error = d.i16()
    out = []
    for _ in range(d.arr()):
        mid, _iid, err = d.str_(), d.str_(), d.i16()
        d.tags_()
        out.append((mid, err))
    return error, out


def offset_commit(conn: Conn, version: int, group: str, generation: int, member_id: str, topic: str,
                  offsets: dict[int, int], metadata: str | None = "", instance_id: str | None = None) -> dict[int, int]:
    """OffsetCommit v2-9 for one topic: partition -> error code."""
    assert 2 <= version <= 9, version

    def build(w: Enc):
        w.str_(group).i32(generation).str_(member_id)
        if version >= 7:
            w.str_(instance_id)
        if version <= 4:
            w.i64(-1)  # retention_time_ms: the broker's
        w.arr(1).str_(topic).arr(len(offsets))
        for p, o in offsets.items():
            w.i32(p).i64(o)
            if version >= 6:
                w.i32(-1)  # committed_leader_epoch
            w.str_(metadata).tags_()
        w.tags_()

    d = _call(conn, API_OFFSET_COMMIT, version, build)
    if version >= 3:
        d.i32()
    out = {}
    for _ in range(d.arr()):
        d.str_()
        for _ in range(d.arr()):
            p, err = d.i32(), d.i16()
            d.tags_()
            out[p] = err
        d.tags_()
    return out


def offset_fetch(conn: Conn, version: int, groups: dict[str, dict[str, list[int]] | None]) -> dict[str, tuple[int, dict]]:
    """OffsetFetch v8-9, several groups in one request: group -> (error code,
    {(topic, partition): (offset, metadata, error code)}). None asks for all of a group's offsets."""
    assert 8 <= version <= 9, version

    def build(w: Enc):
        w.arr(len(groups))
        for g, topics in groups.items():
            w.str_(g)
            if version >= 9:
                w.str_(None).i32(-1)  # member_id, member_epoch: not a member
            if topics is None:
                w.arr(None)
            else:
                w.arr(len(topics))
                for t, ps in topics.items():
                    w.str_(t).arr(len(ps))
                    for p in ps:
                        w.i32(p)
                    w.tags_()
            w.tags_()
        w.i8(0)  # require_stable

    d = _call(conn, API_OFFSET_FETCH, version, build)
    d.i32()
    out = {}
    for _ in range(d.arr()):
        g = d.str_()
        offs = {}
        for _ in range(d.arr()):
            t = d.str_()
            for _ in range(d.arr()):
                p, off, _epoch, md, err = d.i32(), d.i64(), d.i32(), d.str_(), d.i16()
                d.tags_()
                offs[(t, p)] = (off, md, err)
            d.tags_()
        out[g] = (d.i16(), offs)
        d.tags_()
    return out


@dataclass
class DescribedGroup:
    error_code: int
    state: str
    protocol_type: str
    protocol: str
    members: list[dict]


def describe_groups(conn: Conn, version: int, groups: list[str]) -> dict[str, DescribedGroup]:
    """DescribeGroups v1-6."""
    assert 1 <= version <= 6, version

    def build(w: Enc):
        w.arr(len(groups))
        for g in groups:
            w.str_(g)
        if version >= 3:
            w.i8(0)

    d = _call(conn, API_DESCRIBE_GROUPS, version, build)
    d.i32()
    out = {}
    for _ in range(d.arr()):
        err = d.i16()
        if version >= 6:
            d.str_()
        gid, state, ptype, pdata = d.str_(), d.str_(), d.str_(), d.str_()
        members = []
        for _ in range(d.arr()):
            m = {"member_id": d.str_()}
            m["instance_id"] = d.str_() if version >= 4 else None
            m["client_id"], m["client_host"] = d.str_(), d.str_()
            m["metadata"], m["assignment"] = d.bytes_(), parse_consumer_assignment(d.bytes_())
            d.tags_()
            members.append(m)
        if version >= 3:
            d.i32()
        d.tags_()
        out[gid] = DescribedGroup(err, state, ptype, pdata, members)
    return out


@dataclass
class Coordinator:
    key: str
    node_id: int
    host: str
    port: int
    error_code: int


def find_coordinators(conn: Conn, version: int, keys: list[str], key_type: int = 0) -> list[Coordinator]:
    """FindCoordinator v4-6: several keys in one request (KIP-699)."""
    assert 4 <= version <= 6, version

    def build(w: Enc):
        w.i8(key_type).arr(len(keys))
        for k in keys:
            w.str_(k)

    d = _call(conn, API_FIND_COORDINATOR, version, build)
    d.i32()
    out = []
    for _ in range(d.arr()):
        key, node, host, port, err = d.str_(), d.i32(), d.str_(), d.i32(), d.i16()
        d.str_()  # error_message
        d.tags_()
        out.append(Coordinator(key, node, host, port, err))
    return out


def find_coordinator_v3(conn: Conn, group: str) -> Coordinator:
    """FindCoordinator v3 (one key, flexible): with the host and port, which find_coordinator skips."""
    d = _call(conn, API_FIND_COORDINATOR, 3, lambda w: w.str_(group).i8(0))
    d.i32()
    err = d.i16()
    d.str_()
    node, host, port = d.i32(), d.str_(), d.i32()
    return Coordinator(group, node, host, port, err)
