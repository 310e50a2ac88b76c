"""Any Kafka request, encoded and its response decoded from the message schemas themselves: the
`common/message/*.json` files inside the kafka-clients 4.4.0 jar the Java module ships
(java/target/lib/). For the APIs wire.py has no hand-written encoding of (the KIP-1071 streams
group APIs and their neighbours); a message is a dict keyed by the schema's field names
("GroupId", "MemberEpoch", ...), nested structs are dicts, arrays lists, and a missing field is
sent as its schema default.

    with wire.Conn(bootstrap) as c:
        r = kmsg.call(c, "StreamsGroupDescribe", 1, GroupIds=["g"], IncludeTopologyDescription=True)
        r["Groups"][0]["GroupState"]

Handles what the schemas use: ints (int8-int64, uint16), float64, bool, uuid (16 raw bytes),
strings and bytes (compact in flexible versions), arrays of either, structs (inline or from
commonStructs; a nullable struct carries the int8 presence marker), tagged fields, and the
per-version and nullable-version ranges. The transport (headers, framing) is wire.Conn's.
"""

from __future__ import annotations

import functools
import json
import re
import struct
import zipfile
from pathlib import Path

import wire

JAR_DIR = Path(__file__).resolve().parent / "java" / "target" / "lib"

_PRIMITIVES = {"int8": ">b", "int16": ">h", "int32": ">i", "int64": ">q", "uint16": ">H", "uint32": ">I",
               "float64": ">d"}


class Versions:
    """A schema version range: "0+", "3-5", "2", "none"."""

    def __init__(self, spec: str | None):
        spec = (spec or "none").strip()
        if spec == "none":
            self.lo, self.hi = 1, 0
        elif spec.endswith("+"):
            self.lo, self.hi = int(spec[:-1]), 1 << 15
        elif "-" in spec:
            lo, hi = spec.split("-")
            self.lo, self.hi = int(lo), int(hi)
        else:
            self.lo = self.hi = int(spec)

    def __contains__(self, v: int) -> bool:
        return self.lo <= v <= self.hi


@functools.lru_cache(maxsize=None)
def _jar() -> Path:
    jars = sorted(JAR_DIR.glob("kafka-clients-*.jar"))
    if not jars:
        raise FileNotFoundError(f"no kafka-clients jar in {JAR_DIR}: run compat-tests/setup.sh")
    return jars[-1]


@functools.lru_cache(maxsize=None)
def schema(name: str) -> dict:
    """The parsed schema `common/message/<name>.json` (its // comment lines dropped)."""
    with zipfile.ZipFile(_jar()) as z:
        text = z.read(f"common/message/{name}.json").decode()
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
    # A few schemas end a line with a comment after the JSON.
    text = re.sub(r'(?m)(?<=[,\[\]{}"0-9e])\s*//[^"\n]*$', "", text)
    return json.loads(text)


