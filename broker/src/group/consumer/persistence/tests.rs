use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::group::classic::ClassicGroup;
use crate::group::consumer::test_support::*;

/// Caught mid-rebalance, with a regex subscriber, a static member and a non-default assignor,
/// so that the record carries every kind of state.
fn mid_rebalance() -> (Harness, Vec<Client>) {
    let mut h = Harness::new(&[("t", 6), ("orders-1", 2)]);
    let mut clients = three_stable_members(&mut h);
    let mut r = Client::new("r", &[]);
    r.names = None;
    r.regex = Some("orders-.*".into());
    r.instance_id = Some("i-r".into());
    r.assignor = Some("range".into());
    h.join(&mut r);
    // Mid-rebalance, so some members have partitions pending revocation.
    h.heartbeat(&mut clients[0]);
    clients.push(r);
    (h, clients)
}

#[test]
fn record_round_trip() {
    let (mut h, mut clients) = mid_rebalance();

    let bytes = h.group.to_record();
    let loaded = ConsumerGroup::from_record(&bytes, h.now).expect("loads");
    assert_eq!(loaded.to_record(), bytes);
    assert_eq!(loaded.group_epoch(), h.group.group_epoch());
    assert_eq!(loaded.state(), h.group.state());
    assert_eq!(
        loaded.members().cloned().collect::<Vec<_>>(),
        h.group.members().cloned().collect::<Vec<_>>()
    );
    assert_eq!(loaded.describe(&h.topics), h.group.describe(&h.topics));
    assert!(ConsumerGroup::from_record(b"{not json", h.now).is_none());

    // The loaded group carries on.
    h.group = loaded;
    h.converge(&mut clients);
    assert_eq!(all_partitions(&clients).len(), 8);
}

// Group records are read back at startup, after crashes and upgrades: damaged bytes must be
// refused rather than take the broker down, and whatever loads must save to a record that
// loads the same way, or a group would drift a little with every restart.

fn check_consumer(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
    let now = Instant::now();
    if let Some(group) = ConsumerGroup::from_record(bytes, now) {
        let record = group.to_record();
        let again = ConsumerGroup::from_record(&record, now).map(|g| g.to_record());
        prop_assert_eq!(
            again.as_deref().map(String::from_utf8_lossy),
            Some(String::from_utf8_lossy(&record))
        );
    }
    Ok(())
}

fn check_classic(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
    let now = tokio::time::Instant::now();
    if let Some(group) = ClassicGroup::from_record(bytes, now) {
        let record = group.to_record();
        let again = ClassicGroup::from_record(&record, now).map(|g| g.to_record());
        prop_assert_eq!(
            again.as_deref().map(String::from_utf8_lossy),
            Some(String::from_utf8_lossy(&record))
        );
    }
    Ok(())
}

/// XORs each chosen byte with a non-zero mask.
fn damage(bytes: &mut [u8], flips: &[(Index, u8)]) {
    if bytes.is_empty() {
        return;
    }
    for (at, mask) in flips {
        bytes[at.index(bytes.len())] ^= mask;
    }
}

fn byte_flips() -> impl Strategy<Value = Vec<(Index, u8)>> {
    vec((any::<Index>(), 1..=u8::MAX), 1..6)
}

fn topic_id_string() -> impl Strategy<Value = String> {
    any::<[u8; 16]>().prop_map(|b| Uuid::from_bytes(b).to_string())
}

fn assignment() -> impl Strategy<Value = Vec<(String, Vec<i32>)>> {
    vec((topic_id_string(), vec(any::<i32>(), 0..4)), 0..3)
}

fn assignment_record(a: Vec<(String, Vec<i32>)>) -> Vec<TopicPartitionsRecord> {
    a.into_iter()
        .map(|(topic_id, partitions)| TopicPartitionsRecord { topic_id, partitions })
        .collect()
}

/// A member record, as a tuple: the record structs are not `Debug`, which proptest needs.
#[allow(clippy::type_complexity)]
fn member() -> impl Strategy<
    Value = (
        (String, Option<String>, Option<String>, String, String, i32),
        (Vec<String>, Option<String>, Option<String>, i32, i32, MemberState),
        (Vec<(String, Vec<i32>)>, Vec<(String, Vec<i32>)>),
    ),
> {
    let state = prop_oneof![
        Just(MemberState::Stable),
        Just(MemberState::UnrevokedPartitions),
        Just(MemberState::UnreleasedPartitions),
        Just(MemberState::Unknown),
    ];
    (
        (
            ".{0,8}",
            option::of(".{0,8}"),
            option::of(".{0,8}"),
            ".{0,8}",
            ".{0,8}",
            any::<i32>(),
        ),
        (
            vec("[a-z.]{1,6}", 0..3),
            option::of(".{0,8}"),
            option::of(prop_oneof![Just("uniform".to_string()), Just("range".to_string())]),
            any::<i32>(),
            any::<i32>(),
            state,
        ),
        (assignment(), assignment()),
    )
}

