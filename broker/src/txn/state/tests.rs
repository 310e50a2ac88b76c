use super::*;

const NOW: i64 = 1_700_000_000_000;
const TIMEOUT: i32 = 60_000;
const MAX: i16 = i16::MAX;

fn cfg() -> TxnConfig {
    TxnConfig::default()
}

fn set(partitions: &[(&str, i32)]) -> BTreeSet<(String, i32)> {
    partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

fn groups(gs: &[&str]) -> BTreeSet<String> {
    gs.iter().map(|g| g.to_string()).collect()
}

/// Transactional id "t" with producer 7 at `epoch`, in `state`, last changed a moment ago.
fn meta(epoch: i16, state: TxnState) -> TxnMeta {
    TxnMeta {
        producer_id: 7,
        epoch,
        timeout_ms: TIMEOUT,
        state,
        update_ms: NOW - 10,
        ..TxnMeta::new("t")
    }
}

/// An open transaction of producer 7 at `epoch`, started at `start_ms`.
fn ongoing(epoch: i16, partitions: &[(&str, i32)], gs: &[&str], start_ms: i64) -> TxnMeta {
    TxnMeta {
        partitions: set(partitions),
        groups: groups(gs),
        start_ms,
        ..meta(epoch, TxnState::Ongoing)
    }
}

fn input(producer_id: i64, epoch: i16) -> InitInput {
    InitInput {
        timeout_ms: 30_000,
        producer_id,
        epoch,
    }
}

/// A new instance of the producer (no id of its own).
fn fresh() -> InitInput {
    input(-1, -1)
}

fn done(i: Init) -> Transition<Result<IdAndEpoch, ResponseError>> {
    match i {
        Init::Done(t) => t,
        Init::NeedProducerId => panic!("asked for a producer id"),
    }
}

fn init(m: &TxnMeta, i: &InitInput) -> Transition<Result<IdAndEpoch, ResponseError>> {
    done(init_producer_id(m, i, None, NOW))
}

fn only_persist(effects: &[Effect]) -> &TxnMeta {
    match effects {
        [Effect::Persist(m)] => m,
        other => panic!("expected a single record, got {other:?}"),
    }
}

/// Performs effects as a coordinator whose storage never fails; returns the markers written.
fn apply(m: &mut TxnMeta, effects: Vec<Effect>) -> Vec<Markers> {
    let mut written = Vec::new();
    for e in effects {
        match e {
            Effect::Persist(next) => *m = next,
            Effect::WriteMarkers(mk) => written.push(mk),
            Effect::Remove => m.gone = true,
        }
    }
    written
}

fn end(epoch: i16, commit: bool, v5: bool) -> EndInput {
    EndInput {
        producer_id: 7,
        epoch,
        commit,
        v5,
        fresh_id: None,
    }
}

fn topics(spec: &[(&str, &[i32])]) -> Vec<(String, Vec<i32>)> {
    spec.iter().map(|(t, ps)| (t.to_string(), ps.to_vec())).collect()
}

fn add(epoch: i16, verify_only: bool, topics: &[(String, Vec<i32>)]) -> AddPartitionsInput<'_> {
    AddPartitionsInput {
        producer_id: 7,
        epoch,
        verify_only,
        topics,
        offsets_partitions: 50,
    }
}

/// Topics "a" and "b" exist with two partitions each.
fn exists(t: &str, p: i32) -> bool {
    (t == "a" || t == "b") && (0..2).contains(&p)
}

/// Every partition's result, flattened.
fn results(r: &PartitionResults) -> Vec<(String, i32, Result<(), ResponseError>)> {
    r.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |(p, e)| (t.clone(), *p, *e)))
        .collect()
}

fn write(epoch: i16, version: i16, topic: &str, partition: i32) -> WriteInput<'_> {
    WriteInput {
        produce_version: version,
        producer_id: 7,
        epoch,
        topic,
        partition,
    }
}

// ============================================================================ InitProducerId

#[test]
fn validate_init_refuses_empty_ids_and_timeouts_out_of_range() {
    let c = cfg();
    assert_eq!(validate_init("t", 1, &c), Ok(()));
    assert_eq!(validate_init("t", c.max_timeout_ms, &c), Ok(()));
    for bad in [0, -1, i32::MIN, c.max_timeout_ms + 1] {
        assert_eq!(
            validate_init("t", bad, &c),
            Err(ResponseError::InvalidTransactionTimeout),
            "{bad}"
        );
    }
    assert_eq!(
        validate_init("", 0, &c),
        Err(ResponseError::InvalidRequest),
        "the empty id is looked at first"
    );
}

#[test]
fn first_init_asks_for_a_producer_id_then_starts_at_epoch_zero() {
    let m = TxnMeta::new("t");
    assert!(!m.has_producer());
    for i in [fresh(), input(123, 4)] {
        assert_eq!(init_producer_id(&m, &i, None, NOW), Init::NeedProducerId);
        let t = done(init_producer_id(&m, &i, Some(42), NOW));
        assert_eq!(
            t.reply,
            Ok((42, 0)),
            "an id named for an unknown transactional id is ignored"
        );
        let next = only_persist(&t.effects);
        assert_eq!(
            *next,
            TxnMeta {
                producer_id: 42,
                epoch: 0,
                last_producer_id: 42,
                last_epoch: -1,
                timeout_ms: 30_000,
                update_ms: NOW,
                ..TxnMeta::new("t")
            }
        );
    }
}

