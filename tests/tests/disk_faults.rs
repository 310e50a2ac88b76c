//! Disk faults against the real broker binary. Failing system calls come from an LD_PRELOAD
//! shim (tests/faults/faultfs.c, built here with the system C compiler): fsync and write
//! return EIO for the files a pattern names, while the broker runs. Damage on disk (a torn
//! last batch, a flipped byte, a missing segment) is done to the files between a SIGKILL or
//! a SIGTERM and the next start.
//!
//! What each must show: nothing is acknowledged after a failed fsync or write (the log
//! directory goes offline and the broker stops, as Kafka's does when its last log directory
//! fails), and after a restart the log is a prefix of what was acknowledged, with the cut
//! said in the log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use fjord_tests::records::assert_same_records;
use fjord_tests::{encode_batch, error_name, test_records, Broker, BrokerOptions, Client, Topic};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::protocol::Message;
use kafka_protocol::records::{Compression, Record};

/// KAFKA_STORAGE_ERROR.
const KAFKA_STORAGE_ERROR: i16 = 56;
const RECORDS_PER_BATCH: usize = 10;
/// How long a broker whose directory went offline may take to stop.
const OFFLINE_EXIT: Duration = Duration::from_secs(15);

/// The shim, compiled once per test run into cargo's scratch directory for tests (not /tmp,
/// where one copy per run piled up): built under a name of its own, then renamed into place,
/// so a concurrent run never loads a half-written file.
fn shim() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("faults/faultfs.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("faultfs.so");
        let building = dir.join(format!("faultfs-{}.so", std::process::id()));
        let status = Command::new(
            std::env::var("CC")
                .ok()
                .filter(|c| !c.contains(' '))
                .unwrap_or("cc".into()),
        )
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&building)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("running the C compiler for the fault shim");
        assert!(status.success(), "building {} failed", src.display());
        std::fs::rename(&building, &out).expect("moving the fault shim into place");
        out
    })
}

/// A broker with the shim loaded and its control directory.
struct Faulty {
    broker: Broker,
    control: tempfile::TempDir,
}

impl Faulty {
    fn start(overrides: &[(&str, &str)]) -> Faulty {
        let control = tempfile::tempdir().expect("tempdir");
        let mut opts = BrokerOptions::with_overrides(overrides);
        opts.env = vec![
            ("LD_PRELOAD".into(), shim().display().to_string()),
            ("FJORD_FAULTS".into(), control.path().display().to_string()),
        ];
        Faulty {
            broker: Broker::start_with(opts),
            control,
        }
    }

    /// From now on `family` ("fsync" or "write") fails with EIO on files matching `pattern`.
    fn arm(&self, family: &str, pattern: &str) {
        std::fs::write(self.control.path().join(family), pattern).expect("arming a fault");
    }

    fn disarm(&self, family: &str) {
        let _ = std::fs::remove_file(self.control.path().join(family));
    }

    /// Lines the shim wrote for the failures it injected.
    fn injected(&self) -> String {
        std::fs::read_to_string(self.control.path().join("injected.log")).unwrap_or_default()
    }
}

fn produce_batch(client: &mut Client, topic: &Topic, tag: &str) -> (Vec<Record>, anyhow::Result<(i16, i64)>) {
    let records = test_records(RECORDS_PER_BATCH, tag);
    let req = Client::produce_request(topic, 0, encode_batch(&records, Compression::None), -1);
    let answer = client.try_send_request(ProduceRequest::VERSIONS.max, &req).map(|resp| {
        let p = fjord_tests::client::single_produce_partition(resp, 0);
        (p.error_code, p.base_offset)
    });
    (records, answer)
}

