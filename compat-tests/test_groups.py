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

import adminlib
import grouplib
import wire
from clientlib import java
from conftest import group_overrides, wait_for
from grouplib import (COMMIT_METADATA_SUFFIX, SESSION_MS, Log, assert_read_everything, assert_resumed_from,
                      broker_assignment, committed_metadata, committed_offsets, fetch_committed, live, simple_commit,
                      start_member, wait_committed, wait_stable)

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
    b = start_broker("groups", **group_overrides(**{"auto.create.topics.enable": "false", "num.partitions": 1}))
    yield b
    grouplib.forget(b.bootstrap)


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
    wait_stable(members, PARTITIONS, gb.bootstrap, group, topic, "three members to split the partitions", timeout_s=60)
    assert broker_assignment(gb.bootstrap, group, topic)[1] == ("CONSUMER" if protocol == "consumer" else "CLASSIC")
    log.produce("a", 5)
    wait_committed(gb.bootstrap, group, log, members)
    assert_resumed_from(members, {m.name: 0 for m in members}, {p: 0 for p in range(PARTITIONS)})

    # --- a fourth member joins
    before = {m.name: m.assignment() for m in members}
    marks = {m.name: m.mark() for m in members}
    ends = log.ends()
    m4 = add("m4")
    done = wait_stable(members, PARTITIONS, gb.bootstrap, group, topic, "the rebalance after a fourth member joined")
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
            # Eager: everything owned is given up (a member that rejoins again on its own may give
            # up more than it owned before the join).
            assert before[m.name] <= revoked, f"eager: {m.name} revoked {sorted(revoked)}, owned {sorted(before[m.name])}"
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
    done = wait_stable(members, PARTITIONS, gb.bootstrap, group, topic, "the rebalance after a member left")
    leave_ms = (done - t) * 1000
    print(f"{label}: a clean leave took {leave_ms:.0f} ms from close() to the other 3 reassigned")
    record_property(f"rebalance_ms:clean leave, {label}", round(leave_ms))
    assert leave_ms < SESSION_MS, \
        f"the rebalance took {leave_ms:.0f} ms, longer than the session timeout: was the LeaveGroup ignored?"
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
    done = wait_stable(members, PARTITIONS, gb.bootstrap, group, topic, "the rebalance after a member was killed",
                       timeout_s=45)
    kill_ms = (done - t) * 1000
    print(f"{label}: after kill -9, {kill_ms:.0f} ms until the survivors were reassigned (session timeout {SESSION_MS} ms)")
    record_property(f"rebalance_ms:kill -9 (session timeout), {label}", round(kill_ms))
    wait_committed(gb.bootstrap, group, log, members)
    assert_resumed_from(members, marks, ends, only=lost)
    assert_read_everything(members, log)
    if client != "kcat":
        meta = committed_metadata(gb.bootstrap, group, topic)
        nul = COMMIT_METADATA_SUFFIX.get(client, "")
        assert sorted(meta) == list(range(PARTITIONS)), meta
        assert all(md in (f"by m3{nul}", f"by m4{nul}") for md in meta.values()), f"commit metadata {meta}"
    for m in live(members):
        m.close()
    wait_for(lambda: broker_assignment(gb.bootstrap, group, topic)[0] == "EMPTY", "the group to be empty")


# ------------------------------------------------------------------------------ static membership

#: (client, protocol, assignor) for the static-membership test.
STATIC_CASES = [
    ("confluent", "classic", "range"),
    ("kafka-python", "classic", "range"),
    ("java", "classic", "range"),
    ("java", "consumer", "uniform"),
]
#: Classic static members ask for a longer session, so a restarted JVM is back well within it;
#: KIP-848 members get the broker's group.consumer.session.timeout.ms (6 s).
STATIC_SESSION_MS = 20000


