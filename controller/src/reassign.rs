//! Manual replica assignments (CreateTopics, CreatePartitions) and partition reassignment as
//! Kafka's controller does them.
//!
//! Reassignment
//! ([KIP-455](https://cwiki.apache.org/confluence/display/KAFKA/KIP-455%3A+Create+an+Administrative+API+for+Replica+Reassignment)):
//! a partition moves to a new set of replicas while it keeps serving.
//!
//! A move is three steps, each a metadata change:
//! 1. The request: the partition's replicas become the target followed by the replicas it
//!    drops (`removing`); the new ones (`adding`) are replicas outside the ISR, so they fetch
//!    from the leader like any follower catching up.
//! 2. The leader adds each new replica to the ISR once it has caught up (`AlterIsr`).
//! 3. The ISR change that makes every adding replica in sync completes the move in the same
//!    apply: the replicas become the target, the dropped ones leave the ISR, and a leader that is
//!    dropped gives way to the first in-sync replica of the target. Brokers that no longer host
//!    the partition delete their copy when they see this change.
//!
//! Nothing is removed before the new replicas hold every committed record, so a move loses
//! nothing even if the old leader dies during it. A move with nothing to add (a shrink, a
//! reorder) completes at once. A new request for a partition that is moving starts from the
//! assignment before the move in progress; a cancel goes back to it.

use std::collections::BTreeSet;

use crate::command::ApplyError;
use crate::metadata::{ClusterMetadata, PartitionMeta};

/// The partitions of a manual assignment (CreateTopics and CreatePartitions
/// `assignments`), numbered from `first_partition`: every list checked as Kafka checks one, of
/// `replication_factor` replicas (the first list's length if `None`). The ISR is the replicas
/// that are not fenced, led by the first of them; the fenced ones join once they catch up.
pub(crate) fn manual(
    meta: &ClusterMetadata,
    first_partition: i32,
    assignment: &[Vec<i32>],
    replication_factor: Option<usize>,
) -> Result<Vec<PartitionMeta>, ApplyError> {
    let registered: BTreeSet<i32> = meta.brokers.keys().copied().collect();
    let live = meta.live_brokers();
    let rf = replication_factor
        .or_else(|| assignment.first().map(Vec::len))
        .unwrap_or(0);
    (first_partition..)
        .zip(assignment)
        .map(|(partition, replicas)| {
            check_target(replicas, &registered)?;
            if replicas.len() != rf {
                return Err(ApplyError::InvalidReplicaAssignment(format!(
                    "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
                    replicas.len()
                )));
            }
            let isr: Vec<i32> = replicas.iter().copied().filter(|r| live.contains(r)).collect();
            let Some(&leader) = isr.first() else {
                return Err(ApplyError::InvalidReplicaAssignment(format!(
                    "All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."
                )));
            };
            Ok(PartitionMeta {
                partition,
                leader,
                leader_epoch: 0,
                replicas: replicas.clone(),
                isr,
                adding: Vec::new(),
                removing: Vec::new(),
            })
        })
        .collect()
}

/// One partition's request: `Some(target)` moves it there, `None` cancels its move.
pub(crate) type Request = (String, i32, Option<Vec<i32>>);

/// Applies AlterPartitionReassignments: each partition's outcome, in request order. Every
/// partition is decided on its own, as Kafka's controller does.
pub(crate) fn alter(
    meta: &mut ClusterMetadata,
    requests: Vec<Request>,
    allow_replication_factor_change: bool,
) -> Vec<Result<(), ApplyError>> {
    let registered: BTreeSet<i32> = meta.brokers.keys().copied().collect();
    let live = meta.live_brokers();
    requests
        .into_iter()
        .map(|(topic, partition, target)| {
            let t = meta
                .topics
                .get_mut(&topic)
                .ok_or_else(|| ApplyError::UnknownTopic(format!("Unable to find a topic named {topic}.")))?;
            let p = usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get_mut(i))
                .ok_or_else(|| ApplyError::UnknownTopic(format!("Unable to find partition {topic}:{partition}.")))?;
            match target {
                None => cancel(p, &topic, &live),
                Some(target) => {
                    check_target(&target, &registered)?;
                    start(p, &topic, target, &live, allow_replication_factor_change)
                }
            }
        })
        .collect()
}