/// Produces `n` batches that must all be acknowledged; returns their records.
fn produce_acked(client: &mut Client, topic: &Topic, tag: &str, n: usize, acked: &mut Vec<Record>) {
    for b in 0..n {
        let (records, answer) = produce_batch(client, topic, &format!("{tag}-{b}"));
        let (code, base) = answer.expect("produce answered");
        assert_eq!(code, 0, "batch {b}: {}", error_name(code));
        assert_eq!(base, acked.len() as i64, "batch {b}: base offset");
        acked.extend(records);
    }
}

/// After a fault: the next produce is not acknowledged (KAFKA_STORAGE_ERROR, or the
/// connection closes as the broker stops), and the broker exits with a failure that names
/// the offline directory.
fn assert_not_acked_and_stopped(f: &mut Faulty, client: &mut Client, topic: &Topic) {
    let (_, answer) = produce_batch(client, topic, "after-fault");
    if let Ok((code, base)) = answer {
        assert_eq!(
            code,
            KAFKA_STORAGE_ERROR,
            "a produce after a failed sync or write was answered {} (offset {base})\n{}",
            error_name(code),
            f.broker.logs()
        );
    }
    assert_stopped_offline(f);
}

/// The broker exits by itself, with a failure, and its log says the directory went offline.
fn assert_stopped_offline(f: &mut Faulty) {
    let status = f.broker.wait_for_exit(OFFLINE_EXIT);
    let logs = f.broker.logs();
    let status = status.unwrap_or_else(|| panic!("the broker kept running with its log directory offline\n{logs}"));
    assert!(
        !status.success(),
        "an offline log directory must stop the broker with a failure\n{logs}"
    );
    assert!(
        logs.contains("offline"),
        "the log must say the directory went offline\n{logs}"
    );
}

/// Every record of the partition, from a broker just restarted.
fn records_after_restart(broker: &mut Broker, topic: &Topic) -> Vec<Record> {
    broker.restart();
    let mut client = broker.client();
    let now = client.wait_for_topic(&topic.name, topic.partitions);
    assert_eq!(now.id, topic.id, "the topic id changed across the restart");
    let (records, hw) = client.fetch_all(FetchRequest::VERSIONS.max, topic, 0, 0);
    assert_eq!(records.len() as i64, hw, "records up to the high watermark");
    records
}

#[test]
fn a_failed_segment_fsync_acknowledges_nothing_more_and_stops_the_broker() {
    let mut f = Faulty::start(&[("log.flush.interval.messages", "1")]);
    let mut client = f.broker.client();
    let topic = client.create_topic("fsync-fails", 1);
    let mut acked = Vec::new();
    produce_acked(&mut client, &topic, "before", 5, &mut acked);

    f.arm("fsync", "*/segments/*");
    assert_not_acked_and_stopped(&mut f, &mut client, &topic);
    assert!(f.injected().contains("fsync"), "the shim never failed an fsync");

    f.disarm("fsync");
    let records = records_after_restart(&mut f.broker, &topic);
    // The batch whose sync failed was never indexed: recovery cuts its bytes off.
    assert_same_records(&records, &acked, 0, "after a failed fsync and a restart");
}

#[test]
fn a_failed_wal_fsync_acknowledges_nothing_more_and_stops_the_broker() {
    let mut f = Faulty::start(&[("log.flush.interval.messages", "1")]);
    let mut client = f.broker.client();
    let topic = client.create_topic("wal-fsync-fails", 1);
    let mut acked = Vec::new();
    produce_acked(&mut client, &topic, "before", 5, &mut acked);

    // RocksDB's write-ahead log of the partition index (data/logs/NNNNNN.log), not the segments.
    f.arm("fsync", "*/logs/[0-9]*.log");
    assert_not_acked_and_stopped(&mut f, &mut client, &topic);
    assert!(f.injected().contains("fsync"), "the shim never failed an fsync");

    f.disarm("fsync");
    let records = records_after_restart(&mut f.broker, &topic);
    assert!(records.len() >= acked.len(), "acknowledged records were lost");
    assert_same_records(
        &records[..acked.len()],
        &acked,
        0,
        "after a failed WAL fsync and a restart",
    );
}