@pytest.mark.parametrize("client,protocol,assignor", STATIC_CASES, ids=["-".join(c) for c in STATIC_CASES])
def test_static_member_restart_keeps_its_partitions(gb, new_topic, members, client, protocol, assignor):
    """KIP-345: a static member (group.instance.id) that stops and comes back within its session
    gets the same partitions again, and the other members see no rebalance at all."""
    topic = new_topic(gb, partitions=PARTITIONS)
    group = f"{topic}-group"
    log = Log(gb.bootstrap, topic, PARTITIONS)

    def add(name, instance):
        m = start_member(name, client, gb.bootstrap, topic, group, protocol=protocol, assignor=assignor,
                         instance_id=instance, session_ms=STATIC_SESSION_MS)
        members.append(m)
        return m

    m1, m2, m3 = add("m1", "static-1"), add("m2", "static-2"), add("m3", "static-3")
    wait_stable(members, PARTITIONS, gb.bootstrap, group, topic, "three static members to split the partitions",
                timeout_s=60)
    log.produce("a", 4)
    wait_committed(gb.bootstrap, group, log, members)
    _, _, described = broker_assignment(gb.bootstrap, group, topic)
    assert len(described) == 3

    owned = m1.assignment()
    marks = {m.name: m.mark() for m in (m2, m3)}
    ends = log.ends()
    t = time.monotonic()
    m1.close()  # a static member does not leave the group when it closes: it says it will be back
    back = add("m1-again", "static-1")
    wait_stable(members, PARTITIONS, gb.bootstrap, group, topic, "the restarted static member's assignment")
    restart_s = time.monotonic() - t
    print(f"\n{client} {protocol}: static member back with its partitions {restart_s:.1f} s after it stopped")
    assert back.assignment() == owned, f"the restarted member got {sorted(back.assignment())}, it had {sorted(owned)}"
    # Long enough for a rebalance to reach the others (heartbeats every 0.5 s) had there been one.
    time.sleep(2)
    for m in (m2, m3):
        changes = [(e.ev, e.data) for e in m.since(marks[m.name]) if e.ev in ("assigned", "revoked", "lost")]
        assert not changes, f"{m.name} saw a rebalance when a static member came back: {changes}"
    wait_stable(members, PARTITIONS, gb.bootstrap, group, topic, "the group after the restart", timeout_s=5)

    log.produce("b", 4)
    wait_committed(gb.bootstrap, group, log, members)
    assert_resumed_from([back], {back.name: 0}, ends)
    assert_read_everything(members, log)


# ------------------------------------------------------------------------ commits and OffsetFetch

COMMITTERS = ["confluent", "confluent-consumer", "kafka-python", "aiokafka", "java", "java-consumer"]


@pytest.mark.parametrize("committer", COMMITTERS)
def test_simple_commit_and_offset_fetch(gb, new_topic, committer):
    """A consumer with a group id that only assign()s (never joins) commits offsets with
    metadata; a fresh consumer of the same client and the admin clients read them back, and a
    second commit (one offset going backwards) replaces them."""
    topic = new_topic(gb, partitions=3)
    group = f"{topic}-group"
    log = Log(gb.bootstrap, topic, 3)
    log.produce("x", 10)
    nul = COMMIT_METADATA_SUFFIX.get(committer.split("-")[0], "")
    for offsets, text in (({0: 3, 1: 7, 2: 10}, f"{committer} first ✓"), ({0: 1, 1: 8, 2: 10}, "second")):
        simple_commit(committer, gb.bootstrap, group, topic, offsets, text)
        got = fetch_committed(committer, gb.bootstrap, group, topic, [0, 1, 2])
        assert {p: o for p, (o, _) in got.items()} == offsets, f"{committer} reads back {got}"
        if committer != "aiokafka":  # aiokafka's committed() has no metadata
            # (confluent-kafka reads back what it wrote: the NUL it added ends the C string)
            assert {p: md for p, (_, md) in got.items()} == {p: text for p in offsets}, got
        assert {p: o for p, (o, _) in committed_offsets(gb.bootstrap, group, topic).items()} == offsets
        assert committed_metadata(gb.bootstrap, group, topic) == {p: text + nul for p in offsets}
    state, _, described = broker_assignment(gb.bootstrap, group, topic)
    assert (state, described) == ("EMPTY", []), "committing did not make anyone a member"


def test_commit_from_a_member_is_read_by_every_client(gb, new_topic, members):
    """Offsets a subscribed member committed (with metadata) read the same through every client's
    OffsetFetch: consumer.committed() of confluent-kafka, kafka-python, aiokafka and Java. The
    member is a confluent-kafka one: that client can read only metadata it wrote itself (with its
    NUL), the others show that NUL."""
    topic = new_topic(gb, partitions=3)
    group = f"{topic}-group"
    log = Log(gb.bootstrap, topic, 3)
    log.produce("x", 4)
    m = start_member("m1", "confluent", gb.bootstrap, topic, group, metadata="from the member")
    members.append(m)
    wait_stable(members, 3, gb.bootstrap, group, topic, "the member's assignment")
    wait_committed(gb.bootstrap, group, log, members)
    m.close()
    for reader in ("confluent", "kafka-python", "aiokafka", "java"):
        got = fetch_committed(reader, gb.bootstrap, group, topic, [0, 1, 2])
        assert {p: o for p, (o, _) in got.items()} == {0: 4, 1: 4, 2: 4}, f"{reader}: {got}"
        text = "from the member" if reader == "confluent" else "from the member\x00"
        if reader != "aiokafka":
            assert {p: md for p, (_, md) in got.items()} == {p: text for p in range(3)}, f"{reader}: {got}"


