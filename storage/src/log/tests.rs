use super::*;
use bytes::BytesMut;
use fjord_protocol::batch::{validate_produce, TimestampType, ValidationConfig};
use fjord_protocol::kafka_protocol::indexmap::IndexMap;
use fjord_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

const T0: i64 = 1_700_000_000_000;

fn batch(n: i64, ts0: i64) -> AppendBatch {
    encoded(n, ts0, None)
}

/// A batch of `n` records whose bytes carry `producer` (id, epoch, first sequence,
/// transactional), as a producer's do.
fn encoded(n: i64, ts0: i64, producer: Option<(i64, i16, i32, bool)>) -> AppendBatch {
    let recs: Vec<(Option<String>, Option<String>)> = (0..n).map(|i| (None, Some(format!("v{i}")))).collect();
    encoded_records(&recs, ts0, producer)
}

/// A batch of the given (key, value) records, with `producer` as in [`encoded`].
fn encoded_records(
    recs: &[(Option<String>, Option<String>)],
    ts0: i64,
    producer: Option<(i64, i16, i32, bool)>,
) -> AppendBatch {
    let (producer_id, producer_epoch, first_seq, transactional) = producer.unwrap_or((-1, -1, 0, false));
    let records: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: fjord_protocol::kafka_protocol::records::TimestampType::Creation,
            offset: i as i64,
            sequence: first_seq + i as i32,
            timestamp: ts0 + i as i64,
            key: k.clone().map(Bytes::from),
            value: v.clone().map(Bytes::from),
            headers: IndexMap::new(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::Lz4,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &opts).expect("encodes");
    let cfg = ValidationConfig {
        max_message_bytes: 1 << 20,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        target_codec: None,
        produce_version: 9,
        now_ms: T0,
        inflate_budget: None,
        require_keys: false,
    };
    let v = validate_produce(buf.freeze(), &cfg).expect("valid");
    AppendBatch {
        record_count: v.header.record_count,
        max_timestamp: v.header.max_timestamp,
        max_timestamp_offset_delta: v.max_timestamp_offset_delta,
        bytes: v.bytes,
        producer: None,
        marker: None,
    }
}

fn open(dir: &std::path::Path, flush: i64) -> Arc<LogStore> {
    open_with_segments(dir, flush, crate::DEFAULT_SEGMENT_BYTES)
}

/// Opens the store. A test that simulates a crash calls [`LogStore::crash`] and drops the
/// store first, so nothing of the old instance runs when the new one opens.
fn open_with_segments(dir: &std::path::Path, flush: i64, segment_bytes: u64) -> Arc<LogStore> {
    let cfg = StorageConfig {
        data_dir: dir.to_path_buf(),
        flush_interval_messages: flush,
        flush_interval_ms: None,
        segment_bytes,
        checkpoint_interval_ms: 60_000,
    };
    LogStore::open(cfg).unwrap_or_else(|e| panic!("open failed: {e}"))
}

const P0: PartitionId = PartitionId {
    topic_id: [1; 16],
    partition: 0,
};

