//! The KIP-848 consumer group: the server side of ConsumerGroupHeartbeat (API key 68,
//! versions 0-1) and ConsumerGroupDescribe (API key 69, versions 0-1).
//!
//! Pure state machine: no I/O, no clock of its own (callers pass `now`), no globals. The handler
//! looks the group up, calls [`ConsumerGroup::heartbeat`] / [`ConsumerGroup::tick`], and
//! persists [`ConsumerGroup::to_record`] whenever they report a change.
//!
//! The behaviour follows Apache Kafka 4.1's group coordinator (`GroupMetadataManager`,
//! `modern/consumer/ConsumerGroup`, `modern/consumer/CurrentAssignmentBuilder`):
//!
//! * Every change of subscriptions, membership or subscribed-topic metadata bumps the *group
//!   epoch*. When the group epoch is ahead of the *assignment epoch*, the next heartbeat
//!   recomputes the *target assignment* with the server assignor ([`super::assignor`]).
//! * Each member then converges on its target one heartbeat at a time: it first revokes what
//!   it must give up (staying at its epoch, state `UnrevokedPartitions`), then moves to the new
//!   epoch, receiving only partitions that no other member still owns (state
//!   `UnreleasedPartitions` while some are still held elsewhere). So a partition never has two
//!   owners.
//!
//! Deliberate differences from Kafka, each for a pure, synchronous module:
//! * Regular expressions are resolved synchronously on every heartbeat, not by a background
//!   task rate-limited to one refresh per 10 s; a new regex subscription therefore bumps the
//!   epoch on the join itself. Kafka matches with RE2/J; this uses the `regex` crate, see
//!   [`compile_regex`].
//! * Subscribed-topic metadata (names, ids, partition counts) is compared on every heartbeat
//!   instead of a hash refreshed on metadata-image changes; a difference bumps the epoch.
//! * Internal topics are never matched by a regex (Kafka matches them, subject to ACLs).
//!
//! KIP-848: <https://cwiki.apache.org/confluence/display/KAFKA/KIP-848%3A+The+Next+Generation+of+the+Consumer+Rebalance+Protocol>

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopicPartitions;
use kafka_protocol::messages::consumer_group_heartbeat_response as hb;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::assignor::{self, Assignment, MemberSpec};

/// Member epoch with which a member leaves the group for good (`LEAVE_GROUP_MEMBER_EPOCH`).
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch with which a static member leaves temporarily, keeping its assignment for its
/// session timeout (`LEAVE_GROUP_STATIC_MEMBER_EPOCH`).
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;
/// From this ConsumerGroupHeartbeat version the client generates its member id, so the id must
/// be non-empty on every request (Kafka's `CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION`).
pub const CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION: i16 = 1;
/// Kafka's default `group.consumer.session.timeout.ms`.
pub const DEFAULT_SESSION_TIMEOUT_MS: i32 = 45_000;
/// Kafka's default `group.consumer.heartbeat.interval.ms`.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: i32 = 5_000;
/// Topics a regex subscription never matches (see the module docs).
pub const INTERNAL_TOPICS: [&str; 3] = ["__consumer_offsets", "__transaction_state", "__share_group_state"];
/// Cap on the compiled size of one subscription regex. The pattern comes from the client, so
/// without a cap a single heartbeat could make the broker allocate without bound; 1 MiB is far
/// above any realistic topic pattern.
const REGEX_SIZE_LIMIT_BYTES: usize = 1 << 20;
/// Version of the JSON layout written by [`ConsumerGroup::to_record`].
const RECORD_VERSION: u16 = 1;

/// The topics of the cluster as the coordinator sees them when handling a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsView {
    /// Every topic by name.
    pub topics: BTreeMap<String, TopicInfo>,
}

/// One topic of a [`TopicsView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic id, as carried by the heartbeat's `TopicPartitions`.
    pub topic_id: Uuid,
    /// The partition count.
    pub partitions: i32,
}

impl TopicsView {
    fn names_by_id(&self) -> HashMap<Uuid, &str> {
        self.topics
            .iter()
            .map(|(name, info)| (info.topic_id, name.as_str()))
            .collect()
    }
}

