"""Feature flags (KIP-584): the levels a new cluster finalizes, as ApiVersions reports them to
`kafka-features.sh describe` (org.apache.kafka.tools.FeatureCommand from kafka-tools 4.4.0), and
UpdateFeatures through the same tool: upgrade, downgrade, disable, --dry-run, and Kafka's
refusals with their messages; and the Java producer following the finalized transaction version.
Each test has a broker of its own, since levels are cluster-wide. Runs on Kafka too.
"""
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import Broker, wait_for
from eoslib import Conn, TxnSession, read_java

JAVA_DIR = Path(__file__).resolve().parent / "java"


@pytest.fixture
def feat_broker():
    b = Broker(f"features-{uuid.uuid4().hex[:6]}")
    b.start()
    try:
        yield b
    finally:
        b.cleanup(False)


def features_tool(bootstrap, *args):
    """kafka-features.sh: (exit code, stdout + stderr)."""
    cp = f"{JAVA_DIR}/target/classes:{JAVA_DIR}/target/lib/*"
    p = subprocess.run(["java", "-cp", cp, "org.apache.kafka.tools.FeatureCommand", "--bootstrap-server", bootstrap,
                        *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def describe(bootstrap) -> dict:
    """{feature: (supported min, supported max, finalized level)} from `describe`."""
    rc, out = features_tool(bootstrap, "describe")
    assert rc == 0, out
    found = {}
    for m in re.finditer(r"Feature: (\S+)\s+SupportedMinVersion: (\S+)\s+SupportedMaxVersion: (\S+)\s+"
                         r"FinalizedVersionLevel: (\S+)", out):
        found[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    assert found, out
    return found


@pytest.mark.kafka_min_version("4.4", reason="the levels are Kafka 4.4's: 4.1.1 supports and finalizes "
                                           "metadata.version up to 4.1-IV1, not 4.4-IV2")
def test_a_new_cluster_finalizes_kafka_4_4s_defaults(feat_broker):
    """What Kafka 4.4's storage format finalizes by default, and what the broker supports."""
    found = describe(feat_broker.bootstrap)
    assert found["metadata.version"] == ("3.3-IV3", "4.4-IV2", "4.4-IV2"), found
    assert found["transaction.version"] == ("0", "2", "2"), found
    assert found["group.version"] == ("0", "1", "1"), found
    assert found["kraft.version"][:2] == ("0", "1"), found


def test_upgrade_downgrade_and_refusals(feat_broker):
    """UpdateFeatures as the tool sends it (v2): a safe downgrade and an upgrade back; a dry run
    changes nothing; a level past the supported range, a downgrade sent as an upgrade and an
    upgrade sent as a downgrade are refused with Kafka's messages, and nothing of a refused
    request is applied."""
    b = feat_broker.bootstrap
    rc, out = features_tool(b, "downgrade", "--feature", "transaction.version=1")
    assert rc == 0, out
    assert "transaction.version was downgraded to 1." in out, out
    wait_for(lambda: describe(b)["transaction.version"][2] == "1", "transaction.version 1", timeout_s=15)

    rc, out = features_tool(b, "upgrade", "--feature", "transaction.version=2", "--dry-run")
    assert rc == 0, out
    assert describe(b)["transaction.version"][2] == "1", "a dry run applies nothing"

    rc, out = features_tool(b, "upgrade", "--feature", "transaction.version=2")
    assert rc == 0, out
    wait_for(lambda: describe(b)["transaction.version"][2] == "2", "transaction.version 2", timeout_s=15)

    rc, out = features_tool(b, "upgrade", "--feature", "transaction.version=3")
    assert rc != 0, out
    assert "Invalid update version 3 for feature transaction.version." in out, out
    assert "only supports versions 0-2" in out, out

    rc, out = features_tool(b, "upgrade", "--feature", "transaction.version=1")
    assert rc != 0, out
    assert ("Can't downgrade the version of this feature without setting the upgrade type to either safe or "
            "unsafe downgrade.") in out, out

    rc, out = features_tool(b, "downgrade", "--feature", "transaction.version=0", "--feature", "group.version=2")
    assert rc != 0, out
    assert "Invalid update version 2 for feature group.version." in out, out
    found = describe(b)
    assert found["transaction.version"][2] == "2" and found["group.version"][2] == "1", \
        f"a refused request applies nothing: {found}"


def test_disable_and_enable_again(feat_broker):
    """`disable` finalizes level 0 (the feature leaves ApiVersions' finalized list, and describe
    shows 0); upgrading brings it back."""
    b = feat_broker.bootstrap
    rc, out = features_tool(b, "disable", "--feature", "transaction.version")
    assert rc == 0, out
    wait_for(lambda: describe(b)["transaction.version"][2] == "0", "transaction.version disabled", timeout_s=15)
    rc, out = features_tool(b, "upgrade", "--feature", "transaction.version=2")
    assert rc == 0, out
    wait_for(lambda: describe(b)["transaction.version"][2] == "2", "transaction.version 2 again", timeout_s=15)


@pytest.mark.parametrize("tv", [0, 2])
def test_the_java_producer_follows_the_finalized_transaction_version(feat_broker, new_topic, tv):
    """transaction.version 2 (KIP-890) as the Java 4.4 producer uses it: every transaction ends
    under a bumped epoch, so each one's batches carry the next epoch; at 0 the producer keeps its
    epoch across transactions (and adds partitions with AddPartitionsToTxn). Either way a
    read_committed consumer reads every committed record and none of the aborted one."""
    b = feat_broker.bootstrap
    if tv != 2:
        rc, out = features_tool(b, "downgrade", "--feature", f"transaction.version={tv}")
        assert rc == 0, out
        wait_for(lambda: describe(b)["transaction.version"][2] == str(tv), f"transaction.version {tv}", timeout_s=15)
    topic = new_topic(feat_broker, partitions=1)
    s = TxnSession(b, f"tv{tv}-{uuid.uuid4().hex[:6]}")
    try:
        s.ok("init")
        for i, end in enumerate(["commit", "abort", "commit"]):
            s.ok("begin")
            s.ok("send", topic, 0, 2, f"t{i}")
            s.ok(end)
    finally:
        s.close()
    with Conn(b) as c:
        data = [bt for bt in c.fetch(topic, 0).batches if bt.transactional and not bt.control]
    epochs = sorted({bt.producer_epoch for bt in data})
    if tv >= 2:
        assert len(epochs) == 3 and epochs == list(range(epochs[0], epochs[0] + 3)), \
            f"one epoch per transaction, each the next: {epochs}"
    else:
        assert len(epochs) == 1, f"one epoch for every transaction: {epochs}"
    got = [r.value for r in read_java(b, topic, "read_committed")]
    assert got == ["t0-0", "t0-1", "t2-0", "t2-1"], got