/// Kafka's `validateManualPartitionAssignment`.
fn check_target(target: &[i32], registered: &BTreeSet<i32>) -> Result<(), ApplyError> {
    if target.is_empty() {
        return Err(ApplyError::InvalidReplicaAssignment(
            "The manual partition assignment includes an empty replica list.".to_string(),
        ));
    }
    let mut seen = BTreeSet::new();
    for r in target {
        if !seen.insert(*r) {
            return Err(ApplyError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes the broker {r} more than once."
            )));
        }
        if !registered.contains(r) {
            return Err(ApplyError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {r}, but no such broker is registered."
            )));
        }
    }
    Ok(())
}

/// Whether a move is in progress.
pub(crate) fn in_progress(p: &PartitionMeta) -> bool {
    !p.adding.is_empty() || !p.removing.is_empty()
}

/// The assignment and ISR the partition had before its move in progress, if any.
fn before_move(p: &PartitionMeta) -> (Vec<i32>, Vec<i32>) {
    let replicas = p.replicas.iter().copied().filter(|r| !p.adding.contains(r)).collect();
    let isr = p.isr.iter().copied().filter(|r| !p.adding.contains(r)).collect();
    (replicas, isr)
}

fn cancel(p: &mut PartitionMeta, topic: &str, live: &[i32]) -> Result<(), ApplyError> {
    if !in_progress(p) {
        return Err(ApplyError::NoReassignmentInProgress(format!(
            "No partition reassignment is in progress for {topic}:{}.",
            p.partition
        )));
    }
    let (replicas, isr) = before_move(p);
    if isr.is_empty() {
        return Err(no_leader_after_revert(topic, p.partition));
    }
    install(p, replicas, Vec::new(), Vec::new(), isr, live);
    Ok(())
}

fn no_leader_after_revert(topic: &str, partition: i32) -> ApplyError {
    ApplyError::InvalidReplicaAssignment(format!(
        "Unable to revert partition assignment for {topic}:{partition} because it would cause the partition to have no leader."
    ))
}

fn start(
    p: &mut PartitionMeta,
    topic: &str,
    target: Vec<i32>,
    live: &[i32],
    allow_replication_factor_change: bool,
) -> Result<(), ApplyError> {
    let (current, isr) = before_move(p);
    if !allow_replication_factor_change && target.len() != current.len() {
        return Err(ApplyError::InvalidReplicationFactor(format!(
            "The replication factor is changed from {} to {}",
            current.len(),
            target.len()
        )));
    }
    if isr.is_empty() {
        return Err(no_leader_after_revert(topic, p.partition));
    }
    let removing: Vec<i32> = current.iter().copied().filter(|r| !target.contains(r)).collect();
    let adding: Vec<i32> = target.iter().copied().filter(|r| !current.contains(r)).collect();
    let mut replicas = target;
    replicas.extend(&removing);
    install(p, replicas, adding, removing, isr, live);
    complete(p, live);
    Ok(())
}

/// Ends the move in progress if every replica it adds is in sync (a move that adds none ends at
/// once); returns whether it did. Kafka leaves a move pending rather than complete it with an
/// empty ISR, and so does this.
pub(crate) fn complete(p: &mut PartitionMeta, live: &[i32]) -> bool {
    if !in_progress(p) || !p.adding.iter().all(|r| p.isr.contains(r)) {
        return false;
    }
    let target: Vec<i32> = p.replicas.iter().copied().filter(|r| !p.removing.contains(r)).collect();
    let isr: Vec<i32> = p.isr.iter().copied().filter(|r| !p.removing.contains(r)).collect();
    if isr.is_empty() {
        return false;
    }
    install(p, target, Vec::new(), Vec::new(), isr, live);
    true
}

