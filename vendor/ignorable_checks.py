#!/usr/bin/env python3
"""Makes kafka-protocol's response encoders refuse exactly what Kafka's Java encoders refuse.

When a field the negotiated version lacks holds a non-default value, Kafka's generated Java code
throws UnsupportedVersionException, except for fields its schema marks `"ignorable": true`,
which it leaves out silently. kafka-protocol's generated encoders `bail!` for untagged fields
that are not ignorable and have no check for ignorable ones, like Java; for tagged fields they
have no check at all. In `src/messages/*_response.rs`, this script

- looks up the field of every upstream check in the schemas and leaves or puts back upstream's
  `bail!` where it is not ignorable, a `Fjord:` comment (no check) where it is (none in 0.18.0);
- adds Java's check, marked `Fjord:`, for every non-ignorable tagged field that some versions
  lack, before the tagged fields of `encode` and `compute_size`.

Running it again changes nothing. The authority is the schemas inside the kafka-clients jar the
crate was generated from (vendor/kafka-protocol/KAFKA_VERSION; vendor/regenerate.sh runs this):

    mvn -q dependency:get -Dartifact=org.apache.kafka:kafka-clients:4.4.0
    python3 vendor/ignorable_checks.py --check --list   # lists every check, changes nothing
    python3 vendor/ignorable_checks.py                  # rewrites what disagrees

`--jar` names another jar, `--crate` another copy of the crate; `--check` exits 1 if a file
would change. Run it after upgrading the crate.
"""

import argparse
import json
import os
import re
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JAR = os.path.expanduser(
    "~/.m2/repository/org/apache/kafka/kafka-clients/4.4.0/kafka-clients-4.4.0.jar"
)
UPSTREAM = 'bail!("A field is set that is not available on the selected protocol version");'
FJORD = "// Fjord: a field the version lacks is dropped, as Kafka does for ignorable fields."
FJORD_TAGGED = "// Fjord: a tagged field the version lacks fails unless it is ignorable, as in Kafka."


def strip_comments(text):
    """Kafka's schema files are JSON with `//` comments; strings may contain `//`."""
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


def load_schemas(jar):
    with zipfile.ZipFile(jar) as z:
        for name in sorted(z.namelist()):
            if name.startswith("common/message/") and name.endswith(".json"):
                yield json.loads(strip_comments(z.read(name).decode()))


def snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def norm(name):
    return re.sub(r"^r#", "", name).replace("_", "").lower()


def struct_fields(schema):
    """{struct name: {normalised field name: field spec}} for one message."""
    structs = {}

    def walk(name, fields):
        structs[name] = {norm(f["name"]): f for f in fields}
        for f in fields:
            if "fields" in f:
                walk(f["type"].lstrip("[]"), f["fields"])

    walk(schema["name"], schema.get("fields", []))
    for common in schema.get("commonStructs", []):
        walk(common["name"], common["fields"])
    return structs


def rewrite_untagged(lines, structs, sites, path):
    impl = None
    for i, line in enumerate(lines):
        m = re.search(r"impl Encodable for (\w+)", line)
        if m:
            impl = m.group(1)
        if line.strip() not in (UPSTREAM, FJORD) or lines[i - 2].strip() == FJORD_TAGGED:
            continue
        start = max(j for j in range(i) if lines[j].strip() == "} else {")
        fm = re.search(r"self\s*\.\s*(\w+)", "\n".join(lines[start:i]))
        field = structs[impl][norm(fm.group(1))]
        ignorable = field.get("ignorable", False)
        indent = line[: len(line) - len(line.lstrip())]
        lines[i] = indent + (FJORD if ignorable else UPSTREAM)
        sites.append((os.path.basename(path), impl, fm.group(1), field["versions"], ignorable))


def lacking(spec):
    """A Rust condition true for the versions a spec such as "4+" or "1-3" excludes."""
    lo, _, hi = spec.rstrip("+").partition("-")
    if spec.endswith("+"):
        return "version < %s" % lo
    return "(version < %s || version > %s)" % (lo, hi) if hi else "version != %s" % lo


def add_tagged_checks(lines, structs, versions, sites, path):
    """Upstream checks no tagged field: where one the version lacks is not ignorable and is set,
    fail as Java does. The check goes before the tagged fields of encode and compute_size; its
    condition for "set" is the one upstream counts the field with."""
    for struct, fields in structs.items():
        for field in fields.values():
            spec = field.get("versions") or field["taggedVersions"]
            if "tag" not in field or field.get("ignorable", False):
                continue
            lo = int(spec.rstrip("+").partition("-")[0])
            if lo <= versions[0] and spec.endswith("+"):
                continue
            impl = lines.index("impl Encodable for %s {" % struct)
            for fn in ("fn encode<", "fn compute_size("):
                at = next(i for i in range(impl, len(lines)) if lines[i].strip().startswith(fn))
                count = next(i for i in range(at, len(lines)) if "let mut num_tagged_fields" in lines[i])
                cond = next(
                    m.group(1)
                    for i in range(count, len(lines))
                    for m in [re.match(r"\s*if (.*self\.(\w+).*) \{$", lines[i])]
                    if m and norm(m.group(2)) == norm(field["name"]) and "num_tagged_fields += 1" in lines[i + 1]
                )
                check = "if %s && %s {" % (lacking(spec), cond)
                if any(l.strip() == check for l in lines[at:count]):
                    continue
                # Before the `if version >= flexible {` that holds the tagged fields, if any.
                if lines[count - 1].strip().startswith("if version") and lines[count - 1].endswith("{"):
                    count -= 1
                indent = lines[count][: len(lines[count]) - len(lines[count].lstrip())]
                lines[count:count] = [
                    indent + FJORD_TAGGED,
                    indent + check,
                    indent + "    " + UPSTREAM,
                    indent + "}",
                ]
            sites.append((os.path.basename(path), struct, field["name"], spec, "tagged"))


def rewrite(path, schema, sites):
    lines = open(path).read().split("\n")
    structs = struct_fields(schema)
    rewrite_untagged(lines, structs, sites, path)
    lo, _, hi = schema["validVersions"].partition("-")
    add_tagged_checks(lines, structs, range(int(lo), int(hi or lo) + 1), sites, path)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jar", default=DEFAULT_JAR)
    ap.add_argument("--crate", default=os.path.join(HERE, "kafka-protocol"))
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()

    changed, sites = [], []
    for schema in load_schemas(args.jar):
        if schema["type"] != "response":
            continue
        path = os.path.join(args.crate, "src", "messages", snake(schema["name"]) + ".rs")
        if not os.path.exists(path):
            continue
        old = open(path).read()
        new = rewrite(path, schema, sites)
        if new != old:
            changed.append(path)
            if not args.check:
                open(path, "w").write(new)

    if args.list:
        # An untagged check appears twice, in encode and in compute_size.
        for site in dict.fromkeys(sites):
            kind = {True: "ignorable", False: "-"}.get(site[4], site[4])
            print("%-32s %-34s %-32s %-6s %s" % (*site[:4], kind))
    untagged = [s for s in sites if s[4] is not True and s[4] is not False]
    dropped = sum(1 for s in sites if s[4] is True)
    print(
        "%d untagged checks (encode and compute_size): %d fail, %d dropped (ignorable); "
        "%d tagged non-ignorable fields checked; %d files %s"
        % (
            len(sites) - len(untagged),
            len(sites) - len(untagged) - dropped,
            dropped,
            len(untagged),
            len(changed),
            "to change" if args.check else "changed",
        )
    )
    if args.check and changed:
        sys.exit(1)


if __name__ == "__main__":
    main()
