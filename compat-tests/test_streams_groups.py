"""Streams groups (KIP-1071): the broker-side rebalance protocol of Kafka Streams 4.4 with
`group.protocol=streams`, as docs/streams-groups.md describes Kafka 4.4's. Three layers:

* a real Kafka Streams 4.4 application (java/.../Streams.java, the word count of test_streams.py,
  run with `-X group.protocol=streams` and an `application.server`): two instances share the
  tasks, the counts come out exact, one instance leaves cleanly and the other takes every task
  over, its Interactive Queries view following (the broker's PartitionsByUserEndpoint);
* StreamsGroupHeartbeat / StreamsGroupDescribe / StreamsGroupTopologyDescriptionUpdate on the
  wire (kmsg.py encodes them from the schemas in the kafka-clients jar): the scenarios of section
  14 of the doc, every refusal text of sections 3 and 4, and what ListGroups, DescribeGroups,
  DeleteGroups, JoinGroup, ConsumerGroupHeartbeat, OffsetCommit and OffsetFetch do with a streams
  group;
* the admin side: Kafka 4.4's kafka-streams-groups tool (org.apache.kafka.tools.streams.
  StreamsGroupCommand, whose Admin calls are listGroups, describeStreamsGroups,
  listStreamsGroupOffsets, alterStreamsGroupOffsets, deleteStreamsGroupOffsets and
  deleteStreamsGroups).

One broker for the module: a 1 s initial rebalance delay (Kafka's default is 3 s; long enough
that a join right after the first still sees it), 0.5 s heartbeats (Kafka Streams heartbeats at
the interval the broker gives it). Runs on Kafka 4.4 too.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

import kmsg
import wire
from appslib import APP_JAVA, LoggedLineProc, check_built, latest_committed, logs_on_failure, topic_configs
import conftest
from clientlib import JAVA_CLASSPATH
from conftest import REFERENCE, group_overrides, wait_for
from eoslib import read_confluent
from test_streams import make_lines, produce_lines, word_counts

#: Streams groups are production-ready from Kafka 4.2 (streams.version 1, metadata 4.2-IV1); an
#: older reference broker (FJORD_KAFKA_VERSION) has no such group to test.
pytestmark = pytest.mark.skipif(getattr(conftest, "kafka_older_than", lambda v: False)("4.2"),
                                reason="the reference Kafka predates streams groups (4.2)")

INITIAL_DELAY_MS = 1000
HEARTBEAT_MS = 500
#: Kafka's defaults, not overridden here.
TASK_OFFSET_INTERVAL_MS = 60000
ACCEPTABLE_RECOVERY_LAG = 10000
ASSIGNMENT_INTERVAL_MS = 1000

STREAMS_OVERRIDES = {
    "group.streams.initial.rebalance.delay.ms": INITIAL_DELAY_MS,
    "group.streams.min.heartbeat.interval.ms": 100,
    "group.streams.heartbeat.interval.ms": HEARTBEAT_MS,
}

# Status codes and texts (StreamsGroupHeartbeatResponse.Status).
STALE_TOPOLOGY, MISSING_SOURCE_TOPICS, INCORRECTLY_PARTITIONED_TOPICS = 0, 1, 2
MISSING_INTERNAL_TOPICS, SHUTDOWN_APPLICATION, ASSIGNMENT_DELAYED = 3, 4, 5
INITIAL_DELAY_TEXT = "Assignment delayed due to the configured initial rebalance delay."
INTERVAL_DELAY_TEXT = "Assignment delayed due to the configured assignment interval."

# Error codes.
UNKNOWN_SERVER_ERROR, INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID = -1, 23, 24
UNKNOWN_MEMBER_ID, UNSUPPORTED_VERSION, INVALID_REQUEST = 25, 35, 42
NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND, FENCED_INSTANCE_ID, GROUP_SUBSCRIBED_TO_TOPIC = 68, 69, 82, 86
FENCED_MEMBER_EPOCH, UNRELEASED_INSTANCE_ID, STALE_MEMBER_EPOCH = 110, 111, 113
STREAMS_INVALID_TOPOLOGY = 130

#: StreamsGroupDescribe's AuthorizedOperations when not asked for.
NO_OPERATIONS = -2147483648


@pytest.fixture(scope="module")
def sgb(start_broker):
    return start_broker("streams-groups", **group_overrides(**STREAMS_OVERRIDES, **{
        "auto.create.topics.enable": "false", "num.partitions": 1}))


@pytest.fixture
def group(topic_name) -> str:
    return f"{topic_name}-app"


# ------------------------------------------------------------------------------------- helpers

def sub(sid: str, sources=(), changelogs=(), sinks=(), rep_sources=(), configs=()) -> dict:
    """A subtopology as Kafka Streams sends it: changelog topics with no partition count,
    repartition source topics with theirs undecided (0)."""
    kv = [{"Key": k, "Value": v} for k, v in configs]
    return {"SubtopologyId": sid, "SourceTopics": list(sources),
            "StateChangelogTopics": [{"Name": t, "TopicConfigs": kv} for t in changelogs],
            "RepartitionSinkTopics": list(sinks),
            "RepartitionSourceTopics": [{"Name": t} for t in rep_sources]}


def topology(*subs: dict, epoch: int = 0) -> dict:
    return {"Epoch": epoch, "Subtopologies": list(subs)}


def tasks(lst: list[dict] | None) -> dict[str, list[int]] | None:
    """A response's or description's task list as {subtopology: partitions}."""
    return None if lst is None else {t["SubtopologyId"]: t["Partitions"] for t in lst}


def task_list(d: dict[str, list[int]]) -> list[dict]:
    return [{"SubtopologyId": s, "Partitions": ps} for s, ps in sorted(d.items())]


def statuses(r: dict) -> list[tuple[int, str]]:
    return [(s["StatusCode"], s["StatusDetail"]) for s in r["Status"]]


COORDINATOR_ERRORS = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR


def ensure_coordinator(bootstrap: str, group: str):
    """FindCoordinator until the broker names one (the first one creates __consumer_offsets),
    then StreamsGroupDescribe until the group's coordinator answers (its partition loaded)."""
    with wire.Conn(bootstrap) as c:
        ranges = wire.api_versions(c).ranges
        assert 88 in ranges and 89 in ranges, f"the broker serves no StreamsGroupHeartbeat/Describe: {ranges}"
        wait_for(lambda: wire.find_coordinators(c, 4, [group])[0].error_code == 0, f"a coordinator for {group}")
        deadline = time.monotonic() + 20
        while (err := kmsg.call(c, "StreamsGroupDescribe", 0, GroupIds=[group])["Groups"][0]["ErrorCode"]) \
                in COORDINATOR_ERRORS:
            assert time.monotonic() < deadline, f"the coordinator of {group} still answers {err} after 20 s"
            time.sleep(0.1)


def java_hash(s: str) -> int:
    """Java's String.hashCode()."""
    h = 0
    units = s.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group: str, partitions: int = 50) -> int:
    """The __consumer_offsets partition (so the coordinator shard) of a group, as Kafka picks it."""
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def wait_sources_visible(bootstrap: str, group: str, sources: list[str]):
    """Until the group coordinator of `group` sees `sources`: a Metadata answer naming a new
    topic may come before the coordinator's copy of the metadata has it (Kafka hands each
    coordinator shard the new image asynchronously), and a join in between finds the source
    topics missing. Probes with a throwaway streams group on the same coordinator partition."""
    n = 0
    while offsets_partition(probe := f"{group}-probe{n}") != offsets_partition(group):
        n += 1
    ensure_coordinator(bootstrap, probe)
    m = Member(bootstrap, probe)
    try:
        def visible():
            r = m.join(topology(sub("0", sources=sources)))
            assert r["ErrorCode"] == 0, r
            assert m.leave()["ErrorCode"] == 0
            m.endpoint_epoch = -1
            return MISSING_SOURCE_TOPICS not in {code for code, _ in statuses(r)}

        wait_for(visible, f"the coordinator of {group} seeing {sources}", timeout_s=10)
        with wire.Conn(bootstrap) as c:
            assert kmsg.call(c, "DeleteGroups", 2, GroupsNames=[probe])["Results"][0]["ErrorCode"] == 0
    finally:
        m.close()


@pytest.fixture
def source_topic(sgb, new_topic, group):
    """new_topic on the module's broker, once the coordinator of `group` sees it."""
    def create(partitions: int, **kw) -> str:
        name = new_topic(sgb, partitions=partitions, **kw)
        wait_sources_visible(sgb.bootstrap, group, [name])
        return name

    return create


def describe(bootstrap: str, group: str, version: int = 1, **fields) -> dict:
    with wire.Conn(bootstrap) as c:
        r = kmsg.call(c, "StreamsGroupDescribe", version, GroupIds=[group], **fields)
    assert len(r["Groups"]) == 1, r
    return r["Groups"][0]


def members_by_id(g: dict) -> dict[str, dict]:
    return {m["MemberId"]: m for m in g["Members"]}


def error_response(r: dict, code: int, message: str | None):
    """An error answer of StreamsGroupHeartbeat v1 carries the code and message and nothing else
    (doc 3.1): member "", epochs and intervals 0, an empty status list, no tasks, no endpoints."""
    assert (r["ErrorCode"], r["ErrorMessage"]) == (code, message), r
    assert r["MemberId"] == "" and r["MemberEpoch"] == 0 and r["HeartbeatIntervalMs"] == 0, r
    assert r["Status"] == [] and r["ActiveTasks"] is None and r["PartitionsByUserEndpoint"] is None, r
    assert r["AcceptableRecoveryLag"] == -1, r