#[test]
fn a_new_instance_bumps_the_epoch_from_every_idle_state() {
    for state in [TxnState::Empty, TxnState::CompleteCommit, TxnState::CompleteAbort] {
        let m = TxnMeta {
            last_producer_id: 7,
            last_epoch: 4,
            start_ms: NOW - 5000,
            ..meta(5, state)
        };
        let t = init(&m, &fresh());
        assert_eq!(t.reply, Ok((7, 6)), "{state:?}");
        let next = only_persist(&t.effects);
        assert_eq!(next.state, TxnState::Empty);
        assert_eq!((next.producer_id, next.epoch), (7, 6));
        assert_eq!((next.last_producer_id, next.last_epoch), (7, -1));
        assert_eq!(next.timeout_ms, 30_000, "the new instance's timeout");
        assert_eq!((next.start_ms, next.update_ms), (-1, NOW));
        assert!(next.partitions.is_empty() && next.groups.is_empty());
    }
}

#[test]
fn a_producer_naming_its_current_epoch_is_bumped_and_remembered() {
    let m = meta(5, TxnState::CompleteAbort);
    let t = init(&m, &input(7, 5));
    assert_eq!(t.reply, Ok((7, 6)));
    let next = only_persist(&t.effects);
    assert_eq!((next.last_producer_id, next.last_epoch), (7, 5));
    assert_eq!(next.state, TxnState::Empty);
}

#[test]
fn a_retried_bump_gets_the_current_epoch_without_another() {
    let mut m = meta(5, TxnState::CompleteAbort);
    let effects = init(&m, &input(7, 5)).effects;
    apply(&mut m, effects);
    let retry = init(&m, &input(7, 5));
    assert_eq!(retry.reply, Ok((7, 6)));
    assert!(retry.effects.is_empty(), "nothing changes");

    // Recognised in Empty only: once a transaction ran, the old epoch is fenced.
    m.state = TxnState::CompleteCommit;
    assert_eq!(init(&m, &input(7, 5)).reply, Err(ResponseError::ProducerFenced));
}

#[test]
fn a_zombie_of_the_previous_instance_is_fenced() {
    let mut m = meta(5, TxnState::CompleteCommit);
    let effects = init(&m, &fresh()).effects;
    apply(&mut m, effects);
    assert_eq!(m.epoch, 6);
    let zombie = init(&m, &input(7, 5));
    assert_eq!(zombie.reply, Err(ResponseError::ProducerFenced));
    assert!(zombie.effects.is_empty());
}

#[test]
fn a_producer_naming_another_id_or_epoch_is_fenced() {
    for state in [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ] {
        let m = meta(5, state);
        for (id, epoch) in [(7, 4), (7, 6), (8, 5), (0, 0)] {
            let t = init(&m, &input(id, epoch));
            assert_eq!(t.reply, Err(ResponseError::ProducerFenced), "{state:?} ({id}, {epoch})");
            assert!(t.effects.is_empty());
        }
    }
}

#[test]
fn init_while_markers_are_being_written_is_refused_as_concurrent() {
    for state in [TxnState::PrepareCommit, TxnState::PrepareAbort] {
        let m = meta(5, state);
        for i in [fresh(), input(7, 5)] {
            let t = init(&m, &i);
            assert_eq!(t.reply, Err(ResponseError::ConcurrentTransactions), "{state:?}");
            assert!(t.effects.is_empty());
        }
    }
}