/// Broker-level settings of consumer groups (Kafka's `group.consumer.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`: a member that does not heartbeat for this long is
    /// removed. Default: 45000.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: returned to members in every successful
    /// heartbeat. Default: 5000.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`: members beyond this are refused with GROUP_MAX_SIZE_REACHED.
    /// Default: `i32::MAX`.
    pub max_size: usize,
    /// `group.consumer.assignors` by name; the first is the default. Default: uniform, range.
    pub assignors: Vec<String>,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            max_size: i32::MAX as usize,
            assignors: assignor::SUPPORTED_ASSIGNORS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl ConsumerGroupConfig {
    /// Checks the settings at startup: positive timeouts, at least one assignor, and only
    /// assignors this module implements.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.session_timeout_ms <= 0 {
            return Err("group.consumer.session.timeout.ms must be positive".into());
        }
        if self.heartbeat_interval_ms <= 0 || self.heartbeat_interval_ms >= self.session_timeout_ms {
            return Err("group.consumer.heartbeat.interval.ms must be positive and below \
                        group.consumer.session.timeout.ms"
                .into());
        }
        if self.max_size == 0 {
            return Err("group.consumer.max.size must be positive".into());
        }
        if self.assignors.is_empty() {
            return Err("group.consumer.assignors must name at least one assignor".into());
        }
        if let Some(bad) = self.assignors.iter().find(|a| !assignor::is_supported(a)) {
            return Err(format!(
                "group.consumer.assignors: unknown assignor {bad}; supported: {}",
                assignor::SUPPORTED_ASSIGNORS.join(", ")
            ));
        }
        Ok(())
    }

    fn default_assignor(&self) -> &str {
        self.assignors
            .iter()
            .find(|a| assignor::is_supported(a))
            .map(String::as_str)
            .unwrap_or(assignor::UNIFORM_ASSIGNOR_NAME)
    }

    fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms.max(0) as u64)
    }
}

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

/// One member of a consumer group. Read-only outside this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Server-generated (v0) or client-generated (v1+) member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// Client id of the last heartbeat.
    pub client_id: String,
    /// Client host of the last heartbeat.
    pub client_host: String,
    /// How long the member may take to revoke partitions; -1 until the join sets it.
    pub rebalance_timeout_ms: i32,
    /// Topics subscribed by name.
    pub subscribed_topic_names: BTreeSet<String>,
    /// Topics subscribed by regular expression (full-name match).
    pub subscribed_topic_regex: Option<String>,
    /// The server assignor the member asks for, if any.
    pub server_assignor: Option<String>,
    /// The member's current epoch; -2 while a static member is away.
    pub member_epoch: i32,
    /// The epoch before the last transition; a heartbeat carrying it is still accepted when
    /// the response that moved the member on may have been lost.
    pub previous_member_epoch: i32,
    /// Reconciliation state.
    pub state: MemberState,
    /// Partitions the member owns and may keep.
    pub assigned_partitions: Assignment,
    /// Partitions the member still owns but has been asked to revoke.
    pub partitions_pending_revocation: Assignment,
}

impl Member {
    fn new(member_id: String) -> Self {
        Self {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: -1,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            member_epoch: 0,
            previous_member_epoch: -1,
            state: MemberState::Stable,
            assigned_partitions: Assignment::new(),
            partitions_pending_revocation: Assignment::new(),
        }
    }

    /// Kafka's `isReconciledTo`: stable at the given target epoch.
    pub fn is_reconciled_to(&self, target_epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == target_epoch
    }

    /// Kafka's `updateMemberEpoch`: the previous epoch always becomes the current one.
    fn update_member_epoch(&mut self, epoch: i32) {
        self.previous_member_epoch = self.member_epoch;
        self.member_epoch = epoch;
    }
}

/// Timers of one member. Not persisted: a loaded group restarts them.
#[derive(Debug, Clone, Copy)]
struct Timers {
    /// The session expires `session_timeout_ms` after this.
    last_heartbeat: Instant,
    /// Set while the member is in `UnrevokedPartitions`: if it is still at this epoch at the
    /// deadline, it is fenced (Kafka's rebalance timeout).
    rebalance_deadline: Option<(Instant, i32)>,
}

/// Result of [`ConsumerGroup::heartbeat`].
#[derive(Debug, Clone)]
pub struct HeartbeatOutcome {
    /// The response to send; `error_code` is non-zero on failure.
    pub response: ConsumerGroupHeartbeatResponse,
    /// The persistent state changed: the caller must persist [`ConsumerGroup::to_record`].
    pub changed: bool,
}

/// A request-level failure: the error code and Kafka's message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatError {
    /// The error code to return.
    pub error: ResponseError,
    /// The error message to return.
    pub message: String,
}

impl HeartbeatError {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, HeartbeatError>;

/// A KIP-848 consumer group. See the module docs.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    group_id: String,
    /// Bumped on every change that requires a new target assignment.
    group_epoch: i32,
    /// The group epoch at which `target` was computed; never ahead of `group_epoch`.
    assignment_epoch: i32,
    /// Target assignment per member id. Members without partitions may have no entry.
    target: BTreeMap<String, Assignment>,
    members: BTreeMap<String, Member>,
    /// Subscribed topics (by name or resolved regex) that exist, with id and partition count,
    /// as of the last epoch bump. A difference with the cluster's topics bumps the epoch.
    subscription_metadata: BTreeMap<String, TopicInfo>,
    /// The topics each subscribed regex matched, as of the last heartbeat.
    resolved_regexes: BTreeMap<String, BTreeSet<String>>,
    /// The assignor that computed `target`; what Describe reports when no member asks for one.
    last_assignor: Option<String>,
    timers: HashMap<String, Timers>,
    /// Compiled subscription regexes; a cache, rebuilt on demand.
    compiled_regexes: HashMap<String, regex::Regex>,
}

