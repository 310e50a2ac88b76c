"""Incremental fetch sessions (KIP-227) on the wire.

The Java consumer uses fetch sessions for every fetch, so the round-trip tests already depend on
them; this checks the rules directly: a full fetch with epoch 0 opens a session, an incremental
fetch with an empty partition list is answered from the session and lists only partitions with
news, and a wrong epoch or an unknown session id gets its error code.
"""

import json
import subprocess
from pathlib import Path

import pytest

from clientlib import Rec, assert_ok, produce
from conftest import group_overrides
from wire import API_FETCH, Conn, api_versions, fetch_many, pick_version, record_batches, wait_fetchable

FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71


def test_incremental_fetch_session(broker, new_topic):
    topic = new_topic(broker, partitions=2)
    wait_fetchable(broker.bootstrap, topic, 2)
    with Conn(broker.bootstrap) as c:
        # Sessions need v7+; this module names topics, which Fetch does up to v12.
        v = pick_version(api_versions(c).ranges, API_FETCH, range(7, 13))
        full = fetch_many(c, v, [(topic, 0, 0), (topic, 1, 0)], max_wait_ms=0, min_bytes=0, session_id=0, session_epoch=0)
        assert full.error_code == 0
        assert sorted(full.partitions) == [(topic, 0), (topic, 1)]
        assert all(p.error_code == 0 and p.high_watermark == 0 for p in full.partitions.values()), full
        sid = full.session_id
        assert sid != 0, "the broker did not open a fetch session for a full fetch with epoch 0"

        record = Rec(b"k", b"news", (), 1)
        assert_ok(produce("confluent", broker.bootstrap, topic, [record]))

        # Nothing listed: the session remembers both partitions and their fetch offsets.
        inc = fetch_many(c, v, [], max_wait_ms=5000, min_bytes=1, session_id=sid, session_epoch=1)
        assert inc.error_code == 0 and inc.session_id == sid
        assert list(inc.partitions) == [(topic, 1)], "only the partition with news is in an incremental response"
        p1 = inc.partitions[(topic, 1)]
        assert p1.error_code == 0 and p1.high_watermark == 1
        assert [b.record_count for b in record_batches(p1.records)] == [1]

        # Moving partition 1's offset past the record: nothing new anywhere.
        inc2 = fetch_many(c, v, [(topic, 1, 1)], max_wait_ms=0, min_bytes=0, session_id=sid, session_epoch=2)
        assert inc2.error_code == 0
        assert not any(record_batches(p.records) for p in inc2.partitions.values())

        stale = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=sid, session_epoch=2)
        assert stale.error_code == INVALID_FETCH_SESSION_EPOCH
        unknown = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=sid ^ 0x5A5A5A5A, session_epoch=1)
        assert unknown.error_code == FETCH_SESSION_ID_NOT_FOUND


def test_sessionless_fetch_still_works(broker, new_topic):
    """epoch -1 (FINAL) without a session id: a plain full fetch, as librdkafka and
    kafka-python send it; the broker must not hand out a session id."""
    topic = new_topic(broker, partitions=1)
    assert_ok(produce("java", broker.bootstrap, topic, [Rec(None, b"x", (), 0)]))
    with Conn(broker.bootstrap) as c:
        v = pick_version(api_versions(c).ranges, API_FETCH, range(7, 13))
        for _ in range(2):
            r = fetch_many(c, v, [(topic, 0, 0)], max_wait_ms=0, min_bytes=0, session_id=0, session_epoch=-1)
            assert r.error_code == 0 and r.session_id == 0
            assert [b.record_count for b in record_batches(r.partitions[(topic, 0)].records)] == [1]



