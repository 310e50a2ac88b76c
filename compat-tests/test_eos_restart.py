"""Exactly-once across broker crashes: each test has a broker of its own, SIGKILLed and started
again on the same log dir and port.

- An idempotent producer (Java client, confluent-kafka) sending all the time with retries while the
  broker is killed and restarted FJORD_EOS_KILL_LOOPS times: every record exactly once, at its
  acknowledged offset, in sequence order per partition.
- Producer state is rebuilt after the crash: a retried batch is still answered with its original
  offset, a gap still refused.
- Transaction state survives: a committed transaction stays visible, an open one stays open (and
  holds the last stable offset) and can be committed after the restart.
"""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import wait_for
from eoslib import (EOS_OVERRIDES, KILL_LOOPS, NONE, OUT_OF_ORDER_SEQUENCE_NUMBER, Conn, TxnSession, encode_batch,
                    eos_java, err_name, java_end_offsets, java_proc, python_proc, read_confluent, read_java)

pytestmark = pytest.mark.restart

STREAM_PARTITIONS = 3
#: Acknowledgements to wait for before each kill, and after each restart (the producer is back).
ACKS_PER_ROUND = 300


@pytest.mark.timeout(120 + 120 * KILL_LOOPS)
@pytest.mark.parametrize("client", ["java", "confluent"])
def test_idempotent_producer_survives_broker_kill_9(own_broker, new_topic, client):
    b = own_broker(**EOS_OVERRIDES)
    topic = new_topic(b, partitions=STREAM_PARTITIONS)
    args = ("stream", "--bootstrap", b.bootstrap, "--topic", topic, "--partitions", STREAM_PARTITIONS)
    w = java_proc(*args, name="stream") if client == "java" else python_proc(*args, name="stream")
    try:
        def acked():
            return sum(1 for d in list(w.lines) if "o" in d)

        wait_for(lambda: acked() >= ACKS_PER_ROUND, f"{ACKS_PER_ROUND} acks before the first kill", timeout_s=60)
        for loop in range(KILL_LOOPS):
            before = acked()
            b.kill()
            b.start()
            wait_for(lambda: acked() >= before + ACKS_PER_ROUND,
                     f"loop {loop}: the producer acknowledged again after the restart", timeout_s=120)
        w.send("stop")
        done = w.wait_for(lambda d: d.get("event") == "done", "the producer's last acks", timeout_s=180)
        assert w.finish(60) == 0
    finally:
        w.close()

    problems = [d for d in w.lines if "error" in d or "fatal" in d]
    assert not problems, f"{len(problems)} failed sends or fatal errors: {problems[:5]}"
    sent = done["sent"]
    assert done["acked"] == sent and done["failed"] == 0, done
    acks: dict[int, tuple[int, int]] = {}
    for d in w.lines:
        if "o" in d:
            assert d["seq"] not in acks, f"seq {d['seq']} acknowledged twice"
            acks[d["seq"]] = (d["p"], d["o"])
    assert len(acks) == sent

    got = read_java(b.bootstrap, topic, "read_uncommitted")
    seqs = Counter(int(r.value.split("-")[1]) for r in got)
    dups = sorted(s for s, c in seqs.items() if c > 1)
    missing = sorted(set(range(sent)) - set(seqs))
    assert not dups, f"{len(dups)} records written twice, e.g. seq {dups[:10]}"
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. seq {missing[:10]}"
    assert len(got) == sent
    for r in got:
        seq = int(r.value.split("-")[1])
        assert (r.partition, r.offset) == acks[seq], f"seq {seq} read at {(r.partition, r.offset)}, acknowledged at {acks[seq]}"
        assert r.partition == seq % STREAM_PARTITIONS and r.key == f"s-{seq}"
    for p in range(STREAM_PARTITIONS):
        rows = sorted((r.offset, int(r.value.split("-")[1])) for r in got if r.partition == p)
        assert [o for o, _ in rows] == list(range(len(rows))), f"partition {p}: offsets with holes"
        order = [s for _, s in rows]
        assert order == sorted(order), f"partition {p}: sequence order not kept"


