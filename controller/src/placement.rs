//! Where the controller puts the replicas of new partitions when the request does not say
//! (CreateTopics and CreatePartitions without `assignments`, auto-created topics).
//!
//! Without racks, replicas go round-robin over the live brokers. When brokers have a
//! `broker.rack`, Kafka's rack-aware placement is used (`AdminUtils.assignReplicasToBrokersRackAware`):
//! the brokers are listed alternating between racks, each partition's leader steps along that
//! list, and its other replicas go to racks that have no replica of the partition yet, so that a
//! partition survives the loss of a rack whenever there are at least as many racks as replicas.
//! Kafka starts both at a random position; apply must be deterministic, so the start is the
//! number of partitions already in the cluster, which also spreads successive topics.

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::{ClusterMetadata, PartitionMeta};

/// The replicas of `count` new partitions numbered from `first_partition`, each of `rf` live
/// brokers, led by the first.
///
/// Preconditions (checked by the callers): `1 <= rf <=` live brokers, `count >= 1`.
pub(crate) fn place(meta: &ClusterMetadata, rf: usize, first_partition: i32, count: i32) -> Vec<PartitionMeta> {
    let live = meta.live_brokers();
    let offset = meta.topics.values().map(|t| t.partitions.len()).sum();
    let racks: Vec<(i32, Option<&str>)> = live
        .iter()
        .map(|b| (*b, meta.brokers.get(b).and_then(|i| i.rack.as_deref())))
        .collect();
    let lists = if racks.iter().any(|(_, r)| r.is_some()) {
        rack_aware(&racks, rf, first_partition, count, offset)
    } else {
        round_robin(&live, rf, count, offset)
    };
    (first_partition..)
        .zip(lists)
        .map(|(partition, replicas)| PartitionMeta {
            partition,
            leader: replicas[0],
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
            adding: Vec::new(),
            removing: Vec::new(),
        })
        .collect()
}

/// Replica `j` of the `i`-th new partition is `brokers[(offset + i + j) % brokers.len()]`, so
/// the replicas of a partition are distinct and the leader (first replica) rotates.
fn round_robin(brokers: &[i32], rf: usize, count: i32, offset: usize) -> Vec<Vec<i32>> {
    assert!(
        rf >= 1 && rf <= brokers.len(),
        "rf {rf} checked against {} brokers",
        brokers.len()
    );
    (0..usize::try_from(count).unwrap_or(0))
        .map(|i| (0..rf).map(|j| brokers[(offset + i + j) % brokers.len()]).collect())
        .collect()
}

/// Kafka's rack-aware placement. A broker without a rack counts as a rack of its own kind
/// (listed after the named racks), as in KRaft's placer.
fn rack_aware(
    brokers: &[(i32, Option<&str>)],
    rf: usize,
    first_partition: i32,
    count: i32,
    offset: usize,
) -> Vec<Vec<i32>> {
    let n = brokers.len();
    assert!(rf >= 1 && rf <= n, "rf {rf} checked against {n} brokers");
    // Brokers by rack, in id order; `None` sorts first in Rust, so it is moved last.
    let mut by_rack: BTreeMap<(bool, Option<&str>), Vec<i32>> = BTreeMap::new();
    for (b, r) in brokers {
        by_rack.entry((r.is_none(), *r)).or_default().push(*b);
    }
    let rack_of: BTreeMap<i32, Option<&str>> = brokers.iter().copied().collect();
    let num_racks = by_rack.len();
    // One broker of each rack in turn (Kafka's `getRackAlternatedBrokerList`).
    let mut arranged = Vec::with_capacity(n);
    for round in 0.. {
        if arranged.len() == n {
            break;
        }
        arranged.extend(by_rack.values().filter_map(|list| list.get(round)));
    }
    let start = offset % n;
    let mut shift = offset % n;
    let mut out = Vec::new();
    for partition in (first_partition.max(0)..).take(usize::try_from(count).unwrap_or(0)) {
        let partition = usize::try_from(partition).unwrap_or(0);
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start) % n;
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut racks_used = BTreeSet::from([rack_of[&leader]]);
        let mut k = 0usize;
        while replicas.len() < rf {
            // Every other broker comes up within n - 1 steps; past n * n steps (never, by the
            // argument above) take the first unused broker rather than loop.
            let broker = if k < n * n {
                let step = 1 + (shift * num_racks + k) % (n - 1).max(1);
                arranged[(first + step) % n]
            } else {
                *arranged.iter().find(|b| !replicas.contains(b)).unwrap_or(&leader)
            };
            k += 1;
            let rack = rack_of[&broker];
            let new_rack = !racks_used.contains(&rack) || racks_used.len() == num_racks;
            if (new_rack || k > n * n) && !replicas.contains(&broker) {
                replicas.push(broker);
                racks_used.insert(rack);
            }
        }
        out.push(replicas);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerInfo;

    fn meta(brokers: &[(i32, Option<&str>)]) -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        for (id, rack) in brokers {
            m.brokers.insert(
                *id,
                BrokerInfo {
                    node_id: *id,
                    host: "h".into(),
                    port: 1,
                    rack: rack.map(str::to_string),
                    listeners: Vec::new(),
                },
            );
        }
        m
    }

    fn check(parts: &[PartitionMeta], rf: usize) {
        for p in parts {
            let distinct: BTreeSet<i32> = p.replicas.iter().copied().collect();
            assert_eq!(distinct.len(), rf, "{:?}", p.replicas);
            assert_eq!((p.leader, &p.isr), (p.replicas[0], &p.replicas));
        }
    }

    #[test]
    fn round_robin_without_racks_rotates_the_leader() {
        let m = meta(&[(1, None), (2, None), (3, None)]);
        let parts = place(&m, 2, 0, 3);
        check(&parts, 2);
        let replicas: Vec<Vec<i32>> = parts.iter().map(|p| p.replicas.clone()).collect();
        assert_eq!(replicas, vec![vec![1, 2], vec![2, 3], vec![3, 1]]);
    }

    #[test]
    fn replicas_go_to_distinct_racks_when_there_are_enough() {
        let m = meta(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        for rf in 1..=3 {
            let parts = place(&m, rf, 0, 12);
            check(&parts, rf);
            for p in &parts {
                let racks: BTreeSet<Option<String>> = p.replicas.iter().map(|r| m.brokers[r].rack.clone()).collect();
                assert_eq!(racks.len(), rf, "{:?} spans {racks:?}", p.replicas);
            }
            // Leaders spread evenly: 12 partitions, 6 brokers, two each.
            let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
            for p in &parts {
                *leaders.entry(p.leader).or_default() += 1;
            }
            assert!(leaders.values().all(|n| *n == 2), "{leaders:?}");
        }
        // More replicas than racks: every rack, then distinct brokers.
        let parts = place(&m, 5, 3, 4);
        check(&parts, 5);
        assert_eq!(parts[0].partition, 3);
    }

    #[test]
    fn uneven_racks_and_brokers_without_one_still_give_distinct_replicas() {
        let m = meta(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("a")),
            (4, Some("b")),
            (5, None),
        ]);
        for rf in 1..=5 {
            let parts = place(&m, rf, 0, 10);
            check(&parts, rf);
            if rf <= 3 {
                for p in &parts {
                    let racks: BTreeSet<Option<String>> =
                        p.replicas.iter().map(|r| m.brokers[r].rack.clone()).collect();
                    assert_eq!(racks.len(), rf, "{:?}", p.replicas);
                }
            }
        }
    }
}