# ------------------------------------------------------------------------------------------ admin

def java_groups(b, *args) -> dict[str, dict]:
    (out,) = java("admin-list-groups", "--bootstrap", b.bootstrap, *args)
    return {g["group_id"]: g for g in out["groups"]}


def java_describe(b, group) -> dict:
    (out,) = java("admin-describe-groups", "--bootstrap", b.bootstrap, "--group", group)
    return out


def kp_admin(b):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=15000)


def kp_lag(b, group, topic) -> dict[int, int]:
    """Lag per partition the way kafka-consumer-groups.sh computes it, with kafka-python's admin:
    committed offsets (OffsetFetch) against the latest offsets (ListOffsets)."""
    from kafka.admin import OffsetSpec

    a = kp_admin(b)
    try:
        committed = {tp: om.offset for tp, om in a.list_group_offsets({group: None})[group].items() if tp.topic == topic}
        ends = a.list_partition_offsets({tp: OffsetSpec.LATEST for tp in committed})
        return {tp.partition: ends[tp].offset - off for tp, off in committed.items()}
    finally:
        a.close()


def consumed(members, partitions) -> dict[int, int]:
    """partition -> the offset after the last record any member read."""
    out = {p: 0 for p in range(partitions)}
    for m in members:
        for e in m.records():
            out[e.data["p"]] = max(out[e.data["p"]], e.data["o"] + 1)
    return out


def test_admin_list_describe_and_lag(gb, new_topic, members):
    """kafka-python's KafkaAdminClient and the Java AdminClient list the group (with state filters),
    describe it (state, assignor, members and what each owns) and show each partition's lag:
    produced minus consumed."""
    topic = new_topic(gb, partitions=4)
    group = f"{topic}-group"
    log = Log(gb.bootstrap, topic, 4)
    for name in ("m1", "m2"):
        members.append(start_member(name, "confluent", gb.bootstrap, topic, group, assignor="range"))
    wait_stable(members, 4, gb.bootstrap, group, topic, "two members to split the partitions")
    log.produce("a", 3)
    wait_committed(gb.bootstrap, group, log, members)

    # --- lists
    listed = java_groups(gb)
    assert listed.get(group) == {"group_id": group, "type": "Classic", "protocol": "consumer", "state": "Stable"}, listed.get(group)
    assert group in java_groups(gb, "--states", "Stable")
    assert group in java_groups(gb, "--api", "list-consumer-groups", "--states", "Stable,PreparingRebalance")
    assert group not in java_groups(gb, "--states", "Empty")
    assert group not in java_groups(gb, "--types", "consumer")
    a = kp_admin(gb)
    try:
        kp = {g["group_id"]: g for g in a.list_groups()}
        assert kp.get(group) == {"group_id": group, "protocol_type": "consumer", "group_state": "Stable",
                                 "group_type": "classic"}, kp.get(group)
        assert group in {g["group_id"] for g in a.list_groups(states_filter=["Stable"])}
        assert group not in {g["group_id"] for g in a.list_groups(states_filter=["Empty"])}

        # --- describes
        want = sorted(sorted(m.assignment()) for m in members)
        d = java_describe(gb, group)
        assert (d["state"], d["type"], d["assignor"], d["simple"]) == ("Stable", "Classic", "range", False), d
        assert (d["coordinator"]["id"], d["coordinator"]["port"]) == (gb.node_id, gb.port), d["coordinator"]
        assert sorted(sorted(p for t, p in m["assignment"] if t == topic) for m in d["members"]) == want, d
        assert all(m["member_id"] and m["client_id"] == "rdkafka" and m["instance_id"] is None for m in d["members"]), d
        kd = a.describe_groups([group])[group]
        assert (kd["error"], kd["group_state"], kd["protocol_type"], kd["protocol_data"]) == (None, "Stable", "consumer", "range"), kd
        assert sorted(m["member_id"] for m in kd["members"]) == sorted(m["member_id"] for m in d["members"])
        assert all(m["member_metadata"]["topics"] == [topic] for m in kd["members"]), kd["members"]
        got = sorted(sorted(p for tps in m["member_assignment"]["assigned_partitions"] if tps["topic"] == topic
                            for p in tps["partitions"]) for m in kd["members"])
        assert got == want, kd["members"]
    finally:
        a.close()

    # --- lag: the members stop fetching (still members), more records arrive
    for m in members:
        mark = m.mark()
        m.send("pause")
        wait_for(lambda: any(e.ev == "paused" for e in m.since(mark)), f"{m.name} paused")
    log.produce("b", 2)
    done = consumed(members, 4)
    wait_for(lambda: {p: o for p, (o, _) in committed_offsets(gb.bootstrap, group, topic).items()} == done,
             "the committed offsets to settle")
    expected = {p: log.ends()[p] - done[p] for p in range(4)}
    assert expected == {p: 2 for p in range(4)}, f"paused members still read: consumed {done}"
    (jl,) = java("admin-group-lag", "--bootstrap", gb.bootstrap, "--group", group)
    assert {l["partition"]: l["lag"] for l in jl["lag"] if l["topic"] == topic} == expected, jl
    assert {l["partition"]: l["end"] for l in jl["lag"]} == log.ends(), jl
    assert kp_lag(gb, group, topic) == expected

    for m in members:
        m.send("resume")
    wait_committed(gb.bootstrap, group, log, members)
    assert kp_lag(gb, group, topic) == {p: 0 for p in range(4)}
    assert_read_everything(members, log)