#[test]
fn a_new_instance_aborts_the_open_transaction_under_a_fencing_epoch() {
    let m = ongoing(5, &[("a", 0), ("b", 1)], &["g"], NOW - 100);
    for i in [fresh(), input(7, 5)] {
        let t = init(&m, &i);
        assert_eq!(t.reply, Ok((7, 7)), "fenced at 6, then bumped for the new instance");
        let [Effect::Persist(prepare), Effect::WriteMarkers(markers), Effect::Persist(aborted), Effect::Persist(empty)] =
            t.effects.as_slice()
        else {
            panic!("unexpected effects {:?}", t.effects)
        };
        assert_eq!(prepare.state, TxnState::PrepareAbort);
        assert_eq!((prepare.producer_id, prepare.epoch), (7, 6));
        assert_eq!(
            prepare.partitions,
            set(&[("a", 0), ("b", 1)]),
            "the prepare record names them"
        );
        assert_eq!(prepare.update_ms, NOW);
        assert_eq!(
            *markers,
            Markers {
                producer_id: 7,
                epoch: 6,
                commit: false,
                partitions: set(&[("a", 0), ("b", 1)]),
                groups: groups(&["g"]),
            }
        );
        assert_eq!(aborted.state, TxnState::CompleteAbort);
        assert_eq!(aborted.epoch, 6);
        assert!(aborted.partitions.is_empty() && aborted.groups.is_empty());
        assert_eq!((empty.state, empty.producer_id, empty.epoch), (TxnState::Empty, 7, 7));
        assert_eq!(empty.start_ms, -1);
    }
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id() {
    let m = meta(MAX - 2, TxnState::Empty);
    assert_eq!(
        init(&m, &fresh()).reply,
        Ok((7, MAX - 1)),
        "the last epoch a client gets"
    );

    let m = meta(MAX - 1, TxnState::CompleteCommit);
    assert_eq!(init_producer_id(&m, &fresh(), None, NOW), Init::NeedProducerId);
    let t = done(init_producer_id(&m, &fresh(), Some(99), NOW));
    assert_eq!(t.reply, Ok((99, 0)));
    let next = only_persist(&t.effects);
    assert_eq!((next.last_producer_id, next.last_epoch), (7, -1));

    // The producer that named its exhausted epoch can retry into the new id.
    let mut m = m;
    let effects = done(init_producer_id(&m, &input(7, MAX - 1), Some(99), NOW)).effects;
    apply(&mut m, effects);
    assert_eq!(
        (m.producer_id, m.epoch, m.last_producer_id, m.last_epoch),
        (99, 0, 7, MAX - 1)
    );
    let retry = init(&m, &input(7, MAX - 1));
    assert_eq!(retry.reply, Ok((99, 0)));
    assert!(retry.effects.is_empty());
}

#[test]
fn fencing_at_an_exhausted_epoch_keeps_the_producer_id_for_the_markers() {
    for (epoch, fence) in [(MAX - 2, MAX - 1), (MAX - 1, MAX)] {
        let m = ongoing(epoch, &[("a", 0)], &[], NOW - 100);
        assert_eq!(init_producer_id(&m, &fresh(), None, NOW), Init::NeedProducerId);
        let mut after = m.clone();
        let t = done(init_producer_id(&m, &fresh(), Some(99), NOW));
        assert_eq!(t.reply, Ok((99, 0)));
        let markers = apply(&mut after, t.effects);
        assert_eq!(
            markers
                .iter()
                .map(|mk| (mk.producer_id, mk.epoch, mk.commit))
                .collect::<Vec<_>>(),
            vec![(7, fence, false)],
            "the abort closes producer 7's transaction"
        );
        assert_eq!((after.producer_id, after.epoch, after.state), (99, 0, TxnState::Empty));
    }
}

// ======================================================================== AddPartitionsToTxn

#[test]
fn adding_partitions_opens_a_transaction() {
    for state in [TxnState::Empty, TxnState::CompleteCommit, TxnState::CompleteAbort] {
        let m = TxnMeta {
            start_ms: NOW - 99_999,
            ..meta(5, state)
        };
        let req = topics(&[("a", &[0, 1]), ("b", &[1])]);
        let t = add_partitions(Some(&m), &add(5, false, &req), exists, NOW);
        assert!(results(&t.reply).iter().all(|(_, _, r)| r.is_ok()), "{:?}", t.reply);
        assert_eq!(results(&t.reply).len(), 3);
        let next = only_persist(&t.effects);
        assert_eq!(next.state, TxnState::Ongoing);
        assert_eq!(
            (next.start_ms, next.update_ms),
            (NOW, NOW),
            "{state:?}: a new transaction starts"
        );
        assert_eq!(next.partitions, set(&[("a", 0), ("a", 1), ("b", 1)]));
    }
}

#[test]
fn adding_to_an_open_transaction_keeps_its_start() {
    let m = ongoing(5, &[("a", 0)], &["g"], NOW - 500);
    let req = topics(&[("a", &[0]), ("b", &[0])]);
    let t = add_partitions(Some(&m), &add(5, false, &req), exists, NOW);
    let next = only_persist(&t.effects);
    assert_eq!((next.start_ms, next.update_ms), (NOW - 500, NOW));
    assert_eq!(next.partitions, set(&[("a", 0), ("b", 0)]));
    assert_eq!(next.groups, groups(&["g"]));
}

#[test]
fn add_partitions_checks_the_producer_first() {
    let req = topics(&[("a", &[0]), ("nope", &[3])]);
    let cases = [
        (None, 5, ResponseError::InvalidProducerIdMapping),
        (Some(TxnMeta::new("t")), 5, ResponseError::InvalidProducerIdMapping),
        (
            Some(TxnMeta {
                producer_id: 8,
                ..meta(5, TxnState::Empty)
            }),
            5,
            ResponseError::InvalidProducerIdMapping,
        ),
        (Some(meta(5, TxnState::Ongoing)), 4, ResponseError::ProducerFenced),
        (Some(meta(5, TxnState::Ongoing)), 6, ResponseError::ProducerFenced),
        (
            Some(meta(5, TxnState::PrepareCommit)),
            5,
            ResponseError::ConcurrentTransactions,
        ),
        (
            Some(meta(5, TxnState::PrepareAbort)),
            5,
            ResponseError::ConcurrentTransactions,
        ),
    ];
    for (m, epoch, want) in cases {
        for verify_only in [false, true] {
            let t = add_partitions(m.as_ref(), &add(epoch, verify_only, &req), exists, NOW);
            assert!(t.effects.is_empty());
            assert_eq!(
                results(&t.reply),
                vec![("a".into(), 0, Err(want)), ("nope".into(), 3, Err(want))],
                "{m:?} epoch {epoch}"
            );
        }
    }
}

#[test]
fn an_unknown_partition_fails_the_whole_request() {
    let m = meta(5, TxnState::Empty);
    let req = topics(&[("a", &[0, 2]), ("nope", &[0]), ("b", &[-1, 1])]);
    let t = add_partitions(Some(&m), &add(5, false, &req), exists, NOW);
    assert!(t.effects.is_empty());
    assert_eq!(
        results(&t.reply),
        vec![
            ("a".into(), 0, Err(ResponseError::OperationNotAttempted)),
            ("a".into(), 2, Err(ResponseError::UnknownTopicOrPartition)),
            ("nope".into(), 0, Err(ResponseError::UnknownTopicOrPartition)),
            ("b".into(), -1, Err(ResponseError::UnknownTopicOrPartition)),
            ("b".into(), 1, Err(ResponseError::OperationNotAttempted)),
        ]
    );
}

#[test]
fn verify_only_says_which_partitions_are_in_the_open_transaction() {
    let req = topics(&[("a", &[0, 1]), ("nope", &[0])]);
    let m = ongoing(5, &[("a", 0)], &[], NOW - 1);
    let t = add_partitions(Some(&m), &add(5, true, &req), exists, NOW);
    assert!(t.effects.is_empty(), "verification changes nothing");
    assert_eq!(
        results(&t.reply),
        vec![
            ("a".into(), 0, Ok(())),
            ("a".into(), 1, Err(ResponseError::InvalidTxnState)),
            ("nope".into(), 0, Err(ResponseError::InvalidTxnState)),
        ]
    );
    for state in [TxnState::Empty, TxnState::CompleteCommit, TxnState::CompleteAbort] {
        // Partitions left over in a record of another state do not count.
        let m = TxnMeta {
            partitions: set(&[("a", 0)]),
            ..meta(5, state)
        };
        let t = add_partitions(Some(&m), &add(5, true, &req), exists, NOW);
        assert!(results(&t.reply)
            .iter()
            .all(|(_, _, r)| *r == Err(ResponseError::InvalidTxnState)));
    }
}

#[test]
fn a_groups_offsets_partition_is_in_the_transaction_once_the_group_is() {
    // A group coordinator on another broker verifies a TxnOffsetCommit by the group's
    // __consumer_offsets partition, which AddOffsetsToTxn put in the transaction.
    let g = crate::group::coordinator_partition("g", 50);
    let other = (g + 1) % 50;
    let req = topics(&[("__consumer_offsets", &[g, other])]);
    let m = ongoing(5, &[("a", 0)], &["g"], NOW - 1);
    let t = add_partitions(Some(&m), &add(5, true, &req), exists, NOW);
    assert!(t.effects.is_empty());
    assert_eq!(
        results(&t.reply),
        vec![
            ("__consumer_offsets".into(), g, Ok(())),
            ("__consumer_offsets".into(), other, Err(ResponseError::InvalidTxnState)),
        ]
    );
    let without = ongoing(5, &[("a", 0)], &[], NOW - 1);
    let t = add_partitions(Some(&without), &add(5, true, &req), exists, NOW);
    assert!(results(&t.reply)
        .iter()
        .all(|(_, _, r)| *r == Err(ResponseError::InvalidTxnState)));
}

// =========================================================================== AddOffsetsToTxn

#[test]
fn adding_a_group_opens_the_transaction() {
    let m = meta(5, TxnState::CompleteCommit);
    let t = add_offsets(Some(&m), 7, 5, "g", NOW);
    assert_eq!(t.reply, Ok(()));
    let next = only_persist(&t.effects);
    assert_eq!(next.state, TxnState::Ongoing);
    assert_eq!((next.start_ms, next.update_ms), (NOW, NOW));
    assert_eq!(next.groups, groups(&["g"]));

    let m = ongoing(5, &[("a", 0)], &["g"], NOW - 7);
    let t = add_offsets(Some(&m), 7, 5, "h", NOW);
    let next = only_persist(&t.effects);
    assert_eq!(next.start_ms, NOW - 7);
    assert_eq!(next.groups, groups(&["g", "h"]));
    assert_eq!(next.partitions, set(&[("a", 0)]));
}

#[test]
fn add_offsets_and_txn_offset_commit_errors() {
    let cases = [
        (None, 7, 5, "g", ResponseError::InvalidProducerIdMapping),
        (
            Some(meta(5, TxnState::Ongoing)),
            8,
            5,
            "g",
            ResponseError::InvalidProducerIdMapping,
        ),
        (
            Some(meta(5, TxnState::Ongoing)),
            7,
            4,
            "g",
            ResponseError::ProducerFenced,
        ),
        (
            Some(meta(5, TxnState::Ongoing)),
            7,
            4,
            "",
            ResponseError::ProducerFenced,
        ),
        (
            Some(meta(5, TxnState::PrepareCommit)),
            7,
            5,
            "g",
            ResponseError::ConcurrentTransactions,
        ),
        (
            Some(meta(5, TxnState::PrepareAbort)),
            7,
            5,
            "",
            ResponseError::ConcurrentTransactions,
        ),
        (
            Some(meta(5, TxnState::Ongoing)),
            7,
            5,
            "",
            ResponseError::InvalidGroupId,
        ),
    ];
    for (m, id, epoch, group, want) in cases {
        let t = add_offsets(m.as_ref(), id, epoch, group, NOW);
        assert_eq!(t.reply, Err(want), "{m:?} {id} {epoch} {group:?}");
        assert!(t.effects.is_empty());
        assert_eq!(check_offsets(m.as_ref(), id, epoch, group), Err(want));
    }
}

#[test]
fn txn_offset_commit_needs_only_the_current_producer() {
    // As today: the group need not have been added with AddOffsetsToTxn.
    for state in [TxnState::Empty, TxnState::Ongoing, TxnState::CompleteCommit] {
        assert_eq!(check_offsets(Some(&meta(5, state)), 7, 5, "g"), Ok(()), "{state:?}");
    }
}

// ==================================================================================== EndTxn

#[test]
fn end_txn_prepares_writes_markers_and_completes() {
    for commit in [true, false] {
        let m = ongoing(5, &[("a", 0), ("a", 1)], &["g"], NOW - 300);
        let t = end_txn(Some(&m), &end(5, commit, false), NOW);
        assert_eq!(t.reply, Ok((7, 5)), "no epoch bump");
        let [Effect::Persist(prepare), Effect::WriteMarkers(markers), Effect::Persist(complete)] = t.effects.as_slice()
        else {
            panic!("unexpected effects {:?}", t.effects)
        };
        let (prepared, completed) = if commit {
            (TxnState::PrepareCommit, TxnState::CompleteCommit)
        } else {
            (TxnState::PrepareAbort, TxnState::CompleteAbort)
        };
        assert_eq!(
            *prepare,
            TxnMeta {
                state: prepared,
                update_ms: NOW,
                ..m.clone()
            }
        );
        assert_eq!(
            *markers,
            Markers {
                producer_id: 7,
                epoch: 5,
                commit,
                partitions: set(&[("a", 0), ("a", 1)]),
                groups: groups(&["g"]),
            }
        );
        assert_eq!(
            *complete,
            TxnMeta {
                state: completed,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                update_ms: NOW,
                ..m.clone()
            },
            "the start time stays, as in Kafka"
        );
    }
}

#[test]
fn a_retried_end_txn_is_answered_without_effects() {
    // Before v5 a retry names the current epoch; from v5 the epoch before the bump.
    for (state, commit) in [(TxnState::CompleteCommit, true), (TxnState::CompleteAbort, false)] {
        for (v5, asked) in [(false, 5), (true, 4)] {
            let t = end_txn(Some(&meta(5, state)), &end(asked, commit, v5), NOW);
            assert_eq!(t.reply, Ok((7, 5)), "v5 {v5}");
            assert!(t.effects.is_empty());
        }
    }
}

#[test]
fn end_txn_v5_ends_every_transaction_under_a_bumped_epoch() {
    let m = ongoing(5, &[("a", 0)], &["g"], NOW - 1);
    for commit in [true, false] {
        let t = end_txn(Some(&m), &end(5, commit, true), NOW);
        assert_eq!(t.reply, Ok((7, 6)), "the producer goes on at epoch 6");
        let markers: Vec<_> = t
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::WriteMarkers(mk) => Some((mk.producer_id, mk.epoch, mk.commit)),
                _ => None,
            })
            .collect();
        assert_eq!(markers, vec![(7, 6, commit)], "markers carry the bumped epoch");
        let Some(Effect::Persist(done)) = t.effects.last() else {
            panic!("no complete record: {:?}", t.effects)
        };
        assert_eq!((done.epoch, done.last_epoch), (6, 5));
    }
    // An abort with nothing open bumps too; a commit of nothing is refused.
    let empty = meta(5, TxnState::CompleteCommit);
    assert_eq!(end_txn(Some(&empty), &end(5, false, true), NOW).reply, Ok((7, 6)));
    assert_eq!(
        end_txn(Some(&meta(5, TxnState::Empty)), &end(5, true, true), NOW).reply,
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        end_txn(Some(&m), &end(4, true, true), NOW).reply,
        Err(ResponseError::ProducerFenced)
    );
}