fn offsets_of(records: &Bytes) -> Vec<i64> {
    let mut b = records.clone();
    RecordBatchDecoder::decode_all(&mut b)
        .expect("decodes")
        .into_iter()
        .flat_map(|set| set.records.into_iter().map(|r| r.offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_assigns_dense_offsets_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), i64::MAX);
    store.ensure_partition(P0).await.expect("create");
    for (i, ts) in [T0, T0 + 100, T0 + 50].into_iter().enumerate() {
        let r = store.append(P0, batch(5, ts), 0).await.expect("append");
        assert_eq!(r.base_offset, 5 * i as i64);
    }
    let o = store.offsets(&P0).expect("known");
    assert_eq!((o.log_start, o.log_end, o.high_watermark), (0, 15, 15));

    let all = store.read(P0, 7, 1 << 20, true).await.expect("read");
    assert_eq!(offsets_of(&all.records), (5..15).collect::<Vec<_>>());
    let one = store.read(P0, 0, 10, true).await.expect("read");
    assert_eq!(
        offsets_of(&one.records),
        (0..5).collect::<Vec<_>>(),
        "KIP-74: first batch even if too large"
    );
    let none = store.read(P0, 0, 10, false).await.expect("read");
    assert!(none.records.is_empty());
    assert!(store.read(P0, 15, 100, true).await.expect("at end").records.is_empty());
    assert!(matches!(
        store.read(P0, 16, 100, true).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // A response with no room left: nothing read, but the offset is still checked.
    let spent = store.read(P0, 0, 0, false).await.expect("read");
    assert!(spent.records.is_empty());
    assert_eq!(spent.offsets.high_watermark, 15);
    assert!(matches!(
        store.read(P0, 16, 0, false).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        offsets_of(&store.read(P0, 0, 0, true).await.expect("read").records),
        (0..5).collect::<Vec<_>>()
    );

    // Time index: T0+50 is first reached by record 5 (batch 2 starts at T0+100 > T0+50).
    assert_eq!(
        store.offset_for_timestamp(P0, T0 + 50).await.expect("ts"),
        Some((5, T0 + 100))
    );
    assert_eq!(
        store.offset_for_timestamp(P0, T0 + 2).await.expect("ts"),
        Some((2, T0 + 2))
    );
    assert_eq!(store.offset_for_timestamp(P0, T0 + 1000).await.expect("ts"), None);
    assert_eq!(store.max_timestamp(P0).await.expect("max"), Some((9, T0 + 104)));
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopen_and_delete_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path(), 1);
        store.ensure_partition(P0).await.expect("create");
        for _ in 0..4 {
            store.append(P0, batch(3, T0), 2).await.expect("append");
        }
        assert_eq!(store.delete_records(P0, 4).await.expect("delete"), 4);
        assert!(matches!(
            store.delete_records(P0, 99).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        // No close: simulates a crash after the acknowledged writes.
        store.crash().await;
    }
    let store = open(dir.path(), 1);
    let o = store.offsets(&P0).expect("recovered");
    assert_eq!((o.log_start, o.log_end, o.high_watermark), (4, 12, 12));
    assert!(matches!(
        store.read(P0, 2, 1 << 20, true).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let r = store.read(P0, 4, 1 << 20, true).await.expect("read");
    assert_eq!(
        offsets_of(&r.records),
        (3..12).collect::<Vec<_>>(),
        "batch holding offset 4 is kept whole"
    );
    assert_eq!(store.append(P0, batch(1, T0), 2).await.expect("append").base_offset, 12);
    store.delete_topic(P0.topic_id).await.expect("delete topic");
    assert!(store.offsets(&P0).is_none());
    store.ensure_partition(P0).await.expect("recreate");
    assert_eq!(store.offsets(&P0).expect("new").log_end, 0);
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_writes_and_stay_dense() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), 1);
    let p1 = PartitionId {
        topic_id: [1; 16],
        partition: 1,
    };
    store.ensure_partition(P0).await.expect("create");
    store.ensure_partition(p1).await.expect("create");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let pid = if i % 2 == 0 { P0 } else { p1 };
        tasks.push(tokio::spawn(async move {
            store.append(pid, batch(2, T0), 0).await.expect("append").base_offset
        }));
    }
    let mut bases = Vec::new();
    for t in tasks {
        bases.push(t.await.expect("join"));
    }
    bases.sort();
    let expected: Vec<i64> = (0..100).flat_map(|i| [2 * i, 2 * i]).collect();
    assert_eq!(bases, expected);
    assert_eq!(store.offsets(&P0).expect("p0").log_end, 200);
    assert_eq!(store.offsets(&p1).expect("p1").log_end, 200);
    store.shutdown().await.expect("close");
}

/// Without fsyncs an append that finds the writer idle is applied on its caller's thread;
/// the others queue. Producers that each submit a run of batches without waiting for them
/// (as a pipelining connection does) must see them applied in their order across both paths:
/// a batch applied ahead of one submitted before it would break its producer's sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_queued_appends_keep_submission_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), i64::MAX);
    // Which path an append takes depends on timing: on a loaded machine the writer may be busy
    // for a whole round. Rounds go on (each on a partition of its own) until both paths were
    // taken; the order must hold in every round.
    for round in 0..20 {
        let pid = PartitionId { partition: round, ..P0 };
        store.ensure_partition(pid).await.expect("create");
        let mut tasks = Vec::new();
        for producer_id in 0..8i64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut pending = Vec::new();
                for i in 0..100 {
                    let b = idempotent(2, producer_id, 0, i * 2, false);
                    pending.push(store.submit_append(pid, b, 0).await.expect("submit"));
                    if i % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                let mut bases = Vec::new();
                for p in pending {
                    bases.push(p.wait().await.expect("append in sequence").base_offset);
                }
                bases
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let bases = t.await.expect("join");
            assert!(
                bases.windows(2).all(|w| w[0] < w[1]),
                "a producer's batches out of order: {bases:?}"
            );
            all.extend(bases);
        }
        all.sort();
        assert_eq!(all, (0..800).map(|i| i * 2).collect::<Vec<i64>>());
        assert_eq!(store.offsets(&pid).expect("partition").log_end, 1600);
        if store.writer.inline_appends() > 0 {
            break;
        }
    }
    assert!(
        store.writer.inline_appends() > 0,
        "no append was applied inline in 20 rounds"
    );
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_epoch_history_answers_offset_for_leader_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), i64::MAX);
    store.ensure_partition(P0).await.expect("create");
    assert_eq!(
        store.end_offset_for_epoch(&P0, 0, 0).expect("empty"),
        Some((0, 0)),
        "epoch in force, nothing written"
    );
    assert_eq!(store.end_offset_for_epoch(&P0, 0, 3).expect("empty"), None);
    for _ in 0..3 {
        store.append(P0, batch(2, T0), 0).await.expect("append");
    }
    store.append(P0, batch(2, T0), 2).await.expect("append");
    assert_eq!(store.end_offset_for_epoch(&P0, 0, 2).expect("e0"), Some((0, 6)));
    assert_eq!(
        store.end_offset_for_epoch(&P0, 1, 2).expect("e1"),
        Some((0, 6)),
        "floor epoch 0 ends where 2 starts"
    );
    assert_eq!(store.end_offset_for_epoch(&P0, 2, 2).expect("e2"), Some((2, 8)));
    assert_eq!(store.end_offset_for_epoch(&P0, 5, 5).expect("e5"), Some((2, 8)));
    assert_eq!(store.end_offset_for_epoch(&P0, -1, 2).expect("none"), None);
    // A log whose first epoch is 3: an older epoch ends where 3 starts, as Kafka answers, so
    // a follower that wrote in it cuts everything it wrote then.
    let p1 = PartitionId { partition: 1, ..P0 };
    store.ensure_partition(p1).await.expect("create");
    store.append(p1, batch(2, T0), 3).await.expect("append");
    assert_eq!(store.end_offset_for_epoch(&p1, 1, 3).expect("e1"), Some((1, 0)));
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_and_excess_batches_and_sizes_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batch_len;
    {
        let store = open(dir.path(), i64::MAX);
        store.ensure_partition(P0).await.expect("create");
        // Batches with newest timestamps T0+1, T0+1001, ..., T0+4001 (2 records each).
        for i in 0..5 {
            store.append(P0, batch(2, T0 + 1000 * i), 0).await.expect("append");
        }
        let size = store.size_bytes(&P0);
        batch_len = size / 5;
        assert_eq!(size, batch_len * 5, "equal batches");
        // Unlimited: nothing happens.
        assert_eq!(store.enforce_retention(P0, -1, -1, T0 + 10_000).await.expect("noop"), 0);
        // retention.ms = 2500 at T0+4000: batches whose newest record is before T0+1500 go.
        assert_eq!(store.enforce_retention(P0, 2500, -1, T0 + 4000).await.expect("time"), 4);
        assert_eq!(store.size_bytes(&P0), batch_len * 3);
        assert!(matches!(
            store.read(P0, 2, 1 << 20, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            offsets_of(&store.read(P0, 4, 1 << 20, true).await.expect("read").records),
            (4..10).collect::<Vec<_>>()
        );
        // retention.bytes = two batches: one more goes.
        let kept = store
            .enforce_retention(P0, -1, (batch_len * 2) as i64, T0)
            .await
            .expect("size");
        assert_eq!(kept, 6);
        assert_eq!(store.size_bytes(&P0), batch_len * 2);
        store.crash().await;
    }
    let store = open(dir.path(), i64::MAX);
    assert_eq!(store.size_bytes(&P0), batch_len * 2, "size is persisted");
    assert_eq!(store.offsets(&P0).expect("p0").log_start, 6);
    // Everything expired: the log empties up to its end, and appends continue from there.
    assert_eq!(
        store.enforce_retention(P0, 0, -1, T0 + 1_000_000).await.expect("all"),
        10
    );
    assert_eq!(store.size_bytes(&P0), 0);
    assert_eq!(store.append(P0, batch(1, T0), 0).await.expect("append").base_offset, 10);
    store.shutdown().await.expect("close");
}

fn idempotent(n: i64, producer_id: i64, epoch: i16, first_seq: i32, transactional: bool) -> AppendBatch {
    let mut b = encoded(n, T0, Some((producer_id, epoch, first_seq, transactional)));
    b.producer = Some(crate::producers::ProducerBatch::new(
        producer_id,
        epoch,
        first_seq,
        n as i32,
        transactional,
    ));
    b
}

fn marker(producer_id: i64, epoch: i16, commit: bool) -> AppendBatch {
    let bytes = fjord_protocol::batch::control_batch(producer_id, epoch, commit, 0, T0);
    AppendBatch {
        bytes,
        record_count: 1,
        max_timestamp: T0,
        max_timestamp_offset_delta: 0,
        producer: None,
        marker: Some(crate::producers::TxnMarker {
            producer_id,
            epoch,
            commit,
            coordinator_epoch: 0,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_are_deduplicated_even_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path(), i64::MAX);
        store.ensure_partition(P0).await.expect("create");
        assert_eq!(
            store
                .append(P0, idempotent(3, 9, 0, 0, false), 0)
                .await
                .expect("ok")
                .base_offset,
            0
        );
        assert_eq!(
            store
                .append(P0, idempotent(2, 9, 0, 3, false), 0)
                .await
                .expect("ok")
                .base_offset,
            3
        );
        // A retry of the first batch: its original offset, nothing written.
        assert_eq!(
            store
                .append(P0, idempotent(3, 9, 0, 0, false), 0)
                .await
                .expect("ok")
                .base_offset,
            0
        );
        assert_eq!(store.offsets(&P0).expect("ok").log_end, 5);
        // Simulated crash: no close.
        store.crash().await;
    }
    let store = open(dir.path(), i64::MAX);
    assert_eq!(
        store
            .append(P0, idempotent(2, 9, 0, 3, false), 0)
            .await
            .expect("ok")
            .base_offset,
        3
    );
    assert!(matches!(
        store.append(P0, idempotent(1, 9, 0, 9, false), 0).await,
        Err(StorageError::OutOfOrderSequence(_))
    ));
    assert!(matches!(
        store.append(P0, idempotent(1, 9, -1, 5, false), 0).await,
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    assert_eq!(
        store
            .append(P0, idempotent(1, 9, 0, 5, false), 0)
            .await
            .expect("ok")
            .base_offset,
        5
    );
    assert_eq!(store.offsets(&P0).expect("ok").log_end, 6);
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_hold_the_last_stable_offset_and_aborts_are_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path(), i64::MAX);
        store.ensure_partition(P0).await.expect("create");
        store.append(P0, batch(2, T0), 0).await.expect("ok"); // 0-1, plain
        store.append(P0, idempotent(2, 5, 0, 0, true), 0).await.expect("ok"); // 2-3, txn of 5
        store.append(P0, idempotent(1, 6, 0, 0, true), 0).await.expect("ok"); // 4, txn of 6
        let o = store.offsets(&P0).expect("ok");
        assert_eq!((o.high_watermark, o.last_stable), (5, 2));
        store.append(P0, marker(5, 0, false), 0).await.expect("ok"); // 5: abort 5
        let o = store.offsets(&P0).expect("ok");
        assert_eq!(
            (o.high_watermark, o.last_stable),
            (6, 4),
            "6's transaction is still open"
        );
        assert_eq!(
            store.aborted_txns(&P0, 0, 6),
            vec![crate::producers::AbortedTxn {
                producer_id: 5,
                first_offset: 2,
                last_offset: 5
            }]
        );
        assert!(store.aborted_txns(&P0, 6, 10).is_empty());
        store.crash().await;
    }
    // After a crash the open transaction still holds the LSO, and the abort is remembered.
    let store = open(dir.path(), i64::MAX);
    let o = store.offsets(&P0).expect("ok");
    assert_eq!((o.high_watermark, o.last_stable), (6, 4));
    assert_eq!(store.aborted_txns(&P0, 0, 6).len(), 1);
    store.append(P0, marker(6, 0, true), 0).await.expect("ok"); // 6: commit 6
    let o = store.offsets(&P0).expect("ok");
    assert_eq!((o.high_watermark, o.last_stable), (7, 7));
    assert_eq!(store.aborted_txns(&P0, 0, 7).len(), 1, "a commit adds no aborted entry");
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_producers_expire_and_come_back_as_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), i64::MAX);
    store.ensure_partition(P0).await.expect("create");
    store.append(P0, idempotent(2, 3, 0, 0, false), 0).await.expect("ok");
    store.append(P0, idempotent(1, 4, 0, 0, true), 0).await.expect("ok"); // open transaction
                                                                          // Not idle long enough: nothing expires.
    assert_eq!(store.expire_producers(T0 + 1000, 60_000).await.expect("ok"), 0);
    // Long after: the plain producer goes, the one with an open transaction stays.
    assert_eq!(store.expire_producers(T0 + 120_000, 60_000).await.expect("ok"), 1);
    // Forgotten: a sequence that would have been out of order is accepted as a new producer.
    assert_eq!(
        store
            .append(P0, idempotent(1, 3, 0, 7, false), 0)
            .await
            .expect("ok")
            .base_offset,
        3
    );
    store.shutdown().await.expect("close");
    drop(store);
    let store = open(dir.path(), i64::MAX);
    // The expiry survived the restart along with the new state (7 is now the last sequence).
    assert!(matches!(
        store.append(P0, idempotent(1, 3, 0, 9, false), 0).await,
        Err(StorageError::OutOfOrderSequence(_))
    ));
    store.shutdown().await.expect("close");
}