def test_admin_delete_offsets_and_groups(gb, new_topic, members):
    """OffsetDelete is refused for a topic the group's members subscribe to
    (GROUP_SUBSCRIBED_TO_TOPIC) and allowed for another one or once the group is empty;
    DeleteGroups is refused while there are members (NON_EMPTY_GROUP) and then removes the group
    and its offsets. Java's AdminClient and kafka-python's KafkaAdminClient."""
    from kafka import TopicPartition
    from kafka.errors import GroupSubscribedToTopicError, NoError

    topic = new_topic(gb, partitions=3)
    other = new_topic(gb, partitions=1, suffix="other")
    group = f"{topic}-group"
    log = Log(gb.bootstrap, topic, 3)
    log.produce("a", 3)
    simple_commit("kafka-python", gb.bootstrap, group, other, {0: 0}, "not subscribed")
    for name in ("m1", "m2"):
        members.append(start_member(name, "confluent", gb.bootstrap, topic, group))
    wait_stable(members, 3, gb.bootstrap, group, topic, "two members to split the partitions")
    wait_committed(gb.bootstrap, group, log, members)

    (r,) = java("admin-delete-group-offsets", "--bootstrap", gb.bootstrap, "--group", group, "--topic", topic,
                "--partition", 0)
    assert r == {"partitions": {"0": "GroupSubscribedToTopicException"}}
    a = kp_admin(gb)
    try:
        assert a.delete_group_offsets(group, [TopicPartition(topic, 1)]) == {TopicPartition(topic, 1): GroupSubscribedToTopicError}
        assert sorted(committed_offsets(gb.bootstrap, group, topic)) == [0, 1, 2], "nothing was deleted"
        (r,) = java("admin-delete-group-offsets", "--bootstrap", gb.bootstrap, "--group", group, "--topic", other,
                    "--partition", 0)
        assert r == {"partitions": {"0": None}}, "a topic nobody subscribes to"
        assert committed_offsets(gb.bootstrap, group, other) == {}

        (r,) = java("admin-delete-groups", "--bootstrap", gb.bootstrap, "--group", group)
        assert r == {"groups": {group: "GroupNotEmptyException"}}
        assert a.delete_groups([group]) == {group: "NonEmptyGroupError"}

        for m in members:
            m.close()
        wait_for(lambda: java_describe(gb, group)["state"] == "Empty", "the group to be empty")
        assert group in java_groups(gb, "--states", "Empty")
        assert a.delete_group_offsets(group, [TopicPartition(topic, 0)]) == {TopicPartition(topic, 0): NoError}
        (r,) = java("admin-delete-group-offsets", "--bootstrap", gb.bootstrap, "--group", group, "--topic", topic,
                    "--partition", 1)
        assert r == {"partitions": {"1": None}}
        assert {p: o for p, (o, _) in committed_offsets(gb.bootstrap, group, topic).items()} == {2: 3}, \
            "only partition 2 is left"

        (r,) = java("admin-delete-groups", "--bootstrap", gb.bootstrap, "--group", group)
        assert r == {"groups": {group: None}}
        d = java_describe(gb, group)
        assert d.get("error") == "GroupIdNotFoundException", d
        assert group not in java_groups(gb)
        assert committed_offsets(gb.bootstrap, group, topic) == {}
        assert a.describe_groups([group])[group]["group_state"] == "Dead"

        # kafka-python deletes an empty group too, and a second time finds nothing.
        second = f"{topic}-second"
        simple_commit("kafka-python", gb.bootstrap, second, topic, {0: 1}, "")
        assert second in {g["group_id"] for g in a.list_groups()}
        assert a.delete_groups([second]) == {second: "OK"}
        assert a.delete_groups([second]) == {second: "GroupIdNotFoundError"}
        assert second not in {g["group_id"] for g in a.list_groups()}
    finally:
        a.close()