impl ConsumerGroup {
    /// A new, empty group at epoch 0. Only create one for a heartbeat with member epoch 0,
    /// and keep it only if that heartbeat reports `changed` (Kafka materialises the group
    /// only when the join succeeds).
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            group_epoch: 0,
            assignment_epoch: 0,
            target: BTreeMap::new(),
            members: BTreeMap::new(),
            subscription_metadata: BTreeMap::new(),
            resolved_regexes: BTreeMap::new(),
            last_assignor: None,
            timers: HashMap::new(),
            compiled_regexes: HashMap::new(),
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The group epoch.
    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    /// The epoch of the current target assignment.
    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    /// The group state as Kafka names it: "Empty", "Assigning", "Reconciling" or "Stable".
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
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

    /// No members (Kafka's `isEmpty`: state "Empty").
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members, by member id.
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    /// A member's target assignment (empty if it has none).
    pub fn target_assignment(&self, member_id: &str) -> Assignment {
        self.target.get(member_id).cloned().unwrap_or_default()
    }

    /// The server assignor the most members ask for (ties: the smallest name), or the one
    /// that computed the current target, or "uniform". Kafka's `preferredServerAssignor`
    /// falling back to the default assignor.
    pub fn assignor_name(&self) -> String {
        self.preferred_assignor()
            .or_else(|| self.last_assignor.clone())
            .unwrap_or_else(|| assignor::UNIFORM_ASSIGNOR_NAME.to_string())
    }

    /// Every topic name the group subscribes to, by name or through a regex, whether or not
    /// the topic exists (Kafka's `subscribedTopicNames`, used by OffsetDelete's
    /// GROUP_SUBSCRIBED_TO_TOPIC check).
    pub fn subscribed_topic_names(&self, topics: &TopicsView) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for member in self.members.values() {
            names.extend(member.subscribed_topic_names.iter().cloned());
            if let Some(regex) = &member.subscribed_topic_regex {
                let compiled = match self.compiled_regexes.get(regex) {
                    Some(r) => Some(r.clone()),
                    None => compile_regex(regex).ok(),
                };
                if let Some(r) = compiled {
                    names.extend(matching_topics(&r, topics));
                }
            }
        }
        names
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit` for members of this group. An epoch below
    /// zero is accepted only while the group is empty (admin or standalone consumers); else
    /// the member must exist (UNKNOWN_MEMBER_ID) and the epoch must be its current one
    /// (STALE_MEMBER_EPOCH). Kafka also requires OffsetCommit v9+ from such members for
    /// non-transactional commits (UNSUPPORTED_VERSION); that check is the caller's.
    pub fn validate_offset_commit(&self, member_id: &str, member_epoch: i32) -> std::result::Result<(), ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member.member_epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch`. A fetch without member id and with an
    /// epoch below zero (admin, or OffsetFetch before v9) is always accepted; else the member
    /// must exist (UNKNOWN_MEMBER_ID) at that epoch (STALE_MEMBER_EPOCH).
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> std::result::Result<(), ResponseError> {
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id.unwrap_or_default())
            .ok_or(ResponseError::UnknownMemberId)?;
        if member.member_epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Handles one ConsumerGroupHeartbeat request for this group (Kafka's
    /// `GroupCoordinatorService.consumerGroupHeartbeat` validation plus
    /// `GroupMetadataManager.consumerGroupHeartbeat`). On error the group is unchanged.
    #[allow(clippy::too_many_arguments)]
    pub fn heartbeat(
        &mut self,
        version: i16,
        req: &ConsumerGroupHeartbeatRequest,
        client_id: &str,
        client_host: &str,
        topics: &TopicsView,
        cfg: &ConsumerGroupConfig,
        now: Instant,
    ) -> HeartbeatOutcome {
        let result = validate_heartbeat_request(version, req, cfg).and_then(|()| {
            if req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH || req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                self.leave(req)
            } else {
                self.regular_heartbeat(req, client_id, client_host, topics, cfg, now)
            }
        });
        match result {
            Ok((response, changed)) => HeartbeatOutcome { response, changed },
            Err(e) => HeartbeatOutcome {
                response: error_response(e.error, Some(e.message)),
                changed: false,
            },
        }
    }

