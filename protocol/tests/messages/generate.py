#!/usr/bin/env python3
"""Writes generated.rs, the schema knowledge of the `messages` test, from Kafka's own schemas.

For every request and response kafka-protocol has, it lists each struct's fields with the
versions that have them (and those that may be null), which is all the test needs to build a
value for a version; and, for every response, the versions at which a value with every field
set must fail to encode, because such a version lacks a field that is not ignorable (Kafka's
generated Java code throws UnsupportedVersionException there and drops only ignorable fields).

    mvn -q dependency:get -Dartifact=org.apache.kafka:kafka-clients:4.4.0
    python3 protocol/tests/messages/generate.py [--jar kafka-clients.jar]

Use the jar vendor/kafka-protocol was generated from (its KAFKA_VERSION file); vendor/regenerate.sh
runs this script.
"""

import argparse
import json
import os
import re
import subprocess
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JAR = os.path.expanduser(
    "~/.m2/repository/org/apache/kafka/kafka-clients/4.4.0/kafka-clients-4.4.0.jar"
)
RUST_KEYWORDS = set(
    "as async await break const continue crate dyn else enum extern false fn for if impl in let loop "
    "match mod move mut pub ref return self static struct super trait true type unsafe use where while".split()
)
PRIMITIVES = {"bool", "int8", "int16", "uint16", "int32", "int64", "float64", "string", "bytes", "uuid", "records"}


def strip_comments(text):
    """The schemas are JSON with `//` comments; strings may contain `//`."""
    out, i, in_str = [], 0, False
    while i < len(text):
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def snake(name):
    """kafka-protocol's names: ListOffsetsResponse -> list_offsets_response, Enable2Pc -> enable_2_pc."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[a-z])(?=[0-9])", "_", name).lower()


def versions(spec):
    """Whether a spec such as "0+", "1-3", "4" or "none" includes a version."""
    if spec == "none":
        return lambda v: False
    lo, _, hi = spec.partition("-")
    if lo.endswith("+"):
        return lambda v: v >= int(lo[:-1])
    return lambda v: int(lo) <= v <= int(hi or lo)


def rust_field(name):
    """kafka-protocol prefixes field names that are Rust keywords with `_`."""
    name = snake(name)
    return "_" + name if name in RUST_KEYWORDS else name


def field_versions(field):
    return field.get("versions") or field["taggedVersions"]


def version_range(spec):
    lo, _, hi = spec.partition("-")
    return range(int(lo), int(hi or lo) + 1)


class Message:
    def __init__(self, schema):
        self.schema = schema
        self.name = schema["name"]
        self.module = snake(self.name)
        self.common = {c["name"]: c["fields"] for c in schema.get("commonStructs", [])}
        self.structs = {}
        self._collect(self.name, schema.get("fields", []))
        for name, fields in self.common.items():
            self._collect(name, fields)

    def _collect(self, name, fields):
        self.structs.setdefault(name, fields)
        for f in fields:
            if "fields" in f:
                self._collect(f["type"].lstrip("[]"), f["fields"])

    def children(self, field):
        inner = field["type"].lstrip("[]")
        if inner in PRIMITIVES:
            return []
        return field.get("fields") or self.common[inner]

    def lacked(self, fields, v, path=()):
        """The first non-ignorable field a value with every field set has but version v lacks."""
        for f in fields:
            here = path + (f["name"],)
            if versions(field_versions(f))(v):
                found = self.lacked(self.children(f), v, here)
                if found:
                    return found
            elif not f.get("ignorable", False):
                return ".".join(here)
        return None

    def failures(self):
        """[(first version, last version, field)] at which a populated value must not encode."""
        out = []
        for v in version_range(self.schema["validVersions"]):
            field = self.lacked(self.schema.get("fields", []), v)
            if field and out and out[-1][2] == field and out[-1][1] == v - 1:
                out[-1] = (out[-1][0], v, field)
            elif field:
                out.append((v, v, field))
        return out

    def struct_lines(self):
        lines = []
        for name, fields in self.structs.items():
            specs = []
            for f in fields:
                spec = '%s "%s"' % (rust_field(f["name"]), field_versions(f))
                if "nullableVersions" in f:
                    spec += ' / "%s"' % f["nullableVersions"]
                specs.append(spec)
            lines.append("    %s::%s {" % (self.module, name))
            line = "       "
            for spec in specs:
                if len(line) + len(spec) + 2 > 110:
                    lines.append(line)
                    line = "       "
                line += " " + spec + ","
            if specs:
                lines.append(line)
            lines.append("    }")
        return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jar", default=DEFAULT_JAR)
    ap.add_argument("--out", default=os.path.join(HERE, "generated.rs"))
    args = ap.parse_args()

    by_key = {}
    with zipfile.ZipFile(args.jar) as z:
        for path in sorted(z.namelist()):
            if path.startswith("common/message/") and path.endswith(".json"):
                schema = json.loads(strip_comments(z.read(path).decode()))
                if schema["type"] in ("request", "response"):
                    by_key.setdefault(schema["apiKey"], {})[schema["type"]] = schema

    apis = []
    for key in sorted(by_key):
        request, response = by_key[key]["request"], by_key[key]["response"]
        # kafka-protocol leaves out removed APIs and those whose only version is unstable.
        valid = request["validVersions"]
        if valid == "none" or (request.get("latestVersionUnstable") and "-" not in valid):
            continue
        apis.append((Message(request), Message(response)))

    out = [
        f"// @generated by generate.py beside this file from the message schemas in {os.path.basename(args.jar)}",
        "// (`common/message/*.json`), which vendor/kafka-protocol was generated from. Do not edit; run",
        "//     bash vendor/regenerate.sh <kafka version>",
        "",
        "use kafka_protocol::messages::*;",
        "",
        "use super::{api, Api, Gen, G};",
        "",
        "// Each struct's fields: the versions that have the field, and after `/` those where it may be null.",
        "structs! {",
    ]
    for request, response in apis:
        out += request.struct_lines() + response.struct_lines()
    out += [
        "}",
        "",
        "/// Every API, with the versions at which a response whose every field is set must not encode",
        "/// and the first field (not ignorable) that such a version lacks.",
        "pub fn apis() -> Vec<Api> {",
        "    vec![",
    ]
    for request, response in apis:
        fails = ", ".join('(%d, %d, "%s")' % f for f in response.failures())
        out.append("        api::<%s::%s>(&[%s])," % (request.module, request.name, fails))
    out += ["    ]", "}", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(out))
    subprocess.run(["rustfmt", "--edition", "2021", args.out], check=False)


if __name__ == "__main__":
    main()