class Member:
    """One streams group member speaking StreamsGroupHeartbeat on a connection of its own; keeps
    its epoch, previous epoch, endpoint information epoch and assigned active tasks as a client
    would."""

    def __init__(self, bootstrap: str, group: str, member_id: str | None = None, process_id: str | None = None,
                 instance_id: str | None = None, version: int = 1):
        self.conn = wire.Conn(bootstrap)
        self.group = group
        self.id = member_id or str(uuid.uuid4())
        self.process_id = process_id or str(uuid.uuid4())
        self.instance_id = instance_id
        self.version = version
        self.epoch = self.prev_epoch = 0
        self.endpoint_epoch = -1
        self.active: dict[str, list[int]] = {}

    def close(self):
        self.conn.close()

    def send(self, **fields) -> dict:
        """A raw heartbeat: GroupId and MemberId filled in, nothing else."""
        fields.setdefault("GroupId", self.group)
        fields.setdefault("MemberId", self.id)
        return kmsg.call(self.conn, "StreamsGroupHeartbeat", fields.pop("version", self.version), **fields)

    def _after(self, r: dict) -> dict:
        if r["ErrorCode"] == 0:
            if r["MemberEpoch"] != self.epoch:
                self.prev_epoch, self.epoch = self.epoch, r["MemberEpoch"]
            self.endpoint_epoch = r["EndpointInformationEpoch"]
            if r["ActiveTasks"] is not None:
                self.active = tasks(r["ActiveTasks"])
        return r

    def join(self, topo: dict, **fields) -> dict:
        """A (re-)join as Kafka Streams sends it (doc 13)."""
        req = dict(MemberEpoch=0, EndpointInformationEpoch=self.endpoint_epoch, InstanceId=self.instance_id,
                   RebalanceTimeoutMs=30000, Topology=topo, ActiveTasks=[], StandbyTasks=[], WarmupTasks=[],
                   ProcessId=self.process_id, ClientTags=[])
        req.update(fields)
        return self._after(self.send(**req))

    def heartbeat(self, **fields) -> dict:
        req = dict(MemberEpoch=self.epoch, EndpointInformationEpoch=self.endpoint_epoch, InstanceId=self.instance_id)
        req.update(fields)
        return self._after(self.send(**req))

    def owned(self, active: dict[str, list[int]] | None = None, **fields) -> dict:
        """A heartbeat reporting the tasks it owns (all three lists, as after a revocation)."""
        return self.heartbeat(ActiveTasks=task_list(self.active if active is None else active), StandbyTasks=[],
                              WarmupTasks=[], **fields)

    def leave(self, epoch: int = -1, **fields) -> dict:
        req = dict(MemberEpoch=epoch, EndpointInformationEpoch=self.endpoint_epoch, InstanceId=self.instance_id)
        req.update(fields)
        return self.send(**req)

    def wait_assigned(self, what: str, allowed: set[int] = frozenset({ASSIGNMENT_DELAYED}), timeout_s: float = 15,
                      **fields) -> dict:
        """Heartbeats every 0.1 s until a response carries active tasks; every response on the
        way must be free of errors and carry only `allowed` status codes."""
        def assigned():
            r = self.heartbeat(**fields)
            assert r["ErrorCode"] == 0, r
            assert {code for code, _ in statuses(r)} <= allowed, r
            if r["ActiveTasks"]:
                return r
            time.sleep(0.1)
            return None

        return wait_for(assigned, what, timeout_s=timeout_s, interval_s=0)


def join_into_assignment(bootstrap: str, group: str, topo: dict, **member) -> tuple[Member, dict]:
    """A first member that joins `topo` and heartbeats until the initial delay has passed and it
    holds tasks."""
    ensure_coordinator(bootstrap, group)
    m = Member(bootstrap, group, **member)
    r = m.join(topo)
    assert r["ErrorCode"] == 0, r
    return m, m.wait_assigned(f"{group}: tasks after the initial rebalance delay")


def existing_topics(bootstrap: str) -> dict[str, int]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {n: len(t.partitions) for n, t in md.topics.items() if t.error is None}


def list_groups(bootstrap: str, prefix: str, states=(), types=(), version: int = 5) -> dict[str, dict]:
    with wire.Conn(bootstrap) as c:
        r = kmsg.call(c, "ListGroups", version, StatesFilter=list(states), TypesFilter=list(types))
    assert r["ErrorCode"] == 0, r
    return {g["GroupId"]: g for g in r["Groups"] if g["GroupId"].startswith(prefix)}


# ---------------------------------------------------------------------------- wire: the basics

def test_api_versions_and_the_streams_version_feature(sgb):
    """88, 89 and 93 are advertised with Kafka 4.4's ranges, and a new cluster finalizes
    streams.version=1 (doc 1.1, 1.2)."""
    with wire.Conn(sgb.bootstrap) as c:
        # v4: v3 leaves out the supported features whose range starts at 0 (KIP-1022).
        r = kmsg.call(c, "ApiVersions", 4, ClientSoftwareName="fjord-compat", ClientSoftwareVersion="0.1")
    assert r["ErrorCode"] == 0, r
    ranges = {a["ApiKey"]: (a["MinVersion"], a["MaxVersion"]) for a in r["ApiKeys"]}
    assert ranges.get(88) == (0, 1), ranges
    assert ranges.get(89) == (0, 1), ranges
    assert ranges.get(93) == (0, 0), ranges
    supported = {f["Name"]: (f["MinVersion"], f["MaxVersion"]) for f in r["SupportedFeatures"]}
    finalized = {f["Name"]: (f["MinVersionLevel"], f["MaxVersionLevel"]) for f in r["FinalizedFeatures"]}
    assert supported.get("streams.version") == (0, 1), supported
    assert finalized.get("streams.version") == (1, 1), finalized