def test_admin_consumer_protocol_group(gb, new_topic, members):
    """A KIP-848 group through the admin APIs: the Java AdminClient describes it with
    ConsumerGroupDescribe (type Consumer, the server assignor, epochs), both admins list it by
    type; the classic DescribeGroups refuses it (GROUP_ID_NOT_FOUND: not a classic group);
    deleting is refused while it has members and works once it is empty."""
    topic = new_topic(gb, partitions=4)
    group = f"{topic}-group"
    log = Log(gb.bootstrap, topic, 4)
    for name in ("m1", "m2"):
        members.append(start_member(name, "java", gb.bootstrap, topic, group, protocol="consumer", assignor="uniform"))
    wait_stable(members, 4, gb.bootstrap, group, topic, "two KIP-848 members to split the partitions", timeout_s=60)
    log.produce("a", 2)
    wait_committed(gb.bootstrap, group, log, members)

    d = java_describe(gb, group)
    assert (d["state"], d["type"], d["assignor"]) == ("Stable", "Consumer", "uniform"), d
    assert isinstance(d["group_epoch"], int) and d["group_epoch"] >= 2, d
    assert sorted(sorted(p for _, p in m["assignment"]) for m in d["members"]) == sorted(sorted(m.assignment()) for m in members)
    assert all(isinstance(m["member_epoch"], int) and m["member_epoch"] > 0 for m in d["members"]), d
    assert java_groups(gb, "--types", "consumer").get(group, {}).get("type") == "Consumer"
    assert group not in java_groups(gb, "--types", "classic")
    a = kp_admin(gb)
    try:
        assert {g["group_id"]: g for g in a.list_groups(types_filter=["consumer"])}.get(group) == \
            {"group_id": group, "protocol_type": "consumer", "group_state": "Stable", "group_type": "consumer"}
        kd = a.describe_groups([group])[group]
        assert kd["error"] and kd["error"].startswith("[Error 69]"), kd
        assert a.delete_groups([group]) == {group: "NonEmptyGroupError"}
        for m in members:
            m.close()
        wait_for(lambda: java_describe(gb, group)["state"] == "Empty", "the group to be empty")
        assert a.delete_groups([group]) == {group: "OK"}
        assert java_describe(gb, group).get("error") == "GroupIdNotFoundException"
    finally:
        a.close()


# ------------------------------------------------------------------------------- on the wire

#: Group APIs with Kafka 4.4.0's ranges, and the lowest top version the clients need.
GROUP_APIS = {
    wire.API_OFFSET_COMMIT: ("OffsetCommit", 2, 10, 8),
    wire.API_OFFSET_FETCH: ("OffsetFetch", 1, 10, 8),  # 8: several groups per request (KIP-709)
    wire.API_FIND_COORDINATOR: ("FindCoordinator", 0, 6, 4),  # 4: several keys (KIP-699)
    wire.API_JOIN_GROUP: ("JoinGroup", 0, 9, 5),  # 4: member id required (KIP-394); 5: instance ids
    wire.API_HEARTBEAT: ("Heartbeat", 0, 4, 3),
    wire.API_LEAVE_GROUP: ("LeaveGroup", 0, 5, 3),  # 3: several members (KIP-345)
    wire.API_SYNC_GROUP: ("SyncGroup", 0, 5, 3),
    wire.API_DESCRIBE_GROUPS: ("DescribeGroups", 0, 6, 4),
    16: ("ListGroups", 0, 5, 5),  # 4: state filter (KIP-518), 5: type filter (KIP-848)
    42: ("DeleteGroups", 0, 3, 0),
    47: ("OffsetDelete", 0, 0, 0),
    68: ("ConsumerGroupHeartbeat", 0, 1, 0),
    69: ("ConsumerGroupDescribe", 0, 1, 0),
}