#[test]
fn a_failed_segment_write_acknowledges_nothing_more_and_stops_the_broker() {
    let mut f = Faulty::start(&[]);
    let mut client = f.broker.client();
    let topic = client.create_topic("write-fails", 1);
    let mut acked = Vec::new();
    produce_acked(&mut client, &topic, "before", 5, &mut acked);

    f.arm("write", "*/segments/*");
    assert_not_acked_and_stopped(&mut f, &mut client, &topic);
    assert!(f.injected().contains("write"), "the shim never failed a write");

    f.disarm("write");
    let records = records_after_restart(&mut f.broker, &topic);
    assert_same_records(&records, &acked, 0, "after a failed write and a restart");
}

#[test]
fn a_segment_write_out_of_space_is_refused_and_the_broker_takes_data_again_once_there_is_room() {
    // No reserve: the shim's ENOSPC is the first the broker hears of a full disk.
    let mut f = Faulty::start(&[("log.dir.min.free.bytes", "0")]);
    let mut client = f.broker.client();
    let topic = client.create_topic("disk-full", 1);
    let mut acked = Vec::new();
    produce_acked(&mut client, &topic, "before", 3, &mut acked);

    // The disk fills up in the middle of a write: half of it goes in, then ENOSPC.
    f.arm("write", "*/segments/*\nENOSPC");
    for attempt in 0..3 {
        let (_, answer) = produce_batch(&mut client, &topic, &format!("refused-{attempt}"));
        let (code, _) = answer.expect("a produce into a full disk is answered");
        assert_eq!(code, KAFKA_STORAGE_ERROR, "attempt {attempt}: {}", error_name(code));
    }
    assert!(
        f.injected().contains("write ENOSPC"),
        "the shim never failed a write:\n{}",
        f.injected()
    );
    assert!(
        f.broker.wait_for_exit(Duration::from_millis(300)).is_none(),
        "a full disk stopped the broker\n{}",
        f.broker.logs()
    );
    // Reads go on, and the torn write left nothing behind.
    let (records, hw) = client.fetch_all(FetchRequest::VERSIONS.max, &topic, 0, 0);
    assert_eq!(hw, acked.len() as i64, "high watermark while the disk is full");
    assert_same_records(&records, &acked, 0, "read while the disk is full");
    assert!(
        f.broker.logs().contains("the log directory is full"),
        "{}",
        f.broker.logs()
    );

    // Space is back: within a second (the broker lets one write through a second to find
    // out) produce goes in again at the next offset, as a producer's retries would find.
    f.disarm("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (records, answer) = produce_batch(&mut client, &topic, "retried");
        let (code, base) = answer.expect("produce answered");
        if code == KAFKA_STORAGE_ERROR && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(code, 0, "once space is back: {}", error_name(code));
        assert_eq!(base, acked.len() as i64, "the first batch after the full disk");
        acked.extend(records);
        break;
    }
    produce_acked(&mut client, &topic, "after", 2, &mut acked);
    assert!(f.broker.logs().contains("has space again"), "{}", f.broker.logs());
    let records = records_after_restart(&mut f.broker, &topic);
    assert_same_records(&records, &acked, 0, "after a full disk and a restart");
}

#[test]
fn a_failed_periodic_flush_is_not_retried_and_stops_the_broker() {
    let mut f = Faulty::start(&[("log.flush.interval.ms", "100")]);
    let mut client = f.broker.client();
    let topic = client.create_topic("flush-fails", 1);
    let mut acked = Vec::new();
    produce_acked(&mut client, &topic, "before", 3, &mut acked);

    f.arm("fsync", "*/segments/*");
    // Acknowledged without a sync (no log.flush.interval.messages); the flusher's next fsync
    // of this data fails, and the broker stops instead of trying again.
    let (records, answer) = produce_batch(&mut client, &topic, "unsynced");
    if let Ok((0, base)) = answer {
        assert_eq!(base, acked.len() as i64);
        acked.extend(records);
    }
    assert_stopped_offline(&mut f);
    assert_eq!(
        f.injected().lines().filter(|l| l.starts_with("fsync")).count(),
        1,
        "the failed fsync was retried:\n{}",
        f.injected()
    );

    f.disarm("fsync");
    // No power was lost: the page cache still has everything acknowledged.
    let records = records_after_restart(&mut f.broker, &topic);
    assert_same_records(&records, &acked, 0, "after a failed periodic flush and a restart");
}