/// Gives the partition a new assignment. The ISR is kept to the new replicas, in assignment
/// order; a leader outside the new replicas or the ISR gives way to the first in-sync replica
/// that is alive, or to none (offline). As in Kafka, the leader epoch moves when the leader
/// changes or a replica leaves, so that a replica that left is fenced from the partition.
fn install(
    p: &mut PartitionMeta,
    replicas: Vec<i32>,
    adding: Vec<i32>,
    removing: Vec<i32>,
    isr: Vec<i32>,
    live: &[i32],
) {
    let replica_left = p.replicas.iter().any(|r| !replicas.contains(r));
    p.isr = replicas.iter().copied().filter(|r| isr.contains(r)).collect();
    p.replicas = replicas;
    p.adding = adding;
    p.removing = removing;
    let leader = if p.leader >= 0 && p.isr.contains(&p.leader) {
        p.leader
    } else {
        p.isr.iter().copied().find(|r| live.contains(r)).unwrap_or(-1)
    };
    if leader != p.leader || replica_left {
        p.leader = leader;
        p.leader_epoch = p.leader_epoch.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionMeta {
        PartitionMeta {
            partition: 0,
            leader,
            leader_epoch: 5,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    const LIVE: &[i32] = &[1, 2, 3, 4];

    fn three_brokers() -> ClusterMetadata {
        let mut meta = ClusterMetadata::default();
        for id in [1, 2, 3] {
            meta.brokers.insert(
                id,
                crate::BrokerInfo {
                    node_id: id,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                    listeners: Vec::new(),
                },
            );
        }
        meta
    }

    #[test]
    fn a_move_adds_first_and_drops_the_old_replicas_only_once_the_new_are_in_sync() {
        let mut p = partition(&[1, 2], &[1, 2], 1);
        start(&mut p, "t", vec![3, 4], LIVE, true).expect("a valid move");
        assert_eq!(p.replicas, vec![3, 4, 1, 2]);
        assert_eq!((p.adding.clone(), p.removing.clone()), (vec![3, 4], vec![1, 2]));
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!(
            (p.leader, p.leader_epoch),
            (1, 5),
            "nothing moves before the new replicas catch up"
        );

        // One new replica in sync is not enough.
        p.isr = vec![3, 1, 2];
        assert!(!complete(&mut p, LIVE));
        p.isr = vec![3, 4, 1, 2];
        assert!(complete(&mut p, LIVE));
        assert_eq!(p.replicas, vec![3, 4]);
        assert_eq!(p.isr, vec![3, 4]);
        assert!(p.adding.is_empty() && p.removing.is_empty());
        assert_eq!(
            (p.leader, p.leader_epoch),
            (3, 6),
            "the dropped leader gives way in a new epoch"
        );
    }

    #[test]
    fn a_move_that_adds_nothing_completes_at_once_and_fences_the_dropped_replica() {
        let mut p = partition(&[1, 2, 3], &[1, 2, 3], 2);
        start(&mut p, "t", vec![2, 1], LIVE, true).expect("a valid move");
        assert_eq!((p.replicas.clone(), p.isr.clone()), (vec![2, 1], vec![2, 1]));
        assert!(!in_progress(&p));
        assert_eq!((p.leader, p.leader_epoch), (2, 6));

        // A reorder changes no leader and drops nobody: the epoch stays.
        start(&mut p, "t", vec![1, 2], LIVE, false).expect("a valid move");
        assert_eq!((p.replicas.clone(), p.leader, p.leader_epoch), (vec![1, 2], 2, 6));
    }

    #[test]
    fn cancel_and_a_second_move_start_from_the_assignment_before_the_move() {
        let mut p = partition(&[1], &[1], 1);
        start(&mut p, "t", vec![2], LIVE, false).expect("a valid move");
        assert_eq!(
            (p.replicas.clone(), p.adding.clone(), p.removing.clone()),
            (vec![2, 1], vec![2], vec![1])
        );

        // Redirected to 3: 2 is no longer wanted, and was never in sync.
        start(&mut p, "t", vec![3], LIVE, false).expect("a valid move");
        assert_eq!(
            (p.replicas.clone(), p.adding.clone(), p.removing.clone()),
            (vec![3, 1], vec![3], vec![1])
        );
        assert_eq!(p.leader_epoch, 6, "2 left the replicas");

        cancel(&mut p, "t", LIVE).expect("a move to cancel");
        assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (vec![1], vec![1], 1));
        assert!(!in_progress(&p));
        assert!(matches!(
            cancel(&mut p, "t", LIVE),
            Err(ApplyError::NoReassignmentInProgress(_))
        ));
    }

    #[test]
    fn a_move_is_refused_as_kafka_refuses_it() {
        let mut meta = three_brokers();
        meta.topics.insert(
            "t".into(),
            crate::TopicMeta {
                name: "t".into(),
                topic_id: uuid::Uuid::nil(),
                partitions: vec![partition(&[1, 2], &[1, 2], 1)],
                configs: Default::default(),
            },
        );
        let before = meta.clone();
        let out = alter(
            &mut meta,
            vec![
                ("t".into(), 0, Some(vec![])),
                ("t".into(), 0, Some(vec![1, 1])),
                ("t".into(), 0, Some(vec![1, 9])),
                ("t".into(), 0, Some(vec![1, 2, 3])),
                ("t".into(), 0, None),
                ("t".into(), 1, Some(vec![1])),
                ("u".into(), 0, Some(vec![1])),
            ],
            false,
        );
        let kinds: Vec<&str> = out
            .iter()
            .map(|r| match r {
                Err(ApplyError::InvalidReplicaAssignment(_)) => "assignment",
                Err(ApplyError::InvalidReplicationFactor(_)) => "rf",
                Err(ApplyError::NoReassignmentInProgress(_)) => "none",
                Err(ApplyError::UnknownTopic(_)) => "unknown",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "assignment",
                "assignment",
                "assignment",
                "rf",
                "none",
                "unknown",
                "unknown"
            ]
        );
        assert_eq!(meta, before, "a refused move changes nothing");

        // With a replication factor change allowed, the same request starts a move.
        assert_eq!(
            alter(&mut meta, vec![("t".into(), 0, Some(vec![1, 2, 3]))], true),
            vec![Ok(())]
        );
        assert_eq!(meta.topics["t"].partitions[0].adding, vec![3]);
    }

    #[test]
    fn a_manual_assignment_is_checked_and_leaves_fenced_replicas_out_of_the_isr() {
        let mut meta = three_brokers();
        meta.fenced.insert(3);
        let parts = manual(&meta, 4, &[vec![3, 1], vec![2, 3]], None).expect("valid");
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.partition, p.leader, p.replicas.clone(), p.isr.clone()))
                .collect::<Vec<_>>(),
            vec![(4, 1, vec![3, 1], vec![1]), (5, 2, vec![2, 3], vec![2])]
        );
        for (bad, rf) in [
            (vec![vec![1, 2], vec![1]], None),
            (vec![vec![1, 2]], Some(3)),
            (vec![vec![3]], None),
            (vec![vec![1, 4]], None),
            (vec![vec![]], None),
        ] {
            assert!(
                matches!(manual(&meta, 0, &bad, rf), Err(ApplyError::InvalidReplicaAssignment(_))),
                "{bad:?} with {rf:?}"
            );
        }
    }

    #[test]
    fn a_move_whose_new_leader_is_down_leaves_the_partition_offline_not_on_a_dropped_replica() {
        let mut p = partition(&[1], &[1], 1);
        start(&mut p, "t", vec![2], &[1, 2], false).expect("a valid move");
        p.isr = vec![2, 1];
        // 2 caught up, then went down before the change applied.
        assert!(complete(&mut p, &[1]));
        assert_eq!((p.replicas.clone(), p.leader), (vec![2], -1));
    }
}