def test_group_api_versions(gb):
    """Every group API is advertised, within Kafka 4.4's range and new enough for the clients."""
    with wire.Conn(gb.bootstrap) as c:
        ranges = wire.api_versions(c).ranges
    problems = []
    for key, (name, lo, hi, need) in GROUP_APIS.items():
        got = ranges.get(key)
        if got is None:
            problems.append(f"{name} ({key}) not advertised")
        elif not (lo <= got[0] <= got[1] <= hi) or got[1] < need:
            problems.append(f"{name} ({key}) advertised {got}, Kafka 4.4 has {lo}-{hi}, clients need up to {need}")
    assert not problems, problems


def coordinator_ready(conn, group, b):
    """FindCoordinator v3 until it names a coordinator, then OffsetFetch until the coordinator
    answers for the group: Kafka creates __consumer_offsets on the first FindCoordinator and
    answers COORDINATOR_NOT_AVAILABLE, then NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS while
    it loads the partition (clients retry all three)."""
    found = wait_for(lambda: (lambda c: c if c.error_code == 0 else None)(wire.find_coordinator_v3(conn, group)),
                     f"a coordinator for {group}")
    wait_for(lambda: wire.offset_fetch(conn, 8, {group: None})[group][0] == 0, f"the coordinator of {group} to load it")
    return found


def test_find_coordinator_single_and_batched(gb, topic_name):
    """FindCoordinator v3 (one key) and v4+ (several keys, KIP-699) name this broker, with its
    advertised host and port, for any group id, existing or not."""
    groups = [f"{topic_name}-a", f"{topic_name}-b", "", "ünïcode group ✓"]
    with wire.Conn(gb.bootstrap) as c:
        ranges = wire.api_versions(c).ranges
        one = coordinator_ready(c, groups[0], gb)
        assert (one.node_id, one.host, one.port) == (gb.node_id, "127.0.0.1", gb.port), one
        for v in range(4, ranges[wire.API_FIND_COORDINATOR][1] + 1):
            got = wire.find_coordinators(c, v, groups)
            assert [(x.key, x.error_code, x.node_id, x.host, x.port) for x in got] == \
                [(g, 0, gb.node_id, "127.0.0.1", gb.port) for g in groups], f"v{v}: {got}"


