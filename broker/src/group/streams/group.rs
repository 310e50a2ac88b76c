//! The group's state: members, epochs, the topology and the target assignment, with the
//! settings of `group.streams.*`. Persisted as one versioned JSON record (see [`StreamsGroup::to_record`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

#[cfg(test)]
pub use crate::group::consumer::TopicInfo;
pub use crate::group::consumer::TopicsView;

use super::topology::{ConfiguredTopology, Topology};

/// Tasks by subtopology id.
pub type Tasks = BTreeMap<String, BTreeSet<i32>>;
/// Active tasks by subtopology id, each with the member epoch at which the member received it.
pub type EpochTasks = BTreeMap<String, BTreeMap<i32, i32>>;

/// Broker-level settings of streams groups (Kafka's `group.streams.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsGroupConfig {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
    pub max_size: usize,
    pub num_standby_replicas: i32,
    pub initial_rebalance_delay_ms: i32,
    pub assignment_interval_ms: i32,
    pub task_offset_interval_ms: i32,
    pub acceptable_recovery_lag: i64,
    pub rack_aware_assignment_tags: Vec<String>,
}

impl Default for StreamsGroupConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: i32::MAX as usize,
            num_standby_replicas: 0,
            initial_rebalance_delay_ms: 3_000,
            assignment_interval_ms: 1_000,
            task_offset_interval_ms: 60_000,
            acceptable_recovery_lag: 10_000,
            rack_aware_assignment_tags: Vec::new(),
        }
    }
}

impl StreamsGroupConfig {
    /// Kafka's startup checks of these settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.session_timeout_ms < 1 || self.heartbeat_interval_ms < 1 || self.max_size == 0 {
            return Err(
                "group.streams.session.timeout.ms, heartbeat.interval.ms and max.size must be at least 1".into(),
            );
        }
        if self.heartbeat_interval_ms >= self.session_timeout_ms {
            return Err(
                "group.streams.heartbeat.interval.ms must be less than group.streams.session.timeout.ms".into(),
            );
        }
        if self.num_standby_replicas < 0 || self.initial_rebalance_delay_ms < 0 || self.assignment_interval_ms < 0 {
            return Err(
                "group.streams.num.standby.replicas, initial.rebalance.delay.ms and assignment.interval.ms \
                        must be at least 0"
                    .into(),
            );
        }
        let mut seen = BTreeSet::new();
        if !self.rack_aware_assignment_tags.iter().all(|t| seen.insert(t)) {
            return Err("group.streams.rack.aware.assignment.tags must not contain duplicate tag keys.".into());
        }
        Ok(())
    }

    /// The assignment configs a change of which bumps the group epoch (Kafka's
    /// `assignmentConfigs`).
    pub fn assignment_configs(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert(
            "num.standby.replicas".to_string(),
            self.num_standby_replicas.to_string(),
        );
        if !self.rack_aware_assignment_tags.is_empty() {
            out.insert(
                "rack.aware.assignment.tags".to_string(),
                self.rack_aware_assignment_tags.join(","),
            );
        }
        out
    }
}

/// Where a member is in converging on its target (Kafka's streams `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    Stable,
    UnrevokedTasks,
    UnreleasedTasks,
    #[serde(other)]
    Unknown,
}

/// A member's tasks: active ones carry their assignment epochs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberTasks {
    pub active: EpochTasks,
    pub standby: Tasks,
    pub warmup: Tasks,
}

impl MemberTasks {
    pub fn is_empty(&self) -> bool {
        self.active.values().all(|p| p.is_empty())
            && self.standby.values().all(|p| p.is_empty())
            && self.warmup.values().all(|p| p.is_empty())
    }

    /// The active tasks without their epochs.
    pub fn active_tasks(&self) -> Tasks {
        self.active
            .iter()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(s, ps)| (s.clone(), ps.keys().copied().collect()))
            .collect()
    }

    pub(super) fn without_epochs(&self) -> TargetTasks {
        TargetTasks {
            active: self.active_tasks(),
            standby: self.standby.clone(),
            warmup: self.warmup.clone(),
        }
    }
}

/// A target assignment, or a set of owned tasks reported by a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetTasks {
    pub active: Tasks,
    pub standby: Tasks,
    pub warmup: Tasks,
}