def test_first_join_delay_internal_topics_and_assignment(sgb, source_topic, group):
    """Section 14.1: the first member of a stateful two-subtopology application (source `in` with
    4 partitions, a store changelog and a repartition topic into an aggregation with its own
    changelog) and an Interactive Queries endpoint. The join answers epoch 1, the broker's
    intervals, the initial delay and the missing internal topics, no tasks, and the endpoint with
    empty lists; describe shows NotReady 2/1 with the topology as sent. The broker creates the
    internal topics (4 partitions, the topology's configs); after the delay the member gets all 8
    tasks at epoch 3 with the endpoint's partitions, and the group is Stable with the configured
    topology (decided partition counts)."""
    inp = source_topic(4)
    store, agg, rep = f"{group}-store-changelog", f"{group}-agg-changelog", f"{group}-rep"
    topo = topology(sub("0", sources=[inp], changelogs=[store], sinks=[rep], configs=[("cleanup.policy", "compact")]),
                    sub("1", rep_sources=[rep], changelogs=[agg], configs=[("cleanup.policy", "compact")]))
    endpoint = {"Host": "localhost", "Port": 8080}
    ensure_coordinator(sgb.bootstrap, group)
    m = Member(sgb.bootstrap, group, process_id="process-1")
    try:
        r = m.join(topo, UserEndpoint=endpoint)
        assert r["ErrorCode"] == 0 and r["ErrorMessage"] is None, r
        assert (r["MemberId"], r["MemberEpoch"]) == (m.id, 1), r
        assert (r["HeartbeatIntervalMs"], r["TaskOffsetIntervalMs"], r["AcceptableRecoveryLag"]) == \
            (HEARTBEAT_MS, TASK_OFFSET_INTERVAL_MS, ACCEPTABLE_RECOVERY_LAG), r
        st = statuses(r)
        assert len(st) == 2 and st[0] == (ASSIGNMENT_DELAYED, INITIAL_DELAY_TEXT), st
        code, detail = st[1]
        assert code == MISSING_INTERNAL_TOPICS and detail.startswith("Internal topics are missing: "), st
        # Kafka lists them in hash-map order (the doc allows sorted).
        assert set(detail.removeprefix("Internal topics are missing: ").split(", ")) == {store, agg, rep}, detail
        assert (r["ActiveTasks"], r["StandbyTasks"], r["WarmupTasks"]) == ([], [], []), r
        assert r["TopologyDescriptionRequired"] is False, r
        assert r["EndpointInformationEpoch"] == 0, r
        assert r["PartitionsByUserEndpoint"] == [{"UserEndpoint": endpoint, "ActivePartitions": [],
                                                  "StandbyPartitions": []}], r

        g = describe(sgb.bootstrap, group, IncludeTopologyDescription=True)
        assert (g["ErrorCode"], g["ErrorMessage"], g["GroupId"]) == (0, None, group), g
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"]) == ("NotReady", 2, 1), g
        assert (g["AssignorName"], g["TopologyDescriptionStatus"], g["TopologyDescription"]) == ("sticky", 1, None), g
        assert g["AuthorizedOperations"] == NO_OPERATIONS, g
        # Not ready: the topology as sent (changelog and repartition partitions 0).
        assert g["Topology"] == {"Epoch": 0, "Subtopologies": [
            {"SubtopologyId": "0", "SourceTopics": [inp], "RepartitionSinkTopics": [rep],
             "StateChangelogTopics": [{"Name": store, "Partitions": 0, "ReplicationFactor": 0,
                                       "TopicConfigs": [{"Key": "cleanup.policy", "Value": "compact"}]}],
             "RepartitionSourceTopics": []},
            {"SubtopologyId": "1", "SourceTopics": [], "RepartitionSinkTopics": [],
             "StateChangelogTopics": [{"Name": agg, "Partitions": 0, "ReplicationFactor": 0,
                                       "TopicConfigs": [{"Key": "cleanup.policy", "Value": "compact"}]}],
             "RepartitionSourceTopics": [{"Name": rep, "Partitions": 0, "ReplicationFactor": 0, "TopicConfigs": []}]},
        ]}, g["Topology"]
        [d] = g["Members"]
        assert {k: d[k] for k in ("MemberId", "MemberEpoch", "InstanceId", "RackId", "ClientId", "ClientHost",
                                  "TopologyEpoch", "ProcessId", "UserEndpoint", "ClientTags", "IsClassic")} == {
            "MemberId": m.id, "MemberEpoch": 1, "InstanceId": None, "RackId": None, "ClientId": "fjord-compat-wire",
            "ClientHost": "/127.0.0.1", "TopologyEpoch": 0, "ProcessId": "process-1", "UserEndpoint": endpoint,
            "ClientTags": [], "IsClassic": False}, d
        empty = {"ActiveTasks": [], "StandbyTasks": [], "WarmupTasks": []}
        assert (d["Assignment"], d["TargetAssignment"]) == (empty, empty), d

        # The broker creates the internal topics itself, as the topology describes them.
        wait_for(lambda: {t: n for t, n in existing_topics(sgb.bootstrap).items() if t in (store, agg, rep)}
                 == {store: 4, agg: 4, rep: 4}, "the three internal topics with 4 partitions each")
        assert topic_configs(sgb.bootstrap, store).get("cleanup.policy") == "compact"

        # Until the delay is over: no tasks, statuses the delay (initial, or the assignment
        # interval if the delayed computation ran before the topics were seen) and the topics.
        r = m.wait_assigned("the delayed assignment", allowed={ASSIGNMENT_DELAYED, MISSING_INTERNAL_TOPICS})
        assert r["ErrorCode"] == 0 and r["MemberEpoch"] == 3 and r["Status"] == [], r
        all4 = [0, 1, 2, 3]
        assert tasks(r["ActiveTasks"]) == {"0": all4, "1": all4}, r
        assert (r["StandbyTasks"], r["WarmupTasks"]) == ([], []), r
        assert r["EndpointInformationEpoch"] == 1, r
        [entry] = r["PartitionsByUserEndpoint"]
        # The topics in task (hash-map) order in Kafka.
        entry["ActivePartitions"].sort(key=lambda tp: tp["Topic"])
        assert entry == {"UserEndpoint": endpoint, "ActivePartitions": [
            {"Topic": t, "Partitions": all4} for t in sorted([inp, rep])], "StandbyPartitions": []}, r

        # A heartbeat with nothing new but task offsets: no tasks, no endpoints, same epochs.
        r = m.heartbeat(TaskOffsets=[{"SubtopologyId": "1", "Partition": 2, "Offset": 7},
                                     {"SubtopologyId": "0", "Partition": 3, "Offset": 5}],
                        TaskEndOffsets=[{"SubtopologyId": "0", "Partition": 3, "Offset": 9}])
        assert (r["ErrorCode"], r["MemberEpoch"], r["Status"], r["ActiveTasks"], r["StandbyTasks"],
                r["WarmupTasks"], r["EndpointInformationEpoch"], r["PartitionsByUserEndpoint"]) == \
            (0, 3, [], None, None, None, 1, None), r
        # v0: AcceptableRecoveryLagLegacy is always 0; no v1 fields.
        r0 = m.heartbeat(version=0)
        assert r0["ErrorCode"] == 0 and r0["AcceptableRecoveryLagLegacy"] == 0, r0
        assert "AcceptableRecoveryLag" not in r0 and "TopologyDescriptionRequired" not in r0, r0

        g = describe(sgb.bootstrap, group, IncludeTopologyDescription=True)
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"]) == ("Stable", 3, 3), g
        assert g["TopologyDescriptionStatus"] == 1, g
        # Ready: the configured topology, partition counts decided.
        assert [(s["SubtopologyId"], [(t["Name"], t["Partitions"]) for t in s["StateChangelogTopics"]],
                 [(t["Name"], t["Partitions"]) for t in s["RepartitionSourceTopics"]], s["SourceTopics"],
                 s["RepartitionSinkTopics"]) for s in g["Topology"]["Subtopologies"]] == [
            ("0", [(store, 4)], [], [inp], [rep]), ("1", [(agg, 4)], [(rep, 4)], [], [])], g["Topology"]
        [d] = g["Members"]
        assert d["MemberEpoch"] == 3 and tasks(d["Assignment"]["ActiveTasks"]) == {"0": all4, "1": all4}, d
        # The reported offsets, sorted by subtopology and partition.
        assert d["TaskOffsets"] == [{"SubtopologyId": "0", "Partition": 3, "Offset": 5},
                                    {"SubtopologyId": "1", "Partition": 2, "Offset": 7}], d
        assert d["TaskEndOffsets"] == [{"SubtopologyId": "0", "Partition": 3, "Offset": 9}], d
        assert d["Assignment"] == d["TargetAssignment"], d
        # v0 of describe: the same group without the v1 fields.
        g0 = describe(sgb.bootstrap, group, version=0)
        assert (g0["GroupState"], g0["GroupEpoch"]) == ("Stable", 3) and "AssignorName" not in g0, g0

        # The last member leaves: Empty, both epochs one up (doc 3.2).
        r = m.leave()
        assert (r["ErrorCode"], r["MemberId"], r["MemberEpoch"], r["Status"], r["HeartbeatIntervalMs"],
                r["AcceptableRecoveryLag"]) == (0, m.id, -1, [], 0, -1), r
        g = describe(sgb.bootstrap, group)
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"], g["Members"]) == ("Empty", 4, 4, []), g
    finally:
        m.close()


def test_a_second_member_takes_half_through_revocation(sgb, source_topic, group):
    """Section 14.2 and the example of 6.2: m1 holds all 4 tasks of a one-subtopology topology;
    m2 (another process) joins within the assignment interval and is told so; once a new target
    is computed m1 first keeps [0, 1] with 2 and 3 pending revocation (same epoch), a heartbeat
    without owned tasks changes nothing, m1 reporting [0, 1] moves to the new epoch, and only then
    does m2 get [2, 3]. Then Stable."""
    inp = source_topic(4)
    topo = topology(sub("0", sources=[inp]))
    m1, r = join_into_assignment(sgb.bootstrap, group, topo)
    assigned_at = time.monotonic()
    m2 = Member(sgb.bootstrap, group)
    try:
        e1 = m1.epoch
        assert m1.active == {"0": [0, 1, 2, 3]}, r
        r = m2.join(topo)
        assert r["ErrorCode"] == 0 and (r["ActiveTasks"], r["StandbyTasks"], r["WarmupTasks"]) == ([], [], []), r
        if time.monotonic() - assigned_at < ASSIGNMENT_INTERVAL_MS / 1000 * 0.8:
            # Within a second of the last computation: delayed, at the current assignment epoch.
            assert statuses(r) == [(ASSIGNMENT_DELAYED, INTERVAL_DELAY_TEXT)], r
            assert r["MemberEpoch"] == e1, r
        g = describe(sgb.bootstrap, group)
        assert g["GroupEpoch"] == e1 + 1, g
        if r["Status"]:
            assert (g["GroupState"], g["AssignmentEpoch"]) == ("Assigning", e1), g

        # m2 heartbeats until the new target exists; all its tasks are still m1's.
        def m2_at_target():
            r = m2.heartbeat()
            assert r["ErrorCode"] == 0 and statuses(r) in ([], [(ASSIGNMENT_DELAYED, INTERVAL_DELAY_TEXT)]), r
            return r if r["MemberEpoch"] == e1 + 1 else None

        r = wait_for(m2_at_target, "m2 at the new epoch", timeout_s=10)
        assert r["Status"] == [] and m2.active == {}, r
        g = describe(sgb.bootstrap, group)
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"]) == ("Reconciling", e1 + 1, e1 + 1), g
        target = {m["MemberId"]: tasks(m["TargetAssignment"]["ActiveTasks"]) for m in g["Members"]}
        assert target == {m1.id: {"0": [0, 1]}, m2.id: {"0": [2, 3]}}, target

        # m1: keeps [0, 1], gives up 2 and 3, still at its epoch.
        r = m1.heartbeat()
        assert (r["ErrorCode"], r["MemberEpoch"], tasks(r["ActiveTasks"])) == (0, e1, {"0": [0, 1]}), r
        d = members_by_id(describe(sgb.bootstrap, group))[m1.id]
        assert tasks(d["Assignment"]["ActiveTasks"]) == {"0": [0, 1]}, d
        # Without the owned-task lists nothing moves.
        r = m1.heartbeat()
        assert (r["ErrorCode"], r["MemberEpoch"], r["ActiveTasks"]) == (0, e1, None), r
        # m2 still gets nothing while m1 has not released 2 and 3.
        r = m2.heartbeat()
        assert (r["ErrorCode"], r["MemberEpoch"], r["ActiveTasks"]) == (0, e1 + 1, None), r
        # m1 says it owns [0, 1] only: the new epoch, the same tasks (so no task lists).
        r = m1.owned()
        assert (r["ErrorCode"], r["MemberEpoch"], r["ActiveTasks"]) == (0, e1 + 1, None), r
        r = m2.heartbeat()
        assert (r["ErrorCode"], r["MemberEpoch"], tasks(r["ActiveTasks"])) == (0, e1 + 1, {"0": [2, 3]}), r
        assert (r["StandbyTasks"], r["WarmupTasks"]) == ([], []), r
        g = describe(sgb.bootstrap, group)
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"]) == ("Stable", e1 + 1, e1 + 1), g
        assert {m["MemberId"]: (m["MemberEpoch"], tasks(m["Assignment"]["ActiveTasks"])) for m in g["Members"]} == \
            {m1.id: (e1 + 1, {"0": [0, 1]}), m2.id: (e1 + 1, {"0": [2, 3]})}, g

        # Fencing by epoch (doc 3.3 step 2): greater; smaller without the owned tasks.
        r = m2.heartbeat(MemberEpoch=e1 + 5)
        error_response(r, FENCED_MEMBER_EPOCH, f"The streams group member has a greater member epoch ({e1 + 5}) "
                                               f"than the one known by the group coordinator ({e1 + 1}). The member "
                                               f"must abandon all its partitions and rejoin.")
        r = m2.heartbeat(MemberEpoch=e1)
        error_response(r, FENCED_MEMBER_EPOCH, f"The streams group member has a smaller member epoch ({e1}) than "
                                               f"the one known by the group coordinator ({e1 + 1}). The member "
                                               f"must abandon all its partitions and rejoin.")
        # m1's previous epoch with its owned tasks is accepted (a response that got lost).
        r = m1.owned(MemberEpoch=e1)
        assert (r["ErrorCode"], r["MemberEpoch"]) == (0, e1 + 1), r
        # ... but not without them.
        r = m1.heartbeat(MemberEpoch=e1)
        assert r["ErrorCode"] == FENCED_MEMBER_EPOCH, r
    finally:
        m1.close()
        m2.close()


