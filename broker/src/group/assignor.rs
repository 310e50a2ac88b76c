//! Server-side partition assignors of the KIP-848 consumer group protocol: "uniform" (the
//! default) and "range". They turn the members' subscriptions plus the previous target
//! assignment into the next target assignment; reconciling members towards it is
//! [`super::consumer`]'s job.
//!
//! Pure functions over plain maps: no I/O, no clock, deterministic (members are visited in
//! member-id order and topics in topic-id order, where Kafka iterates hash maps).
//!
//! KIP-848: <https://cwiki.apache.org/confluence/display/KAFKA/KIP-848%3A+The+Next+Generation+of+the+Consumer+Rebalance+Protocol>

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions per topic id. Ordered so that iteration, serialisation and tests are stable.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// Kafka's `UniformAssignor.NAME`; the first entry of `group.consumer.assignors` by default.
pub const UNIFORM_ASSIGNOR_NAME: &str = "uniform";
/// Kafka's `RangeAssignor.RANGE_ASSIGNOR_NAME`.
pub const RANGE_ASSIGNOR_NAME: &str = "range";
/// Every server assignor this module implements, in Kafka's default preference order.
pub const SUPPORTED_ASSIGNORS: [&str; 2] = [UNIFORM_ASSIGNOR_NAME, RANGE_ASSIGNOR_NAME];

/// Upper bound on the balancing passes of the heterogeneous uniform assignor. Each pass moves
/// at least one partition towards a strictly less loaded member, so the loop ends on its own;
/// the cap only guards against a bug turning it into a hang on the coordinator.
const MAX_BALANCE_PASSES: usize = 100_000;

/// What an assignor knows about one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpec {
    /// Topics the member subscribes to (names and resolved regex), already mapped to ids of
    /// topics that exist. Topics that do not exist are not here (Kafka's `TopicIds`).
    pub subscribed_topic_ids: BTreeSet<Uuid>,
    /// The member's previous target assignment; assignors keep as much of it as they can.
    pub current: Assignment,
}

/// Whether `name` is a server assignor this module implements.
pub fn is_supported(name: &str) -> bool {
    SUPPORTED_ASSIGNORS.contains(&name)
}

