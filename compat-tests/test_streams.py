"""Kafka Streams 4.4.0 on the broker: a word count (java/.../Streams.java) with a persistent
(RocksDB) store, exactly_once_v2, in a JVM of its own. It counts the lines it finds, is
SIGKILLed, loses its state dir, and after a restart has to rebuild the store from the compacted
changelog topic Streams created: the counts it then publishes (read_committed) are the exact
totals over all lines, never less (a lost store would start from 0) and never more (a duplicate
transaction would count twice).

Exercises what Streams needs of a broker: CreateTopics with configs for its internal topics
(changelog compacted, repartition topic with retention.ms=-1) and DescribeConfigs to validate
them, a classic consumer group with Streams' own assignor, transactions spanning the repartition,
changelog and output topics plus the group's offsets (TxnOffsetCommit), read_committed fetches,
DeleteRecords on the repartition topic (purged every 500 ms here), and, since the wiped state dir gives the restarted
instance a new transactional.id, the broker aborting the killed instance's open transaction after
transaction.timeout.ms (5 s). Runs on Kafka too.
"""

from __future__ import annotations

import random
import shutil
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Producer

from appslib import (APP_JAVA, LoggedLineProc, check_built, latest_committed, logs_on_failure, topic_configs,
                     watermarks)
from conftest import group_overrides, wait_for
from eoslib import EOS_OVERRIDES

VOCABULARY = ["fjord", "kafka", "stream", "table", "state", "store", "changelog", "compact", "offset",
              "commit", "broker", "topic", "exactly", "once"]


@pytest.fixture(scope="module")
def sb(start_broker):
    """The timed-out-transaction sweep every 500 ms, no initial rebalance delay."""
    return start_broker("streams", **group_overrides(**EOS_OVERRIDES, **{"auto.create.topics.enable": "false",
                                                                           "num.partitions": 1}))


def make_lines(rng: random.Random, n: int) -> list[str]:
    """Lines of 2-7 words in mixed case with punctuation, which the app splits on non-word runs."""
    out = []
    for _ in range(n):
        words = [rng.choice(VOCABULARY) for _ in range(rng.randint(2, 7))]
        words = [w.upper() if rng.random() < 0.2 else w.capitalize() if rng.random() < 0.2 else w for w in words]
        out.append(rng.choice([" ", ", ", "  ", "; "]).join(words) + rng.choice(["", ".", "!", " ?"]))
    return out


def word_counts(lines: list[str]) -> Counter:
    import re

    return Counter(w for line in lines for w in re.split(r"\W+", line.lower()) if w)