/// One member of a streams group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub member_id: String,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub topology_epoch: i32,
    pub process_id: String,
    pub user_endpoint: Option<(String, u16)>,
    pub client_tags: BTreeMap<String, String>,
    pub assigned: MemberTasks,
    pub pending_revocation: MemberTasks,
    /// The last TaskOffsets and TaskEndOffsets the member reported (in memory only).
    #[serde(skip)]
    pub task_offsets: Vec<(String, i32, i64)>,
    #[serde(skip)]
    pub task_end_offsets: Vec<(String, i32, i64)>,
}

impl Member {
    pub fn new(member_id: &str) -> Self {
        Member {
            member_id: member_id.to_string(),
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: -1,
            topology_epoch: -1,
            process_id: String::new(),
            user_endpoint: None,
            client_tags: BTreeMap::new(),
            assigned: MemberTasks::default(),
            pending_revocation: MemberTasks::default(),
            task_offsets: Vec::new(),
            task_end_offsets: Vec::new(),
        }
    }

    pub fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == epoch
    }

    /// The epoch at which the member received an active task it owns or is revoking.
    pub fn active_task_epoch(&self, subtopology: &str, partition: i32) -> Option<i32> {
        self.assigned
            .active
            .get(subtopology)
            .and_then(|ps| ps.get(&partition))
            .or_else(|| {
                self.pending_revocation
                    .active
                    .get(subtopology)
                    .and_then(|ps| ps.get(&partition))
            })
            .copied()
    }
}

/// Timers of one member, not persisted: a loaded group restarts them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timers {
    pub(super) session_deadline: Instant,
    /// While the member revokes: fenced at this time if still at this epoch.
    pub(super) rebalance_deadline: Option<(Instant, i32)>,
}

const RECORD_VERSION: u16 = 1;

/// A KIP-1071 streams group. See the [module docs](super).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamsGroup {
    pub(super) version: u16,
    pub(super) group_id: String,
    pub(super) group_epoch: i32,
    pub(super) assignment_epoch: i32,
    pub(super) assignment_timestamp_ms: i64,
    pub(super) topology: Option<Topology>,
    pub(super) validated_topology_epoch: i32,
    /// The required topics that exist, with id and partition count, as of the last epoch
    /// bump (Fjord's form of Kafka's metadata hash): a difference bumps the epoch.
    pub(super) topic_metadata: BTreeMap<String, (String, i32)>,
    pub(super) last_assignment_configs: BTreeMap<String, String>,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) target: BTreeMap<String, TargetTasks>,
    #[serde(skip)]
    pub(super) configured: Option<ConfiguredTopology>,
    #[serde(skip)]
    pub(super) endpoint_epoch: i32,
    #[serde(skip)]
    pub(super) shutdown_requested_by: Option<String>,
    #[serde(skip)]
    pub(super) timers: HashMap<String, Timers>,
    /// The initial rebalance delay runs until then.
    #[serde(skip)]
    pub(super) delay_until: Option<Instant>,
}

impl StreamsGroup {
    /// A new, empty group: epochs 1, as Kafka starts one.
    pub fn new(group_id: &str) -> Self {
        StreamsGroup {
            version: RECORD_VERSION,
            group_id: group_id.to_string(),
            group_epoch: 1,
            assignment_epoch: 1,
            assignment_timestamp_ms: 0,
            topology: None,
            validated_topology_epoch: -1,
            topic_metadata: BTreeMap::new(),
            last_assignment_configs: BTreeMap::new(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            configured: None,
            endpoint_epoch: 0,
            shutdown_requested_by: None,
            timers: HashMap::new(),
            delay_until: None,
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members.values()
    }

    pub fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }

    /// The state as Kafka names it.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self
            .topology
            .as_ref()
            .is_none_or(|t| t.epoch != self.validated_topology_epoch)
        {
            "NotReady"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| !m.is_reconciled_to(self.assignment_epoch))
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The state as ListGroups filters compare it: Kafka lowercases the filter and compares
    /// it with these (so "NotReady" matches nothing, "not_ready" does).
    pub fn state_filter_name(&self) -> &'static str {
        match self.state() {
            "Empty" => "empty",
            "NotReady" => "not_ready",
            "Assigning" => "assigning",
            "Reconciling" => "reconciling",
            _ => "stable",
        }
    }