def test_missing_and_mispartitioned_topics(sgb, source_topic, group):
    """Section 14.3 and 4.4-4.5: a topology whose source topic does not exist joins NotReady with
    MISSING_SOURCE_TOPICS (after the initial delay status), gets no tasks and an empty endpoint
    list; more than three missing topics are abbreviated. With an endpoint Kafka 4.4 fails the
    heartbeat with UNKNOWN_SERVER_ERROR and keeps nothing of it (doc 7, open question 1: Fjord may
    instead answer the endpoint with empty lists). A changelog topic that exists with another
    partition count, and a copartition group of topics with different counts, are
    INCORRECTLY_PARTITIONED_TOPICS."""
    missing = f"{group}-missing"
    ensure_coordinator(sgb.bootstrap, group)
    m = Member(sgb.bootstrap, group)
    try:
        r = m.join(topology(sub("0", sources=[missing])))
        assert r["ErrorCode"] == 0 and r["MemberEpoch"] == 1, r
        assert statuses(r) == [(ASSIGNMENT_DELAYED, INITIAL_DELAY_TEXT),
                               (MISSING_SOURCE_TOPICS, f"Source topics {missing} are missing.")], r
        assert (r["ActiveTasks"], r["EndpointInformationEpoch"], r["PartitionsByUserEndpoint"]) == ([], 0, []), r
        g = describe(sgb.bootstrap, group)
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"]) == ("NotReady", 2, 1), g
        # Past the delay: an (empty) assignment at epoch 2, still NotReady, the status stays.
        r = wait_for(lambda: (r := m.heartbeat())["MemberEpoch"] == 2 and r, "the delayed empty assignment", 10)
        assert statuses(r) == [(MISSING_SOURCE_TOPICS, f"Source topics {missing} are missing.")], r
        assert r["ActiveTasks"] is None and m.active == {}, r
        g = describe(sgb.bootstrap, group)
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"]) == ("NotReady", 2, 2), g
        # Not ready: the topology as stored.
        assert g["Topology"]["Subtopologies"][0]["SourceTopics"] == [missing], g
    finally:
        m.close()

    g4 = f"{group}-4"
    ensure_coordinator(sgb.bootstrap, g4)
    m = Member(sgb.bootstrap, g4)
    try:
        r = m.join(topology(sub("0", sources=["zz-" + group, "a-" + group, "b-" + group, "cc-" + group])))
        assert statuses(r)[1] == (MISSING_SOURCE_TOPICS, f"Source topics a-{group}, b-{group}, cc-{group} and 1 "
                                                         f"additional topics are missing."), r
    finally:
        m.close()

    four, two = source_topic(4, suffix="four"), source_topic(2, suffix="two")
    changelog = source_topic(2, suffix="changelog")
    for gid, topo, detail in (
            (f"{group}-changelog", topology(sub("0", sources=[four], changelogs=[changelog])),
             f"Existing topic {changelog} has different number of partitions: expected 4, found 2"),
            (f"{group}-copartition", topology(dict(sub("0", sources=[four, two]),
                                                   CopartitionGroups=[{"SourceTopics": [0, 1]}])),
             f"Following topics do not have the same number of partitions: [{{{four}=4, {two}=2}}]")):
        wait_sources_visible(sgb.bootstrap, gid, [four, two, changelog])
        m = Member(sgb.bootstrap, gid)
        try:
            r = m.join(topo)
            assert r["ErrorCode"] == 0 and statuses(r) == [(ASSIGNMENT_DELAYED, INITIAL_DELAY_TEXT),
                                                          (INCORRECTLY_PARTITIONED_TOPICS, detail)], r
            g = describe(sgb.bootstrap, gid)
            assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"]) == ("NotReady", 2, 1), g
        finally:
            m.close()

    ge = f"{group}-endpoint"
    ensure_coordinator(sgb.bootstrap, ge)
    m = Member(sgb.bootstrap, ge)
    try:
        endpoint = {"Host": "localhost", "Port": 8080}
        r = m.join(topology(sub("0", sources=[missing])), UserEndpoint=endpoint)
        if REFERENCE or r["ErrorCode"] != 0:
            error_response(r, UNKNOWN_SERVER_ERROR, None)
            g = describe(sgb.bootstrap, ge)
            assert (g["ErrorCode"], g["ErrorMessage"]) == (GROUP_ID_NOT_FOUND, f"Group {ge} not found."), g
        else:  # the deviation the doc recommends
            assert r["PartitionsByUserEndpoint"] == [{"UserEndpoint": endpoint, "ActivePartitions": [],
                                                      "StandbyPartitions": []}], r
    finally:
        m.close()


def test_static_membership(sgb, source_topic, group):
    """Section 14.4: a static member (instance i1) gets tasks; a second join of i1, under another
    id or its own, is UNRELEASED_INSTANCE_ID; a heartbeat of i1 under the wrong member id is
    FENCED_INSTANCE_ID, of an unknown instance UNKNOWN_MEMBER_ID. Leaving with -2 keeps the member
    and its tasks (Reconciling); i1 re-joining under a new member id gets the same tasks at once,
    the group epoch unchanged, Stable, and the old id is fenced. A shutdown request shows in every
    response afterwards; leaving with -1 empties the group with both epochs one up."""
    inp = source_topic(4)
    topo = topology(sub("0", sources=[inp]))
    a, r = join_into_assignment(sgb.bootstrap, group, topo, instance_id="i1", process_id="proc")
    b = Member(sgb.bootstrap, group, instance_id="i1", process_id="proc")
    try:
        ea = a.epoch
        all4 = {"0": [0, 1, 2, 3]}
        assert a.active == all4, r
        g = describe(sgb.bootstrap, group)
        assert members_by_id(g)[a.id]["InstanceId"] == "i1", g

        held = (f"cannot join the group because the instance id is owned by {a.id} member.")
        error_response(b.join(topo), UNRELEASED_INSTANCE_ID, f"Static member {b.id} with instance id i1 {held}")
        error_response(a.join(topo), UNRELEASED_INSTANCE_ID, f"Static member {a.id} with instance id i1 {held}")
        error_response(b.heartbeat(MemberEpoch=ea), FENCED_INSTANCE_ID,
                       f"Static member {b.id} with instance id i1 was fenced by member {a.id}.")
        error_response(b.heartbeat(MemberEpoch=ea, InstanceId="i9"), UNKNOWN_MEMBER_ID, "Instance id i9 is unknown.")
        error_response(b.leave(-2, InstanceId="i9"), UNKNOWN_MEMBER_ID, "Instance id i9 is unknown.")
        error_response(b.leave(-2), FENCED_INSTANCE_ID,
                       f"Static member {b.id} with instance id i1 was fenced by member {a.id}.")

        # A temporary leave: the member stays with its tasks, at epoch -2.
        r = a.leave(-2)
        assert (r["ErrorCode"], r["MemberId"], r["MemberEpoch"], r["Status"]) == (0, a.id, -2, []), r
        g = describe(sgb.bootstrap, group)
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"]) == ("Reconciling", ea, ea), g
        [d] = g["Members"]
        assert (d["MemberId"], d["MemberEpoch"], tasks(d["Assignment"]["ActiveTasks"])) == (a.id, -2, all4), d

        # Back under a new member id, same process: the same tasks at once, no rebalance.
        r = b.join(topo)
        assert (r["ErrorCode"], r["MemberId"], r["MemberEpoch"], r["Status"]) == (0, b.id, ea, []), r
        assert tasks(r["ActiveTasks"]) == all4, r
        g = describe(sgb.bootstrap, group)
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"]) == ("Stable", ea, ea), g
        assert [(d["MemberId"], d["InstanceId"], d["MemberEpoch"]) for d in g["Members"]] == [(b.id, "i1", ea)], g
        error_response(a.heartbeat(MemberEpoch=ea), FENCED_INSTANCE_ID,
                       f"Static member {a.id} with instance id i1 was fenced by member {b.id}.")
        error_response(a.heartbeat(MemberEpoch=ea, InstanceId=None), UNKNOWN_MEMBER_ID,
                       f"Member {a.id} is not a member of group {group}.")

        # A shutdown request: every response from then on says who asked.
        shutdown = (SHUTDOWN_APPLICATION, f"Streams group member {b.id} encountered a fatal error and requested a "
                                          f"shutdown for the entire application.")
        r = b.heartbeat(ShutdownApplication=True)
        assert r["ErrorCode"] == 0 and statuses(r) == [shutdown], r
        r = b.heartbeat()
        assert r["ErrorCode"] == 0 and statuses(r) == [shutdown], r

        # A real leave of the last member: Empty, both epochs one up.
        r = b.leave(-1)
        assert (r["ErrorCode"], r["MemberId"], r["MemberEpoch"]) == (0, b.id, -1), r
        g = describe(sgb.bootstrap, group)
        assert (g["GroupState"], g["GroupEpoch"], g["AssignmentEpoch"], g["Members"]) == ("Empty", ea + 1, ea + 1, []), g
        error_response(b.leave(-1, InstanceId=None), UNKNOWN_MEMBER_ID, f"Member {b.id} is not a member of group {group}.")

        # A static member that comes back from another process is new metadata: a rebalance.
        c1, _ = join_into_assignment(sgb.bootstrap, f"{group}-2", topo, instance_id="i1", process_id="proc-1")
        try:
            e = c1.epoch
            assert c1.leave(-2)["ErrorCode"] == 0
            c2 = Member(sgb.bootstrap, f"{group}-2", instance_id="i1", process_id="proc-2")
            try:
                r = c2.join(topo)
                assert r["ErrorCode"] == 0 and tasks(r["ActiveTasks"]) == all4, r
                g = describe(sgb.bootstrap, f"{group}-2")
                assert g["GroupEpoch"] == e + 1, g
                assert members_by_id(g)[c2.id]["ProcessId"] == "proc-2", g
            finally:
                c2.close()
        finally:
            c1.close()
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------------------ wire: refusals

