"""Consumer groups across a broker crash: committed offsets (with their metadata) and the groups
themselves survive kill -9 and a restart, new members resume from the committed offsets, and a
member that stays up through the crash carries on without a gap.

The broker is this test's own (GROUP_OVERRIDES), killed with SIGKILL and started again on the
same log dir and port.
"""

from __future__ import annotations

import pytest

from clientlib import java
from conftest import group_overrides, wait_for
from grouplib import (COMMIT_METADATA_SUFFIX, Log, assert_read_everything, assert_resumed_from, committed_offsets,
                      forget, simple_commit, start_member, wait_committed, wait_stable)

pytestmark = pytest.mark.restart

PARTITIONS = 6


def test_committed_offsets_and_groups_survive_kill_9(own_broker, new_topic):
    """Three groups, then SIGKILL and a restart:
    - `simple`: offsets committed by an assign()-mode consumer (kafka-python), partly behind the end;
    - `kip848`: a KIP-848 group (Java, group.protocol=consumer) that read everything and left;
    - `live`: a classic confluent-kafka member that keeps running through the crash.
    Afterwards every committed offset and its metadata is back, the groups are described as they
    were (type, state), a Java classic member resumes `simple` exactly from its offsets, a
    confluent-kafka KIP-848 member resumes `kip848` from the end, and the live member reads the
    new records without a gap."""
    b = own_broker(**group_overrides(**{"auto.create.topics.enable": "false"}))
    topic = new_topic(b, partitions=PARTITIONS)
    log = Log(b.bootstrap, topic, PARTITIONS)
    log.produce("a", 5)
    simple, kip848, live = f"{topic}-simple", f"{topic}-kip848", f"{topic}-live"
    members = []
    try:
        partial = {p: (p * 2) % 6 for p in range(PARTITIONS)}
        simple_commit("kafka-python", b.bootstrap, simple, topic, partial, "partial ✓")

        reader = start_member("kip848-1", "java", b.bootstrap, topic, kip848, protocol="consumer", metadata="kip-848")
        members.append(reader)
        wait_stable([reader], PARTITIONS, b.bootstrap, kip848, topic, "the KIP-848 member's assignment", timeout_s=60)
        wait_committed(b.bootstrap, kip848, log, [reader])
        reader.close()

        stayer = start_member("live-1", "confluent", b.bootstrap, topic, live, metadata="live")
        members.append(stayer)
        wait_stable([stayer], PARTITIONS, b.bootstrap, live, topic, "the live member's assignment")
        wait_committed(b.bootstrap, live, log, [stayer])

        before = {g: committed_offsets(b.bootstrap, g, topic) for g in (simple, kip848, live)}
        assert before[simple] == {p: (o, "partial ✓") for p, o in partial.items()}
        assert before[kip848] == {p: (5, "kip-848") for p in range(PARTITIONS)}
        assert before[live] == {p: (5, "live" + COMMIT_METADATA_SUFFIX["confluent"]) for p in range(PARTITIONS)}

        b.kill()
        forget(b.bootstrap)
        b.start()

        for g in (simple, kip848, live):
            wait_for(lambda: committed_offsets(b.bootstrap, g, topic) == before[g],
                     f"{g}'s committed offsets after the restart", timeout_s=30)
        (d,) = java("admin-describe-groups", "--bootstrap", b.bootstrap, "--group", kip848)
        assert (d["type"], d["state"], d["members"]) == ("Consumer", "Empty", []), d
        (d,) = java("admin-describe-groups", "--bootstrap", b.bootstrap, "--group", simple)
        assert (d["type"], d["state"], d["members"]) == ("Classic", "Empty", []), d

        ends = log.ends()
        log.produce("b", 5)
        resumer = start_member("simple-1", "java", b.bootstrap, topic, simple)
        members.append(resumer)
        kip_resumer = start_member("kip848-2", "confluent", b.bootstrap, topic, kip848, protocol="consumer")
        members.append(kip_resumer)
        wait_stable([resumer], PARTITIONS, b.bootstrap, simple, topic, "a new member of the simple group", timeout_s=60)
        wait_stable([kip_resumer], PARTITIONS, b.bootstrap, kip848, topic, "a new member of the KIP-848 group",
                    timeout_s=60)
        for g, m in ((simple, resumer), (kip848, kip_resumer), (live, stayer)):
            wait_committed(b.bootstrap, g, log, [m], timeout_s=45)
        assert_resumed_from([resumer], {resumer.name: 0}, partial)
        assert_resumed_from([kip_resumer], {kip_resumer.name: 0}, ends)
        assert_read_everything([stayer], log)
        print(f"\nthe live member through the crash: {[(e.ev, e.data) for e in stayer.snapshot() if e.ev != 'rec']}")
    finally:
        for m in members:
            m.kill()
