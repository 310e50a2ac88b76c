//! The group's state: members, epochs, subscriptions and the target assignment. Its fields are
//! open to the sibling modules, each of which owns one way of changing or reading it
//! (heartbeats, reconciliation, the record); outside `consumer` only the methods are visible.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::{GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::heartbeat::{HeartbeatError, Result};
use super::reconcile::MemberState;
use super::str_bytes;
use crate::group::assignor::{self, Assignment, MemberSpec};

/// Kafka's default `group.consumer.session.timeout.ms`.
pub const DEFAULT_SESSION_TIMEOUT_MS: i32 = 45_000;
/// Kafka's default `group.consumer.heartbeat.interval.ms`.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: i32 = 5_000;
/// Topics a regex subscription never matches (see the [module docs](super)).
pub const INTERNAL_TOPICS: [&str; 3] = ["__consumer_offsets", "__transaction_state", "__share_group_state"];
/// Cap on the compiled size of one subscription regex. The pattern comes from the client, so
/// without a cap a single heartbeat could make the broker allocate without bound; 1 MiB is far
/// above any realistic topic pattern.
const REGEX_SIZE_LIMIT_BYTES: usize = 1 << 20;

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

/// One member of a consumer group. Read-only outside `consumer`.
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
    /// For each partition in `assigned_partitions` or `partitions_pending_revocation`, the
    /// member epoch at which the member received it. An offset commit at an older epoch is
    /// still accepted for a partition the member already had then (Kafka's assignment-epoch
    /// validator), which is what lets a commit racing a rebalance succeed.
    pub assignment_epochs: BTreeMap<(Uuid, i32), i32>,
}

impl Member {
    pub(super) fn new(member_id: String) -> Self {
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
            assignment_epochs: BTreeMap::new(),
        }
    }

    /// The epoch at which the member received a partition it owns, assigned or pending
    /// revocation; `None` if it owns no such partition.
    pub fn assignment_epoch(&self, topic_id: Uuid, partition: i32) -> Option<i32> {
        let owns = |a: &Assignment| a.get(&topic_id).is_some_and(|ps| ps.contains(&partition));
        if !owns(&self.assigned_partitions) && !owns(&self.partitions_pending_revocation) {
            return None;
        }
        Some(
            self.assignment_epochs
                .get(&(topic_id, partition))
                .copied()
                .unwrap_or(self.member_epoch),
        )
    }

    /// Kafka's `isReconciledTo`: stable at the given target epoch.
    pub fn is_reconciled_to(&self, target_epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == target_epoch
    }
}

/// Timers of one member. Not persisted: a loaded group restarts them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timers {
    /// The session expires `session_timeout_ms` after this.
    pub(super) last_heartbeat: Instant,
    /// Set while the member is in `UnrevokedPartitions`: if it is still at this epoch at the
    /// deadline, it is fenced (Kafka's rebalance timeout).
    pub(super) rebalance_deadline: Option<(Instant, i32)>,
}

/// A KIP-848 consumer group. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub(super) group_id: String,
    /// Bumped on every change that requires a new target assignment.
    pub(super) group_epoch: i32,
    /// The group epoch at which `target` was computed; never ahead of `group_epoch`.
    pub(super) assignment_epoch: i32,
    /// Target assignment per member id. Members without partitions may have no entry.
    pub(super) target: BTreeMap<String, Assignment>,
    pub(super) members: BTreeMap<String, Member>,
    /// Subscribed topics (by name or resolved regex) that exist, with id and partition count,
    /// as of the last epoch bump. A difference with the cluster's topics bumps the epoch.
    pub(super) subscription_metadata: BTreeMap<String, TopicInfo>,
    /// The topics each subscribed regex matched, as of the last heartbeat.
    pub(super) resolved_regexes: BTreeMap<String, BTreeSet<String>>,
    /// The assignor that computed `target`; what Describe reports when no member asks for one.
    pub(super) last_assignor: Option<String>,
    pub(super) timers: HashMap<String, Timers>,
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
    /// the member must exist (UNKNOWN_MEMBER_ID). Its current epoch is accepted; a newer one is
    /// STALE_MEMBER_EPOCH; an older one is accepted only if the member received every committed
    /// partition (`partitions`, by topic id) at or before that epoch, so that a commit sent
    /// just before a rebalance moved the member on still lands. Kafka also requires
    /// OffsetCommit v9+ from such members for non-transactional commits (UNSUPPORTED_VERSION);
    /// that check is the caller's.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        partitions: impl IntoIterator<Item = (Uuid, i32)>,
    ) -> std::result::Result<(), ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch == member.member_epoch {
            return Ok(());
        }
        if member_epoch > member.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        for (topic_id, partition) in partitions {
            match member.assignment_epoch(topic_id, partition) {
                Some(assigned_at) if member_epoch >= assigned_at => {}
                _ => return Err(ResponseError::StaleMemberEpoch),
            }
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
        crate::group::validate_member_fetch(member_id, member_epoch, |m| self.members.get(m).map(|m| m.member_epoch))
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

    /// Removes a member (leave, session or rebalance timeout) and bumps the group epoch so that
    /// its partitions are reassigned. Kafka's `consumerGroupFenceMember`.
    pub(super) fn fence_member(&mut self, member_id: &str) {
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

    pub(super) fn compiled_regex(&mut self, regex: &str) -> Result<&regex::Regex> {
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
    pub(super) fn refresh_subscription_metadata(&mut self, topics: &TopicsView) -> bool {
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
    pub(super) fn subscribed_topic_ids(&self, member: &Member, topics: &TopicsView) -> BTreeSet<Uuid> {
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
    pub(super) fn compute_target_assignment(&mut self, topics: &TopicsView, cfg: &ConsumerGroupConfig) {
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
    pub(super) fn partition_epochs(&self) -> HashMap<(Uuid, i32), i32> {
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
    pub(super) fn partitions_have_single_owner(&self) -> bool {
        let mut seen = BTreeSet::new();
        self.members.values().all(|m| {
            [&m.assigned_partitions, &m.partitions_pending_revocation]
                .into_iter()
                .flat_map(|a| a.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p))))
                .all(|tp| seen.insert(tp))
        })
    }
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

pub(super) fn rebalance_timeout(rebalance_timeout_ms: i32) -> Duration {
    Duration::from_millis(rebalance_timeout_ms.max(0) as u64)
}

#[cfg(test)]
mod tests;
