"""Consumer groups with real clients: rebalancing, resuming from committed offsets, static
membership, commits and OffsetFetch, the admin APIs, and bad input on the wire.

Each member of a group is a process of its own (grouplib.py), so it can leave cleanly or be killed
with SIGKILL. The module has one broker (per xdist worker) with GROUP_OVERRIDES: no initial
rebalance delay, KIP-848 sessions of 6 s with 0.5 s heartbeats; classic members ask for 6 s
sessions and 0.5 s heartbeats themselves.
"""

from __future__ import annotations

import time

import pytest

import wire
from adminlib import KafkaCallError
from clientlib import java
from conftest import group_overrides, wait_for
from grouplib import (SESSION_MS, Log, assert_broker_agrees, assert_read_everything, assert_resumed_from,
                      broker_assignment, committed_offsets, live, start_member, wait_committed, wait_covered)

PARTITIONS = 6

#: (client, group protocol, assignor): eager (range) and cooperative-sticky client-side assignors
#: on the classic protocol, and the broker's own assignors (uniform, range) on KIP-848's.
CASES = [
    ("confluent", "classic", "range"),
    ("confluent", "classic", "cooperative-sticky"),
    ("confluent", "consumer", "range"),
    ("kafka-python", "classic", "range"),
    ("aiokafka", "classic", "range"),
    ("java", "classic", "range"),
    ("java", "classic", "cooperative-sticky"),
    ("java", "consumer", "uniform"),
    ("kcat", "classic", "range"),
]


@pytest.fixture(scope="module")
def gb(start_broker):
    return start_broker("groups", **group_overrides(**{"auto.create.topics.enable": "false", "num.partitions": 1}))


@pytest.fixture
def members():
    """The member processes a test started; whatever is still running at the end is killed."""
    made = []
    yield made
    for m in made:
        m.kill()


def incremental(protocol: str, assignor: str | None) -> bool:
    """Whether members keep their partitions through a rebalance (cooperative-sticky, KIP-848)
    instead of giving all of them up first (eager)."""
    return protocol == "consumer" or assignor == "cooperative-sticky"


def revoked_since(m, mark) -> set[int]:
    out = set()
    for e in m.since(mark):
        if e.ev in ("revoked", "lost"):
            out |= set(e.data["removed"])
    return out


@pytest.mark.parametrize("client,protocol,assignor", CASES, ids=["-".join(c) for c in CASES])
def test_group_rebalances_and_resumes(gb, new_topic, members, record_property, client, protocol, assignor):
    """Three members split six partitions; a fourth joins, one leaves cleanly, one is killed with
    SIGKILL. After each change every partition has exactly one owner (the members' own view, and
    the coordinator's), the partitions that moved are read from the committed offset on, and the
    group as a whole reads every record."""
    topic = new_topic(gb, partitions=PARTITIONS)
    group = f"{topic}-group"
    log = Log(gb.bootstrap, topic, PARTITIONS)
    label = f"{client} {protocol} {assignor}"

    def add(name):
        m = start_member(name, client, gb.bootstrap, topic, group, protocol=protocol, assignor=assignor,
                         metadata=f"by {name}")
        members.append(m)
        return m

    # --- three members, then records
    m1, m2, m3 = add("m1"), add("m2"), add("m3")
    wait_covered(members, PARTITIONS, "three members to split the partitions", timeout_s=60)
    assert_broker_agrees(gb.bootstrap, group, topic, members)
    state, gtype, _ = broker_assignment(gb.bootstrap, group, topic)
    assert (state, gtype) == ("STABLE", "CONSUMER" if protocol == "consumer" else "CLASSIC")
    start = {m.name: m.mark() for m in members}
    log.produce("a", 5)
    wait_committed(gb.bootstrap, group, log, members)
    assert_resumed_from(members, {m.name: 0 for m in members}, {p: 0 for p in range(PARTITIONS)})

    # --- a fourth member joins
    before = {m.name: m.assignment() for m in members}
    marks = {m.name: m.mark() for m in members}
    ends = log.ends()
    m4 = add("m4")
    done = wait_covered(members, PARTITIONS, "the rebalance after a fourth member joined")
    began = m4.first_event_time("subscribed") or m4.started  # kcat: from its start
    join_ms = (done - began) * 1000
    print(f"\n{label}: a 4th member joining took {join_ms:.0f} ms from subscribe() to all 4 members assigned")
    record_property(f"rebalance_ms:join of a 4th member, {label}", round(join_ms))
    assert m4.assignment(), "the new member got partitions"
    for m in (m1, m2, m3):
        revoked = revoked_since(m, marks[m.name])
        if incremental(protocol, assignor):
            assert not revoked & m.assignment(), \
                f"{m.name} gave up {sorted(revoked & m.assignment())} and got them back: an eager rebalance"
            if assignor in ("cooperative-sticky", "uniform"):
                assert m.assignment() <= before[m.name], f"{m.name} kept {sorted(before[m.name])}? now {sorted(m.assignment())}"
        else:
            assert revoked == before[m.name], f"eager: {m.name} revoked {sorted(revoked)}, owned {sorted(before[m.name])}"
    assert_broker_agrees(gb.bootstrap, group, topic, members)
    log.produce("b", 5)
    wait_committed(gb.bootstrap, group, log, members)
    assert_resumed_from(members, marks, ends)
    assert any(e.data["p"] in m4.assignment() for e in m4.records()), "the new member read its partitions"

    # --- one leaves cleanly
    gone = m1.assignment()
    marks = {m.name: m.mark() for m in members}
    ends = log.ends()
    t = time.monotonic()
    m1.close()
    done = wait_covered(members, PARTITIONS, "the rebalance after a member left")
    leave_ms = (done - t) * 1000
    print(f"{label}: a clean leave took {leave_ms:.0f} ms from close() to the other 3 reassigned")
    record_property(f"rebalance_ms:clean leave, {label}", round(leave_ms))
    assert leave_ms < SESSION_MS, \
        f"the rebalance took {leave_ms:.0f} ms, longer than the session timeout: was the LeaveGroup ignored?"
    assert_broker_agrees(gb.bootstrap, group, topic, members)
    log.produce("c", 5)
    wait_committed(gb.bootstrap, group, log, members)
    assert_resumed_from(members, marks, ends)
    assert_resumed_from(members, marks, ends, only=gone)

    # --- one is killed; records arrive while the group does not know yet
    lost = m2.assignment()
    marks = {m.name: m.mark() for m in members}
    ends = log.ends()
    t = time.monotonic()
    m2.kill()
    log.produce("d", 5)
    done = wait_covered(members, PARTITIONS, "the rebalance after a member was killed", timeout_s=45)
    kill_ms = (done - t) * 1000
    print(f"{label}: after kill -9, {kill_ms:.0f} ms until the survivors were reassigned (session timeout {SESSION_MS} ms)")
    record_property(f"rebalance_ms:kill -9 (session timeout), {label}", round(kill_ms))
    assert_broker_agrees(gb.bootstrap, group, topic, members)
    wait_committed(gb.bootstrap, group, log, members)
    assert_resumed_from(members, marks, ends, only=lost)
    assert_read_everything(members, log)
    if client != "kcat":
        meta = {p: md for p, (_, md) in committed_offsets(gb.bootstrap, group, topic).items()}
        assert all(md in ("by m1", "by m2", "by m3", "by m4") for md in meta.values()), f"commit metadata {meta}"
    for m in live(members):
        m.close()
    wait_for(lambda: broker_assignment(gb.bootstrap, group, topic)[0] == "EMPTY", "the group to be empty")