/// Segment files of P0 on disk: (base offset, length).
fn segment_files(dir: &std::path::Path) -> Vec<(i64, u64)> {
    let hex: String = P0.topic_id.iter().map(|b| format!("{b:02x}")).collect();
    let pdir = dir.join("segments").join(format!("{hex}-{}", P0.partition));
    let mut out: Vec<(i64, u64)> = match std::fs::read_dir(&pdir) {
        Ok(entries) => entries
            .map(|e| e.expect("entry"))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let base = name.strip_suffix(".log")?.parse().ok()?;
                Some((base, e.metadata().ok()?.len()))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_and_whole_segments_go_with_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(4, T0).bytes.len() as u64;
    // Two batches per segment.
    let store = open_with_segments(dir.path(), i64::MAX, one * 2);
    store.ensure_partition(P0).await.expect("create");
    for i in 0..5 {
        store.append(P0, batch(4, T0 + 1000 * i), 0).await.expect("append");
    }
    assert_eq!(segment_files(dir.path()), vec![(0, 2 * one), (8, 2 * one), (16, one)]);
    // A read across segments is whole and in order.
    let r = store.read(P0, 2, 1 << 20, true).await.expect("read");
    assert_eq!(offsets_of(&r.records), (0..20).collect::<Vec<_>>());
    // A read from the middle stops at max_bytes on a batch boundary.
    let r = store.read(P0, 9, (2 * one) as usize, true).await.expect("read");
    assert_eq!(offsets_of(&r.records), (8..16).collect::<Vec<_>>());
    // Retention of the first three batches: segment 0 goes, segment 8 still holds offset 12.
    assert_eq!(
        store.enforce_retention(P0, 2500, -1, T0 + 5000).await.expect("time"),
        12
    );
    assert_eq!(segment_files(dir.path()), vec![(8, 2 * one), (16, one)]);
    assert_eq!(
        store.offset_for_timestamp(P0, T0).await.expect("ts"),
        Some((12, T0 + 3000)),
        "the time index skips what retention removed"
    );
    // DeleteRecords to the end: every segment goes; the next append starts a new one.
    assert_eq!(store.delete_records(P0, -1).await.expect("delete"), 20);
    assert_eq!(segment_files(dir.path()), vec![]);
    store.append(P0, batch(1, T0), 0).await.expect("append");
    assert_eq!(segment_files(dir.path()), vec![(20, batch(1, T0).bytes.len() as u64)]);
    store.shutdown().await.expect("close");
    drop(store);
    let store = open_with_segments(dir.path(), i64::MAX, one * 2);
    let r = store.read(P0, 20, 1 << 20, true).await.expect("read");
    assert_eq!(offsets_of(&r.records), vec![20]);
    store.delete_topic(P0.topic_id).await.expect("delete topic");
    assert_eq!(segment_files(dir.path()), vec![]);
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_cuts_unacknowledged_bytes_and_drops_batches_whose_bytes_are_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(3, T0).bytes.len() as u64;
    {
        let store = open(dir.path(), i64::MAX);
        store.ensure_partition(P0).await.expect("create");
        for _ in 0..4 {
            store.append(P0, batch(3, T0), 0).await.expect("append");
        }
        // No close: a crash.
        store.crash().await;
    }
    let path = {
        let hex: String = P0.topic_id.iter().map(|b| format!("{b:02x}")).collect();
        dir.path()
            .join("segments")
            .join(format!("{hex}-0"))
            .join(format!("{:020}.log", 0))
    };
    // Bytes written after the last acknowledged batch (a write cut short by the crash).
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"torn write").expect("write");
    }
    {
        let store = open(dir.path(), i64::MAX);
        assert_eq!(store.offsets(&P0).expect("p0").log_end, 12);
        assert_eq!(
            segment_files(dir.path()),
            vec![(0, 4 * one)],
            "the torn tail is cut off"
        );
        assert_eq!(store.append(P0, batch(3, T0), 0).await.expect("append").base_offset, 12);
        let r = store.read(P0, 0, 1 << 20, true).await.expect("read");
        assert_eq!(offsets_of(&r.records), (0..15).collect::<Vec<_>>());
        store.crash().await;
    }
    // A power loss without fsync kept the index but not the last batch and a half.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(3 * one + one / 2)
        .expect("truncate");
    let store = open(dir.path(), i64::MAX);
    assert_eq!(
        store.offsets(&P0).expect("p0").log_end,
        9,
        "the log ends at the last whole batch"
    );
    assert_eq!(segment_files(dir.path()), vec![(0, 3 * one)]);
    let r = store.read(P0, 0, 1 << 20, true).await.expect("read");
    assert_eq!(offsets_of(&r.records), (0..9).collect::<Vec<_>>());
    assert_eq!(store.append(P0, batch(3, T0), 0).await.expect("append").base_offset, 9);
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_the_head_come_from_the_tail_and_match_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), i64::MAX);
    store.ensure_partition(P0).await.expect("create");
    let n = crate::tail::TAIL_BATCHES as i64 + 8;
    for i in 0..n {
        store.append(P0, batch(3, T0 + i), 0).await.expect("append");
    }
    let end = 3 * n;
    let upper = end;
    // The first 8 batches are older than the tail: the index answers.
    assert!(store.tails.plan(&P0, 0, upper, 1 << 20, true).is_none());
    assert!(store.tails.plan(&P0, 3 * 8 - 1, upper, 1 << 20, true).is_none());
    let head = store
        .tails
        .plan(&P0, 3 * 8 + 1, upper, 1 << 20, true)
        .expect("in the tail");
    assert_eq!(head.chunks.len(), 1, "adjacent batches are one region");
    // Every start offset and size limit reads the same through either path.
    for from in [0, 1, 23, 24, 25, end - 3, end - 1] {
        for max in [1usize, 200, 1 << 20] {
            let r = store.read(P0, from, max, true).await.expect("read");
            let first_batch = from / 3 * 3;
            let got = offsets_of(&r.records);
            assert_eq!(got.first().copied(), Some(first_batch), "from {from} max {max}");
            assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "dense from {from}");
            if max == 1 << 20 {
                assert_eq!(got.last().copied(), Some(end - 1), "to the end from {from}");
            }
        }
    }
    // DeleteRecords into the tail: what is left of it still reads.
    assert_eq!(store.delete_records(P0, end - 4).await.expect("delete"), end - 4);
    let r = store.read(P0, end - 4, 1 << 20, true).await.expect("read");
    assert_eq!(offsets_of(&r.records), ((end - 6)..end).collect::<Vec<_>>());
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_reads_off_the_block_cache_fall_back_to_the_disk_tier() {
    const BATCHES: i64 = 2_000;
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path(), 1);
        store.ensure_partition(P0).await.expect("create");
        // Enough batches that their locators span many table blocks, of which recovery at the
        // next start reads only the last.
        for _ in 0..BATCHES {
            store.append(P0, batch(2, T0), 2).await.expect("append");
        }
        store.shutdown().await.expect("close"); // flushes the memtables into table files
    }
    let store = open(dir.path(), 1);
    let hw = store.offsets(&P0).expect("partition").high_watermark;
    let span = ReadSpan {
        offset: 0,
        upper: hw,
        max_bytes: 1 << 20,
        at_least_one: true,
    };
    let plan = |tier| plan_batches(&store.db, &store.segments, &P0, span, tier);
    // Nothing of the table files is cached after the restart: the non-blocking tier says so
    // rather than read the disk, and read_file_records then plans on the blocking pool.
    match plan(ReadTier::BlockCache) {
        Err(StorageError::Rocks(e)) => assert_eq!(e.kind(), ErrorKind::Incomplete),
        other => panic!("expected Incomplete from a cold block cache, got {other:?}"),
    }
    let all = store.read(P0, 0, 1 << 20, true).await.expect("read");
    assert_eq!(offsets_of(&all.records), (0..2 * BATCHES).collect::<Vec<_>>());
    // That read filled the block cache: the same plan is now made without the disk tier.
    let cached = plan(ReadTier::BlockCache).expect("cached");
    assert_eq!(cached.len, all.records.len());
    store.shutdown().await.expect("close");
}