def produce_lines(bootstrap: str, topic: str, lines: list[str], first: int):
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, line in enumerate(lines, first):
        p.produce(topic, key=f"line-{i}".encode(), value=line.encode(),
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(30) == 0 and not errors, errors


def start_app(tmp_path, bootstrap: str, app_id: str, inp: str, out: str, state_dir, run: int) -> LoggedLineProc:
    cmd = [*APP_JAVA, "dev.fjord.compat.Streams", "--bootstrap", bootstrap, "--app-id", app_id,
           "--input", inp, "--output", out, "--state-dir", str(state_dir)]
    return LoggedLineProc(cmd, f"word count #{run}", tmp_path / "streams.log")


def wait_counts(bootstrap: str, topic: str, expected: dict[str, str], app: LoggedLineProc, timeout_s: float):
    """Polls the output (read_committed) until its latest count per word is `expected`."""
    deadline = time.monotonic() + timeout_s
    latest: dict = {}
    while time.monotonic() < deadline:
        if app.proc.poll() is not None:
            raise AssertionError(f"{app.name} exited {app.proc.returncode}; last lines {app.lines[-5:]}")
        errors = [d for d in app.lines if "error" in d]
        assert not errors, f"{app.name}: {errors}"
        latest, history = latest_committed(bootstrap, topic)
        if latest == expected:
            return history
        time.sleep(0.5)
    missing = {w: (c, latest.get(w)) for w, c in expected.items() if latest.get(w) != c}
    raise AssertionError(f"{app.name}: output not at the expected counts within {timeout_s}s; "
                         f"(expected, latest) where they differ: {missing}; extra: {set(latest) - set(expected)}")


class OpenTransactions:
    """Which partitions have an open transaction: their last stable offset (ListOffsets latest,
    read_committed) is behind their high watermark (read_uncommitted)."""

    def __init__(self, bootstrap: str, topics: list[str]):
        from confluent_kafka import Consumer

        self.topics = topics
        self.cs = {iso: Consumer({"bootstrap.servers": bootstrap, "group.id": f"lso-{uuid.uuid4().hex[:8]}",
                                  "isolation.level": iso}) for iso in ("read_committed", "read_uncommitted")}

    def __call__(self) -> dict[str, list[int]]:
        from confluent_kafka import TopicPartition

        out = {}
        for t in self.topics:
            parts = sorted(self.cs["read_committed"].list_topics(t, timeout=10).topics[t].partitions)
            end = {iso: [c.get_watermark_offsets(TopicPartition(t, p), timeout=10, cached=False)[1] for p in parts]
                   for iso, c in self.cs.items()}
            open_ = [p for p in parts if end["read_committed"][p] < end["read_uncommitted"][p]]
            if open_:
                out[t] = open_
        return out

    def close(self):
        for c in self.cs.values():
            c.close()


@pytest.mark.timeout(300)
def test_word_count_survives_kill_9_and_restores_its_store_from_the_changelog(sb, new_topic, tmp_path):
    """Run 1 counts a first batch of lines (checked exactly); then the second batch arrives a line
    at a time and the app is SIGKILLed as soon as the broker shows one of its transactions open
    (LSO behind the high watermark). Its state dir is deleted, the rest of the second batch and a
    third one are produced, and run 2 (a new transactional.id) must restore the store from the
    changelog, get past the dead transaction once the broker has aborted it, and end at the exact
    totals of all three batches."""
    check_built("kafka-streams-*.jar", "Kafka Streams")
    rng = random.Random(20240917)
    inp = new_topic(sb, partitions=2)
    out = new_topic(sb, partitions=2, suffix="counts")
    app_id = f"wordcount-{uuid.uuid4().hex[:8]}"
    changelog, repartition = f"{app_id}-counts-changelog", f"{app_id}-words-repartition"
    state_dir = tmp_path / "state"
    batches = [make_lines(rng, n) for n in (40, 30, 30)]
    counts1 = word_counts(batches[0])
    total = sum((word_counts(b) for b in batches), Counter())
    assert set(word_counts(batches[2])) & set(counts1), "the last batch must add to counts the store holds"
    first = [0, len(batches[0]), len(batches[0]) + len(batches[1])]

    produce_lines(sb.bootstrap, inp, batches[0], first[0])
    apps: list[LoggedLineProc] = []
    with logs_on_failure(tmp_path / "streams.log"):
        try:
            # Run 1: counts the first batch; then dies processing the second.
            a = start_app(tmp_path, sb.bootstrap, app_id, inp, out, state_dir, 1)
            apps.append(a)
            a.wait_for(lambda d: d.get("to") == "RUNNING", "state RUNNING", timeout_s=90)
            wait_counts(sb.bootstrap, out, {w: str(c) for w, c in counts1.items()}, a, timeout_s=90)
            assert (state_dir / app_id).is_dir(), f"no state under {state_dir}"
            # The second batch, a line at a time, until the broker shows a transaction of the app
            # open; then kill -9. The lines not yet sent follow while the app is down.
            probe = OpenTransactions(sb.bootstrap, [repartition, changelog, out])
            pending = list(enumerate(batches[1], first[1]))
            open_before = {}
            try:
                while pending and not open_before:
                    i, line = pending.pop(0)
                    produce_lines(sb.bootstrap, inp, [line], i)
                    open_before = probe()
                a.kill9()
                open_after = probe()
            finally:
                probe.close()
            print(f"kill -9 with {len(batches[1]) - len(pending)} lines of the second batch sent; open transactions "
                  f"seen before: {open_before}, after: {open_after}")
            assert open_before, "no transaction of the app seen open while it processed the second batch"
            if pending:
                produce_lines(sb.bootstrap, inp, [l for _, l in pending], pending[0][0])
            # Nothing left locally: the store has to come back from the changelog.
            shutil.rmtree(state_dir)

            produce_lines(sb.bootstrap, inp, batches[2], first[2])

            # Run 2: a new instance (new process id, so a new transactional.id) on an empty state dir.
            b = start_app(tmp_path, sb.bootstrap, app_id, inp, out, state_dir, 2)
            apps.append(b)
            history = wait_counts(sb.bootstrap, out, {w: str(c) for w, c in total.items()}, b, timeout_s=120)

            restored = [d for d in b.lines if d.get("event") == "restore-end"]
            assert restored, f"run 2 restored nothing; its events: {b.lines}"
            assert {d["topic"] for d in restored} == {changelog}, restored
            assert {d["store"] for d in restored} == {"counts"}, restored
            n_restored = sum(d["restored"] for d in restored)
            # Every word of the first batch has at least its latest count in the changelog,
            # compacted or not.
            assert n_restored >= len(counts1), f"restored {n_restored} records for {len(counts1)} words: {restored}"
            starts = [(d["partition"], d["start"], d["end"]) for d in b.lines if d.get("event") == "restore-start"]
            print(f"run 2 restored {n_restored} changelog records ((partition, start, end): {starts})")

            # Counts never went back (a store that came back empty would restart from 1).
            for word, values in history.items():
                nums = [int(v) for v in values]
                assert nums == sorted(nums), f"{word}: counts went back in the output: {nums}"

            # Streams deletes what it has consumed from its repartition topic (DeleteRecords).
            def purged():
                marks = watermarks(sb.bootstrap, repartition)
                return marks if all(low > 0 for low, high in marks.values() if high > 0) else None

            wait_for(purged, f"DeleteRecords by the app moving up the low watermarks of {repartition}", 30, 0.5)

            # The internal topics as Streams asked for them, read back with DescribeConfigs.
            cl = topic_configs(sb.bootstrap, changelog)
            assert cl.get("cleanup.policy") == "compact", f"{changelog}: {cl}"
            rp = topic_configs(sb.bootstrap, repartition)
            assert rp.get("cleanup.policy") == "delete" and rp.get("retention.ms") == "-1", f"{repartition}: {rp}"
        finally:
            for p in apps:
                p.close()