#[test]
fn end_txn_v5_at_the_last_epoch_moves_to_a_new_producer_id() {
    let m = ongoing(i16::MAX - 1, &[("a", 0)], &[], NOW - 1);
    let mut input = end(i16::MAX - 1, true, true);
    assert!(end_txn_needs_producer_id(Some(&m), &input));
    assert_eq!(
        end_txn(Some(&m), &input, NOW).reply,
        Err(ResponseError::CoordinatorNotAvailable),
        "never without the new id"
    );
    input.fresh_id = Some(99);
    let t = end_txn(Some(&m), &input, NOW);
    assert_eq!(t.reply, Ok((99, 0)));
    assert!(t
        .effects
        .iter()
        .any(|e| matches!(e, Effect::WriteMarkers(mk) if mk.producer_id == 7 && mk.epoch == i16::MAX)));
    let Some(Effect::Persist(done)) = t.effects.last() else {
        panic!("no complete record")
    };
    // A retry of that request under the old id is recognised.
    let retry = EndInput {
        producer_id: 7,
        ..end(i16::MAX - 1, true, true)
    };
    assert_eq!(end_txn(Some(done), &retry, NOW).reply, Ok((99, 0)));
    assert!(!end_txn_needs_producer_id(
        Some(&meta(5, TxnState::Ongoing)),
        &end(5, true, true)
    ));
}

