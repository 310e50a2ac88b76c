"""Exactly-once with real clients: idempotent producers (confluent-kafka, the Java client,
kafka-python), consume-transform-produce transactions that survive a kill -9 of the worker
(confluent-kafka and Java), transaction timeouts, fencing, read_committed end offsets, the
transaction admin APIs, and bad input on the wire (sequence gaps, stale epochs, transactional
batches outside a transaction).

What each case expects is what Apache Kafka 4.1.1 answers (reference/kafka-as-fjord), with the
Java client 4.4.0, confluent-kafka 2.16.1 and kafka-python 3.0.12 of requirements.txt / pom.xml.
The module has one broker (per xdist worker) with EOS_OVERRIDES: timed-out transactions are
looked for every 500 ms, no initial rebalance delay, classic sessions down to 1 s allowed.
Workers that are killed run in processes of their own (eoslib.py, Eos.java).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from clientlib import Rec, assert_ok, produce
from conftest import group_overrides, wait_for
from eoslib import (EOS_OVERRIDES, INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE, KILL_LOOPS,
                    NONE, OUT_OF_ORDER_SEQUENCE_NUMBER, PRODUCER_FENCED, TRANSACTION_ABORTABLE, Conn, TxnSession,
                    encode_batch, eos_java, err_name, java_end_offsets, java_proc, python_proc, read_confluent,
                    read_java)

#: TRANSACTIONAL_ID_AUTHORIZATION_FAILED: what Kafka answers a transactional batch sent without a
#: transactional id in the Produce request.
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


@pytest.fixture(scope="module")
def eb(start_broker):
    return start_broker("eos", **group_overrides(**EOS_OVERRIDES, **{"auto.create.topics.enable": "false",
                                                                       "num.partitions": 1}))


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sessions():
    """TxnSessions a test opened; closed (or killed) at the end."""
    made: list[TxnSession] = []
    yield made
    for s in made:
        s.close()


def session(sessions, bootstrap, txn_id, **extra) -> TxnSession:
    s = TxnSession(bootstrap, txn_id, extra=extra or None, name=f"{txn_id} #{len(sessions) + 1}")
    sessions.append(s)
    return s


def producer_ids(bootstrap: str, topic: str, partition: int) -> set[int]:
    with Conn(bootstrap) as c:
        return {b.producer_id for b in c.fetch(topic, partition).batches}


def assert_error(result: dict, exception: str):
    assert result.get("error") == exception, f"expected {exception}, got {result}"


# ================================================================================ idempotence

IDEMPOTENT_RECORDS = 2000


def _produce_idempotent(client: str, bootstrap: str, topic: str, n: int) -> list[tuple[int, int]]:
    """n keyed records k-i / {client}-i with the client's idempotent producer; (partition, offset)
    per record. Small batches and no linger, so several batches per partition are in flight."""
    if client == "java":
        lines = eos_java("produce", "--bootstrap", bootstrap, "--topic", topic, "--count", n, "--tag", client)
        assert not [l for l in lines if "error" in l], [l for l in lines if "error" in l][:5]
        return [(l["p"], l["o"]) for l in sorted(lines, key=lambda l: l["i"])]
    if client == "confluent":
        from confluent_kafka import Producer

        out: list = [None] * n
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0,
                      "batch.num.messages": 20})

        def cb(i, err, msg):
            out[i] = err.name() if err else (msg.partition(), msg.offset())

        for i in range(n):
            p.produce(topic, key=b"k-%d" % i, value=b"%s-%d" % (client.encode(), i),
                      on_delivery=lambda err, msg, i=i: cb(i, err, msg))
            p.poll(0)
        assert p.flush(60) == 0
        assert all(isinstance(a, tuple) for a in out), [a for a in out if not isinstance(a, tuple)][:5]
        return out
    if client == "kafka-python":
        from kafka import KafkaProducer

        # No enable_idempotence: kafka-python 3.x turns it on by default (KIP-679), and silently
        # off when the broker does not look able; the producer ids in the log tell which.
        p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, batch_size=256)
        try:
            fs = [p.send(topic, key=b"k-%d" % i, value=b"%s-%d" % (client.encode(), i)) for i in range(n)]
            p.flush(60)
            return [(md.partition, md.offset) for md in (f.get(30) for f in fs)]
        finally:
            p.close(10)
    raise ValueError(client)


@pytest.mark.parametrize("client", ["confluent", "java", "kafka-python"])
def test_idempotent_producer_writes_each_record_once(eb, new_topic, client):
    """N keyed records through the client's idempotent producer: exactly N come back, each once,
    at its acknowledged offset, in send order per partition; every batch carries one producer id
    and sequence numbers that follow on from the previous batch's."""
    topic = new_topic(eb, partitions=4)
    n = IDEMPOTENT_RECORDS
    acks = _produce_idempotent(client, eb.bootstrap, topic, n)

    got = read_java(eb.bootstrap, topic, "read_uncommitted")
    assert len(got) == n, f"read {len(got)} records, produced {n}"
    dup = [v for v, c in Counter(r.value for r in got).items() if c > 1]
    assert not dup, f"duplicates: {dup[:5]}"
    by_value = {r.value: r for r in got}
    for i, (p, o) in enumerate(acks):
        r = by_value.get(f"{client}-{i}")
        assert r is not None, f"record {i} missing"
        assert (r.partition, r.offset, r.key) == (p, o, f"k-{i}"), f"record {i}: ack {(p, o)}, read {r}"
    for p in range(4):
        idx = [int(r.value.rsplit("-", 1)[1]) for r in sorted((r for r in got if r.partition == p), key=lambda r: r.offset)]
        assert idx == sorted(idx), f"partition {p}: send order not kept"
        assert [r.offset for r in got if r.partition == p] == list(range(len(idx))), f"partition {p}: offsets with holes"

    pids = set()
    with Conn(eb.bootstrap) as c:
        for p in range(4):
            batches = c.fetch(topic, p).batches
            assert batches, f"partition {p} empty"
            seq = 0
            for b in batches:
                assert b.producer_id >= 0 and b.producer_epoch >= 0, f"partition {p}: batch at {b.base_offset} not idempotent: {b}"
                assert b.base_sequence == seq, f"partition {p}: batch at {b.base_offset} has sequence {b.base_sequence}, expected {seq}"
                seq += b.count
                pids.add(b.producer_id)
            assert len(batches) > 1
    assert len(pids) == 1, f"one producer, producer ids {pids}"