/// Where each batch of a partition's first segment starts, from the batches as produced
/// (the broker stores them as sent; only base offset and leader epoch are patched in).
fn batch_starts(batches: &[Bytes]) -> Vec<u64> {
    let mut at = 0u64;
    batches
        .iter()
        .map(|b| {
            let start = at;
            at += b.len() as u64;
            start
        })
        .collect()
}

fn partition_dir(broker: &Broker) -> PathBuf {
    let segments = broker.data_dir().join("logs").join("segments");
    std::fs::read_dir(&segments)
        .expect("segments dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("one partition directory")
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Produces `n` acknowledged batches and returns them as sent, with their records.
fn produce_batches(client: &mut Client, topic: &Topic, n: usize) -> (Vec<Bytes>, Vec<Vec<Record>>) {
    let mut sent = Vec::new();
    let mut records = Vec::new();
    for b in 0..n {
        let r = test_records(RECORDS_PER_BATCH, &format!("batch-{b}"));
        let bytes = encode_batch(&r, Compression::None);
        let p = client.produce(ProduceRequest::VERSIONS.max, topic, 0, bytes.clone(), -1);
        assert_eq!(p.error_code, 0, "{}", error_name(p.error_code));
        assert_eq!(p.base_offset, (b * RECORDS_PER_BATCH) as i64);
        sent.push(bytes);
        records.push(r);
    }
    (sent, records)
}

fn assert_cut_logged(broker: &Broker, offset: usize) {
    let logs = broker.logs();
    assert!(
        logs.contains("recovery cut the log") && logs.contains(&format!("offset={offset}")),
        "recovery must say where it cut the log\n{logs}"
    );
}

#[test]
fn a_flipped_byte_in_an_acknowledged_batch_cuts_the_log_there_after_a_crash() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.client();
    let topic = client.create_topic("bit-rot", 1);
    let (sent, records) = produce_batches(&mut client, &topic, 10);
    drop(client);
    broker.kill();

    // One byte inside the records of batch 6 (past its 61-byte header).
    let segment = &segment_files(&partition_dir(&broker))[0];
    let at = batch_starts(&sent)[6] + 70;
    let mut bytes = std::fs::read(segment).expect("read segment");
    bytes[at as usize] ^= 0x40;
    std::fs::write(segment, &bytes).expect("write segment");

    let got = records_after_restart(&mut broker, &topic);
    let want: Vec<Record> = records[..6].concat();
    assert_same_records(&got, &want, 0, "after a flipped byte in batch 6");
    assert_cut_logged(&broker, 6 * RECORDS_PER_BATCH);
    // The log goes on from the cut.
    let mut client = broker.client();
    let (_, answer) = produce_batch(&mut client, &topic, "after-cut");
    assert_eq!(answer.expect("answered"), (0, (6 * RECORDS_PER_BATCH) as i64));
}

#[test]
fn a_torn_last_batch_is_cut_off_after_a_crash() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.client();
    let topic = client.create_topic("torn", 1);
    let (sent, records) = produce_batches(&mut client, &topic, 4);
    drop(client);
    broker.kill();

    let segment = &segment_files(&partition_dir(&broker))[0];
    let torn = batch_starts(&sent)[3] + sent[3].len() as u64 / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open segment")
        .set_len(torn)
        .expect("truncate");

    let got = records_after_restart(&mut broker, &topic);
    assert_same_records(&got, &records[..3].concat(), 0, "after a torn last batch");
    assert_cut_logged(&broker, 3 * RECORDS_PER_BATCH);
}

