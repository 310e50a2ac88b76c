//! Member reconciliation: the port of Kafka's `CurrentAssignmentBuilder`. A member converges on
//! its target one heartbeat at a time, revoking before it is given anything, and is never
//! given a partition another member still owns; that is what keeps every partition to a
//! single owner while the group rebalances.

use std::collections::{BTreeSet, HashMap};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopicPartitions;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::group::Member;
use crate::group::assignor::Assignment;

/// Where a member is in converging on its target assignment (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// At the target epoch with its whole target, or waiting for a new target.
    Stable,
    /// Asked to give up partitions and has not confirmed yet; stays at its previous epoch.
    UnrevokedPartitions,
    /// At the target epoch, but some target partitions are still owned by other members.
    UnreleasedPartitions,
    /// A state written by a newer version; the member is fenced unless it owns nothing.
    #[serde(other)]
    Unknown,
}

impl MemberState {
    /// Kafka's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Stable => "STABLE",
            MemberState::UnrevokedPartitions => "UNREVOKED_PARTITIONS",
            MemberState::UnreleasedPartitions => "UNRELEASED_PARTITIONS",
            MemberState::Unknown => "UNKNOWN",
        }
    }
}

impl Member {
    /// Kafka's `updateMemberEpoch`: the previous epoch always becomes the current one.
    fn update_member_epoch(&mut self, epoch: i32) {
        self.previous_member_epoch = self.member_epoch;
        self.member_epoch = epoch;
    }
}

/// Kafka's `ownsRevokedPartitions`: unknown owned partitions (null) count as still owned.
fn owns_any(owned: Option<&[OwnedTopicPartitions]>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    owned.iter().any(|tp| {
        partitions
            .get(&tp.topic_id)
            .is_some_and(|ps| tp.partitions.iter().any(|p| ps.contains(p)))
    })
}

/// Kafka's `CurrentAssignmentBuilder.build`: the member's next state given its target.
pub(super) fn reconcile(
    member: &Member,
    target_epoch: i32,
    target: &Assignment,
    subscribed: &BTreeSet<Uuid>,
    subscription_changed: bool,
    partition_epochs: &HashMap<(Uuid, i32), i32>,
    owned: Option<&[OwnedTopicPartitions]>,
) -> Member {
    let next =
        |epoch: i32| compute_next_assignment(member, epoch, target_epoch, target, subscribed, partition_epochs, owned);
    let mut next = match member.state {
        MemberState::Stable => {
            if member.member_epoch != target_epoch {
                next(member.member_epoch)
            } else if subscription_changed {
                update_current_assignment(member, subscribed, owned)
            } else {
                member.clone()
            }
        }
        MemberState::UnrevokedPartitions => {
            if owns_any(owned, &member.partitions_pending_revocation) {
                if subscription_changed {
                    update_current_assignment(member, subscribed, owned)
                } else {
                    member.clone()
                }
            } else {
                next(member.member_epoch)
            }
        }
        MemberState::UnreleasedPartitions => next(member.member_epoch),
        // The caller fenced the member unless it owns nothing.
        MemberState::Unknown => next(target_epoch),
    };
    track_assignment_epochs(member, &mut next);
    next
}

/// Kafka keeps, per owned partition, the epoch at which the member received it: a partition
/// the member kept (assigned or now pending revocation) keeps its epoch, a new one gets the
/// epoch the member moved to, and one it no longer owns is forgotten.
fn track_assignment_epochs(before: &Member, next: &mut Member) {
    let owned = next
        .assigned_partitions
        .iter()
        .chain(next.partitions_pending_revocation.iter())
        .flat_map(|(topic_id, ps)| ps.iter().map(move |p| (*topic_id, *p)));
    next.assignment_epochs = owned
        .map(|(topic_id, p)| {
            let epoch = before.assignment_epoch(topic_id, p).unwrap_or(next.member_epoch);
            ((topic_id, p), epoch)
        })
        .collect();
}