def test_heartbeat_validation_texts(sgb, source_topic, group):
    """Section 3.1 and 4: every request refused before the group is touched, with Kafka's code
    and text, in Kafka's order of checks (the topology's topics before any field, regexes before
    the member id, ...). None of them creates the group."""
    inp = source_topic(2)
    ensure_coordinator(sgb.bootstrap, group)
    good = topology(sub("0", sources=[inp]))
    join = dict(MemberId="m", MemberEpoch=0, EndpointInformationEpoch=-1, RebalanceTimeoutMs=30000, Topology=good,
                ActiveTasks=[], StandbyTasks=[], WarmupTasks=[], ProcessId="p", ClientTags=[])
    later = dict(join, MemberEpoch=5, Topology=None, ActiveTasks=None, StandbyTasks=None, WarmupTasks=None)
    one_task = [{"SubtopologyId": "0", "Partitions": [0]}]

    def t(*subs, epoch=0):
        return topology(*subs, epoch=epoch)

    cases = [
        # (what, base request, changes, code, message)
        ("internal topics, before the member id", join,
         dict(MemberId="", Topology=t(sub("0", sources=["__consumer_offsets", inp, "__transaction_state"]))),
         STREAMS_INVALID_TOPOLOGY,
         "Use of Kafka internal topics __consumer_offsets,__transaction_state in a Kafka Streams topology is prohibited."),
        ("invalid topic names", join, dict(Topology=t(sub("0", sources=["a b", inp, "c/d"]))),
         STREAMS_INVALID_TOPOLOGY, "Topic names a b,c/d are not valid topic names."),
        ("invalid repartition sink name", join, dict(Topology=t(sub("0", sources=[inp], sinks=[".."]))),
         STREAMS_INVALID_TOPOLOGY, "Topic names .. are not valid topic names."),
        ("regex, before the member id", join,
         dict(MemberId="", Topology=t(dict(sub("0", sources=[inp]), SourceTopicRegex=["x.*"]))),
         INVALID_REQUEST, "Regular expressions for source topics are not supported yet."),
        ("blank member id", join, dict(MemberId="  "), INVALID_REQUEST, "MemberId can't be empty."),
        ("member id before group id", join, dict(MemberId="", GroupId=""), INVALID_REQUEST, "MemberId can't be empty."),
        ("blank group id", join, dict(GroupId=" "), INVALID_REQUEST, "GroupId can't be empty."),
        ("blank instance id", join, dict(InstanceId=" "), INVALID_REQUEST, "InstanceId can't be empty."),
        ("empty rack id", join, dict(RackId=""), INVALID_REQUEST, "RackId can't be empty."),
        ("no rebalance timeout on a join", join, dict(RebalanceTimeoutMs=-1), INVALID_REQUEST,
         "RebalanceTimeoutMs must be provided in first request."),
        ("null active tasks on a join", join, dict(ActiveTasks=None), INVALID_REQUEST,
         "ActiveTasks must be empty when (re-)joining."),
        ("active tasks on a join", join, dict(ActiveTasks=one_task), INVALID_REQUEST,
         "ActiveTasks must be empty when (re-)joining."),
        ("null standby tasks on a join", join, dict(StandbyTasks=None), INVALID_REQUEST,
         "StandbyTasks must be empty when (re-)joining."),
        ("warm-up tasks on a join", join, dict(WarmupTasks=one_task), INVALID_REQUEST,
         "WarmupTasks must be empty when (re-)joining."),
        ("no topology on a join", join, dict(Topology=None), INVALID_REQUEST,
         "Topology must be non-null when (re-)joining."),
        ("changelog with partitions", join,
         dict(Topology=t(sub("0", sources=[inp]) | {"StateChangelogTopics": [{"Name": f"{group}-cl", "Partitions": 3}]})),
         STREAMS_INVALID_TOPOLOGY, f"Changelog topic {group}-cl must have an undefined partition count, but it is set to 3."),
        ("-2 without instance id", later, dict(MemberEpoch=-2), INVALID_REQUEST, "InstanceId can't be null."),
        ("epoch -3", later, dict(MemberEpoch=-3), INVALID_REQUEST,
         "MemberEpoch is -3, but must be greater than or equal to -2."),
        ("one task list only", later, dict(ActiveTasks=[]), INVALID_REQUEST,
         "If one task-type is non-null, all must be non-null."),
        ("topology after the join", later, dict(Topology=good), INVALID_REQUEST,
         "Topology can only be provided when (re-)joining."),
        # Configuring the topology (doc 4.4): errors, not statuses.
        ("repartition source never a sink", join,
         dict(Topology=t(sub("0", sources=[inp]), sub("1", rep_sources=[f"{group}-rep"]))), STREAMS_INVALID_TOPOLOGY,
         "Failed to compute number of partitions for all repartition topics, because a repartition source topic is "
         "never used as a sink topic."),
        ("repartition loop", join,
         dict(Topology=t(sub("0", rep_sources=[f"{group}-r1"], sinks=[f"{group}-r2"]),
                         sub("1", rep_sources=[f"{group}-r2"], sinks=[f"{group}-r1"]))), STREAMS_INVALID_TOPOLOGY,
         "Failed to compute number of partitions for all repartition topics. There may be loops in the topology "
         "that cannot be resolved."),
        ("subtopology without sources", join, dict(Topology=t(sub("0", changelogs=[f"{group}-cl"]))),
         STREAMS_INVALID_TOPOLOGY, "No source topics found for subtopology 0"),
        # A negative topology epoch makes Kafka throw (doc 4.1).
        ("negative topology epoch", join, dict(Topology=t(sub("0", sources=[inp]), epoch=-1)),
         UNKNOWN_SERVER_ERROR, None),
    ]
    wrong = []
    with wire.Conn(sgb.bootstrap) as c:
        for what, base, changes, code, message in cases:
            req = dict(base, GroupId=group, **changes) if "GroupId" not in changes else dict(base, **changes)
            r = kmsg.call(c, "StreamsGroupHeartbeat", 1, **req)
            try:
                error_response(r, code, message)
            except AssertionError:
                wrong.append(f"{what}: expected {code} {message!r}, got {r['ErrorCode']} {r['ErrorMessage']!r} ({r})")
    assert not wrong, "\n".join(wrong)
    g = describe(sgb.bootstrap, group)
    assert (g["ErrorCode"], g["ErrorMessage"]) == (GROUP_ID_NOT_FOUND, f"Group {group} not found."), g


def test_heartbeat_refusals_on_an_existing_group(sgb, source_topic, group):
    """Section 3.2-3.3 and 4.1 on a group with a member: topology changes refused (other content,
    or the same with a higher epoch), a member with an older topology accepted but told it is
    stale (and still given tasks), owned tasks that do not exist, duplicate task offsets, unknown
    members and groups (the join and leave paths word it differently), a consumer group's id."""
    inp = source_topic(2)
    ensure_coordinator(sgb.bootstrap, group)
    topo = topology(sub("0", sources=[inp]), epoch=2)
    m1 = Member(sgb.bootstrap, group)
    m2 = Member(sgb.bootstrap, group)
    m3 = Member(sgb.bootstrap, group)
    try:
        assert m1.join(topo)["ErrorCode"] == 0
        e = m1.epoch
        error_response(m2.join(topology(sub("0", sources=[inp], sinks=[f"{group}-rep"]), sub("1", rep_sources=[f"{group}-rep"]), epoch=2)),
                       INVALID_REQUEST, "Topology updates are not supported yet.")
        error_response(m2.join(topology(sub("0", sources=[inp]), epoch=3)),
                       INVALID_REQUEST, "Topology updates are not supported yet.")
        # An older topology (even a different one) is accepted with STALE_TOPOLOGY.
        r = m3.join(topology(sub("0", sources=[inp], sinks=["other"]), epoch=1))
        stale = (STALE_TOPOLOGY, "The member's topology epoch 1 is behind the group's topology epoch 2.")
        assert r["ErrorCode"] == 0 and statuses(r)[0] == stale, r
        assert describe(sgb.bootstrap, group)["Topology"]["Epoch"] == 2
        assert members_by_id(describe(sgb.bootstrap, group))[m3.id]["TopologyEpoch"] == 1

        error_response(m1.heartbeat(ActiveTasks=[{"SubtopologyId": "7", "Partitions": [0]}], StandbyTasks=[],
                                    WarmupTasks=[]), INVALID_REQUEST, "Subtopology 7 does not exist in the topology.")
        error_response(m1.heartbeat(ActiveTasks=[{"SubtopologyId": "0", "Partitions": [2]}], StandbyTasks=[],
                                    WarmupTasks=[]), INVALID_REQUEST,
                       "Task 2 for subtopology 0 is invalid. Number of tasks for this subtopology: 2")
        dup = [{"SubtopologyId": "0", "Partition": 1, "Offset": 5}, {"SubtopologyId": "0", "Partition": 1, "Offset": 6}]
        text = "Task offsets contain a duplicate entry for subtopology 0 and partition 1."
        error_response(m1.heartbeat(TaskOffsets=dup), INVALID_REQUEST, text)
        error_response(m1.heartbeat(TaskEndOffsets=dup), INVALID_REQUEST, text)
        error_response(m1.heartbeat(MemberId="nobody"), UNKNOWN_MEMBER_ID,
                       f"Member nobody is not a member of group {group}.")
        error_response(m1.leave(MemberId="nobody"), UNKNOWN_MEMBER_ID,
                       f"Member nobody is not a member of group {group}.")
        error_response(m1.heartbeat(GroupId=f"{group}-none"), GROUP_ID_NOT_FOUND,
                       f"Streams group {group}-none not found.")
        error_response(m1.leave(GroupId=f"{group}-none"), GROUP_ID_NOT_FOUND, f"Group {group}-none not found.")
        assert m1.epoch == e

        # Both members still get tasks, the stale one included.
        r3 = m3.wait_assigned("the stale member's tasks", allowed={STALE_TOPOLOGY, ASSIGNMENT_DELAYED})
        assert statuses(r3) == [stale], r3
        m1.wait_assigned("m1's tasks")
        assert sorted(m1.active["0"] + m3.active["0"]) == [0, 1], (m1.active, m3.active)
    finally:
        for m in (m1, m2, m3):
            m.close()

    # A consumer group (KIP-848) is not a streams group, for a join, a heartbeat and a leave.
    cg = f"{group}-consumer"
    ensure_coordinator(sgb.bootstrap, cg)
    with wire.Conn(sgb.bootstrap) as c:
        r = kmsg.call(c, "ConsumerGroupHeartbeat", 0, GroupId=cg, MemberId=str(uuid.uuid4()), MemberEpoch=0,
                      RebalanceTimeoutMs=30000, SubscribedTopicNames=[inp], TopicPartitions=[])
        assert r["ErrorCode"] == 0, r
    s = Member(sgb.bootstrap, cg)
    try:
        not_streams = f"Group {cg} is not a streams group."
        error_response(s.join(topology(sub("0", sources=[inp]))), GROUP_ID_NOT_FOUND, not_streams)
        error_response(s.heartbeat(MemberEpoch=1), GROUP_ID_NOT_FOUND, not_streams)
        error_response(s.leave(), GROUP_ID_NOT_FOUND, not_streams)
        g = describe(sgb.bootstrap, cg)
        assert (g["ErrorCode"], g["ErrorMessage"], g["GroupState"], g["Topology"], g["Members"], g["AssignorName"],
                g["TopologyDescriptionStatus"]) == (GROUP_ID_NOT_FOUND, not_streams, "", None, [], None, 0), g
    finally:
        s.close()