/// Computes the target assignment of every member with the assignor `name`.
///
/// `partition_counts` holds the partition count of every topic any member subscribes to.
/// Returns `None` for an unknown assignor. Every member of `members` gets an entry (possibly
/// empty), every partition of a subscribed topic is given to exactly one subscriber, and no
/// member gets a topic it does not subscribe to.
pub fn assign(
    name: &str,
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> Option<BTreeMap<String, Assignment>> {
    let mut result = match name {
        UNIFORM_ASSIGNOR_NAME => {
            if is_homogeneous(members) {
                uniform_homogeneous(members, partition_counts)
            } else {
                uniform_heterogeneous(members, partition_counts)
            }
        }
        RANGE_ASSIGNOR_NAME => range(members, partition_counts),
        _ => return None,
    };
    for member_id in members.keys() {
        result.entry(member_id.clone()).or_default();
    }
    result.retain(|_, a| {
        a.retain(|_, p| !p.is_empty());
        true
    });
    Some(result)
}

/// Kafka's `SubscriptionType.HOMOGENEOUS`: every member subscribes to the same topics.
fn is_homogeneous(members: &BTreeMap<String, MemberSpec>) -> bool {
    let mut specs = members.values();
    match specs.next() {
        None => true,
        Some(first) => specs.all(|m| m.subscribed_topic_ids == first.subscribed_topic_ids),
    }
}

fn count_of(partition_counts: &BTreeMap<Uuid, i32>, topic_id: &Uuid) -> i32 {
    partition_counts.get(topic_id).copied().unwrap_or(0).max(0)
}

/// Port of Kafka's `UniformHomogeneousAssignmentBuilder`: balance first (sizes differ by at
/// most one), then stickiness. Members are given their quota in member-id order; the first
/// `total % members` of them may hold one extra partition.
fn uniform_homogeneous(
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut target: BTreeMap<String, Assignment> = BTreeMap::new();
    let Some(first) = members.values().next() else {
        return target;
    };
    let topics: BTreeSet<Uuid> = first
        .subscribed_topic_ids
        .iter()
        .filter(|t| partition_counts.contains_key(t))
        .copied()
        .collect();
    if topics.is_empty() {
        return target;
    }

    // Kafka's `groupSpec.isPartitionAssigned`: held in the previous target by anyone.
    let mut previously_assigned: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for spec in members.values() {
        for (topic_id, partitions) in &spec.current {
            for p in partitions {
                previously_assigned.insert((*topic_id, *p));
            }
        }
    }
    let mut unassigned: Vec<(Uuid, i32)> = Vec::new();
    let mut total: usize = 0;
    for topic_id in &topics {
        let count = count_of(partition_counts, topic_id);
        for p in 0..count {
            if !previously_assigned.contains(&(*topic_id, p)) {
                unassigned.push((*topic_id, p));
            }
        }
        total += count as usize;
    }

    let member_count = members.len();
    let min_quota = total / member_count;
    let mut members_with_extra = total % member_count;
    let mut unfilled: Vec<(String, usize)> = Vec::new();

    // Revoke what is no longer subscribed or above the member's quota.
    for (member_id, spec) in members {
        let mut quota = min_quota;
        if members_with_extra > 0 {
            quota += 1;
            members_with_extra -= 1;
        }
        let mut kept = Assignment::new();
        for (topic_id, partitions) in &spec.current {
            if !topics.contains(topic_id) {
                continue;
            }
            let count = count_of(partition_counts, topic_id);
            for p in partitions {
                if *p >= count {
                    // The partition no longer exists; it is not in `unassigned` either.
                    continue;
                }
                if quota > 0 {
                    quota -= 1;
                    kept.entry(*topic_id).or_default().insert(*p);
                } else {
                    unassigned.push((*topic_id, *p));
                }
            }
        }
        if quota > 0 {
            unfilled.push((member_id.clone(), quota));
        }
        target.insert(member_id.clone(), kept);
    }

    // Hand the unassigned partitions to the members below their quota.
    let mut next = 0;
    for (member_id, quota) in unfilled {
        let assignment = target.entry(member_id).or_default();
        for _ in 0..quota {
            let Some((topic_id, p)) = unassigned.get(next) else {
                break;
            };
            next += 1;
            assignment.entry(*topic_id).or_default().insert(*p);
        }
    }
    // The quotas add up to `total`, which counts every partition exactly once.
    debug_assert_eq!(next, unassigned.len(), "partitions were left unassigned");
    target
}

/// Uniform assignment for members with different subscriptions.
///
/// Not a port of Kafka's `UniformHeterogeneousAssignmentBuilder` (which is long and tuned for
/// performance); it pursues the same goals in the same order. Sticky: every member keeps the
/// partitions of its previous target that it still subscribes to. Then the free partitions go,
/// topics with the fewest subscribers first, to the least loaded subscriber. Then partitions
/// move from a member to a less loaded subscriber of the same topic while that narrows the gap
/// by at least two, so that no partition could move and improve balance.
fn uniform_heterogeneous(
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut subscribers: BTreeMap<Uuid, Vec<&String>> = BTreeMap::new();
    for (member_id, spec) in members {
        for topic_id in &spec.subscribed_topic_ids {
            if partition_counts.contains_key(topic_id) {
                subscribers.entry(*topic_id).or_default().push(member_id);
            }
        }
    }

    let mut owner: BTreeMap<(Uuid, i32), String> = BTreeMap::new();
    let mut load: BTreeMap<&String, usize> = members.keys().map(|m| (m, 0)).collect();
    for (member_id, spec) in members {
        for (topic_id, partitions) in &spec.current {
            if !spec.subscribed_topic_ids.contains(topic_id) {
                continue;
            }
            let count = count_of(partition_counts, topic_id);
            for p in partitions {
                if *p < count && !owner.contains_key(&(*topic_id, *p)) {
                    owner.insert((*topic_id, *p), member_id.clone());
                    *load.entry(member_id).or_default() += 1;
                }
            }
        }
    }

    let mut topics_by_scarcity: Vec<(&Uuid, &Vec<&String>)> = subscribers.iter().collect();
    topics_by_scarcity.sort_by_key(|(topic_id, subs)| (subs.len(), **topic_id));
    for (topic_id, subs) in &topics_by_scarcity {
        for p in 0..count_of(partition_counts, topic_id) {
            if owner.contains_key(&(**topic_id, p)) {
                continue;
            }
            let least = subs
                .iter()
                .min_by_key(|m| (load.get(**m).copied().unwrap_or(0), **m))
                .copied();
            if let Some(member_id) = least {
                owner.insert((**topic_id, p), member_id.clone());
                *load.entry(member_id).or_default() += 1;
            }
        }
    }

    for _ in 0..MAX_BALANCE_PASSES {
        let mut moved = false;
        let keys: Vec<(Uuid, i32)> = owner.keys().copied().collect();
        for key in keys {
            let Some(current) = owner.get(&key).cloned() else {
                continue;
            };
            let current_load = load.get(&current).copied().unwrap_or(0);
            let Some(subs) = subscribers.get(&key.0) else {
                continue;
            };
            let best = subs
                .iter()
                .filter(|m| ***m != current)
                .min_by_key(|m| (load.get(**m).copied().unwrap_or(0), **m))
                .copied();
            if let Some(to) = best {
                let to_load = load.get(to).copied().unwrap_or(0);
                if to_load + 1 < current_load {
                    if let Some(l) = load.get_mut(&current) {
                        *l -= 1;
                    }
                    *load.entry(to).or_default() += 1;
                    owner.insert(key, to.clone());
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }

    let mut target: BTreeMap<String, Assignment> = BTreeMap::new();
    for ((topic_id, p), member_id) in owner {
        target
            .entry(member_id)
            .or_default()
            .entry(topic_id)
            .or_default()
            .insert(p);
    }
    target
}

/// Port of Kafka's server-side `RangeAssignor`: per topic, each subscriber gets a contiguous
/// range (the lowest partitions to the first members in member-id order), so co-partitioned
/// topics subscribed by the same members line up; previously held partitions are kept up to
/// the quota (sticky).
fn range(
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut members_per_topic: BTreeMap<Uuid, Vec<&String>> = BTreeMap::new();
    for (member_id, spec) in members {
        for topic_id in &spec.subscribed_topic_ids {
            if partition_counts.contains_key(topic_id) {
                members_per_topic.entry(*topic_id).or_default().push(member_id);
            }
        }
    }

    let mut target: BTreeMap<String, Assignment> = BTreeMap::new();
    for (topic_id, topic_members) in &members_per_topic {
        let partitions = count_of(partition_counts, topic_id) as usize;
        let min_quota = partitions / topic_members.len();
        let mut members_with_extra = partitions % topic_members.len();

        let mut sticky: BTreeSet<i32> = BTreeSet::new();
        let mut potentially_unfilled: Vec<(&String, isize)> = Vec::new();
        for member_id in topic_members {
            let held: Vec<i32> = members
                .get(*member_id)
                .and_then(|spec| spec.current.get(topic_id))
                .map(|ps| ps.iter().copied().filter(|p| (*p as usize) < partitions).collect())
                .unwrap_or_default();
            for p in held.iter().take(min_quota) {
                sticky.insert(*p);
                target
                    .entry((*member_id).clone())
                    .or_default()
                    .entry(*topic_id)
                    .or_default()
                    .insert(*p);
            }
            let remaining = min_quota as isize - held.len() as isize;
            if remaining < 0 && members_with_extra > 0 {
                members_with_extra -= 1;
                let extra = held[min_quota];
                sticky.insert(extra);
                target
                    .entry((*member_id).clone())
                    .or_default()
                    .entry(*topic_id)
                    .or_default()
                    .insert(extra);
            } else {
                potentially_unfilled.push((member_id, remaining));
            }
        }

        let unassigned: Vec<i32> = (0..partitions as i32).filter(|p| !sticky.contains(p)).collect();
        let mut next = 0usize;
        for (member_id, mut remaining) in potentially_unfilled {
            if members_with_extra > 0 {
                remaining += 1;
                members_with_extra -= 1;
            }
            if remaining > 0 {
                let end = (next + remaining as usize).min(unassigned.len());
                let slice = &unassigned[next.min(end)..end];
                next = end;
                target
                    .entry(member_id.clone())
                    .or_default()
                    .entry(*topic_id)
                    .or_default()
                    .extend(slice.iter().copied());
            }
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn spec(topics: &[Uuid], current: &[(Uuid, &[i32])]) -> MemberSpec {
        MemberSpec {
            subscribed_topic_ids: topics.iter().copied().collect(),
            current: current
                .iter()
                .map(|(t, ps)| (*t, ps.iter().copied().collect()))
                .collect(),
        }
    }

    /// Every partition of every subscribed topic is owned by exactly one subscriber.
    fn assert_complete_and_disjoint(
        members: &BTreeMap<String, MemberSpec>,
        counts: &BTreeMap<Uuid, i32>,
        result: &BTreeMap<String, Assignment>,
    ) {
        let mut seen = BTreeSet::new();
        for (member_id, assignment) in result {
            for (topic_id, partitions) in assignment {
                assert!(members[member_id].subscribed_topic_ids.contains(topic_id));
                for p in partitions {
                    assert!(seen.insert((*topic_id, *p)), "{topic_id}-{p} given twice");
                }
            }
        }
        let subscribed: BTreeSet<Uuid> = members
            .values()
            .flat_map(|m| m.subscribed_topic_ids.iter().copied())
            .collect();
        let expected: usize = subscribed.iter().map(|t| counts[t] as usize).sum();
        assert_eq!(seen.len(), expected);
    }

    fn sizes(result: &BTreeMap<String, Assignment>) -> Vec<usize> {
        result.values().map(|a| a.values().map(BTreeSet::len).sum()).collect()
    }

    #[test]
    fn uniform_homogeneous_balances_and_sticks() {
        let t = topic(1);
        let counts = BTreeMap::from([(t, 7)]);
        let mut members = BTreeMap::from([("a".to_string(), spec(&[t], &[])), ("b".to_string(), spec(&[t], &[]))]);
        let first = assign(UNIFORM_ASSIGNOR_NAME, &members, &counts).expect("known");
        assert_complete_and_disjoint(&members, &counts, &first);
        assert_eq!(sizes(&first), vec![4, 3]);

        // A third member takes partitions only from the others' surplus.
        for (m, a) in &first {
            members.get_mut(m).expect("member").current = a.clone();
        }
        members.insert("c".to_string(), spec(&[t], &[]));
        let second = assign(UNIFORM_ASSIGNOR_NAME, &members, &counts).expect("known");
        assert_complete_and_disjoint(&members, &counts, &second);
        let mut s = sizes(&second);
        s.sort();
        assert_eq!(s, vec![2, 2, 3]);
        for m in ["a", "b"] {
            let kept = second[m][&t].intersection(&first[m][&t]).count();
            assert_eq!(kept, second[m][&t].len(), "{m} only keeps its own partitions");
        }
    }

    #[test]
    fn uniform_heterogeneous_respects_subscriptions() {
        let (t1, t2) = (topic(1), topic(2));
        let counts = BTreeMap::from([(t1, 4), (t2, 2)]);
        let members = BTreeMap::from([
            ("a".to_string(), spec(&[t1], &[])),
            ("b".to_string(), spec(&[t1, t2], &[])),
            ("c".to_string(), spec(&[t2], &[])),
        ]);
        let result = assign(UNIFORM_ASSIGNOR_NAME, &members, &counts).expect("known");
        assert_complete_and_disjoint(&members, &counts, &result);
        assert_eq!(sizes(&result), vec![2, 2, 2]);
    }

    #[test]
    fn range_co_partitions() {
        let (t1, t2) = (topic(1), topic(2));
        let counts = BTreeMap::from([(t1, 6), (t2, 6)]);
        let members: BTreeMap<String, MemberSpec> = ["a", "b", "c"]
            .iter()
            .map(|m| (m.to_string(), spec(&[t1, t2], &[])))
            .collect();
        let result = assign(RANGE_ASSIGNOR_NAME, &members, &counts).expect("known");
        assert_complete_and_disjoint(&members, &counts, &result);
        assert_eq!(result["a"][&t1], BTreeSet::from([0, 1]));
        assert_eq!(result["b"][&t1], BTreeSet::from([2, 3]));
        assert_eq!(result["c"][&t1], BTreeSet::from([4, 5]));
        for assignment in result.values() {
            assert_eq!(assignment[&t1], assignment[&t2]);
        }
    }

    #[test]
    fn range_sticks_with_uneven_counts() {
        let t = topic(1);
        let counts = BTreeMap::from([(t, 5)]);
        let members = BTreeMap::from([
            ("a".to_string(), spec(&[t], &[(t, &[0, 1, 2])])),
            ("b".to_string(), spec(&[t], &[(t, &[3, 4])])),
            ("c".to_string(), spec(&[t], &[])),
        ]);
        let result = assign(RANGE_ASSIGNOR_NAME, &members, &counts).expect("known");
        assert_complete_and_disjoint(&members, &counts, &result);
        assert_eq!(result["a"][&t], BTreeSet::from([0, 1]));
        assert_eq!(result["b"][&t], BTreeSet::from([3, 4]));
        assert_eq!(result["c"][&t], BTreeSet::from([2]));
    }

    #[test]
    fn unknown_assignor_and_empty_subscriptions() {
        let members = BTreeMap::from([("a".to_string(), MemberSpec::default())]);
        assert!(assign("sticky", &members, &BTreeMap::new()).is_none());
        let result = assign(UNIFORM_ASSIGNOR_NAME, &members, &BTreeMap::new()).expect("known");
        assert_eq!(result.get("a"), Some(&Assignment::new()));
    }
}
