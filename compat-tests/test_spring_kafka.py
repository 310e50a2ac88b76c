"""Spring Kafka (compat-tests/spring/: Spring Kafka 4.0 on kafka-clients 4.1) against the broker.

The stack most Java services run Kafka through. dev.fjord.compat.spring.SpringKafkaApp is a
plain Spring context: a transactional KafkaTemplate (executeInTransaction, one transaction rolled
back), a @KafkaListener container with a KafkaTransactionManager doing consume-transform-produce
with two consumers in a classic group (one record fails once: its transaction rolls back and the
record comes again), and a downstream @KafkaListener reading the output with read_committed in a
group of its own. One round is one process; the test runs two, the second a restart of the
first, and checks what every listener and an independent reader (librdkafka) saw.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import group_overrides
from eoslib import Conn, read_confluent
from grouplib import committed_offsets, forget

SPRING_DIR = Path(__file__).resolve().parent / "spring"
SPRING_CLASSPATH = f"{SPRING_DIR}/target/classes:{SPRING_DIR}/target/lib/*"
PARTITIONS = 3
PER_TXN = 6


@pytest.fixture(scope="module")
def spb(start_broker):
    # No initial rebalance delay (both brokers default to 3 s): the containers join at once.
    b = start_broker("spring", **group_overrides(**{"auto.create.topics.enable": "false", "num.partitions": 1}))
    yield b
    forget(b.bootstrap)  # committed_offsets' admin client, before the broker goes


def spring_round(bootstrap: str, names: dict, round_no: int, fail_once: str | None = None,
                 timeout_s: float = 100) -> list[dict]:
    """One process of SpringKafkaApp: its JSON lines; a failure shows its error line and stderr
    (Spring's and the client's warnings)."""
    if not (SPRING_DIR / "target/classes/dev/fjord/compat/spring/SpringKafkaApp.class").exists():
        pytest.fail("compat-tests/spring is not built: run compat-tests/setup.sh")
    args = ["--bootstrap", bootstrap, "--round", round_no, "--per-txn", PER_TXN, "--partitions", PARTITIONS]
    for k, v in names.items():
        args += [f"--{k}", v]
    if fail_once:
        args += ["--fail-once", fail_once]
    # C1 only and serial GC: the JVM lives for seconds, start-up is what counts.
    cmd = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", SPRING_CLASSPATH,
           "dev.fjord.compat.spring.SpringKafkaApp", *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert p.returncode == 0 and lines and lines[-1]["ev"] == "stopped", \
        f"round {round_no} exited {p.returncode}: {lines[-20:]}\nstderr:\n{p.stderr[-6000:]}"
    return lines


def of(lines: list[dict], ev: str) -> list[dict]:
    return [line for line in lines if line["ev"] == ev]


def check_round(lines: list[dict], round_no: int, start: dict[int, int], fail_once: str | None) -> dict[int, list]:
    """What one round must show: its three executeInTransaction calls; the transforming listener
    starting every partition at `start` (the group's committed offsets) and handling each record
    of the two committed transactions once, in offset order per partition, and nothing of the
    aborted one or of an earlier round; the downstream listener reading each output once.
    Returns the round's outputs as {partition: [(key, value)]} in order."""
    produced = of(lines, "produced")
    assert [p["outcome"] for p in produced] == ["committed", "aborted", "committed"], produced
    committed_in = defaultdict(list)  # partition -> [(offset, value)]
    for p in (produced[0], produced[2]):
        for r in p["records"]:
            committed_in[r["p"]].append((r["o"], r["v"]))
    aborted_values = {r["v"] for r in produced[1]["records"]}
    assert aborted_values == {f"r{round_no}-x{i}" for i in range(PER_TXN)}

    # Two consumers share the input; a rebalance may move a partition between them, but each
    # partition's first owner in this process starts at the committed offset.
    first_position = {}
    for a in of(lines, "ctp-assigned"):
        for p in a["partitions"]:
            first_position.setdefault(p["p"], p["position"])
    assert first_position == start, f"round {round_no}: the listener started at {first_position}, committed: {start}"

    done = defaultdict(list)
    for line in of(lines, "ctp"):
        done[line["p"]].append((line["o"], line["v"]))
        assert line["k"] == f"k-{line['v']}", line
    assert dict(done) == dict(committed_in), \
        f"round {round_no}: the transforming listener handled {dict(done)}, the committed input is {dict(committed_in)}"
    fails = of(lines, "ctp-fail")
    assert [(f["v"], f["attempt"]) for f in fails] == ([(fail_once, 1)] if fail_once else []), fails

    outputs = {p: [(f"k-{v}", f"out:{v}#{2 if v == fail_once else 1}") for _, v in rows]
               for p, rows in committed_in.items()}
    down = defaultdict(list)
    for line in of(lines, "down"):
        down[line["p"]].append((line["k"], line["v"]))
    assert dict(down) == outputs, f"round {round_no}: downstream read {dict(down)}"
    return outputs


def test_transactions_listener_restart(spb, new_topic):
    """Two rounds, the second a new process with the same groups and transactional id prefix.
    Per round: the input holds the two committed transactions' records and not the aborted
    one's (librdkafka read_committed); the transforming listener handles each committed record
    once (one of them after a rolled-back first attempt), and the downstream read_committed
    listener sees each output once and never the rolled-back attempt's, which is in the log
    (read_uncommitted). Both groups' committed offsets are right after the last record they
    handled, and the restarted round starts there and handles nothing of the first round."""
    names = {"input": new_topic(spb, partitions=PARTITIONS, suffix="in"),
             "output": new_topic(spb, partitions=PARTITIONS, suffix="out"),
             "group": f"spring-ctp-{uuid.uuid4().hex[:8]}",
             "downstream-group": f"spring-down-{uuid.uuid4().hex[:8]}",
             "txn-prefix": f"spring-tx-{uuid.uuid4().hex[:8]}-"}
    want_out: dict[int, list] = defaultdict(list)
    committed_at = {p: 0 for p in range(PARTITIONS)}
    for round_no, fail_once in ((1, "r1-a2"), (2, None)):
        lines = spring_round(spb.bootstrap, names, round_no, fail_once)
        for p, rows in check_round(lines, round_no, committed_at, fail_once).items():
            want_out[p] += rows

        produced = of(lines, "produced")
        want_in = defaultdict(list)
        for p in (produced[0], produced[2]):
            for r in p["records"]:
                want_in[r["p"]].append((r["o"], r["v"]))
        got_in = read_confluent(spb.bootstrap, names["input"], "read_committed")
        assert {p: [r.value for r in got_in if r.partition == p and r.value.startswith(f"r{round_no}-")]
                for p in range(PARTITIONS)} == {p: [v for _, v in want_in[p]] for p in range(PARTITIONS)}, \
            f"round {round_no}: read_committed input"

        got_out = read_confluent(spb.bootstrap, names["output"], "read_committed")
        assert {p: [(r.key, r.value) for r in got_out if r.partition == p] for p in range(PARTITIONS)} == \
            {p: want_out[p] for p in range(PARTITIONS)}, \
            f"after round {round_no}: the output (librdkafka read_committed) is not each committed input once"

        # The transforming group's offsets went with its transactions: right after the last input
        # record of each partition. The downstream group's too, after the last output record.
        committed_at = {p: want_in[p][-1][0] + 1 for p in range(PARTITIONS)}
        assert {p: o for p, (o, _) in committed_offsets(spb.bootstrap, names["group"], names["input"]).items()} \
            == committed_at, f"round {round_no}: the transforming listener's committed offsets"
        last_out = {p: max(r.offset for r in got_out if r.partition == p) + 1 for p in range(PARTITIONS)}
        assert {p: o for p, (o, _) in committed_offsets(spb.bootstrap, names["downstream-group"],
                                                          names["output"]).items()} == last_out, \
            f"round {round_no}: the downstream listener's committed offsets"

    # The rolled-back attempt wrote its output record, and an abort marker closed it.
    ru = read_confluent(spb.bootstrap, names["output"], "read_uncommitted")
    assert [r.value for r in ru].count("out:r1-a2#1") == 1, "the rolled-back attempt's output is not in the log"
    with Conn(spb.bootstrap) as conn:
        fetched = conn.fetch(names["output"], next(r.partition for r in ru if r.value == "out:r1-a2#1"))
    assert 0 in [b.control_type for b in fetched.batches if b.control], fetched.batches