# ----------------------------------------------------------------------- wire: offsets and others

def test_offset_commit_and_fetch_rules(sgb, source_topic, group):
    """Section 10.5-10.6 on a Stable two-member group where m1's tasks date from an older epoch
    than m2's: the member's own epoch commits anything; a newer epoch is STALE_MEMBER_EPOCH; an
    older one only for source-topic tasks the member has, assigned at or before that epoch, and
    one bad partition fails the whole request; v8 is UNSUPPORTED_VERSION; an admin commit is
    UNKNOWN_MEMBER_ID while there are members and accepted once the group is empty. OffsetFetch
    as an admin reads them all; as a member, only at its exact epoch. OffsetDelete keeps a source
    topic's offsets (GROUP_SUBSCRIBED_TO_TOPIC) until the group is empty."""
    inp = source_topic(4)
    other = source_topic(1, suffix="other")
    topo = topology(sub("0", sources=[inp]))
    m1, _ = join_into_assignment(sgb.bootstrap, group, topo)
    m2 = Member(sgb.bootstrap, group)
    c = wire.Conn(sgb.bootstrap)
    try:
        e1 = m1.epoch
        assert m2.join(topo)["ErrorCode"] == 0
        # Reconcile to m1 [0, 1] (kept from e1), m2 [2, 3] (assigned at e1 + 1).
        wait_for(lambda: m2.heartbeat()["MemberEpoch"] == e1 + 1, "m2 at the new epoch", 10)
        m1.heartbeat()
        m1.owned()
        m2.heartbeat()
        assert (m1.epoch, m1.active, m2.epoch, m2.active) == (e1 + 1, {"0": [0, 1]}, e1 + 1, {"0": [2, 3]})
        e = e1 + 1

        def commit(member_id, epoch, offsets, topic=inp, version=9):
            return wire.offset_commit(c, version, group, epoch, member_id, topic, offsets)

        # The member's epoch: any partition, any topic.
        assert commit(m1.id, e, {0: 10, 3: 13}) == {0: 0, 3: 0}
        assert commit(m1.id, e, {0: 1}, topic=other) == {0: 0}
        # Newer than the member's: stale.
        assert commit(m1.id, e + 1, {0: 11}) == {0: STALE_MEMBER_EPOCH}
        # Older: m1's task 0-0 was assigned at e1, m2's 0-2 at e.
        assert commit(m1.id, e1, {0: 20, 1: 21}) == {0: 0, 1: 0}
        assert commit(m2.id, e1, {2: 22}) == {2: STALE_MEMBER_EPOCH}
        # ... not a task of the member; not a topic of the topology; one bad partition fails all.
        assert commit(m1.id, e1, {2: 23}) == {2: STALE_MEMBER_EPOCH}
        assert commit(m1.id, e1, {0: 24}, topic=other) == {0: STALE_MEMBER_EPOCH}
        assert commit(m1.id, e1, {0: 25, 2: 26}) == {0: STALE_MEMBER_EPOCH, 2: STALE_MEMBER_EPOCH}
        # Before v9 a member cannot commit.
        assert commit(m1.id, e, {0: 27}, version=8) == {0: UNSUPPORTED_VERSION}
        # An admin commit while the group has members, and an unknown member.
        assert commit("", -1, {0: 28}) == {0: UNKNOWN_MEMBER_ID}
        assert commit("nobody", e, {0: 29}) == {0: UNKNOWN_MEMBER_ID}

        fetched = wire.offset_fetch(c, 9, {group: None})[group]
        assert fetched[0] == 0 and {k: v[0] for k, v in fetched[1].items()} == {
            (inp, 0): 20, (inp, 1): 21, (inp, 3): 13, (other, 0): 1}, fetched

        def member_fetch(member_id, epoch):
            r = kmsg.call(c, "OffsetFetch", 9, Groups=[{"GroupId": group, "MemberId": member_id, "MemberEpoch": epoch,
                                                         "Topics": [{"Name": inp, "PartitionIndexes": [0, 1]}]}])
            return r["Groups"][0]["ErrorCode"], {p["PartitionIndex"]: p["CommittedOffset"]
                                                 for t in r["Groups"][0]["Topics"] for p in t["Partitions"]}

        assert member_fetch(m1.id, e) == (0, {0: 20, 1: 21})
        assert member_fetch(m1.id, e1)[0] == STALE_MEMBER_EPOCH
        assert member_fetch("nobody", e)[0] == UNKNOWN_MEMBER_ID

        # OffsetDelete (10.7): a source topic's offsets stay while the group has members.
        def offset_delete(topics):
            r = kmsg.call(c, "OffsetDelete", 0, GroupId=group,
                          Topics=[{"Name": t, "Partitions": [{"PartitionIndex": p}]} for t, p in topics])
            assert r["ErrorCode"] == 0, r
            return {(t["Name"], p["PartitionIndex"]): p["ErrorCode"] for t in r["Topics"] for p in t["Partitions"]}

        assert offset_delete([(inp, 3), (other, 0)]) == {(inp, 3): GROUP_SUBSCRIBED_TO_TOPIC, (other, 0): 0}
        assert set(wire.offset_fetch(c, 9, {group: None})[group][1]) == {(inp, 0), (inp, 1), (inp, 3)}

        # Once the group is empty, the admin's commit goes through, and so does OffsetDelete.
        assert m1.leave()["ErrorCode"] == 0 and m2.leave()["ErrorCode"] == 0
        assert commit("", -1, {0: 30}) == {0: 0}
        assert wire.offset_fetch(c, 9, {group: {inp: [0]}})[group][1][(inp, 0)][0] == 30
        assert offset_delete([(inp, 3)]) == {(inp, 3): 0}
        assert set(wire.offset_fetch(c, 9, {group: None})[group][1]) == {(inp, 0), (inp, 1)}
    finally:
        c.close()
        m1.close()
        m2.close()