/// Damage done to a crashed store's segment files before it is opened again.
#[derive(Debug, Clone)]
enum Damage {
    /// XOR a byte at this fraction (per mille) of the segment's length.
    Flip { segment: usize, at: u16, mask: u8 },
    /// Cut the segment to this fraction (per mille) of its length.
    Truncate { segment: usize, at: u16 },
    /// Delete the segment file.
    Remove { segment: usize },
    /// Append garbage to the segment (a write torn by the crash).
    Append { segment: usize, len: u8 },
}

fn damage_strategy() -> impl proptest::strategy::Strategy<Value = Damage> {
    use proptest::prelude::*;
    prop_oneof![
        (0usize..4, 0u16..1000, 1u8..=255).prop_map(|(segment, at, mask)| Damage::Flip { segment, at, mask }),
        (0usize..4, 0u16..1000).prop_map(|(segment, at)| Damage::Truncate { segment, at }),
        (0usize..4).prop_map(|segment| Damage::Remove { segment }),
        (0usize..4, 1u8..=255).prop_map(|(segment, len)| Damage::Append { segment, len }),
    ]
}

fn apply_damage(dir: &std::path::Path, damage: &Damage) {
    let hex: String = P0.topic_id.iter().map(|b| format!("{b:02x}")).collect();
    let pdir = dir.join("segments").join(format!("{hex}-{}", P0.partition));
    let files = segment_files(dir);
    let pick = |i: usize| {
        files
            .get(i % files.len().max(1))
            .map(|(b, len)| (pdir.join(format!("{b:020}.log")), *len))
    };
    let Some((path, len)) = pick(match damage {
        Damage::Flip { segment, .. }
        | Damage::Truncate { segment, .. }
        | Damage::Remove { segment }
        | Damage::Append { segment, .. } => *segment,
    }) else {
        return;
    };
    match damage {
        Damage::Flip { at, mask, .. } if len > 0 => {
            let mut bytes = std::fs::read(&path).expect("read");
            let i = (len * u64::from(*at) / 1000) as usize;
            bytes[i] ^= mask;
            std::fs::write(&path, bytes).expect("write");
        }
        Damage::Flip { .. } => {}
        Damage::Truncate { at, .. } => {
            let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
            f.set_len(len * u64::from(*at) / 1000).expect("truncate");
        }
        Damage::Remove { .. } => std::fs::remove_file(&path).expect("remove"),
        Damage::Append { len, .. } => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
            f.write_all(&vec![0xA5; usize::from(*len)]).expect("append");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 24, ..Default::default() })]

    /// Recovery over a crashed store whose segment files were damaged at random, the
    /// checkpoint synced or not: it opens, and the log it serves is a prefix of what was
    /// acknowledged, every record at its acknowledged offset, and takes appends after it.
    #[test]
    fn recovery_over_damaged_segments_keeps_a_prefix_of_the_acknowledged_log(
        damages in proptest::collection::vec(damage_strategy(), 1..4),
        clean_first in proptest::bool::ANY,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let one = batch(3, T0).bytes.len() as u64;
            let mut acked = Vec::new();
            {
                // Three batches a segment: four segments for ten batches.
                let store = open_with_segments(dir.path(), i64::MAX, 3 * one + one / 2);
                store.ensure_partition(P0).await.expect("create");
                for i in 0..10 {
                    let r = store.append(P0, batch(3, T0 + i), 0).await.expect("append");
                    acked.push(r.base_offset);
                }
                if clean_first {
                    // Synced and checkpointed: recovery reads none of it, and must still
                    // notice files that went missing or shrank.
                    store.shutdown().await.expect("close");
                } else {
                    store.crash().await;
                }
            }
            // A byte flipped inside a segment the checkpoint covers is not looked for at start
            // (Kafka does not re-read below its recovery point either; consumers check CRCs).
            let damages: Vec<&Damage> = damages
                .iter()
                .filter(|d| !(clean_first && matches!(d, Damage::Flip { .. })))
                .collect();
            for d in &damages {
                apply_damage(dir.path(), d);
            }
            let store = open_with_segments(dir.path(), i64::MAX, 3 * one + one / 2);
            let o = store.offsets(&P0).expect("the partition survives");
            assert!(o.log_end <= 30 && o.log_end % 3 == 0, "{o:?} after {damages:?}");
            let read = store.read(P0, 0, 1 << 20, true).await.expect("read the prefix");
            let offsets = offsets_of(&read.records);
            assert_eq!(offsets, (0..o.log_end).collect::<Vec<_>>(), "after {damages:?}");
            let r = store.append(P0, batch(1, T0), 0).await.expect("append after recovery");
            assert_eq!(r.base_offset, o.log_end);
            store.shutdown().await.expect("close");
        });
    }
}