@pytest.mark.parametrize("join_version", [4, 9])
def test_wire_classic_member_lifecycle(gb, new_topic, join_version):
    """One raw member through the classic protocol: JoinGroup without a member id is told
    MEMBER_ID_REQUIRED and given one; with it, it becomes the leader of generation 1; SyncGroup
    hands out its assignment; Heartbeat, OffsetCommit and OffsetFetch work; a stale generation
    (ILLEGAL_GENERATION) or an unknown member (UNKNOWN_MEMBER_ID) is refused without harm;
    LeaveGroup (batched) empties the group, after which a generation-less commit is accepted."""
    topic = new_topic(gb, partitions=3)
    group = f"{topic}-raw"
    sub = wire.consumer_subscription([topic])
    protocols = [("range", sub), ("roundrobin", sub)]
    with wire.Conn(gb.bootstrap) as c:
        coordinator_ready(c, group, gb)
        first = wire.join_group(c, join_version, group, protocols=protocols)
        assert (first.error_code, first.generation_id) == (adminlib.MEMBER_ID_REQUIRED, -1), first
        assert first.member_id, "MEMBER_ID_REQUIRED comes with the member id to use"
        me = first.member_id
        j = wire.join_group(c, join_version, group, member_id=me, protocols=protocols)
        assert (j.error_code, j.generation_id, j.protocol_name, j.leader, j.member_id) == (0, 1, "range", me, me), j
        assert j.members == [(me, None, sub)], j.members
        if join_version >= 7:
            assert j.protocol_type == "consumer"
        gen = j.generation_id
        assignment = wire.consumer_assignment({topic: [0, 1, 2]})
        err, got = wire.sync_group(c, 5, group, gen, me, {me: assignment}, protocol_name="range")
        assert (err, wire.parse_consumer_assignment(got)) == (0, {topic: [0, 1, 2]})
        assert wire.heartbeat(c, 4, group, gen, me) == 0

        assert wire.heartbeat(c, 4, group, gen + 1, me) == adminlib.ILLEGAL_GENERATION
        assert wire.sync_group(c, 5, group, gen - 1, me, {}, protocol_name="range")[0] == adminlib.ILLEGAL_GENERATION
        assert wire.heartbeat(c, 4, group, gen, "no-such-member") == adminlib.UNKNOWN_MEMBER_ID
        assert wire.heartbeat(c, 3, group, gen, "no-such-member") == adminlib.UNKNOWN_MEMBER_ID

        assert wire.offset_commit(c, 9, group, gen, me, topic, {0: 5, 1: 6}, "raw ✓") == {0: 0, 1: 0}
        assert wire.offset_commit(c, 9, group, gen, me, f"{topic}-missing", {0: 1}) == {0: adminlib.UNKNOWN_TOPIC_OR_PARTITION}
        assert wire.offset_commit(c, 9, group, gen, "no-such-member", topic, {0: 99}) == {0: adminlib.UNKNOWN_MEMBER_ID}
        assert wire.offset_commit(c, 9, group, -1, "", topic, {0: 99}) == {0: adminlib.UNKNOWN_MEMBER_ID}, \
            "a generation-less (simple) commit to a group with members"
        assert wire.offset_commit(c, 8, group, gen - 1, me, topic, {0: 99}) == {0: adminlib.ILLEGAL_GENERATION}
        fetched = wire.offset_fetch(c, 8, {group: None, f"{group}-none": {topic: [0]}})
        assert fetched[group] == (0, {(topic, 0): (5, "raw ✓", 0), (topic, 1): (6, "raw ✓", 0)}), fetched
        assert fetched[f"{group}-none"] == (0, {(topic, 0): (-1, "", 0)}), fetched

        d = wire.describe_groups(c, 5, [group])[group]
        assert (d.error_code, d.state, d.protocol_type, d.protocol) == (0, "Stable", "consumer", "range"), d
        assert [(m["member_id"], m["assignment"]) for m in d.members] == [(me, {topic: [0, 1, 2]})]
        assert wire.heartbeat(c, 4, group, gen, me) == 0, "the errors above did not touch the member"

        err, left = wire.leave_group(c, 5, group, [(me, None), ("no-such-member", None)])
        assert (err, left) == (0, [(me, 0), ("no-such-member", adminlib.UNKNOWN_MEMBER_ID)])
        assert wire.heartbeat(c, 4, group, gen, me) == adminlib.UNKNOWN_MEMBER_ID
        d = wire.describe_groups(c, 5, [group])[group]
        assert (d.error_code, d.state, d.members) == (0, "Empty", [])
        assert wire.offset_commit(c, 9, group, -1, "", topic, {0: 7}) == {0: 0}, "a simple commit to an empty group"
        assert wire.offset_fetch(c, 9, {group: {topic: [0]}})[group][1][(topic, 0)][:2] == (7, "")


