"""Incremental fetch sessions (KIP-227) on the wire.

The Java consumer uses fetch sessions for every fetch, so the round-trip tests already depend on
them; this checks the rules directly: a full fetch with epoch 0 opens a session, an incremental
fetch with an empty partition list is answered from the session and lists only partitions with
news, and a wrong epoch or an unknown session id gets its error code.
"""

from clientlib import Rec, assert_ok, produce
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