/// Valid consumer group records: any content the layout allows, at the current version.
fn consumer_records() -> impl Strategy<Value = Vec<u8>> {
    (
        ".{0,8}",
        any::<i32>(),
        any::<i32>(),
        option::of("[a-z]{1,8}"),
        vec(member(), 0..4),
        vec((".{0,8}", assignment()), 0..3),
        vec((".{0,8}", topic_id_string(), any::<i32>()), 0..3),
        vec((".{0,8}", vec(".{0,8}", 0..3)), 0..3),
    )
        .prop_map(
            |(group_id, a, b, last_assignor, members, target, subscription_metadata, resolved_regexes)| {
                let members = members
                    .into_iter()
                    .map(|(who, subscription, (assigned, pending))| {
                        let (member_id, instance_id, rack_id, client_id, client_host, rebalance_timeout_ms) = who;
                        let (names, regex, server_assignor, member_epoch, previous_member_epoch, state) = subscription;
                        let assignment_epochs = assigned
                            .first()
                            .map(|(t, ps)| (t.clone(), ps.first().copied().unwrap_or(0), member_epoch))
                            .into_iter()
                            .collect();
                        MemberRecord {
                            member_id,
                            instance_id,
                            rack_id,
                            client_id,
                            client_host,
                            rebalance_timeout_ms,
                            subscribed_topic_names: names,
                            subscribed_topic_regex: regex,
                            server_assignor,
                            member_epoch,
                            previous_member_epoch,
                            state,
                            assigned_partitions: assignment_record(assigned),
                            assignment_epochs,
                            partitions_pending_revocation: assignment_record(pending),
                        }
                    })
                    .collect();
                let record = GroupRecord {
                    version: RECORD_VERSION,
                    group_id,
                    group_epoch: a.max(b),
                    assignment_epoch: a.min(b),
                    last_assignor,
                    members,
                    target: target.into_iter().map(|(m, a)| (m, assignment_record(a))).collect(),
                    subscription_metadata,
                    resolved_regexes,
                };
                serde_json::to_vec(&record).expect("a GroupRecord always serialises")
            },
        )
}

/// Valid classic group records, in the layout `ClassicGroup::to_record` writes.
fn classic_records() -> impl Strategy<Value = Vec<u8>> {
    let member_json = (
        ".{0,8}",
        option::of(".{0,8}"),
        ".{0,8}",
        ".{0,8}",
        any::<i32>(),
        any::<i32>(),
        vec((".{0,8}", vec(any::<u8>(), 0..8)), 0..3),
        vec(any::<u8>(), 0..8),
    )
        .prop_map(
            |(
                id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                protocols,
                assignment,
            )| {
                serde_json::json!({
                    "id": id,
                    "instance_id": instance_id,
                    "client_id": client_id,
                    "client_host": client_host,
                    "rebalance_timeout_ms": rebalance_timeout_ms,
                    "session_timeout_ms": session_timeout_ms,
                    "protocols": protocols,
                    "assignment": assignment,
                })
            },
        );
    (
        option::of("[a-z]{1,8}"),
        option::of("[a-z]{1,8}"),
        any::<i32>(),
        option::of(".{0,8}"),
        any::<i64>(),
        vec(member_json, 0..4),
    )
        .prop_map(
            |(protocol_type, protocol_name, generation, leader, state_since_ms, members)| {
                let record = serde_json::json!({
                    "protocol_type": protocol_type,
                    "protocol_name": protocol_name,
                    "generation": generation,
                    "leader": leader,
                    "state_since_ms": state_since_ms,
                    "members": members,
                });
                serde_json::to_vec(&record).expect("a JSON value always serialises")
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_bytes_load_or_are_refused(bytes in vec(any::<u8>(), 0..512)) {
        check_consumer(&bytes)?;
        check_classic(&bytes)?;
    }

    #[test]
    fn damaged_consumer_records_load_or_are_refused(
        record in prop_oneof![4 => consumer_records(), 1 => Just(mid_rebalance().0.group.to_record())],
        flips in byte_flips(),
    ) {
        prop_assert!(ConsumerGroup::from_record(&record, Instant::now()).is_some(), "an intact record loads");
        check_consumer(&record)?;
        let mut damaged = record;
        damage(&mut damaged, &flips);
        check_consumer(&damaged)?;
    }

    #[test]
    fn damaged_classic_records_load_or_are_refused(record in classic_records(), flips in byte_flips()) {
        prop_assert!(
            ClassicGroup::from_record(&record, tokio::time::Instant::now()).is_some(),
            "an intact record loads"
        );
        check_classic(&record)?;
        let mut damaged = record;
        damage(&mut damaged, &flips);
        check_classic(&damaged)?;
    }
}