#[test]
fn end_txn_in_the_wrong_state_is_invalid() {
    for (state, commit) in [
        (TxnState::CompleteCommit, false),
        (TxnState::CompleteAbort, true),
        (TxnState::Empty, true),
        (TxnState::Empty, false),
    ] {
        let t = end_txn(Some(&meta(5, state)), &end(5, commit, false), NOW);
        assert_eq!(
            t.reply,
            Err(ResponseError::InvalidTxnState),
            "{state:?} commit={commit}"
        );
        assert!(t.effects.is_empty());
    }
}

#[test]
fn end_txn_checks_the_producer() {
    for commit in [true, false] {
        let cases = [
            (None, 7, 5, ResponseError::InvalidProducerIdMapping),
            (
                Some(meta(5, TxnState::Ongoing)),
                8,
                5,
                ResponseError::InvalidProducerIdMapping,
            ),
            (Some(meta(5, TxnState::Ongoing)), 7, 4, ResponseError::ProducerFenced),
            (Some(meta(5, TxnState::Ongoing)), 7, 6, ResponseError::ProducerFenced),
            (
                Some(meta(5, TxnState::PrepareCommit)),
                7,
                5,
                ResponseError::ConcurrentTransactions,
            ),
            (
                Some(meta(5, TxnState::PrepareAbort)),
                7,
                5,
                ResponseError::ConcurrentTransactions,
            ),
        ];
        for (m, id, epoch, want) in cases {
            let input = EndInput {
                producer_id: id,
                epoch,
                commit,
                v5: false,
                fresh_id: None,
            };
            let t = end_txn(m.as_ref(), &input, NOW);
            assert_eq!(t.reply, Err(want), "{m:?} {id} {epoch} commit={commit}");
            assert!(t.effects.is_empty());
        }
    }
}