    /// The topics whose offsets a non-empty group keeps from expiring and from OffsetDelete:
    /// source and repartition source topics.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.topology
            .iter()
            .flat_map(|t| t.subtopologies.iter())
            .flat_map(|s| {
                s.source_topics
                    .iter()
                    .cloned()
                    .chain(s.repartition_source_topics.iter().map(|t| t.name.clone()))
            })
            .collect()
    }

    /// Kafka's `StreamsGroup.validateOffsetCommit`: the member must exist, a newer epoch is
    /// STALE_MEMBER_EPOCH, and an older one is accepted only for tasks the member received at
    /// or before it. `transactional` lets a producer without member id commit (TxnOffsetCommit).
    pub fn validate_offset_commit<'a>(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        member_epoch: i32,
        transactional: bool,
        partitions: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> Result<(), ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        if transactional && member_epoch == -1 && member_id.is_empty() && instance_id.is_none() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch == member.member_epoch {
            return Ok(());
        }
        if member_epoch > member.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        let topology = self.topology.as_ref();
        for (topic, partition) in partitions {
            let Some(subtopology) = topology.and_then(|t| t.subtopology_of_topic(topic)) else {
                return Err(ResponseError::StaleMemberEpoch);
            };
            match member.active_task_epoch(subtopology, partition) {
                Some(at) if member_epoch >= at => {}
                _ => return Err(ResponseError::StaleMemberEpoch),
            }
        }
        Ok(())
    }

    /// Kafka's `StreamsGroup.validateOffsetFetch`.
    pub fn validate_offset_fetch(&self, member_id: Option<&str>, member_epoch: i32) -> Result<(), ResponseError> {
        crate::group::validate_member_fetch(member_id, member_epoch, |m| self.members.get(m).map(|m| m.member_epoch))
    }

    /// Removes a member (left, or its session or rebalance timeout passed): the group epoch
    /// moves on, and an emptied group's assignment epoch with it, so that it reads Empty.
    pub(super) fn fence(&mut self, member_id: &str) {
        self.members.remove(member_id);
        self.target.remove(member_id);
        self.timers.remove(member_id);
        self.group_epoch += 1;
        if self.members.is_empty() {
            self.assignment_epoch = self.group_epoch;
            self.assignment_timestamp_ms = 0;
            self.shutdown_requested_by = None;
        }
    }

    /// Expires sessions and rebalance timeouts, and ends the initial rebalance delay. Returns
    /// whether the group changed (persist it).
    pub fn tick(&mut self, now: Instant, now_ms: i64, cfg: &StreamsGroupConfig) -> bool {
        let mut expired = Vec::new();
        for (member_id, t) in &self.timers {
            let revoke_late = t.rebalance_deadline.is_some_and(|(at, epoch)| {
                now >= at && self.members.get(member_id).is_some_and(|m| m.member_epoch == epoch)
            });
            if now >= t.session_deadline || revoke_late {
                expired.push(member_id.clone());
            }
        }
        let mut changed = false;
        for member_id in expired {
            tracing::info!(group = %self.group_id, member = %member_id, "streams group member expired");
            self.fence(&member_id);
            changed = true;
        }
        if let Some(until) = self.delay_until {
            if now >= until {
                self.delay_until = None;
                if !self.members.is_empty() && self.configured.is_some() && self.group_epoch > self.assignment_epoch {
                    let configs = self.last_assignment_configs.clone();
                    let standby = configs
                        .get("num.standby.replicas")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(cfg.num_standby_replicas);
                    if self.compute_target(None, standby, now_ms).is_ok() {
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    /// Serialises everything persistent as JSON.
    pub fn to_record(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a StreamsGroup always serialises")
    }

    /// Loads a group written by [`StreamsGroup::to_record`]. Every member starts a fresh
    /// session at `now`, and members revoking tasks a fresh rebalance timeout.
    pub fn from_record(bytes: &[u8], now: Instant, cfg: &StreamsGroupConfig) -> Option<Self> {
        let mut g: StreamsGroup = serde_json::from_slice(bytes).ok()?;
        if g.version != RECORD_VERSION || g.assignment_epoch > g.group_epoch {
            return None;
        }
        for m in g.members.values() {
            let rebalance_deadline = (m.state == MemberState::UnrevokedTasks)
                .then(|| (now + rebalance_timeout(m.rebalance_timeout_ms), m.member_epoch));
            g.timers.insert(
                m.member_id.clone(),
                Timers {
                    session_deadline: now + Duration::from_millis(cfg.session_timeout_ms.max(0) as u64),
                    rebalance_deadline,
                },
            );
        }
        Some(g)
    }
}

pub(super) fn rebalance_timeout(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}