def test_full_fetch_naming_a_session_replaces_it(broker, new_topic):
    """Epoch 0 with an existing session id closes that session and opens a new one (Kafka's
    FetchManager: any session named in a full fetch is closed). franz-go resets its session
    this way after every rebalance; an epoch error here made it retry forever."""
    topic = new_topic(broker, partitions=1)
    assert_ok(produce("java", broker.bootstrap, topic, [Rec(None, b"x", (), 0)]))
    with Conn(broker.bootstrap) as c:
        v = pick_version(api_versions(c).ranges, API_FETCH, range(7, 13))
        first = fetch_many(c, v, [(topic, 0, 0)], max_wait_ms=0, min_bytes=0, session_id=0, session_epoch=0)
        assert first.error_code == 0 and first.session_id != 0
        inc = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=first.session_id, session_epoch=1)
        assert inc.error_code == 0 and inc.session_id == first.session_id

        reset = fetch_many(c, v, [(topic, 0, 0)], max_wait_ms=0, min_bytes=0,
                           session_id=first.session_id, session_epoch=0)
        assert reset.error_code == 0, f"a full fetch naming its session got error {reset.error_code}"
        assert reset.session_id not in (0, first.session_id), reset.session_id
        assert [b.record_count for b in record_batches(reset.partitions[(topic, 0)].records)] == [1]

        old = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=first.session_id, session_epoch=2)
        assert old.error_code == FETCH_SESSION_ID_NOT_FOUND, "the replaced session still answers"
        new = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=reset.session_id, session_epoch=1)
        assert new.error_code == 0 and new.session_id == reset.session_id

        # Epoch -1 naming the session closes it without opening another.
        closed = fetch_many(c, v, [(topic, 0, 1)], max_wait_ms=0, min_bytes=0,
                            session_id=reset.session_id, session_epoch=-1)
        assert closed.error_code == 0 and closed.session_id == 0
        gone = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=reset.session_id, session_epoch=2)
        assert gone.error_code == FETCH_SESSION_ID_NOT_FOUND

        # An incremental epoch without a session id names no session.
        none = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=0, session_epoch=3)
        assert none.error_code == FETCH_SESSION_ID_NOT_FOUND


def test_forgetting_every_partition_closes_the_session(broker, new_topic):
    topic = new_topic(broker, partitions=2)
    wait_fetchable(broker.bootstrap, topic, 2)
    with Conn(broker.bootstrap) as c:
        v = pick_version(api_versions(c).ranges, API_FETCH, range(7, 13))
        full = fetch_many(c, v, [(topic, 0, 0), (topic, 1, 0)], max_wait_ms=0, min_bytes=0,
                          session_id=0, session_epoch=0)
        sid = full.session_id
        assert full.error_code == 0 and sid != 0
        one = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=sid, session_epoch=1,
                         forget=[(topic, 0)])
        assert one.error_code == 0 and one.session_id == sid, "one partition left: the session stays"
        empty = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=sid, session_epoch=2,
                           forget=[(topic, 1)])
        assert empty.error_code == 0
        assert empty.session_id == 0, "a session left with no partitions is closed"
        after = fetch_many(c, v, [], max_wait_ms=0, min_bytes=0, session_id=sid, session_epoch=3)
        assert after.error_code == FETCH_SESSION_ID_NOT_FOUND


GO_REBALANCE = Path(__file__).resolve().parent / "go" / "bin" / "rebalance"


@pytest.mark.skipif(not GO_REBALANCE.exists(), reason="setup.sh builds the Go client when Go is installed")
def test_franz_go_keeps_reading_through_a_rebalance(start_broker, topic_name):
    """franz-go resets its fetch session (a full fetch with epoch 0 naming the old session)
    after every assignment change. Two members of one group, the second joining mid-read:
    every record produced before and after the rebalance must arrive."""
    b = start_broker("franz-go", **group_overrides())
    run = subprocess.run(
        [str(GO_REBALANCE), "-brokers", b.bootstrap, "-topic", topic_name, "-records", "2000", "-timeout", "90s"],
        capture_output=True, text=True, timeout=150,
    )
    lines = [l for l in run.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no result line; stdout={run.stdout!r} stderr={run.stderr[-2000:]!r}"
    result = json.loads(lines[-1])
    assert run.returncode == 0, result
    assert result["rebalanced"], result
    assert result["distinct"] == result["produced"] == 4000, result
    assert set(result["per_member"]) == {"a", "b"}, f"both members read after the rebalance: {result}"