/// Everything a leader holds from `from` on, as a follower's fetch gets it.
async fn leader_records(store: &LogStore, from: i64) -> Bytes {
    let (plan, _) = store
        .read_file_records(P0, from, 1 << 20, true, ReadLimit::LogEnd)
        .await
        .expect("read");
    let bufs = store.bufs.clone();
    tokio::task::spawn_blocking(move || fill(&bufs, &plan))
        .await
        .expect("task")
        .expect("fill")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_created_replicated_commits_nothing_alone_from_its_first_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), i64::MAX);
    // The append is queued at once, before anything else could flag the partition.
    store.ensure_replica(P0, true).await.expect("create");
    store.append(P0, batch(3, T0), 0).await.expect("append");
    let o = store.offsets(&P0).expect("exists");
    assert_eq!(
        (o.log_end, o.high_watermark),
        (3, 0),
        "the leader moves it, not the writer"
    );
    store.shutdown().await.expect("close");
}

/// A consumer can hold an offset past a new leader's high watermark (it read it from the old
/// leader, whose watermark was ahead): Kafka answers such a fetch with no records, and only an
/// offset past the log end is out of range. Answering OFFSET_OUT_OF_RANGE sent consumers back to
/// `auto.offset.reset` (the fault schedule's transactional job re-read a partition from 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_between_the_high_watermark_and_the_log_end_reads_nothing_yet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), i64::MAX);
    store.ensure_replica(P0, true).await.expect("create");
    store.append(P0, batch(3, T0), 0).await.expect("append");
    store.append(P0, batch(3, T0), 0).await.expect("append");
    store.advance_high_watermark(&P0, 3);
    for offset in [3, 4, 6] {
        let read = store.read(P0, offset, 1 << 20, true).await.expect("in the log");
        assert!(
            read.records.is_empty(),
            "offset {offset}: nothing above the high watermark"
        );
        assert_eq!(read.offsets.high_watermark, 3);
    }
    assert!(matches!(
        store.read(P0, 7, 1 << 20, true).await,
        Err(StorageError::OffsetOutOfRange { high_watermark: 3, .. })
    ));
    store.shutdown().await.expect("close");
}