    /// Expires sessions and rebalance timeouts. A member whose session expired is removed; a
    /// member still at the epoch in which it was asked to revoke partitions when its rebalance
    /// timeout passes is removed too. Each removal bumps the group epoch; the new target is
    /// computed by the next heartbeat. Returns whether the group changed (persist it).
    pub fn tick(&mut self, now: Instant, cfg: &ConsumerGroupConfig) -> bool {
        let session_timeout = cfg.session_timeout();
        let mut expired = Vec::new();
        for (member_id, member) in &self.members {
            let timers = *self.timers.entry(member_id.clone()).or_insert(Timers {
                last_heartbeat: now,
                rebalance_deadline: None,
            });
            let session_expired = now >= timers.last_heartbeat + session_timeout;
            let rebalance_expired = matches!(
                timers.rebalance_deadline,
                Some((deadline, epoch)) if now >= deadline && member.member_epoch == epoch
            );
            if session_expired || rebalance_expired {
                expired.push(member_id.clone());
            }
        }
        for member_id in &expired {
            self.fence_member(member_id);
        }
        !expired.is_empty()
    }

    /// ConsumerGroupDescribe for this group (Kafka's `asDescribedGroup`). Topics missing from
    /// `topics` are left out of the assignments. `authorized_operations` is left at its
    /// default (not requested); the caller fills it in.
    pub fn describe(&self, topics: &TopicsView) -> describe::DescribedGroup {
        let names = topics.names_by_id();
        let to_wire = |assignment: &Assignment| {
            describe::Assignment::default().with_topic_partitions(
                assignment
                    .iter()
                    .filter_map(|(topic_id, partitions)| {
                        names.get(topic_id).map(|name| {
                            describe::TopicPartitions::default()
                                .with_topic_id(*topic_id)
                                .with_topic_name(TopicName(str_bytes(name)))
                                .with_partitions(partitions.iter().copied().collect())
                        })
                    })
                    .collect(),
            )
        };
        let members = self
            .members
            .values()
            .map(|m| {
                describe::Member::default()
                    .with_member_id(str_bytes(&m.member_id))
                    .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                    .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
                    .with_subscribed_topic_names(
                        m.subscribed_topic_names
                            .iter()
                            .map(|n| TopicName(str_bytes(n)))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(m.subscribed_topic_regex.as_deref().map(str_bytes))
                    .with_assignment(to_wire(&m.assigned_partitions))
                    .with_target_assignment(to_wire(&self.target_assignment(&m.member_id)))
                    // 1: a member using the consumer protocol (v1 field; 0 would be classic).
                    .with_member_type(1)
            })
            .collect();
        describe::DescribedGroup::default()
            .with_group_id(GroupId(str_bytes(&self.group_id)))
            .with_group_state(StrBytes::from_static_str(self.state()))
            .with_group_epoch(self.group_epoch)
            .with_assignment_epoch(self.assignment_epoch)
            .with_assignor_name(str_bytes(&self.assignor_name()))
            .with_members(members)
    }

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

    // ----- heartbeat internals -----

    fn leave(&mut self, req: &ConsumerGroupHeartbeatRequest) -> Result<(ConsumerGroupHeartbeatResponse, bool)> {
        let member_id = req.member_id.as_str();
        let leaving_id = match &req.instance_id {
            None => {
                if !self.members.contains_key(member_id) {
                    return Err(self.unknown_member(member_id));
                }
                member_id.to_string()
            }
            Some(instance_id) => {
                let existing = self.static_member_checked(instance_id.as_str(), member_id)?;
                if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    // The static member is away but keeps its assignment (and its place in the
                    // target assignment) until its session expires; what it was revoking is
                    // released now. No epoch bump: nothing needs reassigning.
                    let id = existing.to_string();
                    if let Some(member) = self.members.get_mut(&id) {
                        member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
                        member.partitions_pending_revocation.clear();
                    }
                    if let Some(t) = self.timers.get_mut(&id) {
                        t.rebalance_deadline = None;
                    }
                    let response = ConsumerGroupHeartbeatResponse::default()
                        .with_member_id(Some(str_bytes(&id)))
                        .with_member_epoch(LEAVE_GROUP_STATIC_MEMBER_EPOCH);
                    return Ok((response, true));
                }
                existing.to_string()
            }
        };
        self.fence_member(&leaving_id);
        let response = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(req.member_id.clone()))
            .with_member_epoch(req.member_epoch);
        Ok((response, true))
    }

    fn regular_heartbeat(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        client_id: &str,
        client_host: &str,
        topics: &TopicsView,
        cfg: &ConsumerGroupConfig,
        now: Instant,
    ) -> Result<(ConsumerGroupHeartbeatResponse, bool)> {
        let epoch = req.member_epoch;
        let owned = req.topic_partitions.as_deref();

        // Kafka's throwIfConsumerGroupIsFull, with the member id as sent.
        if self.members.len() >= cfg.max_size
            && (req.member_id.is_empty() || !self.members.contains_key(req.member_id.as_str()))
        {
            return Err(HeartbeatError::new(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    cfg.max_size
                ),
            ));
        }
        let member_id = if req.member_id.is_empty() {
            new_member_id()
        } else {
            req.member_id.as_str().to_string()
        };

        // Find or create the member, and whether it replaces a static member that left.
        let mut replaced: Option<String> = None;
        let old_member: Member = match &req.instance_id {
            None => match self.members.get(&member_id) {
                Some(m) => {
                    check_member_epoch(m, epoch, owned)?;
                    m.clone()
                }
                None if epoch == 0 => Member::new(member_id.clone()),
                None => return Err(self.unknown_member(&member_id)),
            },
            Some(instance_id) => {
                let instance_id = instance_id.as_str();
                let existing = self.static_member_id(instance_id).and_then(|id| self.members.get(id));
                if epoch == 0 {
                    match existing {
                        None => self
                            .members
                            .get(&member_id)
                            .cloned()
                            .unwrap_or_else(|| Member::new(member_id.clone())),
                        Some(existing) => {
                            if existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                                return Err(HeartbeatError::new(
                                    ResponseError::UnreleasedInstanceId,
                                    format!(
                                        "Static member {member_id} with instance id {instance_id} cannot join the \
                                         group because the instance id is owned by {} member.",
                                        existing.member_id
                                    ),
                                ));
                            }
                            // The rejoining instance takes over the old member's assignment
                            // and target under its new member id.
                            let mut m = existing.clone();
                            replaced = Some(existing.member_id.clone());
                            m.member_id = member_id.clone();
                            m.member_epoch = 0;
                            m.previous_member_epoch = 0;
                            m
                        }
                    }
                } else {
                    let existing_id = self.static_member_checked(instance_id, &member_id)?;
                    let m = self
                        .members
                        .get(existing_id)
                        .ok_or_else(|| self.unknown_member(existing_id))?;
                    check_member_epoch(m, epoch, owned)?;
                    m.clone()
                }
            }
        };

        // Apply the request; null fields mean "unchanged".
        let mut member = old_member.clone();
        if let Some(i) = &req.instance_id {
            member.instance_id = Some(i.as_str().to_string());
        }
        if let Some(r) = &req.rack_id {
            member.rack_id = Some(r.as_str().to_string());
        }
        if req.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(a) = &req.server_assignor {
            member.server_assignor = Some(a.as_str().to_string());
        }
        if let Some(names) = &req.subscribed_topic_names {
            member.subscribed_topic_names = names.iter().map(|n| n.0.as_str().to_string()).collect();
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            // An empty regex means no regex (Kafka's isNotEmpty checks).
            member.subscribed_topic_regex = (!regex.is_empty()).then(|| regex.as_str().to_string());
        }
        member.client_id = client_id.to_string();
        member.client_host = client_host.to_string();

        let names_changed = member.subscribed_topic_names != old_member.subscribed_topic_names;
        let regex_changed = member.subscribed_topic_regex != old_member.subscribed_topic_regex;
        if regex_changed {
            if let Some(regex) = &member.subscribed_topic_regex {
                self.compiled_regex(regex)?;
            }
        }
        if member.state == MemberState::Unknown && owned.is_none_or(|o| !o.is_empty()) {
            return Err(HeartbeatError::new(
                ResponseError::FencedMemberEpoch,
                "The consumer group member is in a unknown state. The member must abandon all its \
                 partitions and rejoin.",
            ));
        }

        // Nothing below fails: mutate.
        let group_epoch_before = self.group_epoch;
        let mut changed = old_member != member || !self.members.contains_key(&member_id);
        if let Some(old_id) = &replaced {
            self.members.remove(old_id);
            self.timers.remove(old_id);
            if let Some(t) = self.target.remove(old_id) {
                self.target.insert(member_id.clone(), t);
            }
            changed = true;
        }
        self.members.insert(member_id.clone(), member.clone());

        let metadata_changed = self.refresh_subscription_metadata(topics);
        if self.group_epoch == 0 || names_changed || regex_changed || metadata_changed {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target_assignment(topics, cfg);
        }
        changed |= metadata_changed || self.group_epoch != group_epoch_before;

        // Reconcile the member towards its target.
        let subscription_changed = names_changed || regex_changed;
        let mut reconciled = member.clone();
        if subscription_changed || !member.is_reconciled_to(self.assignment_epoch) {
            let target = self.target_assignment(&member_id);
            let subscribed = self.subscribed_topic_ids(&member, topics);
            let partition_epochs = self.partition_epochs();
            reconciled = reconcile(
                &member,
                self.assignment_epoch,
                &target,
                &subscribed,
                subscription_changed,
                &partition_epochs,
                owned,
            );
        }
        let timers = self.timers.entry(member_id.clone()).or_insert(Timers {
            last_heartbeat: now,
            rebalance_deadline: None,
        });
        timers.last_heartbeat = now;
        if reconciled != member {
            timers.rebalance_deadline = (reconciled.state == MemberState::UnrevokedPartitions).then(|| {
                (
                    now + rebalance_timeout(reconciled.rebalance_timeout_ms),
                    reconciled.member_epoch,
                )
            });
            self.members.insert(member_id.clone(), reconciled.clone());
            changed = true;
        }
        debug_assert!(self.partitions_have_single_owner(), "a partition has two owners");

        let mut response = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(&member_id)))
            .with_member_epoch(reconciled.member_epoch)
            .with_heartbeat_interval_ms(cfg.heartbeat_interval_ms);
        // The assignment goes out on a join, on a full request (sent after errors), and when
        // it changed.
        let full_request = req.rebalance_timeout_ms != -1
            && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
            && req.topic_partitions.is_some();
        if epoch == 0 || full_request || reconciled.assigned_partitions != old_member.assigned_partitions {
            response.assignment = Some(response_assignment(&reconciled.assigned_partitions));
        }
        Ok((response, changed))
    }

    /// Removes a member (leave, session or rebalance timeout) and bumps the group epoch so that
    /// its partitions are reassigned. Kafka's `consumerGroupFenceMember`.
    fn fence_member(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_none() {
            return;
        }
        self.timers.remove(member_id);
        self.target.remove(member_id);
        let in_use: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.as_ref())
            .collect();
        self.resolved_regexes.retain(|regex, _| in_use.contains(regex));
        self.compiled_regexes.retain(|regex, _| in_use.contains(regex));
        // Recompute the subscribed-topic metadata without the member from what is known.
        let names = self.subscribed_names_resolved();
        self.subscription_metadata.retain(|name, _| names.contains(name));
        self.group_epoch += 1;
    }

    fn unknown_member(&self, member_id: &str) -> HeartbeatError {
        HeartbeatError::new(
            ResponseError::UnknownMemberId,
            format!("Member {member_id} is not a member of group {}.", self.group_id),
        )
    }

    fn static_member_id(&self, instance_id: &str) -> Option<&String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| &m.member_id)
    }

    /// The static member with this instance id, which must be the one sending the request.
    fn static_member_checked(&self, instance_id: &str, member_id: &str) -> Result<&String> {
        let existing = self.static_member_id(instance_id).ok_or_else(|| {
            HeartbeatError::new(
                ResponseError::UnknownMemberId,
                format!("Instance id {instance_id} is unknown."),
            )
        })?;
        if existing != member_id {
            return Err(HeartbeatError::new(
                ResponseError::FencedInstanceId,
                format!("Static member {member_id} with instance id {instance_id} was fenced by member {existing}."),
            ));
        }
        Ok(existing)
    }

    fn compiled_regex(&mut self, regex: &str) -> Result<&regex::Regex> {
        if !self.compiled_regexes.contains_key(regex) {
            let compiled = compile_regex(regex).map_err(|e| {
                HeartbeatError::new(
                    ResponseError::InvalidRegularExpression,
                    format!("SubscribedTopicRegex `{regex}` is not a valid regular expression: {e}."),
                )
            })?;
            self.compiled_regexes.insert(regex.to_string(), compiled);
        }
        self.compiled_regexes
            .get(regex)
            .ok_or_else(|| HeartbeatError::new(ResponseError::UnknownServerError, "regex cache miss after insert"))
    }

    /// Re-resolves the regexes and recomputes the subscribed-topic metadata against `topics`.
    /// Returns whether either changed (which requires a new target assignment).
    fn refresh_subscription_metadata(&mut self, topics: &TopicsView) -> bool {
        let regexes: BTreeSet<String> = self
            .members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.clone())
            .collect();
        let mut resolved = BTreeMap::new();
        for regex in regexes {
            // Every stored regex was validated when a member subscribed with it; one that no
            // longer compiles (a newer regex engine?) matches nothing.
            let matched = match self.compiled_regex(&regex) {
                Ok(r) => matching_topics(r, topics),
                Err(_) => BTreeSet::new(),
            };
            resolved.insert(regex, matched);
        }
        let regexes_changed = resolved != self.resolved_regexes;
        self.resolved_regexes = resolved;

        let metadata: BTreeMap<String, TopicInfo> = self
            .subscribed_names_resolved()
            .into_iter()
            .filter_map(|name| topics.topics.get(&name).map(|info| (name, *info)))
            .collect();
        let metadata_changed = metadata != self.subscription_metadata;
        self.subscription_metadata = metadata;
        regexes_changed || metadata_changed
    }

    /// Names subscribed by any member, regexes resolved with `resolved_regexes`.
    fn subscribed_names_resolved(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for member in self.members.values() {
            names.extend(member.subscribed_topic_names.iter().cloned());
            if let Some(topics) = member
                .subscribed_topic_regex
                .as_ref()
                .and_then(|r| self.resolved_regexes.get(r))
            {
                names.extend(topics.iter().cloned());
            }
        }
        names
    }

    /// Ids of the existing topics a member subscribes to (Kafka's `subscribedTopicIds`).
    fn subscribed_topic_ids(&self, member: &Member, topics: &TopicsView) -> BTreeSet<Uuid> {
        let regex_topics = member
            .subscribed_topic_regex
            .as_ref()
            .and_then(|r| self.resolved_regexes.get(r))
            .into_iter()
            .flatten();
        member
            .subscribed_topic_names
            .iter()
            .chain(regex_topics)
            .filter_map(|name| topics.topics.get(name).map(|t| t.topic_id))
            .collect()
    }

    fn preferred_assignor(&self) -> Option<String> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *counts.entry(a.as_str()).or_default() += 1;
            }
        }
        // max_by_key keeps the last maximum; iterate names in reverse so ties pick the smallest.
        counts
            .into_iter()
            .rev()
            .max_by_key(|(_, n)| *n)
            .map(|(name, _)| name.to_string())
    }

    /// Kafka's `updateTargetAssignment` through `TargetAssignmentBuilder`: runs the preferred
    /// assignor over all members and makes the result the target at the group epoch.
    fn compute_target_assignment(&mut self, topics: &TopicsView, cfg: &ConsumerGroupConfig) {
        let name = self
            .preferred_assignor()
            .filter(|a| cfg.assignors.iter().any(|c| c == a) && assignor::is_supported(a))
            .unwrap_or_else(|| cfg.default_assignor().to_string());
        let counts_by_id: HashMap<Uuid, i32> = topics.topics.values().map(|t| (t.topic_id, t.partitions)).collect();
        let mut specs = BTreeMap::new();
        let mut partition_counts = BTreeMap::new();
        for (member_id, member) in &self.members {
            let subscribed = self.subscribed_topic_ids(member, topics);
            for topic_id in &subscribed {
                if let Some(count) = counts_by_id.get(topic_id) {
                    partition_counts.insert(*topic_id, *count);
                }
            }
            specs.insert(
                member_id.clone(),
                MemberSpec {
                    subscribed_topic_ids: subscribed,
                    current: self.target_assignment(member_id),
                },
            );
        }
        // `name` is supported (checked above, or the default is), so the assignor exists.
        let target = assignor::assign(&name, &specs, &partition_counts)
            .or_else(|| assignor::assign(assignor::UNIFORM_ASSIGNOR_NAME, &specs, &partition_counts))
            .unwrap_or_default();
        self.target = target.into_iter().filter(|(_, a)| !a.is_empty()).collect();
        self.assignment_epoch = self.group_epoch;
        self.last_assignor = Some(name);
    }

    /// The epoch at which each owned partition (assigned or pending revocation) is held
    /// (Kafka's `currentPartitionEpoch`); absent means free.
    fn partition_epochs(&self) -> HashMap<(Uuid, i32), i32> {
        let mut epochs = HashMap::new();
        for m in self.members.values() {
            for a in [&m.assigned_partitions, &m.partitions_pending_revocation] {
                for (topic_id, partitions) in a {
                    for p in partitions {
                        epochs.insert((*topic_id, *p), m.member_epoch);
                    }
                }
            }
        }
        epochs
    }

    /// The invariant Kafka asserts in `addPartitionEpochs`: no partition has two owners.
    fn partitions_have_single_owner(&self) -> bool {
        let mut seen = BTreeSet::new();
        self.members.values().all(|m| {
            [&m.assigned_partitions, &m.partitions_pending_revocation]
                .into_iter()
                .flat_map(|a| a.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p))))
                .all(|tp| seen.insert(tp))
        })
    }
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid` (GroupCoordinatorService). Run it
/// before looking the group up: a request for a group that does not exist is validated first.
pub fn validate_heartbeat_request(
    version: i16,
    req: &ConsumerGroupHeartbeatRequest,
    cfg: &ConsumerGroupConfig,
) -> Result<()> {
    let invalid = |msg: &str| Err(HeartbeatError::new(ResponseError::InvalidRequest, msg));
    if (version >= CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION
        || req.member_epoch > 0
        || req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH)
        && req.member_id.is_empty()
    {
        return invalid("MemberId can't be empty.");
    }
    if req.group_id.0.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if req.instance_id.as_ref().is_some_and(|s| s.is_empty()) {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_ref().is_some_and(|s| s.is_empty()) {
        return invalid("RackId can't be empty.");
    }
    if req.member_epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return invalid("RebalanceTimeoutMs must be provided in first request.");
        }
        if req.topic_partitions.as_ref().is_none_or(|tp| !tp.is_empty()) {
            return invalid("TopicPartitions must be empty when (re-)joining.");
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.");
        }
    } else if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        if req.instance_id.is_none() {
            return invalid("InstanceId can't be null.");
        }
    } else if req.member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return invalid("MemberEpoch is invalid.");
    }
    if let Some(name) = &req.server_assignor {
        if !cfg.assignors.iter().any(|a| a == name.as_str()) {
            return Err(HeartbeatError::new(
                ResponseError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {} is not supported. Supported assignors: {}.",
                    name.as_str(),
                    cfg.assignors.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A heartbeat response carrying only an error.
pub fn error_response(error: ResponseError, message: Option<String>) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(error.code())
        .with_error_message(message.map(StrBytes::from_string))
}

/// The response to a (valid) heartbeat with a non-zero member epoch for a group that does not
/// exist, or that is not a consumer group (Kafka: GROUP_ID_NOT_FOUND).
pub fn group_not_found_response(group_id: &str) -> ConsumerGroupHeartbeatResponse {
    error_response(
        ResponseError::GroupIdNotFound,
        Some(format!("Consumer group {group_id} not found.")),
    )
}

/// Compiles a subscription regex the way Kafka's RE2/J `Pattern.matcher(topic).matches()` is
/// used: the whole topic name must match.
///
/// Differences from RE2/J (both are RE2 dialects: no backreferences, no lookaround):
/// * `\d`, `\w`, `\s` and `\b` are Unicode-aware here, ASCII in RE2/J. Topic names are
///   ASCII (`[a-zA-Z0-9._-]`), so matching agrees.
/// * Syntax only this crate accepts, which Kafka would reject with INVALID_REGULAR_EXPRESSION:
///   class set operations (`[a-z&&[^x]]`, `--`, `~~`), `\<` `\>` `\b{start}` `\b{end}`.
/// * Syntax only RE2/J accepts (`\Q...\E` quoting, for one) is INVALID_REGULAR_EXPRESSION here.
/// * The compiled program is capped at `REGEX_SIZE_LIMIT_BYTES`; a larger pattern is invalid.
pub fn compile_regex(regex: &str) -> std::result::Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(REGEX_SIZE_LIMIT_BYTES)
        .build()
}

fn matching_topics(regex: &regex::Regex, topics: &TopicsView) -> BTreeSet<String> {
    topics
        .topics
        .keys()
        .filter(|name| !INTERNAL_TOPICS.contains(&name.as_str()) && regex.is_match(name))
        .cloned()
        .collect()
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`.
fn check_member_epoch(member: &Member, received: i32, owned: Option<&[OwnedTopicPartitions]>) -> Result<()> {
    // Epoch 0: the member (re)joins; valid whatever the known epoch.
    if received == 0 {
        return Ok(());
    }
    if received > member.member_epoch {
        return Err(HeartbeatError::new(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({received}) than the one known by the \
                 group coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.member_epoch
            ),
        ));
    }
    if received < member.member_epoch
        && (received != member.previous_member_epoch || !is_subset(owned, &member.assigned_partitions))
    {
        // The previous epoch is fine if the member owns no more than its assignment: the
        // response that moved it to the new epoch may have been lost.
        return Err(HeartbeatError::new(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a smaller member epoch ({received}) than the one known by the \
                 group coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.member_epoch
            ),
        ));
    }
    Ok(())
}

/// Kafka's `isSubset`: unknown owned partitions (null) are not a subset.
fn is_subset(owned: Option<&[OwnedTopicPartitions]>, assigned: &Assignment) -> bool {
    let Some(owned) = owned else { return false };
    owned.iter().all(|tp| {
        assigned
            .get(&tp.topic_id)
            .is_some_and(|ps| tp.partitions.iter().all(|p| ps.contains(p)))
    })
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
fn reconcile(
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
    match member.state {
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
    }
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

fn response_assignment(assigned: &Assignment) -> hb::Assignment {
    hb::Assignment::default().with_topic_partitions(
        assigned
            .iter()
            .map(|(topic_id, partitions)| {
                hb::TopicPartitions::default()
                    .with_topic_id(*topic_id)
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect(),
    )
}

fn rebalance_timeout(rebalance_timeout_ms: i32) -> Duration {
    Duration::from_millis(rebalance_timeout_ms.max(0) as u64)
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A random member id formatted like Kafka's `Uuid.randomUuid().toString()`: 22 characters of
/// URL-safe base64 without padding.
fn new_member_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

// ----- persistence -----

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
        }
    }

    fn into_member(self) -> Option<Member> {
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