# ================================================================ consume-transform-produce

CTP_PARTITIONS = 3
#: Records per transaction; a worker that is to be killed commits two transactions, then hangs
#: inside the third once its output is written.
PER_TXN = 10
ZOMBIE_COMMITS = 2


def _ctp_worker(client, b, inp, out, group, txn_id, hang_after=-1):
    args = ["--bootstrap", b.bootstrap, "--input", inp, "--output", out, "--group", group, "--txn-id", txn_id,
            "--hang-after-commits", hang_after, "--per-txn", PER_TXN]
    if client == "java":
        return java_proc("ctp", *args, name=txn_id)
    return python_proc("ctp", *args, name=txn_id)


@pytest.mark.timeout(150 + 45 * KILL_LOOPS)
@pytest.mark.parametrize("client", ["confluent", "java"])
def test_consume_transform_produce_survives_kill_9(eb, new_topic, client):
    """A transactional consume-transform-produce worker is SIGKILLed inside a transaction whose
    output is already in the log (FJORD_EOS_KILL_LOOPS times), then restarted with the same
    transactional.id: the zombie's transaction is aborted, the new one commits, and every input
    has exactly one committed output; read_uncommitted also shows the aborted outputs."""
    inp = new_topic(eb, partitions=CTP_PARTITIONS)
    out = new_topic(eb, partitions=CTP_PARTITIONS, suffix="out")
    group, txn_id = uid("ctp-group"), uid(f"ctp-{client}")
    n = PER_TXN * (ZOMBIE_COMMITS + 1) * KILL_LOOPS + 6 * PER_TXN
    assert_ok(produce("confluent", eb.bootstrap, inp,
                      [Rec(b"k-%d" % i, b"in-%d" % i, (), i % CTP_PARTITIONS) for i in range(n)]))

    zombie_outputs: list[str] = []
    committed_inputs: list[str] = []
    workers = []
    try:
        for loop in range(KILL_LOOPS):
            w = _ctp_worker(client, eb, inp, out, group, txn_id, hang_after=ZOMBIE_COMMITS)
            workers.append(w)
            hanging = w.wait_for(lambda d: d.get("event") == "hanging", "a transaction hanging with its output written",
                                 timeout_s=90)
            assert hanging["outputs"], hanging
            # The open transaction's records are in the log: visible read_uncommitted only.
            with Conn(eb.bootstrap) as c:
                parts = [c.fetch(out, p, read_committed=True) for p in range(CTP_PARTITIONS)]
            assert any(f.last_stable_offset < f.high_watermark for f in parts), \
                f"loop {loop}: no open transaction on the output: {[(f.last_stable_offset, f.high_watermark) for f in parts]}"
            w.kill9()
            zombie_outputs += hanging["outputs"]
            committed_inputs += [v for d in w.lines if d.get("event") == "committed" for v in d["inputs"]]
            assert sum(d.get("event") == "committed" for d in w.lines) == ZOMBIE_COMMITS

        w = _ctp_worker(client, eb, inp, out, group, txn_id)
        workers.append(w)
        done = w.wait_for(lambda d: d.get("event") == "done", "the input used up", timeout_s=120)
        assert w.finish(60) == 0
        assert done["commits"] > 0
        committed_inputs += [v for d in w.lines if d.get("event") == "committed" for v in d["inputs"]]
    finally:
        for w in workers:
            w.close()

    expected = {f"in-{i}" for i in range(n)}
    dup_in = [v for v, c in Counter(committed_inputs).items() if c > 1]
    assert not dup_in, f"inputs processed in two committed transactions: {dup_in[:5]}"
    assert set(committed_inputs) == expected

    want = sorted(f"out:in-{i}" for i in range(n))
    for reader in (read_java, read_confluent):
        got = reader(eb.bootstrap, out, "read_committed")
        assert sorted(r.value for r in got) == want, \
            f"{reader.__name__} read_committed: {len(got)} records, {len(set(r.value for r in got))} distinct, want {n}"
        for p in range(CTP_PARTITIONS):
            idx = [int(r.value.rsplit("-", 1)[1]) for r in sorted((r for r in got if r.partition == p), key=lambda r: r.offset)]
            assert idx == sorted(idx), f"{reader.__name__}: partition {p} out of input order"
            assert all(i % CTP_PARTITIONS == p for i in idx)
    everything = read_java(eb.bootstrap, out, "read_uncommitted")
    assert len(everything) == n + len(zombie_outputs), \
        f"read_uncommitted: {len(everything)} records, want {n} committed + {len(zombie_outputs)} aborted"
    assert Counter(r.value for r in everything) == Counter(want) + Counter(zombie_outputs)

    # Aborted transactions show in a read_committed Fetch, and the group's offsets are at the end.
    with Conn(eb.bootstrap) as c:
        aborted = [a for p in range(CTP_PARTITIONS) for a in c.fetch(out, p, read_committed=True).aborted]
    assert aborted, "the zombies' aborted transactions are listed in a read_committed fetch"
    from confluent_kafka import Consumer, TopicPartition

    cons = Consumer({"bootstrap.servers": eb.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = cons.committed([TopicPartition(inp, p) for p in range(CTP_PARTITIONS)], timeout=20)
    finally:
        cons.close()
    assert sorted(tp.offset for tp in committed) == sorted(len(range(p, n, CTP_PARTITIONS)) for p in range(CTP_PARTITIONS))


# ==================================================================== timeouts and fencing

def test_transaction_timeout_aborts(eb, new_topic, sessions):
    """Transactions left open past transaction.timeout.ms (2 s) are aborted by the broker: the
    last stable offset moves past them, read_committed never shows their records but does show a
    later transaction, and their producers fail: Kafka 4.1 answers a plain commit with
    InvalidTxnStateException, a send with InvalidProducerEpochException (and the commit after it
    with the same)."""
    topic = new_topic(eb, partitions=2)
    quiet = session(sessions, eb.bootstrap, uid("timeout-quiet"), **{"transaction.timeout.ms": 2000})
    busy = session(sessions, eb.bootstrap, uid("timeout-busy"), **{"transaction.timeout.ms": 2000})
    for s in (quiet, busy):
        s.ok("init")
    for s, p in ((quiet, 0), (busy, 1)):
        s.ok("begin")
        assert s.ok("send", topic, p, 3, f"stale{p}")["offsets"] == [0, 1, 2]
    started = time.monotonic()
    with Conn(eb.bootstrap) as c:  # quick: the transactions are at most a few 100 ms old
        fs = [c.fetch(topic, p, read_committed=True) for p in (0, 1)]
    assert [(f.last_stable_offset, f.high_watermark) for f in fs] == [(0, 3), (0, 3)], "both transactions open"

    def lso_moved():
        with Conn(eb.bootstrap) as c:
            fs = [c.fetch(topic, p, read_committed=True) for p in (0, 1)]
        return fs if all(f.last_stable_offset == 4 and f.high_watermark == 4 for f in fs) else None

    fs = wait_for(lso_moved, "the timed-out transactions aborted (an abort marker at offset 3)", timeout_s=30)
    waited = time.monotonic() - started
    assert waited >= 1.0, f"aborted after {waited:.1f}s, before the 2 s timeout"
    for p, f in enumerate(fs):
        data = [b for b in f.batches if not b.control]
        marker = [b for b in f.batches if b.control]
        assert len(marker) == 1 and marker[0].base_offset == 3 and marker[0].control_type == 0, f.batches
        assert f.aborted == [(data[0].producer_id, 0)], f"partition {p}: aborted list {f.aborted}"
    assert java_end_offsets(eb.bootstrap, topic, "read_committed") == {0: 4, 1: 4}

    fresh = session(sessions, eb.bootstrap, uid("timeout-fresh"))
    fresh.ok("init")
    fresh.ok("begin")
    assert fresh.ok("send", topic, 0, 2, "fresh")["offsets"] == [4, 5]
    fresh.ok("commit")
    wait_for(lambda: java_end_offsets(eb.bootstrap, topic, "read_committed") == {0: 7, 1: 4}, "the commit marker")
    for reader in (read_java, read_confluent):
        got = reader(eb.bootstrap, topic, "read_committed")
        assert [(r.partition, r.offset, r.value) for r in got] == [(0, 4, "fresh-0"), (0, 5, "fresh-1")], reader.__name__

    # The timed-out producers learn it when they next talk to the broker. A plain commit: the
    # Java client speaks EndTxn v5 (transaction version 2) only to a broker that finalizes the
    # `transaction.version` feature, as Kafka 4.1 does, and gets INVALID_TXN_STATE; Fjord does
    # not (yet), so the client uses v4 and gets PRODUCER_FENCED, which is also what Kafka
    # answers EndTxn v3/v4 (see test_end_txn_after_timeout_abort).
    result = quiet.call("commit")
    assert result.get("error") in ("InvalidTxnStateException", "ProducerFencedException"), result
    assert_error(busy.call("send", topic, 1, 1, "late"), "InvalidProducerEpochException")
    assert_error(busy.call("commit"), "InvalidProducerEpochException")
    got = read_java(eb.bootstrap, topic, "read_committed")
    assert [r.value for r in got] == ["fresh-0", "fresh-1"]
    assert len(read_java(eb.bootstrap, topic, "read_uncommitted")) == 8


def test_same_transactional_id_fences_the_first_producer(eb, new_topic, sessions):
    """A second producer's initTransactions with the same transactional.id aborts the first one's
    open transaction and fences it. Kafka 4.1: the zombie's next send fails with
    InvalidProducerEpochException (Produce: INVALID_PRODUCER_EPOCH), so does its commit after that,
    and its abort with ProducerFencedException; a zombie that commits without sending first gets
    ProducerFencedException."""
    topic = new_topic(eb, partitions=2)
    txn_id = uid("fence")
    first = session(sessions, eb.bootstrap, txn_id)
    first.ok("init")
    first.ok("begin")
    assert first.ok("send", topic, 0, 3, "first")["offsets"] == [0, 1, 2]
    second = session(sessions, eb.bootstrap, txn_id)
    second.ok("init")

    assert_error(first.call("send", topic, 0, 1, "zombie"), "InvalidProducerEpochException")
    assert_error(first.call("commit"), "InvalidProducerEpochException")
    assert_error(first.call("abort"), "ProducerFencedException")
    second.ok("begin")
    assert second.ok("send", topic, 0, 2, "second")["offsets"] == [4, 5], "offset 3: the abort marker of the fenced transaction"
    second.ok("commit")

    other_id = uid("fence-quiet")
    quiet = session(sessions, eb.bootstrap, other_id)
    quiet.ok("init")
    quiet.ok("begin")
    assert quiet.ok("send", topic, 1, 2, "quiet")["offsets"] == [0, 1]
    session(sessions, eb.bootstrap, other_id).ok("init")
    assert_error(quiet.call("commit"), "ProducerFencedException")

    wait_for(lambda: java_end_offsets(eb.bootstrap, topic, "read_committed") == {0: 7, 1: 3}, "all markers written")
    for reader in (read_java, read_confluent):
        got = reader(eb.bootstrap, topic, "read_committed")
        assert [(r.partition, r.offset, r.value) for r in got] == [(0, 4, "second-0"), (0, 5, "second-1")], reader.__name__
    ru = read_java(eb.bootstrap, topic, "read_uncommitted")
    assert sorted(r.value for r in ru) == sorted(["first-0", "first-1", "first-2", "second-0", "second-1",
                                                  "quiet-0", "quiet-1"])


# ======================================================================= isolation levels

def test_end_offsets_by_isolation_level(eb, new_topic, sessions):
    """ListOffsets (Java consumer endOffsets): read_committed stops at the open transaction's first
    offset (the LSO), read_uncommitted at the high watermark; both move on when it ends. A
    read_committed Fetch says the same and returns nothing from the open transaction."""
    topic = new_topic(eb, partitions=2)
    assert_ok(produce("confluent", eb.bootstrap, topic, [Rec(b"c", b"plain-%d" % i, (), 0) for i in range(3)]))
    s = session(sessions, eb.bootstrap, uid("lso"))
    s.ok("init")
    s.ok("begin")
    assert s.ok("send", topic, 0, 4, "open")["offsets"] == [3, 4, 5, 6]
    assert s.ok("send", topic, 1, 2, "open1")["offsets"] == [0, 1]

    assert java_end_offsets(eb.bootstrap, topic, "read_committed") == {0: 3, 1: 0}
    assert java_end_offsets(eb.bootstrap, topic, "read_uncommitted") == {0: 7, 1: 2}
    with Conn(eb.bootstrap) as c:
        f = c.fetch(topic, 0, read_committed=True)
        assert (f.high_watermark, f.last_stable_offset) == (7, 3)
        assert [v for b in f.batches for v in b.values] == [b"plain-0", b"plain-1", b"plain-2"]
        f = c.fetch(topic, 0, read_committed=False)
        assert (f.high_watermark, f.last_stable_offset) == (7, 3)
        assert _values(b for b in f.batches if not b.transactional) == [b"plain-0", b"plain-1", b"plain-2"]
        assert _values(b for b in f.batches if b.transactional) == [b"open-%d" % i for i in range(4)]
    assert [r.value for r in read_confluent(eb.bootstrap, topic, "read_committed")] == ["plain-0", "plain-1", "plain-2"]

    s.ok("commit")
    wait_for(lambda: java_end_offsets(eb.bootstrap, topic, "read_committed") == {0: 8, 1: 3}, "LSO after the commit")
    assert java_end_offsets(eb.bootstrap, topic, "read_uncommitted") == {0: 8, 1: 3}

    s.ok("begin")
    assert s.ok("send", topic, 0, 2, "aborted")["offsets"] == [8, 9]
    assert java_end_offsets(eb.bootstrap, topic, "read_committed") == {0: 8, 1: 3}
    s.ok("abort")
    wait_for(lambda: java_end_offsets(eb.bootstrap, topic, "read_committed") == {0: 11, 1: 3}, "LSO after the abort")
    got = read_java(eb.bootstrap, topic, "read_committed")
    assert [r.value for r in got if r.partition == 0] == [f"plain-{i}" for i in range(3)] + [f"open-{i}" for i in range(4)]
    assert [r.value for r in got if r.partition == 1] == ["open1-0", "open1-1"]
    with Conn(eb.bootstrap) as c:
        f = c.fetch(topic, 0, read_committed=True)
        pid = next(b.producer_id for b in f.batches if b.transactional)
        assert f.aborted == [(pid, 8)], f.aborted
        assert [(b.base_offset, b.control_type) for b in f.batches if b.control] == [(7, 1), (10, 0)]


# =================================================================================== admin

def test_admin_list_and_describe_transactions(eb, new_topic, sessions):
    """Java AdminClient listTransactions()/describeTransactions(): Ongoing with its partitions,
    producer id/epoch and timeout while open; CompleteCommit, no partitions, after the commit."""
    topic = new_topic(eb, partitions=2)
    txn_id = uid("admin-txn")
    s = session(sessions, eb.bootstrap, txn_id, **{"transaction.timeout.ms": 45000})
    s.ok("init")
    before = int(time.time() * 1000)
    s.ok("begin")
    s.ok("send", topic, 0, 2, "a")
    s.ok("send", topic, 1, 1, "b")
    after = int(time.time() * 1000)

    lines = eos_java("admin-txns", "--bootstrap", eb.bootstrap, "--id", txn_id)
    listed = {t["id"]: t for t in lines[0]["listed"]}
    d = lines[1]["described"]
    assert txn_id in listed, f"listTransactions: {sorted(listed)}"
    assert listed[txn_id]["state"] == "Ongoing"
    assert d["state"] == "Ongoing"
    assert listed[txn_id]["producer_id"] == d["producer_id"] >= 0
    assert d["producer_epoch"] >= 0
    assert d["coordinator"] == eb.node_id
    assert d["timeout_ms"] == 45000
    assert sorted(d["partitions"]) == [f"{topic}-0", f"{topic}-1"]
    assert d["start_ms"] is not None and before - 1000 <= d["start_ms"] <= after + 1000, (before, d["start_ms"], after)
    assert producer_ids(eb.bootstrap, topic, 0) == {d["producer_id"]}

    s.ok("commit")

    def completed():
        ls = eos_java("admin-txns", "--bootstrap", eb.bootstrap, "--id", txn_id)
        return ls if ls[1]["described"]["state"] == "CompleteCommit" else None

    lines = wait_for(completed, "CompleteCommit")
    listed = {t["id"]: t for t in lines[0]["listed"]}
    d2 = lines[1]["described"]
    assert listed[txn_id]["state"] == "CompleteCommit"
    assert d2["producer_id"] == d["producer_id"]
    assert d2["producer_epoch"] >= d["producer_epoch"]
    assert d2["partitions"] == []
    assert d2["timeout_ms"] == 45000


# ========================================================================== bad input on the wire

def _values(batches) -> list[bytes]:
    return [v for b in batches if not b.control for v in b.values]


def test_sequence_gap_refused_and_duplicates_answered(eb, new_topic):
    """An idempotent producer (InitProducerId without a transactional id): a retried batch is
    answered with its original offset (NONE, not DUPLICATE_SEQUENCE_NUMBER), a sequence gap with
    OUT_OF_ORDER_SEQUENCE_NUMBER; nothing is appended for either, and the next batch in sequence
    goes to the next offset."""
    topic = new_topic(eb, partitions=1)
    with Conn(eb.bootstrap) as c:
        c.wait_ready(topic, 1)
        err, pid, epoch = c.init_producer_id(None)
        assert err == NONE and pid >= 0 and epoch == 0, (err, pid, epoch)

        def send(values, seq):
            return c.produce(topic, 0, encode_batch(values, pid, epoch, seq))

        first = [b"a0", b"a1", b"a2"]
        r = send(first, 0)
        assert (r.error, r.base_offset) == (NONE, 0)
        r = send([b"a3", b"a4"], 3)
        assert (r.error, r.base_offset) == (NONE, 3)
        r = send([b"a3", b"a4"], 3)
        assert (r.error, r.base_offset) == (NONE, 3), f"the retry of the last batch: {err_name(r.error)} at {r.base_offset}"
        r = send(first, 0)
        assert (r.error, r.base_offset) == (NONE, 0), f"the retry of an earlier batch: {err_name(r.error)} at {r.base_offset}"
        r = send([b"gap"], 10)
        assert r.error == OUT_OF_ORDER_SEQUENCE_NUMBER, f"sequence 10 after 4: {err_name(r.error)}"
        r = send([b"a5"], 5)
        assert (r.error, r.base_offset) == (NONE, 5), "the log goes on after the refused batch"

        f = c.fetch(topic, 0)
        assert f.high_watermark == 6
        assert [(b.base_offset, b.base_sequence, b.producer_id) for b in f.batches] == [(0, 0, pid), (3, 3, pid), (5, 5, pid)]
        assert _values(f.batches) == [b"a0", b"a1", b"a2", b"a3", b"a4", b"a5"]
    assert [r.value for r in read_confluent(eb.bootstrap, topic, "read_uncommitted")] == ["a0", "a1", "a2", "a3", "a4", "a5"]


def test_stale_epoch_refused(eb, new_topic):
    """Idempotent: after a batch with epoch 1 (the client's own bump, sequence 0 again), epoch 0
    gets INVALID_PRODUCER_EPOCH; epoch 1 with a gap OUT_OF_ORDER_SEQUENCE_NUMBER. Transactional,
    after a second InitProducerId bumped the epoch: AddPartitionsToTxn and EndTxn with the old
    epoch get PRODUCER_FENCED, a Produce INVALID_PRODUCER_EPOCH. The log is unchanged by each and
    goes on at the next offset."""
    topic = new_topic(eb, partitions=2)
    with Conn(eb.bootstrap) as c:
        c.wait_ready(topic, 2)
        err, pid, e0 = c.init_producer_id(None)
        assert err == NONE

        def send(values, epoch, seq, partition=0):
            return c.produce(topic, partition, encode_batch(values, pid, epoch, seq))

        assert (send([b"e0"], e0, 0).error, send([b"e1-0"], e0 + 1, 0).error) == (NONE, NONE)
        r = send([b"old"], e0, 1)
        assert r.error == INVALID_PRODUCER_EPOCH, f"epoch {e0} after {e0 + 1}: {err_name(r.error)}"
        r = send([b"gap"], e0 + 1, 5)
        assert r.error == OUT_OF_ORDER_SEQUENCE_NUMBER, err_name(r.error)
        r = send([b"e1-1"], e0 + 1, 1)
        assert (r.error, r.base_offset) == (NONE, 2)
        f = c.fetch(topic, 0)
        assert f.high_watermark == 3 and _values(f.batches) == [b"e0", b"e1-0", b"e1-1"]
        assert [b.producer_epoch for b in f.batches] == [e0, e0 + 1, e0 + 1]

        txn_id = uid("raw-fenced")
        c.find_coordinator(txn_id)
        err, tpid, t0 = c.init_producer_id(txn_id)
        assert err == NONE and tpid >= 0
        err, tpid2, t1 = c.init_producer_id(txn_id)
        assert err == NONE and tpid2 == tpid and t1 == t0 + 1, (tpid, t0, tpid2, t1)
        assert c.add_partitions_to_txn(txn_id, tpid, t0, topic, [1]) == {1: PRODUCER_FENCED}
        assert c.add_partitions_to_txn(txn_id, tpid, t1, topic, [1]) == {1: NONE}
        r = c.produce(topic, 1, encode_batch([b"zombie"], tpid, t0, 0, transactional=True), txn_id=txn_id)
        assert r.error == INVALID_PRODUCER_EPOCH, f"transactional batch with the old epoch: {err_name(r.error)}"
        assert c.end_txn(txn_id, tpid, t0, commit=True) == PRODUCER_FENCED
        r = c.produce(topic, 1, encode_batch([b"current"], tpid, t1, 0, transactional=True), txn_id=txn_id)
        assert (r.error, r.base_offset) == (NONE, 0)
        assert c.end_txn(txn_id, tpid, t1, commit=True) == NONE
        wait_for(lambda: c.fetch(topic, 1, read_committed=True).last_stable_offset == 2, "the commit marker")
        f = c.fetch(topic, 1, read_committed=True)
        assert _values(f.batches) == [b"current"] and f.aborted == []
    assert [r.value for r in read_java(eb.bootstrap, topic, "read_committed") if r.partition == 1] == ["current"]


#: Produce version -> what Kafka 4.1 answers a transactional batch for a partition not in the
#: transaction (KIP-890 verification): INVALID_TXN_STATE up to v10, TRANSACTION_ABORTABLE on v11,
#: and from v12 (transaction version 2) the partition is added to the transaction implicitly.
OUTSIDE_TXN = {9: INVALID_TXN_STATE, 10: INVALID_TXN_STATE, 11: TRANSACTION_ABORTABLE, 12: NONE}


@pytest.mark.parametrize("version", sorted(OUTSIDE_TXN))
def test_transactional_batch_outside_transaction(eb, new_topic, version):
    """A transactional batch for a partition that was never added to the transaction, both with no
    transaction open (Empty) and with another partition added (Ongoing): refused per Produce version
    as in OUTSIDE_TXN, nothing appended; once the partition is added, the same batch is accepted at
    offset 0 and a commit makes it visible. A transactional batch without a transactional id in the
    request: TRANSACTIONAL_ID_AUTHORIZATION_FAILED."""
    topic = new_topic(eb, partitions=2)
    with Conn(eb.bootstrap) as c:
        c.wait_ready(topic, 2)
        lo, hi = c.versions[0]
        if not lo <= version <= hi:
            pytest.skip(f"the broker offers Produce v{lo}-{hi}")
        txn_id = uid(f"raw-outside-v{version}")
        c.find_coordinator(txn_id)
        err, pid, epoch = c.init_producer_id(txn_id)
        assert err == NONE

        def send(partition, value, seq=0, tid=txn_id):
            return c.produce(topic, partition, encode_batch([value], pid, epoch, seq, transactional=True), txn_id=tid,
                             version=version)

        r = send(0, b"no-txn-id", tid=None)
        assert r.error == TRANSACTIONAL_ID_AUTHORIZATION_FAILED, f"no transactional id: {err_name(r.error)}"
        expected = OUTSIDE_TXN[version]
        r = send(0, b"empty")
        assert r.error == expected, f"v{version}, no transaction open: {err_name(r.error)}, want {err_name(expected)}"
        if expected == NONE:
            # Transaction version 2: the broker added the partition; the commit shows it.
            assert r.base_offset == 0
            assert c.end_txn(txn_id, pid, epoch, commit=True) == NONE
            wait_for(lambda: c.fetch(topic, 0, read_committed=True).last_stable_offset == 2, "the commit marker")
            assert _values(c.fetch(topic, 0, read_committed=True).batches) == [b"empty"]
            return
        assert c.add_partitions_to_txn(txn_id, pid, epoch, topic, [1]) == {1: NONE}
        r = send(0, b"ongoing")
        assert r.error == expected, f"v{version}, partition not added: {err_name(r.error)}, want {err_name(expected)}"
        f = c.fetch(topic, 0)
        assert f.high_watermark == 0 and f.batches == [], "nothing appended for the refused batches"

        assert c.add_partitions_to_txn(txn_id, pid, epoch, topic, [0]) == {0: NONE}
        r = send(0, b"added")
        assert (r.error, r.base_offset) == (NONE, 0), err_name(r.error)
        r = send(1, b"other")
        assert (r.error, r.base_offset) == (NONE, 0), err_name(r.error)
        assert c.end_txn(txn_id, pid, epoch, commit=True) == NONE
        wait_for(lambda: c.fetch(topic, 0, read_committed=True).last_stable_offset == 2, "the commit marker")
        f = c.fetch(topic, 0, read_committed=True)
        assert _values(f.batches) == [b"added"]
        assert [(b.base_offset, b.control_type) for b in f.batches if b.control] == [(1, 1)]
    got = read_java(eb.bootstrap, topic, "read_committed")
    assert sorted((r.partition, r.value) for r in got) == [(0, "added"), (1, "other")]



@pytest.mark.parametrize("version", [3, 5])
def test_end_txn_after_timeout_abort(eb, new_topic, version):
    """EndTxn from the producer of a transaction the broker aborted on its timeout. Kafka 4.1:
    before v5 (no transaction version 2) commit and abort both get PRODUCER_FENCED; on v5 a commit
    gets INVALID_TXN_STATE and an abort NONE with the bumped epoch (the abort already happened), and
    no second marker is written."""
    topic = new_topic(eb, partitions=1)
    with Conn(eb.bootstrap) as c:
        c.wait_ready(topic, 1)
        lo, hi = c.versions[26]
        if not lo <= version <= hi:
            pytest.skip(f"the broker offers EndTxn v{lo}-{hi}")
        txn_id = uid(f"raw-timeout-v{version}")
        c.find_coordinator(txn_id)
        err, pid, epoch = c.init_producer_id(txn_id, timeout_ms=2000)
        assert err == NONE
        assert c.add_partitions_to_txn(txn_id, pid, epoch, topic, [0]) == {0: NONE}
        r = c.produce(topic, 0, encode_batch([b"stale"], pid, epoch, 0, transactional=True), txn_id=txn_id)
        assert (r.error, r.base_offset) == (NONE, 0)
        wait_for(lambda: c.fetch(topic, 0, read_committed=True).last_stable_offset == 2,
                 "the abort marker of the timed-out transaction", timeout_s=30)

        commit = c.end_txn_v(txn_id, pid, epoch, True, version)
        abort = c.end_txn_v(txn_id, pid, epoch, False, version)
        if version < 5:
            assert (commit[0], abort[0]) == (PRODUCER_FENCED, PRODUCER_FENCED), \
                f"commit {err_name(commit[0])}, abort {err_name(abort[0])}"
        else:
            assert commit[0] == INVALID_TXN_STATE, f"commit: {err_name(commit[0])}"
            assert abort == (NONE, pid, epoch + 1), f"abort: {err_name(abort[0])}, {abort[1:]}"
        f = c.fetch(topic, 0, read_committed=True)
        assert f.high_watermark == 2, "no second marker"
        assert f.aborted == [(pid, 0)]
        assert [(b.base_offset, b.control_type, b.producer_epoch) for b in f.batches if b.control] == [(1, 0, epoch + 1)]
