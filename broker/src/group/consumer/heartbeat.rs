//! ConsumerGroupHeartbeat: request validation, joining and leaving, epoch fencing, and the
//! response. Everything a request may be refused for is checked before the group is touched.

use std::time::Instant;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopicPartitions;
use kafka_protocol::messages::consumer_group_heartbeat_response as hb;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::group::{rebalance_timeout, ConsumerGroup, ConsumerGroupConfig, Member, Timers, TopicsView};
use super::reconcile::{reconcile, MemberState};
use super::str_bytes;
use crate::group::assignor::Assignment;

/// Member epoch with which a member leaves the group for good (`LEAVE_GROUP_MEMBER_EPOCH`).
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch with which a static member leaves temporarily, keeping its assignment for its
/// session timeout (`LEAVE_GROUP_STATIC_MEMBER_EPOCH`).
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;
/// From this ConsumerGroupHeartbeat version the client generates its member id, so the id must
/// be non-empty on every request (Kafka's `CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION`).
pub const CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION: i16 = 1;

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
    pub(super) fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
        }
    }
}

pub(super) type Result<T> = std::result::Result<T, HeartbeatError>;

impl ConsumerGroup {
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

#[cfg(test)]
mod tests;