/// Kafka's `CurrentAssignmentBuilder.updateCurrentAssignment`: drops the topics the member no
/// longer subscribes to, asking for their revocation if it still owns them.
fn update_current_assignment(
    member: &Member,
    subscribed: &BTreeSet<Uuid>,
    owned: Option<&[OwnedTopicPartitions]>,
) -> Member {
    let mut assigned = member.assigned_partitions.clone();
    let mut pending = member.partitions_pending_revocation.clone();
    let mut removed = false;
    assigned.retain(|topic_id, partitions| {
        if subscribed.contains(topic_id) {
            true
        } else {
            pending.entry(*topic_id).or_default().extend(partitions.iter().copied());
            removed = true;
            false
        }
    });
    if !removed {
        return member.clone();
    }
    let mut next = member.clone();
    let epoch = member.member_epoch;
    next.update_member_epoch(epoch);
    next.assigned_partitions = assigned;
    if !pending.is_empty() && owns_any(owned, &pending) {
        next.state = MemberState::UnrevokedPartitions;
        next.partitions_pending_revocation = pending;
    }
    next
}

/// Kafka's `CurrentAssignmentBuilder.computeNextAssignment`.
fn compute_next_assignment(
    member: &Member,
    member_epoch: i32,
    target_epoch: i32,
    target: &Assignment,
    subscribed: &BTreeSet<Uuid>,
    partition_epochs: &HashMap<(Uuid, i32), i32>,
    owned: Option<&[OwnedTopicPartitions]>,
) -> Member {
    let empty = BTreeSet::new();
    let mut has_unreleased = false;
    let mut new_assigned = Assignment::new();
    let mut new_pending_revocation = Assignment::new();
    let mut new_pending_assignment = Assignment::new();

    let all_topics: BTreeSet<Uuid> = target
        .keys()
        .chain(member.assigned_partitions.keys())
        .copied()
        .collect();
    for topic_id in all_topics {
        // A topic the member no longer subscribes to has an empty target.
        let topic_target = if subscribed.contains(&topic_id) {
            target.get(&topic_id).unwrap_or(&empty)
        } else {
            &empty
        };
        let current = member.assigned_partitions.get(&topic_id).unwrap_or(&empty);
        let own_pending = member.partitions_pending_revocation.get(&topic_id).unwrap_or(&empty);

        // Assigned = current ∩ target; revoke = current − assigned.
        let assigned: BTreeSet<i32> = current.intersection(topic_target).copied().collect();
        let revoke: BTreeSet<i32> = current.difference(&assigned).copied().collect();
        // To assign = target − assigned − partitions still owned by someone else. A partition
        // this member is itself revoking is not "someone else".
        let mut to_assign = BTreeSet::new();
        for p in topic_target.difference(&assigned) {
            if partition_epochs.contains_key(&(topic_id, *p)) && !own_pending.contains(p) {
                has_unreleased = true;
            } else {
                to_assign.insert(*p);
            }
        }
        if !assigned.is_empty() {
            new_assigned.insert(topic_id, assigned);
        }
        if !revoke.is_empty() {
            new_pending_revocation.insert(topic_id, revoke);
        }
        if !to_assign.is_empty() {
            new_pending_assignment.insert(topic_id, to_assign);
        }
    }

    let mut next = member.clone();
    if !new_pending_revocation.is_empty() && owns_any(owned, &new_pending_revocation) {
        // Revoke first: stay at the current epoch until the member confirms.
        next.state = MemberState::UnrevokedPartitions;
        next.update_member_epoch(member_epoch);
        next.assigned_partitions = new_assigned;
        next.partitions_pending_revocation = new_pending_revocation;
        return next;
    }
    for (topic_id, partitions) in new_pending_assignment {
        new_assigned.entry(topic_id).or_default().extend(partitions);
    }
    next.state = if has_unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    next.update_member_epoch(target_epoch);
    next.assigned_partitions = new_assigned;
    next.partitions_pending_revocation = Assignment::new();
    next
}

#[cfg(test)]
mod tests;