def test_other_group_apis_meet_a_streams_group(sgb, source_topic, group):
    """Sections 2.3, 10.1-10.4, 9 and 8: ListGroups lists a streams group with type and protocol
    type `streams` and its state, type filters ignore case, and of the state filters `NotReady`
    (what Kafka's Admin sends) matches nothing while `not_ready`/`NOT_READY` do; DescribeGroups
    answers Dead (v6: GROUP_ID_NOT_FOUND "not a classic group"); DeleteGroups refuses a non-empty
    group with NON_EMPTY_GROUP; JoinGroup on it is INCONSISTENT_GROUP_PROTOCOL with member "";
    ConsumerGroupHeartbeat/Describe: "not a consumer group"; TopologyDescriptionUpdate: no plugin.
    StreamsGroupDescribe of "" and of a missing group. An empty classic group (offsets only) turns
    into a streams group on a join and keeps its offsets; deleting the empty streams group drops
    them."""
    inp = source_topic(2)
    ensure_coordinator(sgb.bootstrap, group)
    ready = Member(sgb.bootstrap, group)
    not_ready = Member(sgb.bootstrap, f"{group}-nr")
    c = wire.Conn(sgb.bootstrap)
    try:
        assert ready.join(topology(sub("0", sources=[inp])))["ErrorCode"] == 0
        assert not_ready.join(topology(sub("0", sources=[f"{group}-missing"])))["ErrorCode"] == 0
        listed = list_groups(sgb.bootstrap, group)
        assert listed == {
            group: {"GroupId": group, "ProtocolType": "streams", "GroupState": "Assigning", "GroupType": "streams"},
            f"{group}-nr": {"GroupId": f"{group}-nr", "ProtocolType": "streams", "GroupState": "NotReady",
                            "GroupType": "streams"}}, listed
        assert set(list_groups(sgb.bootstrap, group, types=["Streams"])) == {group, f"{group}-nr"}
        assert list_groups(sgb.bootstrap, group, types=["consumer", "classic"]) == {}
        assert list_groups(sgb.bootstrap, group, states=["NotReady"]) == {}
        for spelling in ("not_ready", "NOT_READY"):
            assert set(list_groups(sgb.bootstrap, group, states=[spelling])) == {f"{group}-nr"}, spelling
        assert set(list_groups(sgb.bootstrap, group, states=["assigning"], types=["streams"])) == {group}
        # v4: no type, the state still there.
        assert list_groups(sgb.bootstrap, group, states=["not_ready"], version=4) == {
            f"{group}-nr": {"GroupId": f"{group}-nr", "ProtocolType": "streams", "GroupState": "NotReady"}}

        d = wire.describe_groups(c, 5, [group])[group]
        assert (d.error_code, d.state, d.protocol_type, d.members) == (0, "Dead", "", []), d
        r = kmsg.call(c, "DescribeGroups", 6, Groups=[group])["Groups"][0]
        assert (r["ErrorCode"], r["ErrorMessage"], r["GroupState"]) == \
            (GROUP_ID_NOT_FOUND, f"Group {group} is not a classic group.", "Dead"), r

        r = kmsg.call(c, "DeleteGroups", 2, GroupsNames=[group])
        assert r["Results"] == [{"GroupId": group, "ErrorCode": NON_EMPTY_GROUP}], r

        j = wire.join_group(c, 9, group, member_id="", protocols=[("range", wire.consumer_subscription([inp]))])
        assert (j.error_code, j.member_id) == (INCONSISTENT_GROUP_PROTOCOL, ""), j
        j = wire.join_group(c, 9, group, member_id="someone", protocols=[("range", wire.consumer_subscription([inp]))])
        assert (j.error_code, j.member_id) == (INCONSISTENT_GROUP_PROTOCOL, ""), j

        r = kmsg.call(c, "ConsumerGroupHeartbeat", 0, GroupId=group, MemberId=str(uuid.uuid4()), MemberEpoch=0,
                      RebalanceTimeoutMs=30000, SubscribedTopicNames=[inp], TopicPartitions=[])
        assert (r["ErrorCode"], r["ErrorMessage"]) == (GROUP_ID_NOT_FOUND, f"Group {group} is not a consumer group."), r
        r = kmsg.call(c, "ConsumerGroupDescribe", 0, GroupIds=[group])["Groups"][0]
        assert (r["ErrorCode"], r["ErrorMessage"]) == (GROUP_ID_NOT_FOUND, f"Group {group} is not a consumer group."), r

        r = kmsg.call(c, "StreamsGroupTopologyDescriptionUpdate", 0, GroupId=group, MemberId=ready.id, TopologyEpoch=0)
        assert (r["ErrorCode"], r["ErrorMessage"]) == \
            (UNSUPPORTED_VERSION, "The broker has no streams group topology description plugin configured."), r

        # Answered per coordinator: the order of the entries is not the request's.
        r = kmsg.call(c, "StreamsGroupDescribe", 1, GroupIds=["", f"{group}-none", group])
        by_id = {g["GroupId"]: g for g in r["Groups"]}
        assert len(by_id) == 3, r
        blank, none, found = by_id[""], by_id[f"{group}-none"], by_id[group]
        assert (blank["GroupId"], blank["ErrorCode"], blank["ErrorMessage"]) == ("", INVALID_GROUP_ID, None), blank
        assert (none["GroupId"], none["ErrorCode"], none["ErrorMessage"], none["GroupState"], none["Topology"],
                none["AuthorizedOperations"], none["AssignorName"]) == \
            (f"{group}-none", GROUP_ID_NOT_FOUND, f"Group {group}-none not found.", "", None, NO_OPERATIONS, None), none
        assert (found["GroupId"], found["ErrorCode"], found["GroupState"]) == (group, 0, "Assigning"), found

        # An empty classic group with offsets becomes a streams group and keeps them.
        simple = f"{group}-simple"
        ensure_coordinator(sgb.bootstrap, simple)
        assert wire.offset_commit(c, 9, simple, -1, "", inp, {0: 7}) == {0: 0}
        assert list_groups(sgb.bootstrap, simple)[simple]["GroupType"] == "classic"
        s = Member(sgb.bootstrap, simple)
        try:
            assert s.join(topology(sub("0", sources=[inp])))["ErrorCode"] == 0
            assert list_groups(sgb.bootstrap, simple)[simple]["GroupType"] == "streams"
            assert wire.offset_fetch(c, 9, {simple: None})[simple] == (0, {(inp, 0): (7, "", 0)})
            assert s.leave()["ErrorCode"] == 0
        finally:
            s.close()
        assert list_groups(sgb.bootstrap, simple)[simple]["GroupState"] == "Empty"
        r = kmsg.call(c, "DeleteGroups", 2, GroupsNames=[simple])
        assert r["Results"] == [{"GroupId": simple, "ErrorCode": 0}], r
        assert wire.offset_fetch(c, 9, {simple: None})[simple] == (0, {})
        assert simple not in list_groups(sgb.bootstrap, simple)
        g = describe(sgb.bootstrap, simple)
        assert (g["ErrorCode"], g["ErrorMessage"]) == (GROUP_ID_NOT_FOUND, f"Group {simple} not found."), g
    finally:
        c.close()
        ready.close()
        not_ready.close()


# ------------------------------------------------------------------------ the admin tool (Kafka's)