def test_wire_bad_input_leaves_a_real_group_unharmed(gb, new_topic, members):
    """Against a group of two confluent-kafka members: JoinGroup with another protocol type or an
    assignor nobody has (INCONSISTENT_GROUP_PROTOCOL), JoinGroup v4+ without a member id
    (MEMBER_ID_REQUIRED, with one), SyncGroup from an old generation (ILLEGAL_GENERATION),
    Heartbeat and OffsetCommit for a member that does not exist (UNKNOWN_MEMBER_ID). None of it
    rebalances the group, changes its offsets, or stops its members."""
    topic = new_topic(gb, partitions=4)
    group = f"{topic}-group"
    log = Log(gb.bootstrap, topic, 4)
    for name in ("m1", "m2"):
        members.append(start_member(name, "confluent", gb.bootstrap, topic, group))
    wait_stable(members, 4, gb.bootstrap, group, topic, "two members to split the partitions")
    log.produce("a", 3)
    wait_committed(gb.bootstrap, group, log, members)
    marks = {m.name: m.mark() for m in members}
    sub = wire.consumer_subscription([topic])

    with wire.Conn(gb.bootstrap) as c:
        before = wire.describe_groups(c, 5, [group])[group]
        assert before.state == "Stable" and len(before.members) == 2, before
        real = before.members[0]["member_id"]
        gen = next(g for g in range(1, 50) if wire.heartbeat(c, 4, group, g, real) == 0)
        offsets_before = wire.offset_fetch(c, 9, {group: None})[group]

        for v in (5, 9):
            j = wire.join_group(c, v, group, protocol_type="connect", protocols=[("range", sub)])
            assert j.error_code == adminlib.INCONSISTENT_GROUP_PROTOCOL, f"v{v}: another protocol type: {j}"
            j = wire.join_group(c, v, group, protocols=[("no-such-assignor", sub)])
            assert j.error_code == adminlib.INCONSISTENT_GROUP_PROTOCOL, f"v{v}: an assignor no member has: {j}"
        j = wire.join_group(c, 9, group, protocols=[("range", sub)])
        assert (j.error_code, bool(j.member_id)) == (adminlib.MEMBER_ID_REQUIRED, True), j
        assert wire.sync_group(c, 5, group, gen - 1, real, {}, protocol_name="range")[0] == adminlib.ILLEGAL_GENERATION
        assert wire.sync_group(c, 5, group, gen, "no-such-member", {}, protocol_name="range")[0] == adminlib.UNKNOWN_MEMBER_ID
        assert wire.heartbeat(c, 4, group, gen, "no-such-member") == adminlib.UNKNOWN_MEMBER_ID
        assert wire.heartbeat(c, 4, group, gen + 1, real) == adminlib.ILLEGAL_GENERATION
        assert wire.offset_commit(c, 9, group, gen, "no-such-member", topic, {0: 0}) == {0: adminlib.UNKNOWN_MEMBER_ID}
        assert wire.offset_commit(c, 9, group, -1, "", topic, {0: 0}) == {0: adminlib.UNKNOWN_MEMBER_ID}
        assert wire.offset_fetch(c, 9, {group: None})[group] == offsets_before, "the refused commits changed nothing"

        # Long enough for a rebalance to reach the members (0.5 s heartbeats), had there been one.
        time.sleep(2)
        after = wire.describe_groups(c, 5, [group])[group]
        assert after.state == "Stable"
        assert sorted(m["member_id"] for m in after.members) == sorted(m["member_id"] for m in before.members)
        assert wire.heartbeat(c, 4, group, gen, real) == 0, "same generation"
    for m in members:
        changes = [(e.ev, e.data) for e in m.since(marks[m.name]) if e.ev in ("assigned", "revoked", "lost")]
        assert not changes, f"{m.name} saw a rebalance: {changes}"
    log.produce("b", 3)
    wait_committed(gb.bootstrap, group, log, members)
    assert_read_everything(members, log)


def test_first_member_is_not_held_by_an_initial_rebalance_delay(broker, new_topic):
    """On the broker's defaults (the shared broker: no group settings), the first member of a new
    group is assigned as soon as its join round trips are done, as on Kafka started from its
    shipped server.properties or Docker image (group.initial.rebalance.delay.ms=0), not after
    Kafka's built-in 3 s. kafka-consumer-perf-test counts that wait in its throughput."""
    from confluent_kafka import Consumer, TopicPartition

    topic = new_topic(broker, partitions=3)
    assigned = []
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"{topic}-group",
                  "auto.offset.reset": "earliest", "partition.assignment.strategy": "range"})
    try:
        # The group's coordinator first: on Kafka the first group of a broker makes
        # __consumer_offsets, seconds of its own (NOT_COORDINATOR meanwhile) that are no rebalance
        # delay. What is timed is the join alone.
        wait_for(lambda: c.committed([TopicPartition(topic, 0)], timeout=10) is not None,
                 "the group's coordinator answering OffsetFetch", timeout_s=60)
        t0 = time.monotonic()
        c.subscribe([topic], on_assign=lambda _c, parts: assigned.append((time.monotonic(), len(parts))))
        while not assigned and time.monotonic() - t0 < 30:
            c.poll(0.05)
        assert assigned, "no assignment within 30 s"
        join_s = assigned[0][0] - t0
        assert assigned[0][1] == 3
        # Joining takes a few round trips (tens of ms here; far less than a second even on a
        # loaded machine); a 3 s delay would put it past 3 s.
        print(f"first member assigned {join_s * 1000:.0f} ms after subscribe()")
        assert join_s < 2.5, f"the first member waited {join_s:.2f} s for its assignment"
    finally:
        c.close()