/// The batch of `records` starting at `base`, with its base offset changed to `to` (the
/// CRC does not cover it).
fn moved(records: &Bytes, base: i64, to: i64) -> Bytes {
    let b = fjord_protocol::batch::split_batches(records.clone())
        .expect("batches")
        .into_iter()
        .find(|b| i64::from_be_bytes(b[..8].try_into().expect("8 bytes")) == base)
        .expect("a batch at base");
    let mut m = BytesMut::from(&b[..]);
    m[..8].copy_from_slice(&to.to_be_bytes());
    m.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_copies_a_cleaned_leader_with_its_gaps_and_producer_sequences() {
    let (ld, fd) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let leader = open(ld.path(), i64::MAX);
    let follower = open(fd.path(), i64::MAX);
    for s in [&leader, &follower] {
        s.ensure_partition(P0).await.expect("create");
        s.set_replicated(&P0, true);
    }
    leader.append(P0, idempotent(3, 9, 0, 0, false), 0).await.expect("ok"); // 0-2, seq 0-2
    leader.append(P0, batch(2, T0), 0).await.expect("ok"); // 3-4
    leader.append(P0, batch(1, T0), 0).await.expect("ok"); // 5
    leader.append(P0, batch(2, T0), 0).await.expect("ok"); // 6-7
    let all = leader_records(&leader, 0).await;
    // What the leader's cleaner leaves: 0-2 with its first record only (same base and last
    // offset), 3-4 gone, 5 as it was.
    let first = moved(&all, 0, 0);
    let decoded = fjord_protocol::batch::compact::DecodedBatch::decode(first).expect("decode");
    let records = decoded.records();
    let cleaned = decoded.rebuild(&records[..1], None).expect("rebuild");
    let mut copy = BytesMut::from(&cleaned[..]);
    copy.extend_from_slice(&moved(&all, 5, 5));
    let end = follower
        .replica_append(P0, copy.freeze())
        .await
        .expect("a gap is copied");
    assert_eq!(end, 6);
    assert_eq!(offsets_of(&leader_records(&follower, 0).await), vec![0, 5]);
    // A batch that overlaps the log's end is refused: 6-7 moved to 5-6.
    assert!(matches!(
        follower.replica_append(P0, moved(&all, 6, 5)).await,
        Err(StorageError::ReplicaMismatch(_))
    ));
    assert_eq!(follower.offsets(&P0).expect("ok").log_end, 6);
    // Producer 9's last sequence is 2, from the cleaned batch's base sequence and last
    // offset delta (its one record would say 0): as the new leader it takes 3 next.
    follower.set_replicated(&P0, false);
    assert!(matches!(
        follower.append(P0, idempotent(1, 9, 0, 1, false), 1).await,
        Err(StorageError::OutOfOrderSequence(_))
    ));
    let next = follower
        .append(P0, idempotent(1, 9, 0, 3, false), 1)
        .await
        .expect("seq 3 follows 2");
    assert_eq!(next.base_offset, 6);
    follower.shutdown().await.expect("close");
    leader.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_copy_the_leader_and_truncate_where_they_diverge() {
    let (ld, fd) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let leader = open(ld.path(), i64::MAX);
    let follower = open_with_segments(fd.path(), i64::MAX, 400);
    for s in [&leader, &follower] {
        s.ensure_partition(P0).await.expect("create");
        s.set_replicated(&P0, true);
    }
    // Epoch 0 on the leader: a plain batch, an idempotent one and an open transaction.
    leader.append(P0, batch(3, T0), 0).await.expect("ok"); // 0-2
    leader.append(P0, idempotent(2, 9, 0, 0, false), 0).await.expect("ok"); // 3-4
    leader.append(P0, idempotent(2, 5, 0, 0, true), 0).await.expect("ok"); // 5-6, txn of 5
    let o = leader.offsets(&P0).expect("ok");
    assert_eq!(
        (o.log_end, o.high_watermark),
        (7, 0),
        "a replicated log commits nothing alone"
    );
    // Reads stop at the high watermark for consumers, at the log end for followers.
    let (none, _) = leader
        .read_file_records(P0, 0, 1 << 20, true, ReadLimit::HighWatermark)
        .await
        .expect("read");
    assert_eq!(none.len, 0);

    let end = follower
        .replica_append(P0, leader_records(&leader, 0).await)
        .await
        .expect("replicate");
    assert_eq!(end, 7);
    // A repeated fetch adds nothing.
    assert_eq!(
        follower
            .replica_append(P0, leader_records(&leader, 3).await)
            .await
            .expect("again"),
        7
    );
    leader.append(P0, batch(1, T0), 0).await.expect("ok"); // 7
    leader.append(P0, batch(1, T0), 0).await.expect("ok"); // 8
    let fo = follower.offsets(&P0).expect("ok");
    assert_eq!((fo.log_end, fo.last_stable), (7, 0));
    assert_eq!(leader.advance_high_watermark(&P0, 5), Some(5));
    assert_eq!(leader.advance_high_watermark(&P0, 3), Some(5), "never backward");
    assert_eq!(leader.offsets(&P0).expect("ok").last_stable, 5, "txn of 5 opened at 5");
    // A write after the high watermark moved keeps it.
    leader.append(P0, batch(1, T0), 0).await.expect("ok"); // 9
    assert_eq!(leader.offsets(&P0).expect("ok").high_watermark, 5);

    // The follower got epoch 0 up to 6 and then, as leader in epoch 1, wrote 7-8 that the
    // new leader (the old one, back in epoch 2) never had: they go, and the producer state
    // is what the kept batches say.
    follower.append(P0, idempotent(2, 9, 0, 2, false), 1).await.expect("ok"); // 7-8
    follower.append(P0, marker(5, 0, true), 1).await.expect("ok"); // 9: commit 5
    assert_eq!(follower.offsets(&P0).expect("ok").log_end, 10);
    assert_eq!(follower.end_offset_for_epoch(&P0, 0, 1).expect("ok"), Some((0, 7)));
    assert_eq!(follower.truncate(P0, 7).await.expect("truncate"), 7);
    let fo = follower.offsets(&P0).expect("ok");
    assert_eq!(fo.log_end, 7);
    assert_eq!(follower.latest_epoch(&P0), Some(0));
    assert!(follower
        .end_offset_for_epoch(&P0, 1, 2)
        .expect("ok")
        .is_none_or(|(e, _)| e == 0));
    // The transaction of 5 is open again, producer 9's next sequence is 2 once more.
    follower.set_replicated(&P0, false);
    assert_eq!(follower.offsets(&P0).expect("ok").last_stable, 5);
    follower
        .append(P0, idempotent(2, 9, 0, 2, false), 2)
        .await
        .expect("seq 2 follows 0-1");
    assert!(matches!(
        follower.append(P0, idempotent(2, 9, 0, 6, false), 2).await,
        Err(StorageError::OutOfOrderSequence(_))
    ));
    follower.set_replicated(&P0, true);
    follower.truncate(P0, 7).await.expect("truncate");
    // Then it copies the leader from there, and its files and state survive a restart.
    let end = follower
        .replica_append(P0, leader_records(&leader, 7).await)
        .await
        .expect("replicate");
    assert_eq!(end, 10);
    let want = offsets_of(&leader_records(&leader, 0).await);
    assert_eq!(offsets_of(&leader_records(&follower, 0).await), want);
    follower.shutdown().await.expect("close");
    drop(follower);
    let follower = open_with_segments(fd.path(), i64::MAX, 400);
    assert_eq!(offsets_of(&leader_records(&follower, 0).await), want);
    assert_eq!(follower.end_offset_for_epoch(&P0, 0, 0).expect("ok"), Some((0, 10)));
    follower.shutdown().await.expect("close");
    leader.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leaders_log_start_starts_again_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let leader = open(leader_dir.path(), i64::MAX);
    let follower = open_with_segments(dir.path(), i64::MAX, 400);
    for s in [&leader, &follower] {
        s.ensure_partition(P0).await.expect("create");
        s.set_replicated(&P0, true);
    }
    for _ in 0..6 {
        leader.append(P0, batch(2, T0), 0).await.expect("ok"); // 0-11
    }
    follower
        .replica_append(P0, leader_records(&leader, 0).await)
        .await
        .expect("replicate");
    follower.truncate(P0, 4).await.expect("truncate");
    assert_eq!(follower.reset_to(P0, 8).await.expect("reset"), 8);
    let o = follower.offsets(&P0).expect("ok");
    assert_eq!((o.log_start, o.log_end, o.high_watermark), (8, 8, 8));
    assert!(segment_files(dir.path()).is_empty(), "every segment went");
    follower
        .replica_append(P0, leader_records(&leader, 8).await)
        .await
        .expect("replicate from the new start");
    follower.shutdown().await.expect("close");
    drop(follower);
    let follower = open_with_segments(dir.path(), i64::MAX, 400);
    let o = follower.offsets(&P0).expect("ok");
    assert_eq!((o.log_start, o.log_end), (8, 12));
    assert_eq!(
        offsets_of(&leader_records(&follower, 8).await),
        (8..12).collect::<Vec<_>>()
    );
    follower.shutdown().await.expect("close");
    leader.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_partition_is_gone_and_its_neighbours_are_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p1 = PartitionId {
        topic_id: P0.topic_id,
        partition: P0.partition + 1,
    };
    {
        let store = open(dir.path(), 1);
        for pid in [P0, p1] {
            store.ensure_partition(pid).await.expect("create");
            for i in 0..3 {
                store
                    .append(pid, idempotent(3, 7, 0, 3 * i, false), 0)
                    .await
                    .expect("append");
            }
        }
        store.delete_partition(P0).await.expect("delete partition");
        assert!(store.offsets(&P0).is_none());
        assert_eq!(store.partition_ids(), vec![p1]);
        assert_eq!(store.offsets(&p1).expect("kept").log_end, 9);
        store.crash().await;
    }
    // Reopened: the rows and the segment directory of the deleted partition stay gone, and
    // the neighbour recovers whole, with its producer state.
    let store = open(dir.path(), 1);
    assert!(store.offsets(&P0).is_none());
    let r = store.read(p1, 0, 1 << 20, true).await.expect("read");
    assert_eq!(offsets_of(&r.records), (0..9).collect::<Vec<_>>());
    let hex: String = P0.topic_id.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dir
        .path()
        .join("segments")
        .join(format!("{hex}-{}", P0.partition))
        .exists());
    // Recreated (the replica moved back): an empty log, with no producer state left over.
    store.ensure_partition(P0).await.expect("recreate");
    assert_eq!(store.offsets(&P0).expect("new").log_end, 0);
    // The producer's first batch again is new here, not a duplicate of the deleted log's.
    let again = store
        .append(P0, idempotent(3, 7, 0, 0, false), 0)
        .await
        .expect("append");
    assert_eq!(again.base_offset, 0);
    assert_eq!(store.offsets(&P0).expect("new").log_end, 3);
    store.shutdown().await.expect("close");
}

/// `(key, value)` records, `None` for a tombstone.
fn kv(recs: &[(&str, Option<&str>)]) -> Vec<(Option<String>, Option<String>)> {
    recs.iter()
        .map(|(k, v)| (Some(k.to_string()), v.map(str::to_string)))
        .collect()
}

/// Every record of a partition from its start: (offset, key, value).
async fn keyed_contents(store: &LogStore) -> Vec<(i64, String, Option<String>)> {
    let r = store.read(P0, 0, 64 << 20, true).await.expect("read");
    let mut b = r.records.clone();
    RecordBatchDecoder::decode_all(&mut b)
        .expect("decodes")
        .into_iter()
        .flat_map(|set| set.records.into_iter())
        .filter(|r| !r.control)
        .map(|r| {
            let s = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).expect("utf8"));
            (r.offset, s(r.key).expect("keyed"), s(r.value))
        })
        .collect()
}

