//! The record the handler persists: everything but the timers, as versioned JSON. A record of
//! another version, or one that breaks an invariant the group relies on (an assignment epoch
//! ahead of the group epoch, a topic id that is not a UUID), is refused rather than loaded
//! half-understood.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::group::{rebalance_timeout, ConsumerGroup, Member, Timers, TopicInfo};
use super::reconcile::MemberState;
use crate::group::assignor::Assignment;

/// Version of the JSON layout written by [`ConsumerGroup::to_record`].
const RECORD_VERSION: u16 = 1;

impl ConsumerGroup {
    /// Serialises everything persistent (not the timers) as JSON.
    pub fn to_record(&self) -> Vec<u8> {
        let record = GroupRecord {
            version: RECORD_VERSION,
            group_id: self.group_id.clone(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            last_assignor: self.last_assignor.clone(),
            members: self.members.values().map(MemberRecord::from_member).collect(),
            target: self
                .target
                .iter()
                .map(|(member_id, a)| (member_id.clone(), assignment_to_record(a)))
                .collect(),
            subscription_metadata: self
                .subscription_metadata
                .iter()
                .map(|(name, info)| (name.clone(), info.topic_id.to_string(), info.partitions))
                .collect(),
            resolved_regexes: self
                .resolved_regexes
                .iter()
                .map(|(regex, topics)| (regex.clone(), topics.iter().cloned().collect()))
                .collect(),
        };
        // Serialising plain strings, integers and vectors cannot fail.
        serde_json::to_vec(&record).expect("a GroupRecord always serialises")
    }

    /// Loads a group written by [`ConsumerGroup::to_record`]; `None` if the bytes are not such
    /// a record. Every member starts a fresh session at `now`, and members waiting on a
    /// revocation get a fresh rebalance timeout.
    pub fn from_record(bytes: &[u8], now: Instant) -> Option<Self> {
        let record: GroupRecord = serde_json::from_slice(bytes).ok()?;
        if record.version != RECORD_VERSION || record.assignment_epoch > record.group_epoch {
            return None;
        }
        let mut group = ConsumerGroup::new(record.group_id);
        group.group_epoch = record.group_epoch;
        group.assignment_epoch = record.assignment_epoch;
        group.last_assignor = record.last_assignor;
        for m in record.members {
            let member = m.into_member()?;
            let rebalance_deadline = (member.state == MemberState::UnrevokedPartitions).then(|| {
                (
                    now + rebalance_timeout(member.rebalance_timeout_ms),
                    member.member_epoch,
                )
            });
            group.timers.insert(
                member.member_id.clone(),
                Timers {
                    last_heartbeat: now,
                    rebalance_deadline,
                },
            );
            group.members.insert(member.member_id.clone(), member);
        }
        for (member_id, a) in record.target {
            group.target.insert(member_id, assignment_from_record(a)?);
        }
        for (name, topic_id, partitions) in record.subscription_metadata {
            let topic_id = Uuid::parse_str(&topic_id).ok()?;
            group
                .subscription_metadata
                .insert(name, TopicInfo { topic_id, partitions });
        }
        for (regex, topics) in record.resolved_regexes {
            group.resolved_regexes.insert(regex, topics.into_iter().collect());
        }
        Some(group)
    }
}

#[derive(Serialize, Deserialize)]
struct GroupRecord {
    version: u16,
    group_id: String,
    group_epoch: i32,
    assignment_epoch: i32,
    last_assignor: Option<String>,
    members: Vec<MemberRecord>,
    /// (member id, assignment)
    target: Vec<(String, Vec<TopicPartitionsRecord>)>,
    /// (topic name, topic id, partition count)
    subscription_metadata: Vec<(String, String, i32)>,
    /// (regex, matched topic names)
    resolved_regexes: Vec<(String, Vec<String>)>,
}

#[derive(Serialize, Deserialize)]
struct TopicPartitionsRecord {
    topic_id: String,
    partitions: Vec<i32>,
}

#[derive(Serialize, Deserialize)]
struct MemberRecord {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    subscribed_topic_names: Vec<String>,
    subscribed_topic_regex: Option<String>,
    server_assignor: Option<String>,
    member_epoch: i32,
    previous_member_epoch: i32,
    state: MemberState,
    assigned_partitions: Vec<TopicPartitionsRecord>,
    partitions_pending_revocation: Vec<TopicPartitionsRecord>,
    /// (topic id, partition, epoch at which the member received it). Absent from records
    /// written before it existed: the member's epoch then stands for every partition.
    #[serde(default)]
    assignment_epochs: Vec<(String, i32, i32)>,
}

impl MemberRecord {
    fn from_member(m: &Member) -> Self {
        Self {
            member_id: m.member_id.clone(),
            instance_id: m.instance_id.clone(),
            rack_id: m.rack_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
            subscribed_topic_regex: m.subscribed_topic_regex.clone(),
            server_assignor: m.server_assignor.clone(),
            member_epoch: m.member_epoch,
            previous_member_epoch: m.previous_member_epoch,
            state: m.state,
            assigned_partitions: assignment_to_record(&m.assigned_partitions),
            partitions_pending_revocation: assignment_to_record(&m.partitions_pending_revocation),
            assignment_epochs: m
                .assignment_epochs
                .iter()
                .map(|((topic_id, p), epoch)| (topic_id.to_string(), *p, *epoch))
                .collect(),
        }
    }

    fn into_member(self) -> Option<Member> {
        let mut assignment_epochs = std::collections::BTreeMap::new();
        for (topic_id, p, epoch) in self.assignment_epochs {
            assignment_epochs.insert((Uuid::parse_str(&topic_id).ok()?, p), epoch);
        }
        Some(Member {
            member_id: self.member_id,
            instance_id: self.instance_id,
            rack_id: self.rack_id,
            client_id: self.client_id,
            client_host: self.client_host,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            subscribed_topic_names: self.subscribed_topic_names.into_iter().collect(),
            subscribed_topic_regex: self.subscribed_topic_regex,
            server_assignor: self.server_assignor,
            member_epoch: self.member_epoch,
            previous_member_epoch: self.previous_member_epoch,
            state: self.state,
            assigned_partitions: assignment_from_record(self.assigned_partitions)?,
            partitions_pending_revocation: assignment_from_record(self.partitions_pending_revocation)?,
            assignment_epochs,
        })
    }
}

fn assignment_to_record(a: &Assignment) -> Vec<TopicPartitionsRecord> {
    a.iter()
        .map(|(topic_id, partitions)| TopicPartitionsRecord {
            topic_id: topic_id.to_string(),
            partitions: partitions.iter().copied().collect(),
        })
        .collect()
}

fn assignment_from_record(records: Vec<TopicPartitionsRecord>) -> Option<Assignment> {
    let mut a = Assignment::new();
    for r in records {
        let topic_id = Uuid::parse_str(&r.topic_id).ok()?;
        a.entry(topic_id).or_default().extend(r.partitions);
    }
    Some(a)
}

#[cfg(test)]
mod tests;