class Message:
    """One message schema at one version."""

    def __init__(self, name: str, version: int):
        self.s = schema(name)
        self.name = name
        self.version = version
        if version not in Versions(self.s["validVersions"]):
            raise ValueError(f"{name} has no version {version} (valid: {self.s['validVersions']})")
        self.flexible = version in Versions(self.s.get("flexibleVersions"))
        self.structs = {c["name"]: c for c in self.s.get("commonStructs", [])}

    # ------------------------------------------------------------------ schema helpers

    def _fields(self, f: dict | None) -> list[dict]:
        """The fields of the struct type of field `f` (None: the message itself)."""
        if f is None:
            return self.s["fields"]
        if "fields" in f:
            return f["fields"]
        t = f["type"][2:] if f["type"].startswith("[]") else f["type"]
        return self.structs[t]["fields"]

    def _present(self, f: dict) -> bool:
        return self.version in Versions(f["versions"])

    def _tagged(self, f: dict) -> bool:
        return "tag" in f and self.version in Versions(f.get("taggedVersions"))

    def _nullable(self, f: dict) -> bool:
        return self.version in Versions(f.get("nullableVersions"))

    def default(self, f: dict):
        t, d = f["type"], f.get("default")
        if d == "null":
            return None
        if t.startswith("[]"):
            return []
        if t == "float64":
            return float(d or 0)
        if t in _PRIMITIVES:
            return int(d, 0) if isinstance(d, str) else int(d or 0)
        if t == "bool":
            return d in (True, "true")
        if t == "string":
            return d or ""
        if t in ("bytes", "records"):
            return b""
        if t == "uuid":
            return bytes(16)
        return {}  # a struct

    # ------------------------------------------------------------------ encoding

    def encode(self, value: dict) -> bytes:
        w = wire.Writer()
        self._struct(w, None, value)
        return w.bytes()

    def _struct(self, w: wire.Writer, parent: dict | None, value: dict):
        fields = [f for f in self._fields(parent) if self._present(f)]
        known = {f["name"] for f in self._fields(parent)}
        unknown = set(value) - known
        if unknown:
            raise KeyError(f"{self.name} v{self.version}: no field(s) {sorted(unknown)} "
                           f"in {parent['name'] if parent else 'the message'}")
        for f in self._fields(parent):
            # As Kafka's generated code: a value this version cannot carry is an error unless the
            # field is ignorable.
            if not self._present(f) and f["name"] in value and value[f["name"]] != self.default(f) \
                    and not f.get("ignorable"):
                raise ValueError(f"{self.name} v{self.version} has no {f['name']} (versions {f['versions']})")
        tagged = []
        for f in fields:
            v = value.get(f["name"], self.default(f))
            if self._tagged(f):
                if v != self.default(f):
                    tw = wire.Writer()
                    self._value(tw, f, f["type"], v)
                    tagged.append((f["tag"], tw.bytes()))
                continue
            self._value(w, f, f["type"], v)
        if self.flexible:
            w.uvarint(len(tagged))
            for tag, b in sorted(tagged):
                w.uvarint(tag).uvarint(len(b)).raw(b)

    def _value(self, w: wire.Writer, f: dict, t: str, v):
        flex = self.flexible
        if t.startswith("[]"):
            if v is None:
                assert self._nullable(f), f"{f['name']} is not nullable in v{self.version}"
                w.uvarint(0) if flex else w.i32(-1)
                return
            w.uvarint(len(v) + 1) if flex else w.i32(len(v))
            inner = t[2:]
            for x in v:
                if inner in _PRIMITIVES or inner in ("bool", "string", "bytes", "uuid", "records"):
                    self._value(w, {"name": f["name"]}, inner, x)
                else:
                    self._struct(w, f, x)
        elif t in _PRIMITIVES:
            w.raw(struct.pack(_PRIMITIVES[t], v))
        elif t == "bool":
            w.i8(1 if v else 0)
        elif t == "uuid":
            assert isinstance(v, bytes) and len(v) == 16, f"{f['name']}: a uuid is 16 bytes"
            w.raw(v)
        elif t == "string":
            if v is None:
                assert self._nullable(f), f"{f['name']} is not nullable in v{self.version}"
            w.compact_string(v) if flex else w.string(v)
        elif t in ("bytes", "records"):
            if v is None:
                w.uvarint(0) if flex else w.i32(-1)
            else:
                w.uvarint(len(v) + 1).raw(v) if flex else w.i32(len(v)).raw(v)
        else:  # a struct
            if self._nullable(f):
                if v is None:
                    w.i8(-1)
                    return
                w.i8(1)
            self._struct(w, f, v)

    # ------------------------------------------------------------------ decoding

    def decode(self, r: wire.Reader) -> dict:
        return self._read_struct(r, None)

    def _read_struct(self, r: wire.Reader, parent: dict | None) -> dict:
        out = {}
        fields = [f for f in self._fields(parent) if self._present(f)]
        by_tag = {}
        for f in fields:
            if self._tagged(f):
                by_tag[f["tag"]] = f
                out[f["name"]] = self.default(f)
            else:
                out[f["name"]] = self._read_value(r, f, f["type"])
        if self.flexible:
            for _ in range(r.uvarint()):
                tag, size = r.uvarint(), r.uvarint()
                f = by_tag.get(tag)
                if f is None:
                    r.take(size)
                else:
                    out[f["name"]] = self._read_value(r, f, f["type"])
        return out

    def _read_value(self, r: wire.Reader, f: dict, t: str):
        flex = self.flexible
        if t.startswith("[]"):
            n = r.uvarint() - 1 if flex else r.i32()
            if n < 0:
                return None
            inner = t[2:]
            if inner in _PRIMITIVES or inner in ("bool", "string", "bytes", "uuid", "records"):
                return [self._read_value(r, {"name": f["name"]}, inner) for _ in range(n)]
            return [self._read_struct(r, f) for _ in range(n)]
        if t in _PRIMITIVES:
            fmt = _PRIMITIVES[t]
            return struct.unpack(fmt, r.take(struct.calcsize(fmt)))[0]
        if t == "bool":
            return r.i8() != 0
        if t == "uuid":
            return r.take(16)
        if t == "string":
            return r.compact_string() if flex else r.string()
        if t in ("bytes", "records"):
            return r.compact_bytes() if flex else r.nullable_bytes()
        if self._nullable(f) and r.i8() < 0:
            return None
        return self._read_struct(r, f)


def call(conn: wire.Conn, api: str, version: int, /, **fields) -> dict:
    """Sends `<api>Request` at `version` with `fields` (schema names; others at their defaults)
    and returns the decoded `<api>Response`."""
    req, resp = Message(f"{api}Request", version), Message(f"{api}Response", version)
    key = req.s["apiKey"]
    cid = conn.send(key, version, req.encode(fields), req.flexible)
    # ApiVersions answers with response header v0 whatever its version.
    r = conn.receive(cid, flexible_header=req.flexible and key != wire.API_API_VERSIONS)
    out = resp.decode(r)
    if r.i != len(r.b):
        raise ValueError(f"{api} v{version} response: {len(r.b) - r.i} bytes left after decoding {out}")
    return out