#[test]
fn end_txn_v5_after_a_timeout_abort() {
    // The coordinator aborted the transaction of epoch 5 and fenced it with 6.
    let m = meta(6, TxnState::CompleteAbort);
    let commit = end_txn(Some(&m), &end(5, true, true), NOW);
    assert_eq!(commit.reply, Err(ResponseError::InvalidTxnState));
    let abort = end_txn(Some(&m), &end(5, false, true), NOW);
    assert_eq!(abort.reply, Ok((7, 6)), "acknowledged with the bumped epoch");
    assert!(
        commit.effects.is_empty() && abort.effects.is_empty(),
        "no second marker"
    );

    for commit in [true, false] {
        let before_v5 = end_txn(Some(&m), &end(5, commit, false), NOW);
        assert_eq!(before_v5.reply, Err(ResponseError::ProducerFenced));
        let older = end_txn(Some(&m), &end(4, commit, true), NOW);
        assert_eq!(older.reply, Err(ResponseError::ProducerFenced));
        // After a commit under epoch 6, epoch 5's commit is a retry of it, and its abort is
        // the wrong state, as Kafka answers.
        let committed = end_txn(Some(&meta(6, TxnState::CompleteCommit)), &end(5, commit, true), NOW);
        let want = if commit {
            Ok((7, 6))
        } else {
            Err(ResponseError::InvalidTxnState)
        };
        assert_eq!(committed.reply, want);
    }
}

// ======================================================================= Produce verification

#[test]
fn a_batch_for_a_partition_of_the_open_transaction_passes() {
    let m = ongoing(5, &[("a", 0)], &[], NOW - 1);
    for version in [3, 9, 11, 12] {
        let t = verify_write(Some(&m), &write(5, version, "a", 0), NOW);
        assert_eq!(t.reply, Ok(()));
        assert!(t.effects.is_empty());
    }
    // Only an older epoch is refused here; a newer one is for the log to judge.
    assert_eq!(verify_write(Some(&m), &write(6, 12, "a", 0), NOW).reply, Ok(()));
}

#[test]
fn produce_verification_errors() {
    let m = ongoing(5, &[("a", 0)], &[], NOW - 1);
    assert_eq!(
        verify_write(None, &write(5, 12, "a", 0), NOW).reply,
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        verify_write(Some(&m), &write(4, 12, "a", 0), NOW).reply,
        Err(ResponseError::InvalidProducerEpoch)
    );
    let other = WriteInput {
        producer_id: 8,
        ..write(5, 12, "a", 0)
    };
    assert_eq!(
        verify_write(Some(&m), &other, NOW).reply,
        Err(ResponseError::InvalidProducerEpoch)
    );
    for state in [TxnState::PrepareCommit, TxnState::PrepareAbort] {
        let m = TxnMeta {
            partitions: set(&[("a", 0)]),
            ..meta(5, state)
        };
        for version in [9, 11, 12] {
            let t = verify_write(Some(&m), &write(5, version, "a", 0), NOW);
            assert_eq!(t.reply, Err(ResponseError::ConcurrentTransactions));
            assert!(t.effects.is_empty());
        }
    }
}

#[test]
fn a_partition_outside_the_transaction_by_produce_version() {
    for m in [meta(5, TxnState::Empty), ongoing(5, &[("a", 1)], &[], NOW - 50)] {
        for (version, want) in [
            (3, ResponseError::InvalidTxnState),
            (9, ResponseError::InvalidTxnState),
            (10, ResponseError::InvalidTxnState),
            (11, ResponseError::TransactionAbortable),
        ] {
            let t = verify_write(Some(&m), &write(5, version, "a", 0), NOW);
            assert_eq!(t.reply, Err(want), "v{version} {:?}", m.state);
            assert!(t.effects.is_empty());
        }
        for version in [12, 13] {
            let t = verify_write(Some(&m), &write(5, version, "a", 0), NOW);
            assert_eq!(t.reply, Ok(()));
            let next = only_persist(&t.effects);
            assert_eq!(next.state, TxnState::Ongoing);
            assert!(next.partitions.contains(&("a".to_string(), 0)));
            let start = if m.state == TxnState::Ongoing { NOW - 50 } else { NOW };
            assert_eq!(
                (next.start_ms, next.update_ms),
                (start, NOW),
                "v{version}: transaction version 2 adds it"
            );
        }
    }
}

// ===================================================================================== Timers