def streams_groups_tools(bootstrap: str, *calls: list) -> list[str]:
    """kafka-streams-groups.sh (kafka-tools 4.4.0), one JVM per call, all at once; each must exit
    0. Their stdout + stderr, in order."""
    procs = [(args, subprocess.Popen(["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", JAVA_CLASSPATH,
                                      "org.apache.kafka.tools.streams.StreamsGroupCommand", "--bootstrap-server",
                                      bootstrap, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)) for args in calls]
    outs = []
    for args, p in procs:
        out, _ = p.communicate(timeout=90)
        assert p.returncode == 0, f"kafka-streams-groups {' '.join(map(str, args))}: exit {p.returncode}\n{out[-4000:]}"
        outs.append(out)
    return outs


def streams_groups_tool(bootstrap: str, *args) -> str:
    return streams_groups_tools(bootstrap, list(args))[0]


def rows(text: str, first: str) -> list[dict]:
    """The rows of a space-aligned table whose header starts with `first` (cells hold no spaces,
    except ASSIGNMENTS, the last column, which takes the rest of the line)."""
    out, header = [], None
    for line in text.splitlines():
        cells = line.split()
        if not cells:
            header = None
        elif cells[0] == first:
            header = cells
        elif header is not None:
            n = len(header)
            if len(cells) >= n:
                out.append(dict(zip(header, cells[:n - 1] + [" ".join(cells[n - 1:])])))
    return out


def test_kafka_streams_groups_tool(sgb, source_topic, group):
    """kafka-streams-groups.sh from Kafka 4.4 on a live group of one raw member that committed
    offsets: --describe --members --verbose (epochs, process, client id, tasks) and --describe
    --offsets --verbose (committed offset, log end, lag); after the member left, --reset-offsets
    --to-offset --execute (an admin OffsetCommit), --delete-offsets and --delete, each checked
    with OffsetFetch and describe. (The tool's --list is ListGroups with the streams type filter,
    and its refusals DeleteGroups' codes: both covered on the wire above; a JVM per call costs a
    second or two.)"""
    inp = source_topic(2)
    p = Producer({"bootstrap.servers": sgb.bootstrap})
    for partition, n in ((0, 4), (1, 6)):
        for i in range(n):
            p.produce(inp, partition=partition, value=f"v{i}".encode())
    assert p.flush(30) == 0
    m, _ = join_into_assignment(sgb.bootstrap, group, topology(sub("0", sources=[inp])), process_id="proc-tool")
    try:
        with wire.Conn(sgb.bootstrap) as c:
            assert wire.offset_commit(c, 9, group, m.epoch, m.id, inp, {0: 3, 1: 5}) == {0: 0, 1: 0}
        out, offsets_out = streams_groups_tools(sgb.bootstrap,
                                                ["--describe", "--group", group, "--members", "--verbose"],
                                                ["--describe", "--group", group, "--offsets", "--verbose"])
        [row] = [r for r in rows(out, "GROUP") if r["GROUP"] == group]
        assert {k: row[k] for k in ("TARGET-ASSIGNMENT-EPOCH", "TOPOLOGY-EPOCH", "MEMBER", "MEMBER-PROTOCOL",
                                    "MEMBER-EPOCH", "PROCESS", "CLIENT-ID")} == {
            "TARGET-ASSIGNMENT-EPOCH": str(m.epoch), "TOPOLOGY-EPOCH": "0", "MEMBER": m.id,
            "MEMBER-PROTOCOL": "streams", "MEMBER-EPOCH": str(m.epoch), "PROCESS": "proc-tool",
            "CLIENT-ID": "fjord-compat-wire"}, out
        assert row["ASSIGNMENTS"].split() == ["ACTIVE:", "0:[0,1];", "TARGET-ACTIVE:", "0:[0,1];"], out

        got = {(r["TOPIC"], r["PARTITION"]): (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["OFFSET-LAG"])
               for r in rows(offsets_out, "GROUP") if r["GROUP"] == group}
        assert got == {(inp, "0"): ("3", "4", "1"), (inp, "1"): ("5", "6", "1")}, offsets_out

        assert m.leave()["ErrorCode"] == 0
    finally:
        m.close()
    out = streams_groups_tool(sgb.bootstrap, "--reset-offsets", "--group", group, "--input-topic", inp,
                              "--to-offset", "1", "--execute")
    assert {(r["TOPIC"], r["PARTITION"], r["NEW-OFFSET"]) for r in rows(out, "GROUP") if r["GROUP"] == group} == \
        {(inp, "0", "1"), (inp, "1", "1")}, out
    with wire.Conn(sgb.bootstrap) as c:
        assert wire.offset_fetch(c, 9, {group: None})[group] == (0, {(inp, 0): (1, "", 0), (inp, 1): (1, "", 0)})

    out = streams_groups_tool(sgb.bootstrap, "--delete-offsets", "--group", group, "--input-topic", inp)
    assert {(r["TOPIC"], r["PARTITION"], r["STATUS"]) for r in rows(out, "TOPIC")} == \
        {(inp, "0", "Successful"), (inp, "1", "Successful")}, out
    with wire.Conn(sgb.bootstrap) as c:
        assert wire.offset_fetch(c, 9, {group: None})[group] == (0, {})

    out = streams_groups_tool(sgb.bootstrap, "--delete", "--group", group)
    assert f"Deletion of requested streams groups ('{group}') was successful." in out, out
    g = describe(sgb.bootstrap, group)
    assert (g["ErrorCode"], g["ErrorMessage"]) == (GROUP_ID_NOT_FOUND, f"Group {group} not found."), g


# ------------------------------------------------------------------- a Kafka Streams application

def start_instance(tmp_path, bootstrap, app_id, inp, out, name, port) -> LoggedLineProc:
    cmd = [*APP_JAVA, "dev.fjord.compat.Streams", "--bootstrap", bootstrap, "--app-id", app_id, "--input", inp,
           "--output", out, "--state-dir", str(tmp_path / f"state-{name}"),
           "-X", "group.protocol=streams", "-X", f"client.id={app_id}-{name}",
           "-X", f"application.server=localhost:{port}"]
    return LoggedLineProc(cmd, f"instance {name}", tmp_path / f"streams-{name}.log")


def wait_exact_counts(bootstrap, topic, expected: dict[str, str], apps, timeout_s=60):
    """Polls the output (read_committed) until its latest count per word is `expected`."""
    latest = {}

    def exact():
        nonlocal latest
        for a in apps:
            assert a.proc.poll() is None, f"{a.name} exited {a.proc.returncode}; last lines {a.lines[-5:]}"
            errors = [d for d in a.lines if "error" in d]
            assert not errors, f"{a.name}: {errors}"
        latest, history = latest_committed(bootstrap, topic)
        return history if latest == expected else None

    try:
        return wait_for(exact, "the exact word counts in the output", timeout_s=timeout_s, interval_s=0.3)
    except AssertionError as e:
        missing = {w: (c, latest.get(w)) for w, c in expected.items() if latest.get(w) != c}
        raise AssertionError(f"{e}; (expected, latest) where they differ: {missing}; "
                             f"extra: {set(latest) - set(expected)}") from None


def iq_view(app: LoggedLineProc) -> dict[int, list[str]] | None:
    """What the instance's KafkaStreams.metadataForAllStreamsClients() says: port -> its active
    topic partitions ("topic-p")."""
    app.send("metadata")
    d = app.wait_for(lambda d: d.get("event") == "metadata", "the IQ metadata", timeout_s=10)
    if "unavailable" in d:
        return None
    assert all(c["host"] == "localhost" and c["standby"] == [] for c in d["clients"]), d
    return {c["port"]: c["active"] for c in d["clients"]}


def processed(app: LoggedLineProc) -> set[str]:
    return {d["key"] for d in app.lines if d.get("event") == "line"}


@pytest.mark.timeout(180)
def test_kafka_streams_app_two_instances_then_one(sgb, new_topic, tmp_path):
    """A Kafka Streams 4.4 word count (exactly-once, a repartition topic, a RocksDB store) with
    group.protocol=streams, two instances. The broker creates the internal topics; each instance
    gets one task of each subtopology, the broker's describe and each instance's Interactive
    Queries view agree on who has what, each processes exactly the lines of its input partition,
    and the counts are exact. One instance closes cleanly (a leave): the other takes over every
    task, its IQ view follows, it processes every new line, and the totals stay exact (never going
    back). Then the tool deletes the empty group."""
    check_built("kafka-streams-*.jar", "Kafka Streams")
    rng = random.Random(1071)
    inp = new_topic(sgb, partitions=2)
    out = new_topic(sgb, partitions=2, suffix="counts")
    app_id = f"sg-wordcount-{uuid.uuid4().hex[:8]}"
    # Kafka Streams gives up on source topics still missing two heartbeats after its join.
    wait_sources_visible(sgb.bootstrap, app_id, [inp])
    repartition, changelog = f"{app_id}-words-repartition", f"{app_id}-counts-changelog"
    batches = [make_lines(rng, 30) for _ in range(3)]
    first = [0, 30, 60]
    logs = [tmp_path / "streams-a.log", tmp_path / "streams-b.log"]
    produce_lines(sgb.bootstrap, inp, batches[0], first[0])
    apps: list[LoggedLineProc] = []
    with logs_on_failure(*logs):
        try:
            a = start_instance(tmp_path, sgb.bootstrap, app_id, inp, out, "a", 7001)
            b = start_instance(tmp_path, sgb.bootstrap, app_id, inp, out, "b", 7002)
            apps += [a, b]
            for x in apps:
                x.wait_for(lambda d: d.get("to") == "RUNNING", "state RUNNING", timeout_s=90)

            # Both members with one task of each subtopology, reconciled.
            def split_evenly():
                g = describe(sgb.bootstrap, app_id)
                ms = {m["ClientId"]: m for m in g["Members"]}
                if g["GroupState"] != "Stable" or len(ms) != 2:
                    return None
                return {name: tasks(ms[f"{app_id}-{name}-StreamThread-1-consumer"]["Assignment"]["ActiveTasks"])
                        for name in ("a", "b")}, g

            owners, g = wait_for(split_evenly, "both instances in the group, Stable", timeout_s=30, interval_s=0.2)
            assert all(len(t) == 2 and all(len(ps) == 1 for ps in t.values()) for t in owners.values()), owners
            assert sorted(owners["a"]["0"] + owners["b"]["0"]) == [0, 1], owners
            assert sorted(owners["a"]["1"] + owners["b"]["1"]) == [0, 1], owners
            assert all(m["UserEndpoint"] == {"Host": "localhost", "Port": port} for m, port in
                       zip(sorted(g["Members"], key=lambda m: m["ClientId"]), (7001, 7002))), g["Members"]
            # The internal topics the broker made (Streams does not create them with this protocol).
            topics = existing_topics(sgb.bootstrap)
            assert (topics.get(repartition), topics.get(changelog)) == (2, 2), topics
            assert topic_configs(sgb.bootstrap, changelog).get("cleanup.policy") == "compact"
            rp = topic_configs(sgb.bootstrap, repartition)
            assert (rp.get("cleanup.policy"), rp.get("retention.ms")) == ("delete", "-1"), rp

            def view_of(t):
                return sorted([f"{inp}-{p}" for p in t.get("0", [])] + [f"{repartition}-{p}" for p in t.get("1", [])])

            expected_view = {7001: view_of(owners["a"]), 7002: view_of(owners["b"])}
            for x in apps:
                wait_for(lambda: iq_view(x) == expected_view, f"{x.name}'s IQ view {expected_view}", timeout_s=15)

            counts = word_counts(batches[0])
            wait_exact_counts(sgb.bootstrap, out, {w: str(n) for w, n in counts.items()}, apps)

            # Batch 2 while both run: each instance processes exactly its partition's lines.
            seen = {x.name: processed(x) for x in apps}
            produce_lines(sgb.bootstrap, inp, batches[1], first[1])
            counts += word_counts(batches[1])
            wait_exact_counts(sgb.bootstrap, out, {w: str(n) for w, n in counts.items()}, apps)
            partition_of = {r.key: r.partition for r in read_confluent(sgb.bootstrap, inp, "read_uncommitted")}
            keys1 = {f"line-{i}" for i in range(first[1], first[1] + len(batches[1]))}
            for x, name in ((a, "a"), (b, "b")):
                mine = {k for k in keys1 if partition_of[k] in owners[name]["0"]}
                assert mine, f"no line of the second batch went to {name}'s partition"
                assert processed(x) - seen[x.name] == mine, (name, sorted(processed(x) - seen[x.name]), sorted(mine))

            # b closes cleanly: a leave, and a takes every task.
            epoch_before = describe(sgb.bootstrap, app_id)["GroupEpoch"]
            b.send("stop")
            assert b.wait_for(lambda d: d.get("event") == "closed", "closed", timeout_s=40)["clean"] == "true"
            assert b.proc.wait(30) == 0

            def a_alone():
                g = describe(sgb.bootstrap, app_id)
                return g if g["GroupState"] == "Stable" and len(g["Members"]) == 1 else None

            g = wait_for(a_alone, "a alone in the group, Stable", timeout_s=30, interval_s=0.2)
            [m] = g["Members"]
            assert m["ClientId"] == f"{app_id}-a-StreamThread-1-consumer", m
            assert tasks(m["Assignment"]["ActiveTasks"]) == {"0": [0, 1], "1": [0, 1]}, m
            assert g["GroupEpoch"] > epoch_before, g
            wait_for(lambda: iq_view(a) == {7001: view_of({"0": [0, 1], "1": [0, 1]})}, "a's IQ view of itself alone",
                     timeout_s=15)

            seen_a = processed(a)
            produce_lines(sgb.bootstrap, inp, batches[2], first[2])
            counts += word_counts(batches[2])
            history = wait_exact_counts(sgb.bootstrap, out, {w: str(n) for w, n in counts.items()}, [a])
            keys2 = {f"line-{i}" for i in range(first[2], first[2] + len(batches[2]))}
            assert processed(a) - seen_a == keys2, sorted(processed(a) - seen_a)
            for word, values in history.items():
                nums = [int(v) for v in values]
                assert nums == sorted(nums), f"{word}: counts went back in the output: {nums}"

            a.send("stop")
            assert a.wait_for(lambda d: d.get("event") == "closed", "closed", timeout_s=40)["clean"] == "true"
            wait_for(lambda: describe(sgb.bootstrap, app_id)["GroupState"] == "Empty", "the group Empty", timeout_s=10)
            assert describe(sgb.bootstrap, app_id)["Members"] == []
        finally:
            for x in apps:
                x.kill9()

    # The empty group, deleted by the tool (deleteStreamsGroups); its offsets go with it.
    out_text = streams_groups_tool(sgb.bootstrap, "--delete", "--group", app_id)
    assert f"Deletion of requested streams groups ('{app_id}') was successful." in out_text, out_text
    g = describe(sgb.bootstrap, app_id)
    assert g["ErrorCode"] == GROUP_ID_NOT_FOUND, g
    with wire.Conn(sgb.bootstrap) as c:
        assert wire.offset_fetch(c, 9, {app_id: None})[app_id] == (0, {})