#[test]
fn a_missing_segment_file_cuts_the_log_before_it_even_after_a_clean_shutdown() {
    // Three batches a segment.
    let one = encode_batch(&test_records(RECORDS_PER_BATCH, "batch-0"), Compression::None).len();
    let segment_bytes = (3 * one + one / 2).to_string();
    let mut broker = Broker::start(&[("log.segment.bytes", segment_bytes.as_str())]);
    let mut client = broker.client();
    let topic = client.create_topic("lost-segment", 1);
    let (_, records) = produce_batches(&mut client, &topic, 10);
    drop(client);
    // A clean shutdown: every segment is synced and checkpointed, so recovery reads none of
    // them, and must still notice that one is gone.
    assert!(broker.terminate().success(), "{}", broker.logs());

    let files = segment_files(&partition_dir(&broker));
    assert_eq!(files.len(), 4, "segments: {files:?}");
    std::fs::remove_file(&files[1]).expect("remove the second segment");

    let got = records_after_restart(&mut broker, &topic);
    assert_same_records(&got, &records[..3].concat(), 0, "after losing the second segment");
    assert_cut_logged(&broker, 3 * RECORDS_PER_BATCH);
}

/// A group-less offset commit (OffsetCommit v8) of partition 0; its error code, or Err when
/// the connection closed first.
fn commit_offset(client: &mut Client, group: &str, topic: &Topic, offset: i64) -> anyhow::Result<i16> {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest};
    use kafka_protocol::protocol::StrBytes;

    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(fjord_tests::client::topic_name(&topic.name))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    client
        .try_send_request(8, &req)
        .map(|r| r.topics[0].partitions[0].error_code)
}

/// Group state goes through the same write-ahead log as the partition index, outside the log
/// writer thread: under `log.flush.interval.messages=1` an offset commit is fsynced before it
/// is answered, so a failing WAL fsync means the commit is not acknowledged either.
#[test]
fn an_offset_commit_whose_wal_fsync_fails_is_not_acknowledged() {
    let mut f = Faulty::start(&[("log.flush.interval.messages", "1")]);
    let mut client = f.broker.client();
    let topic = client.create_topic("commits", 1);
    let commit = |client: &mut Client, offset: i64| commit_offset(client, "durable-group", &topic, offset);
    assert_eq!(
        commit(&mut client, 1).expect("answered"),
        0,
        "a commit on a healthy disk"
    );

    f.arm("fsync", "*/logs/[0-9]*.log");
    if let Ok(code) = commit(&mut client, 2) {
        assert_ne!(code, 0, "an offset commit whose fsync failed was acknowledged");
    }
    assert_stopped_offline(&mut f);
    assert!(f.injected().contains("fsync"), "the shim never failed an fsync");
}

/// Under `log.flush.interval.ms` group state is made durable by the periodic WAL sync, which
/// covers it because it shares the WAL: a commit acknowledged before a WAL fsync that then
/// fails makes the broker stop rather than carry on as if the commit were on disk.
#[test]
fn a_periodic_wal_sync_that_fails_after_an_offset_commit_stops_the_broker() {
    let mut f = Faulty::start(&[("log.flush.interval.ms", "100")]);
    let mut client = f.broker.client();
    let topic = client.create_topic("commits-flush-ms", 1);
    f.arm("fsync", "*/logs/[0-9]*.log");
    // Acknowledged without an fsync of its own (no log.flush.interval.messages)...
    let code = commit_offset(&mut client, "flushed-group", &topic, 7);
    assert!(matches!(code, Ok(0) | Err(_)), "{code:?}");
    // ...and the flusher's sync of the WAL holding it fails within the interval.
    assert_stopped_offline(&mut f);
    assert!(f.injected().contains("fsync"), "the shim never failed an fsync");
}