fn compaction(delete_retention_ms: i64) -> crate::CompactionConfig {
    crate::CompactionConfig {
        delete_retention_ms,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        min_cleanable_ratio: 0.5,
        segment_bytes: 1 << 30,
    }
}

const UNLIMITED: crate::CleanerLimits = crate::CleanerLimits {
    map_keys: 1 << 20,
    io_bytes_per_second: f64::MAX,
};

async fn clean(store: &Arc<LogStore>, cfg: crate::CompactionConfig, now: i64) -> Option<crate::CleanStats> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.clean(P0, cfg, UNLIMITED, now))
        .await
        .expect("task")
        .expect("clean")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_latest_value_per_key_and_tombstones_until_their_horizon() {
    let dir = tempfile::tempdir().expect("tempdir");
    // About two batches a segment.
    let one = encoded_records(&kv(&[("k0", Some("v")); 3]), T0, None).bytes.len() as u64;
    let store = open_with_segments(dir.path(), i64::MAX, one * 2 + 10);
    store.ensure_partition(P0).await.expect("create");
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..10 {
        let recs: Vec<(String, Option<String>)> = (0..3)
            .map(|j| {
                let n = i * 3 + j;
                let v = (n != 25).then(|| format!("v{n}"));
                (format!("k{}", n % 5), v)
            })
            .collect();
        for (k, v) in &recs {
            expected.insert(k.clone(), v.clone());
        }
        let recs: Vec<(Option<String>, Option<String>)> = recs.into_iter().map(|(k, v)| (Some(k), v)).collect();
        store
            .append(P0, encoded_records(&recs, T0 + i, None), 0)
            .await
            .expect("append");
    }
    let before = segment_files(dir.path()).len();
    let cfg = compaction(1000);
    let c = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.cleanable(P0, cfg, T0 + 100))
            .await
            .expect("task")
            .expect("measure")
    }
    .expect("cleanable");
    assert_eq!(c.first_dirty, 0);
    assert!(c.due(&cfg) && c.ratio() == 1.0, "{c:?}");
    let stats = clean(&store, cfg, T0 + 100).await.expect("cleaned");
    assert!(stats.records_removed > 0 && stats.bytes_freed > 0, "{stats:?}");

    let check = |got: &[(i64, String, Option<String>)], tombstone_kept: bool| {
        let offsets: Vec<i64> = got.iter().map(|r| r.0).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase: {offsets:?}");
        let mut latest = std::collections::BTreeMap::new();
        for (_, k, v) in got {
            latest.insert(k.clone(), v.clone());
        }
        assert_eq!(latest, expected, "the latest value of every key");
        // Below the cleaned point each key appears once.
        let cleaned: Vec<&String> = got.iter().filter(|r| r.0 < stats.cleaned_to).map(|r| &r.1).collect();
        let unique: std::collections::BTreeSet<&String> = cleaned.iter().copied().collect();
        assert_eq!(
            cleaned.len(),
            unique.len(),
            "one record per key below {}: {got:?}",
            stats.cleaned_to
        );
        assert_eq!(got.iter().any(|r| r.0 == 25), tombstone_kept, "{got:?}");
    };
    let got = keyed_contents(&store).await;
    check(&got, true);
    assert!(segment_files(dir.path()).len() < before);
    assert_eq!(store.offsets(&P0).expect("known").log_end, 30);

    // The swap is durable: the same after a restart.
    store.shutdown().await.expect("close");
    drop(store);
    let store = open_with_segments(dir.path(), i64::MAX, one * 2 + 10);
    assert_eq!(keyed_contents(&store).await, got);
    // Past the delete horizon the tombstone goes; before it, a second pass keeps it.
    clean(&store, cfg, T0 + 500).await;
    check(&keyed_contents(&store).await, true);
    clean(&store, cfg, T0 + 100 + 1001).await;
    let got = keyed_contents(&store).await;
    assert!(!got.iter().any(|r| r.0 == 25), "{got:?}");
    expected.remove("k0");
    let mut latest = std::collections::BTreeMap::new();
    for (_, k, v) in &got {
        latest.insert(k.clone(), v.clone());
    }
    assert_eq!(latest, expected);
    // Appends carry on at the log end.
    assert_eq!(
        store
            .append(P0, encoded_records(&kv(&[("k9", Some("x"))]), T0, None), 0)
            .await
            .expect("append")
            .base_offset,
        30
    );
    store.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_removes_aborted_transactions_and_keeps_the_producers_last_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with_segments(dir.path(), i64::MAX, 200);
    store.ensure_partition(P0).await.expect("create");
    let txn = |recs: &[(&str, Option<&str>)], seq: i32| {
        let mut b = encoded_records(&kv(recs), T0, Some((7, 0, seq, true)));
        b.producer = Some(crate::producers::ProducerBatch::new(7, 0, seq, recs.len() as i32, true));
        b
    };
    store
        .append(P0, txn(&[("a", Some("1")), ("b", Some("1"))], 0), 0)
        .await
        .expect("append");
    store.append(P0, marker(7, 0, true), 0).await.expect("commit");
    store
        .append(P0, txn(&[("a", Some("aborted")), ("c", Some("aborted"))], 2), 0)
        .await
        .expect("append");
    store.append(P0, marker(7, 0, false), 0).await.expect("abort");
    store
        .append(P0, encoded_records(&kv(&[("d", Some("1"))]), T0, None), 0)
        .await
        .expect("append");
    store
        .append(P0, encoded_records(&kv(&[("e", Some("1"))]), T0, None), 0)
        .await
        .expect("append");
    let cfg = compaction(1000);
    clean(&store, cfg, T0 + 10).await.expect("cleaned");
    let got: Vec<(String, Option<String>)> = keyed_contents(&store).await.into_iter().map(|r| (r.1, r.2)).collect();
    assert!(!got.iter().any(|r| r.1.as_deref() == Some("aborted")), "{got:?}");
    assert!(got.contains(&("a".into(), Some("1".into()))) && got.contains(&("b".into(), Some("1".into()))));
    // The producer's last batch (the aborted one) stays as an empty header: a retry of it is
    // still known as a duplicate after a restart.
    store.shutdown().await.expect("close");
    drop(store);
    let store = open_with_segments(dir.path(), i64::MAX, 200);
    let r = store.read(P0, 0, 1 << 20, true).await.expect("read");
    let headers: Vec<(i64, i64, i32)> = fjord_protocol::batch::split_batches(r.records)
        .expect("whole batches")
        .iter()
        .map(|b| {
            let h = fjord_protocol::batch::BatchHeader::parse(b).expect("header");
            (h.base_offset, h.last_offset(), h.record_count)
        })
        .collect();
    assert!(headers.contains(&(3, 4, 0)), "{headers:?}");
    assert_eq!(store.offsets(&P0).expect("known").log_end, 8);
    store.shutdown().await.expect("close");
}