def test_duplicate_after_restart_answered_with_original_offset(own_broker, new_topic):
    """Producer state is rebuilt after a kill -9: a retry of the producer's last batch gets its
    original offset back, a retry of an older one is not appended again (Kafka 4.1 answers
    OUT_OF_ORDER_SEQUENCE_NUMBER), a gap is still OUT_OF_ORDER_SEQUENCE_NUMBER, and the next batch
    in sequence is appended."""
    b = own_broker(**EOS_OVERRIDES)
    topic = new_topic(b, partitions=1)
    batches = [[b"r%d" % i, b"r%d" % (i + 1)] for i in range(0, 10, 2)]
    with Conn(b.bootstrap) as c:
        c.wait_ready(topic, 1)
        err, pid, epoch = c.init_producer_id(None)
        assert err == NONE
        for i, vals in enumerate(batches):
            r = c.produce(topic, 0, encode_batch(vals, pid, epoch, 2 * i))
            assert (r.error, r.base_offset) == (NONE, 2 * i)
    b.kill()
    b.start()
    with Conn(b.bootstrap) as c:
        c.wait_ready(topic, 1)
        r = c.produce(topic, 0, encode_batch(batches[4], pid, epoch, 8))
        assert (r.error, r.base_offset) == (NONE, 8), \
            f"retry of the last batch after the restart: {err_name(r.error)} at {r.base_offset}"
        for i in (3, 1):
            # Kafka's producer snapshot keeps only the last batch of each producer, so after a
            # restart it refuses older retries as out of order; answering them with their original
            # offset (as before the restart) is as good. Appending them again is not.
            r = c.produce(topic, 0, encode_batch(batches[i], pid, epoch, 2 * i))
            assert (r.error, r.base_offset) in ((NONE, 2 * i), (OUT_OF_ORDER_SEQUENCE_NUMBER, -1)), \
                f"retry of batch {i} after the restart: {err_name(r.error)} at {r.base_offset}"
        assert c.fetch(topic, 0).high_watermark == 10, "a retry was appended again"
        r = c.produce(topic, 0, encode_batch([b"gap"], pid, epoch, 12))
        assert r.error == OUT_OF_ORDER_SEQUENCE_NUMBER, err_name(r.error)
        r = c.produce(topic, 0, encode_batch([b"r10"], pid, epoch, 10))
        assert (r.error, r.base_offset) == (NONE, 10)
        f = c.fetch(topic, 0)
        assert f.high_watermark == 11
    assert [r.value for r in read_confluent(b.bootstrap, topic, "read_uncommitted")] == [f"r{i}" for i in range(11)]


def test_transactions_survive_broker_kill_9(own_broker, new_topic):
    """A committed transaction stays committed and an open one stays open across a kill -9 of the
    broker (the transaction log and the partitions' producer state are rebuilt): read_committed
    stops at the open transaction, DescribeTransactions still says Ongoing with its partitions,
    and the same producer commits it afterwards."""
    b = own_broker(**EOS_OVERRIDES)
    topic = new_topic(b, partitions=2)
    done = TxnSession(b.bootstrap, "restart-committed", name="committed")
    opened = TxnSession(b.bootstrap, "restart-open", name="open")
    try:
        done.ok("init")
        done.ok("begin")
        assert done.ok("send", topic, 0, 3, "done")["offsets"] == [0, 1, 2]
        done.ok("commit")
        opened.ok("init")
        opened.ok("begin")
        assert opened.ok("send", topic, 0, 2, "open")["offsets"] == [4, 5]
        assert opened.ok("send", topic, 1, 1, "open1")["offsets"] == [0]
        wait_for(lambda: java_end_offsets(b.bootstrap, topic, "read_committed") == {0: 4, 1: 0}, "the commit marker")

        b.kill()
        b.start()

        assert wait_for(lambda: java_end_offsets(b.bootstrap, topic, "read_committed"), "end offsets") == {0: 4, 1: 0}
        assert java_end_offsets(b.bootstrap, topic, "read_uncommitted") == {0: 6, 1: 1}
        assert [r.value for r in read_java(b.bootstrap, topic, "read_committed")] == ["done-0", "done-1", "done-2"]
        lines = wait_for(lambda: eos_java("admin-txns", "--bootstrap", b.bootstrap, "--id", "restart-open"),
                         "the transaction coordinator back")
        d = lines[1]["described"]
        assert d["state"] == "Ongoing" and sorted(d["partitions"]) == [f"{topic}-0", f"{topic}-1"], d
        listed = {t["id"]: t["state"] for t in lines[0]["listed"]}
        assert listed == {"restart-open": "Ongoing", "restart-committed": "CompleteCommit"}

        opened.ok("commit", timeout_s=120)
        wait_for(lambda: java_end_offsets(b.bootstrap, topic, "read_committed") == {0: 7, 1: 2}, "the commit markers")
        for reader in (read_java, read_confluent):
            got = reader(b.bootstrap, topic, "read_committed")
            assert sorted((r.partition, r.offset, r.value) for r in got) == [
                (0, 0, "done-0"), (0, 1, "done-1"), (0, 2, "done-2"), (0, 4, "open-0"), (0, 5, "open-1"),
                (1, 0, "open1-0")], reader.__name__
    finally:
        done.close()
        opened.close()