#[test]
fn an_open_transaction_is_aborted_once_past_its_timeout() {
    let start = NOW - 10_000;
    let m = TxnMeta {
        timeout_ms: 1000,
        ..ongoing(5, &[("a", 0)], &["g"], start)
    };
    assert_eq!(
        tick(&m, &cfg(), start + 1000),
        None,
        "not before the timeout has passed"
    );
    let Some((action, effects)) = tick(&m, &cfg(), start + 1001) else {
        panic!("not aborted")
    };
    assert_eq!(action, TimerAction::AbortTimedOut);
    let mut after = m.clone();
    let markers = apply(&mut after, effects);
    assert_eq!(
        markers,
        vec![Markers {
            producer_id: 7,
            epoch: 6,
            commit: false,
            partitions: set(&[("a", 0)]),
            groups: groups(&["g"]),
        }],
        "the abort carries the fencing epoch"
    );
    assert_eq!(
        (after.state, after.producer_id, after.epoch),
        (TxnState::CompleteAbort, 7, 6)
    );
    assert_eq!(after.update_ms, start + 1001);
    assert!(after.partitions.is_empty() && after.groups.is_empty());

    // The fenced producer: its batches and EndTxn are refused.
    assert_eq!(
        verify_write(Some(&after), &write(5, 12, "a", 0), NOW).reply,
        Err(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        end_txn(Some(&after), &end(5, true, false), NOW).reply,
        Err(ResponseError::ProducerFenced)
    );
}

#[test]
fn a_timeout_at_an_exhausted_epoch_fences_without_a_new_id() {
    let m = ongoing(MAX - 1, &[("a", 0)], &[], NOW - 2 * i64::from(TIMEOUT));
    let Some((TimerAction::AbortTimedOut, effects)) = tick(&m, &cfg(), NOW) else {
        panic!("not aborted")
    };
    let mut after = m.clone();
    let markers = apply(&mut after, effects);
    assert_eq!((markers[0].producer_id, markers[0].epoch), (7, MAX));
    assert_eq!((after.producer_id, after.epoch), (7, MAX));
    // The next instance moves to a new producer id.
    assert_eq!(init_producer_id(&after, &fresh(), None, NOW), Init::NeedProducerId);
}

#[test]
fn a_prepared_transaction_is_completed_by_the_timer() {
    for (prepared, complete, commit) in [
        (TxnState::PrepareCommit, TxnState::CompleteCommit, true),
        (TxnState::PrepareAbort, TxnState::CompleteAbort, false),
    ] {
        let m = TxnMeta {
            partitions: set(&[("b", 1)]),
            groups: groups(&["g"]),
            update_ms: NOW - 1,
            ..meta(5, prepared)
        };
        let Some((action, effects)) = tick(&m, &cfg(), NOW) else {
            panic!("left prepared")
        };
        assert_eq!(action, TimerAction::CompletePrepared);
        let [Effect::WriteMarkers(markers), Effect::Persist(done)] = effects.as_slice() else {
            panic!("unexpected effects {effects:?}")
        };
        assert_eq!((markers.producer_id, markers.epoch, markers.commit), (7, 5, commit));
        assert_eq!(markers.partitions, set(&[("b", 1)]));
        assert_eq!(markers.groups, groups(&["g"]));
        assert_eq!((done.state, done.epoch, done.update_ms), (complete, 5, NOW));
        assert!(done.partitions.is_empty() && done.groups.is_empty());
    }
}

#[test]
fn idle_transactional_ids_expire() {
    let c = cfg();
    let idle = c.id_expiration_ms;
    for state in [TxnState::Empty, TxnState::CompleteCommit, TxnState::CompleteAbort] {
        let m = TxnMeta {
            update_ms: NOW,
            ..meta(5, state)
        };
        assert_eq!(tick(&m, &c, NOW + idle), None, "{state:?}");
        assert_eq!(
            tick(&m, &c, NOW + idle + 1),
            Some((TimerAction::Expire, vec![Effect::Remove])),
            "{state:?}"
        );
    }
    // An id that never got a producer id (its allocation failed) goes too.
    assert_eq!(
        tick(&TxnMeta::new("t"), &c, NOW),
        Some((TimerAction::Expire, vec![Effect::Remove]))
    );
    // An open transaction is never forgotten, only timed out.
    let m = TxnMeta {
        update_ms: NOW - 2 * idle,
        timeout_ms: i32::MAX,
        ..ongoing(5, &[("a", 0)], &[], NOW - 1000)
    };
    assert_eq!(tick(&m, &c, NOW), None);
}

#[test]
fn the_timer_leaves_settled_ids_alone() {
    let c = cfg();
    for state in [TxnState::Empty, TxnState::CompleteCommit, TxnState::CompleteAbort] {
        assert_eq!(tick(&meta(5, state), &c, NOW), None);
    }
    assert_eq!(tick(&ongoing(5, &[("a", 0)], &[], NOW - 5), &c, NOW), None);
}

// ================================================================================ Lifecycles

#[test]
fn a_producer_from_init_to_commit_to_timeout_and_a_new_instance() {
    let mut m = TxnMeta::new("t");
    let t = done(init_producer_id(&m, &fresh(), Some(7), NOW));
    assert_eq!(t.reply, Ok((7, 0)));
    let effects = t.effects;
    apply(&mut m, effects);

    // A transaction: partitions, a group, a v12 batch adding another partition, commit.
    let req = topics(&[("a", &[0])]);
    let effects = add_partitions(Some(&m), &add(0, false, &req), exists, NOW + 1).effects;
    apply(&mut m, effects);
    let effects = add_offsets(Some(&m), 7, 0, "g", NOW + 2).effects;
    apply(&mut m, effects);
    assert_eq!(check_offsets(Some(&m), 7, 0, "g"), Ok(()));
    let effects = verify_write(Some(&m), &write(0, 12, "b", 1), NOW + 3).effects;
    apply(&mut m, effects);
    assert_eq!(
        (m.state, m.start_ms, m.partitions.len()),
        (TxnState::Ongoing, NOW + 1, 2)
    );
    let t = end_txn(Some(&m), &end(0, true, false), NOW + 4);
    assert_eq!(t.reply, Ok((7, 0)));
    let markers = apply(&mut m, t.effects);
    assert_eq!(markers[0].partitions, set(&[("a", 0), ("b", 1)]));
    assert_eq!(markers[0].groups, groups(&["g"]));
    assert_eq!(m.state, TxnState::CompleteCommit);

    // The next transaction is left open past its timeout.
    let effects = add_partitions(Some(&m), &add(0, false, &req), exists, NOW + 10).effects;
    apply(&mut m, effects);
    assert_eq!(m.start_ms, NOW + 10);
    let late = NOW + 10 + i64::from(m.timeout_ms) + 1;
    let (_, effects) = tick(&m, &cfg(), late).expect("timed out");
    apply(&mut m, effects);
    assert_eq!((m.state, m.epoch), (TxnState::CompleteAbort, 1));
    assert_eq!(
        end_txn(Some(&m), &end(0, false, true), late).reply,
        Ok((7, 1)),
        "v5 abort acknowledged"
    );

    // A new instance takes over; the old one stays fenced.
    let t = init(&m, &fresh());
    assert_eq!(t.reply, Ok((7, 2)));
    let effects = t.effects;
    apply(&mut m, effects);
    assert_eq!(
        add_offsets(Some(&m), 7, 0, "g", late).reply,
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(init(&m, &input(7, 1)).reply, Err(ResponseError::ProducerFenced));
}

#[test]
fn a_failed_marker_write_leaves_the_transaction_prepared_for_the_timer() {
    let mut m = ongoing(5, &[("a", 0)], &[], NOW - 1);
    let t = end_txn(Some(&m), &end(5, true, false), NOW);
    // The prepare record is durable, then the markers fail: the effects stop there.
    let Some(Effect::Persist(prepared)) = t.effects.first().cloned() else {
        panic!("the decision comes first")
    };
    m = prepared;
    assert_eq!(m.state, TxnState::PrepareCommit);
    assert_eq!(
        end_txn(Some(&m), &end(5, true, false), NOW).reply,
        Err(ResponseError::ConcurrentTransactions),
        "the client's retry waits"
    );
    assert_eq!(init(&m, &fresh()).reply, Err(ResponseError::ConcurrentTransactions));
    let (action, effects) = tick(&m, &cfg(), NOW + 1).expect("completed by the timer");
    assert_eq!(action, TimerAction::CompletePrepared);
    let markers = apply(&mut m, effects);
    assert_eq!(markers.len(), 1);
    assert!(markers[0].commit);
    assert_eq!(m.state, TxnState::CompleteCommit);
    assert_eq!(
        end_txn(Some(&m), &end(5, true, false), NOW + 2).reply,
        Ok((7, 5)),
        "and the retry succeeds"
    );
}

#[test]
fn an_expired_id_starts_over() {
    let mut m = meta(5, TxnState::CompleteCommit);
    let (_, effects) = tick(&m, &cfg(), NOW + cfg().id_expiration_ms).expect("expired");
    apply(&mut m, effects);
    assert!(m.gone);
    // What InitProducerId then finds is a new transactional id.
    assert_eq!(
        init_producer_id(&TxnMeta::new("t"), &fresh(), None, NOW),
        Init::NeedProducerId
    );
}

// =================================================================================== Records

#[test]
fn stored_records_read_as_before() {
    let stored = r#"{"transactional_id":"t","producer_id":7,"epoch":5,"last_producer_id":7,"last_epoch":4,
        "timeout_ms":60000,"state":"Ongoing","partitions":[["a",0],["b",1]],"groups":["g"],
        "start_ms":100,"update_ms":200}"#;
    let m: TxnMeta = serde_json::from_str(stored).expect("a stored record");
    assert_eq!(
        m,
        TxnMeta {
            last_producer_id: 7,
            last_epoch: 4,
            update_ms: 200,
            ..ongoing(5, &[("a", 0), ("b", 1)], &["g"], 100)
        }
    );
    let json = serde_json::to_string(&m).expect("serializes");
    let back: TxnMeta = serde_json::from_str(&json).expect("reads back");
    assert_eq!(back, m);
    assert!(!json.contains("gone"));
}

#[test]
fn state_names_and_list_filters() {
    for s in [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ] {
        assert!(STATE_NAMES.contains(&s.name()));
        assert_eq!(
            serde_json::to_string(&s).expect("serializes"),
            format!("\"{}\"", s.name())
        );
    }
    let m = ongoing(5, &[], &[], NOW - 100);
    assert!(m.open_for_at_least(100, NOW));
    assert!(!m.open_for_at_least(101, NOW));
    assert!(!meta(5, TxnState::CompleteCommit).open_for_at_least(0, NOW));
    assert!(meta(0, TxnState::Empty).has_producer());
}

mod stored_records {
    use super::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = TxnState> {
        prop_oneof![
            Just(TxnState::Empty),
            Just(TxnState::Ongoing),
            Just(TxnState::PrepareCommit),
            Just(TxnState::PrepareAbort),
            Just(TxnState::CompleteCommit),
            Just(TxnState::CompleteAbort),
        ]
    }

    proptest! {
        /// A stored record comes from disk: any bytes load or are refused, and a record that
        /// loads, whatever its numbers, goes through the timer and every request without a panic.
        #[test]
        fn any_stored_record_loads_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(m) = serde_json::from_slice::<TxnMeta>(&bytes) {
                let _ = tick(&m, &cfg(), 0);
            }
        }

        #[test]
        fn records_with_any_numbers_survive_every_transition(
            producer_id in any::<i64>(), epoch in any::<i16>(), last_epoch in any::<i16>(),
            timeout_ms in any::<i32>(), state in any_state(), start_ms in any::<i64>(),
            update_ms in any::<i64>(), now_ms in any::<i64>(), ask_epoch in any::<i16>(),
            commit in any::<bool>(), v5 in any::<bool>(),
        ) {
            let mut m = ongoing(epoch, &[("t", 0)], &["g"], start_ms);
            m.producer_id = producer_id;
            m.last_producer_id = producer_id;
            m.last_epoch = last_epoch;
            m.timeout_ms = timeout_ms;
            m.state = state;
            m.update_ms = update_ms;
            let bytes = serde_json::to_vec(&m).expect("serialises");
            let loaded: TxnMeta = serde_json::from_slice(&bytes).expect("loads");
            prop_assert_eq!(&loaded, &m);
            let _ = tick(&loaded, &cfg(), now_ms);
            let init = InitInput { timeout_ms: 60_000, producer_id, epoch: ask_epoch };
            let _ = init_producer_id(&loaded, &init, None, now_ms);
            let _ = init_producer_id(&loaded, &init, Some(producer_id.wrapping_add(1)), now_ms);
            let end = EndInput {
                producer_id,
                epoch: ask_epoch,
                commit,
                v5,
                fresh_id: None,
            };
            let _ = end_txn(Some(&loaded), &end, now_ms);
            let _ = check_offsets(Some(&loaded), producer_id, ask_epoch, "g");
        }
    }
}
