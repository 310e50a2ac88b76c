//! StreamsGroupHeartbeat: request validation, join, heartbeat and leave (Kafka's
//! `GroupMetadataManager.streamsGroupHeartbeat`), step by step as docs/streams-groups.md §3 lays
//! them out. A heartbeat works on a copy of the group that replaces it only when the request
//! succeeds, so a refused request leaves nothing behind, as Kafka's rollback does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::streams_group_heartbeat_request::{TaskIds as ReqTaskIds, TaskOffset};
use kafka_protocol::messages::streams_group_heartbeat_response::{
    Endpoint, EndpointToPartitions, Status, TaskIds, TopicPartition,
};
use kafka_protocol::messages::{StreamsGroupHeartbeatRequest, StreamsGroupHeartbeatResponse, TopicName};

use super::group::{
    rebalance_timeout, Member, MemberState, StreamsGroup, StreamsGroupConfig, TargetTasks, Tasks, Timers, TopicsView,
};
use kafka_protocol::protocol::StrBytes;

use super::sb;
use super::topology::{self, status, ConfiguredTopology, TopicToCreate, Topology};

/// Member epoch of a member leaving the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch of a static member leaving for a while.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// A refused heartbeat: the code and Kafka's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatError {
    pub error: ResponseError,
    pub message: Option<String>,
}

impl HeartbeatError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        HeartbeatError {
            error,
            message: Some(message.into()),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(ResponseError::InvalidRequest, message)
    }
}

type Result<T> = std::result::Result<T, HeartbeatError>;

/// A heartbeat's result: the response, whether the group must be persisted, and the internal
/// topics the broker should create.
#[derive(Debug)]
pub struct HeartbeatOutcome {
    pub response: StreamsGroupHeartbeatResponse,
    pub changed: bool,
    pub to_create: Vec<TopicToCreate>,
}

/// An error response as Kafka shapes it: no member id, an empty status list, and an acceptable
/// recovery lag of -1.
pub fn error_response(error: ResponseError, message: Option<String>) -> StreamsGroupHeartbeatResponse {
    StreamsGroupHeartbeatResponse::default()
        .with_error_code(error.code())
        .with_error_message(message.map(sb))
        .with_status(Some(Vec::new()))
        .with_acceptable_recovery_lag(-1)
}

/// Kafka's internal topics, which no topology may use.
const INTERNAL_TOPICS: [&str; 3] = ["__consumer_offsets", "__transaction_state", "__share_group_state"];

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn blank(s: &Option<StrBytes>) -> bool {
    s.as_ref().is_some_and(|v| v.trim().is_empty())
}

/// The checks Kafka makes before it looks the group up: the topology's topic names, then the
/// fields (Kafka's `throwIfStreamsGroupHeartbeatRequestIsInvalid`).
pub fn validate_request(req: &StreamsGroupHeartbeatRequest) -> Result<()> {
    if let Some(t) = &req.topology {
        let topology = Topology::from_request(t);
        let names = topology.named_topics();
        let internal: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| INTERNAL_TOPICS.contains(n))
            .collect();
        if !internal.is_empty() {
            return Err(HeartbeatError::new(
                ResponseError::StreamsInvalidTopology,
                format!(
                    "Use of Kafka internal topics {} in a Kafka Streams topology is prohibited.",
                    internal.join(",")
                ),
            ));
        }
        let invalid: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !valid_topic_name(n))
            .collect();
        if !invalid.is_empty() {
            return Err(HeartbeatError::new(
                ResponseError::StreamsInvalidTopology,
                format!("Topic names {} are not valid topic names.", invalid.join(",")),
            ));
        }
        if t.subtopologies.iter().any(|s| !s.source_topic_regex.is_empty()) {
            return Err(HeartbeatError::invalid(
                "Regular expressions for source topics are not supported yet.",
            ));
        }
    }
    if req.member_id.trim().is_empty() {
        return Err(HeartbeatError::invalid("MemberId can't be empty."));
    }
    if req.group_id.trim().is_empty() {
        return Err(HeartbeatError::invalid("GroupId can't be empty."));
    }
    if blank(&req.instance_id) {
        return Err(HeartbeatError::invalid("InstanceId can't be empty."));
    }
    if blank(&req.rack_id) {
        return Err(HeartbeatError::invalid("RackId can't be empty."));
    }
    if req.member_epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return Err(HeartbeatError::invalid(
                "RebalanceTimeoutMs must be provided in first request.",
            ));
        }
        for (name, list) in [
            ("ActiveTasks", &req.active_tasks),
            ("StandbyTasks", &req.standby_tasks),
            ("WarmupTasks", &req.warmup_tasks),
        ] {
            if list.as_ref().is_none_or(|l| !l.is_empty()) {
                return Err(HeartbeatError::invalid(format!(
                    "{name} must be empty when (re-)joining."
                )));
            }
        }
        let Some(t) = &req.topology else {
            return Err(HeartbeatError::invalid("Topology must be non-null when (re-)joining."));
        };
        for s in &t.subtopologies {
            for c in &s.state_changelog_topics {
                if c.partitions != 0 {
                    return Err(HeartbeatError::new(
                        ResponseError::StreamsInvalidTopology,
                        format!(
                            "Changelog topic {} must have an undefined partition count, but it is set to {}.",
                            c.name.as_str(),
                            c.partitions
                        ),
                    ));
                }
            }
        }
    } else if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        if req.instance_id.is_none() {
            return Err(HeartbeatError::invalid("InstanceId can't be null."));
        }
    } else if req.member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return Err(HeartbeatError::invalid(format!(
            "MemberEpoch is {}, but must be greater than or equal to -2.",
            req.member_epoch
        )));
    }
    let lists = [&req.active_tasks, &req.standby_tasks, &req.warmup_tasks];
    if lists.iter().any(|l| l.is_some()) && lists.iter().any(|l| l.is_none()) {
        return Err(HeartbeatError::invalid(
            "If one task-type is non-null, all must be non-null.",
        ));
    }
    if req.member_epoch != 0 && req.topology.is_some() {
        return Err(HeartbeatError::invalid(
            "Topology can only be provided when (re-)joining.",
        ));
    }
    Ok(())
}

fn tasks_from(list: &[ReqTaskIds]) -> Tasks {
    let mut out = Tasks::new();
    for t in list {
        out.entry(t.subtopology_id.to_string())
            .or_default()
            .extend(t.partitions.iter().copied());
    }
    out
}

/// The tasks the request says the member owns, if it listed them.
fn owned_tasks(req: &StreamsGroupHeartbeatRequest) -> Option<TargetTasks> {
    match (&req.active_tasks, &req.standby_tasks, &req.warmup_tasks) {
        (Some(a), Some(s), Some(w)) => Some(TargetTasks {
            active: tasks_from(a),
            standby: tasks_from(s),
            warmup: tasks_from(w),
        }),
        _ => None,
    }
}

fn response_tasks(tasks: &Tasks) -> Vec<TaskIds> {
    tasks
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(s, ps)| {
            TaskIds::default()
                .with_subtopology_id(sb(s.clone()))
                .with_partitions(ps.iter().copied().collect())
        })
        .collect()
}

fn subset(owned: &Tasks, of: &Tasks) -> bool {
    owned
        .iter()
        .all(|(s, ps)| ps.iter().all(|p| of.get(s).is_some_and(|x| x.contains(p))))
}

fn offsets_from(list: &[TaskOffset]) -> Result<Vec<(String, i32, i64)>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for o in list {
        if !seen.insert((o.subtopology_id.to_string(), o.partition)) {
            return Err(HeartbeatError::invalid(format!(
                "Task offsets contain a duplicate entry for subtopology {} and partition {}.",
                o.subtopology_id.as_str(),
                o.partition
            )));
        }
        out.push((o.subtopology_id.to_string(), o.partition, o.offset));
    }
    Ok(out)
}

/// The required topics that exist, with id and partition count.
fn topic_metadata(topology: &Topology, topics: &TopicsView) -> BTreeMap<String, (String, i32)> {
    topology
        .required_topics()
        .into_iter()
        .filter_map(|t| {
            let info = topics.topics.get(&t)?;
            Some((t, (info.topic_id.to_string(), info.partitions)))
        })
        .collect()
}

fn metadata_of(m: &Member) -> impl PartialEq + '_ {
    (
        &m.instance_id,
        &m.rack_id,
        &m.client_id,
        &m.client_host,
        m.rebalance_timeout_ms,
        m.topology_epoch,
        &m.process_id,
        &m.user_endpoint,
        &m.client_tags,
    )
}

impl StreamsGroup {
    fn unknown_member(&self, member_id: &str) -> HeartbeatError {
        HeartbeatError::new(
            ResponseError::UnknownMemberId,
            format!("Member {member_id} is not a member of group {}.", self.group_id),
        )
    }

    fn static_member(&self, instance_id: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    fn static_member_checked(&self, instance_id: &str, member_id: &str) -> Result<Member> {
        let m = self.static_member(instance_id).ok_or_else(|| {
            HeartbeatError::new(
                ResponseError::UnknownMemberId,
                format!("Instance id {instance_id} is unknown."),
            )
        })?;
        if m.member_id != member_id {
            return Err(HeartbeatError::new(
                ResponseError::FencedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance_id} was fenced by member {}.",
                    m.member_id
                ),
            ));
        }
        Ok(m.clone())
    }

    /// A member leaving: epoch -1 (for good) or -2 (a static member, for a while).
    pub fn leave(&mut self, version: i16, req: &StreamsGroupHeartbeatRequest) -> Result<HeartbeatOutcome> {
        let before = self.to_record();
        let mut g = self.clone();
        let member_id = req.member_id.to_string();
        if req.shutdown_application && g.shutdown_requested_by.is_none() {
            g.shutdown_requested_by = Some(member_id.clone());
        }
        match &req.instance_id {
            None => {
                if !g.members.contains_key(&member_id) {
                    return Err(g.unknown_member(&member_id));
                }
                g.fence(&member_id);
            }
            Some(instance) => {
                let member = g.static_member_checked(instance.as_str(), &member_id)?;
                if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    let mut m = member;
                    m.previous_member_epoch = m.member_epoch;
                    m.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
                    m.pending_revocation = Default::default();
                    for ps in m.assigned.active.values_mut() {
                        for e in ps.values_mut() {
                            *e = 0;
                        }
                    }
                    if let Some(t) = g.timers.get_mut(&member_id) {
                        t.rebalance_deadline = None;
                    }
                    g.members.insert(member_id.clone(), m);
                } else {
                    g.fence(&member_id);
                }
            }
        }
        let changed = g.to_record() != before;
        *self = g;
        let mut response = StreamsGroupHeartbeatResponse::default()
            .with_member_id(sb(member_id))
            .with_member_epoch(req.member_epoch)
            .with_status(Some(Vec::new()));
        if version >= 1 {
            response.acceptable_recovery_lag = -1;
        }
        Ok(HeartbeatOutcome {
            response,
            changed,
            to_create: Vec::new(),
        })
    }

    /// A join (epoch 0) or a heartbeat. `created` says the handler made the group for this
    /// request.
    #[allow(clippy::too_many_arguments)]
    pub fn heartbeat(
        &mut self,
        version: i16,
        req: &StreamsGroupHeartbeatRequest,
        client_id: &str,
        client_host: &str,
        topics: &TopicsView,
        cfg: &StreamsGroupConfig,
        now: Instant,
        now_ms: i64,
        created: bool,
    ) -> Result<HeartbeatOutcome> {
        let before = self.to_record();
        let mut g = self.clone();
        let member_id = req.member_id.to_string();
        let joining = req.member_epoch == 0;
        let instance_id = req.instance_id.as_ref().map(|s| s.to_string());
        let was_empty = g.members.is_empty();

        // 1-2. The member.
        if joining {
            let static_owner = instance_id.as_deref().and_then(|i| g.static_member(i)).is_some();
            if !static_owner && g.members.len() >= cfg.max_size && !g.members.contains_key(&member_id) {
                return Err(HeartbeatError::new(
                    ResponseError::GroupMaxSizeReached,
                    format!(
                        "The streams group has reached its maximum capacity of {} members.",
                        cfg.max_size
                    ),
                ));
            }
        }
        let mut recompute = false;
        let old: Member = match (&instance_id, joining) {
            (None, true) => g
                .members
                .get(&member_id)
                .cloned()
                .unwrap_or_else(|| Member::new(&member_id)),
            (None, false) => g
                .members
                .get(&member_id)
                .cloned()
                .ok_or_else(|| g.unknown_member(&member_id))?,
            (Some(instance), true) => match g.static_member(instance).cloned() {
                None => Member::new(&member_id),
                Some(owner) if owner.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
                    return Err(HeartbeatError::new(
                        ResponseError::UnreleasedInstanceId,
                        format!(
                            "Static member {member_id} with instance id {instance} cannot join the group because \
                             the instance id is owned by {} member.",
                            owner.member_id
                        ),
                    ));
                }
                Some(owner) => {
                    // The new member id takes the old one's place, tasks and target.
                    let mut replaced = owner.clone();
                    replaced.member_id = member_id.clone();
                    replaced.member_epoch = 0;
                    replaced.previous_member_epoch = 0;
                    g.members.remove(&owner.member_id);
                    g.timers.remove(&owner.member_id);
                    if let Some(t) = g.target.remove(&owner.member_id) {
                        g.target.insert(member_id.clone(), t);
                    }
                    g.members.insert(member_id.clone(), replaced.clone());
                    replaced
                }
            },
            (Some(instance), false) => g.static_member_checked(instance, &member_id)?,
        };
        let owned = owned_tasks(req);
        if !joining {
            let (r, e, p) = (req.member_epoch, old.member_epoch, old.previous_member_epoch);
            if r > e {
                return Err(HeartbeatError::new(
                    ResponseError::FencedMemberEpoch,
                    format!(
                        "The streams group member has a greater member epoch ({r}) than the one known by the group \
                         coordinator ({e}). The member must abandon all its partitions and rejoin."
                    ),
                ));
            }
            if r < e {
                let ok = r == p
                    && owned.as_ref().is_some_and(|o| {
                        subset(&o.active, &old.assigned.active_tasks())
                            && subset(&o.standby, &old.assigned.standby)
                            && subset(&o.warmup, &old.assigned.warmup)
                    });
                if !ok {
                    return Err(HeartbeatError::new(
                        ResponseError::FencedMemberEpoch,
                        format!(
                            "The streams group member has a smaller member epoch ({r}) than the one known by the \
                             group coordinator ({e}). The member must abandon all its partitions and rejoin."
                        ),
                    ));
                }
            }
        }

        // 3-4. The member's metadata.
        let mut member = old.clone();
        if let Some(i) = &instance_id {
            member.instance_id = Some(i.clone());
        }
        if let Some(r) = &req.rack_id {
            member.rack_id = Some(r.to_string());
        }
        if let Some(p) = &req.process_id {
            member.process_id = p.to_string();
        }
        if let Some(tags) = &req.client_tags {
            member.client_tags = tags
                .iter()
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect();
        }
        if req.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(t) = &req.topology {
            member.topology_epoch = t.epoch;
        }
        member.client_id = client_id.to_string();
        member.client_host = client_host.to_string();
        let endpoint = req.user_endpoint.as_ref().map(|e| (e.host.to_string(), e.port));
        if joining || endpoint.is_some() {
            member.user_endpoint = endpoint;
        }
        if metadata_of(&member) != metadata_of(&old) {
            let static_change = member.topology_epoch != old.topology_epoch
                || member.rack_id != old.rack_id
                || member.client_tags != old.client_tags
                || member.process_id != old.process_id;
            if member.instance_id.is_none() || static_change {
                recompute = true;
            }
        }

        // 5. The topology.
        let mut statuses: Vec<(i8, String)> = Vec::new();
        let mut installed = false;
        if let Some(t) = &req.topology {
            let sent = Topology::from_request(t);
            match &g.topology {
                None => {
                    if sent.epoch < 0 {
                        return Err(HeartbeatError {
                            error: ResponseError::UnknownServerError,
                            message: None,
                        });
                    }
                    g.topology = Some(sent);
                    installed = true;
                }
                Some(stored) if stored.epoch > sent.epoch => {}
                Some(stored) if *stored != sent => {
                    return Err(HeartbeatError::invalid("Topology updates are not supported yet."));
                }
                Some(_) => {}
            }
        }
        let topology = g.topology.clone().ok_or(HeartbeatError {
            error: ResponseError::UnknownServerError,
            message: None,
        })?;
        if topology.epoch > member.topology_epoch {
            statuses.push((
                status::STALE_TOPOLOGY,
                format!(
                    "The member's topology epoch {} is behind the group's topology epoch {}.",
                    member.topology_epoch, topology.epoch
                ),
            ));
        }

        // 6. Configure the topology when it is new, unknown here, or its topics changed.
        let metadata = topic_metadata(&topology, topics);
        let metadata_changed = metadata != g.topic_metadata;
        if metadata_changed {
            recompute = true;
        }
        if installed || g.configured.is_none() || metadata_changed {
            let configured = topology::configure(&topology, topics)
                .map_err(|m| HeartbeatError::new(ResponseError::StreamsInvalidTopology, m))?;
            g.configured = Some(configured);
        }
        let configured: ConfiguredTopology = g.configured.clone().expect("configured above");

        // 7. Owned tasks must exist in a ready topology.
        let validated_epoch = if configured.is_ready() {
            if let Some(o) = &owned {
                for tasks in [&o.active, &o.standby, &o.warmup] {
                    for (s, ps) in tasks {
                        let Some(sub) = configured.subtopologies.get(s) else {
                            return Err(HeartbeatError::invalid(format!(
                                "Subtopology {s} does not exist in the topology."
                            )));
                        };
                        if let Some(p) = ps.iter().find(|p| **p < 0 || **p >= sub.num_tasks) {
                            return Err(HeartbeatError::invalid(format!(
                                "Task {p} for subtopology {s} is invalid. Number of tasks for this subtopology: {}",
                                sub.num_tasks
                            )));
                        }
                    }
                }
            }
            topology.epoch
        } else {
            -1
        };

        // 8. Reported task offsets.
        if let Some(list) = &req.task_offsets {
            member.task_offsets = offsets_from(list)?;
        }
        if let Some(list) = &req.task_end_offsets {
            member.task_end_offsets = offsets_from(list)?;
        }

        // 9-12. The group epoch.
        if validated_epoch != g.validated_topology_epoch {
            recompute = true;
        }
        let configs = cfg.assignment_configs();
        if configs != g.last_assignment_configs {
            recompute = true;
        }
        if recompute {
            g.group_epoch += 1;
            g.topic_metadata = metadata;
            g.validated_topology_epoch = validated_epoch;
            g.last_assignment_configs = configs;
        }
        g.members.insert(member_id.clone(), member.clone());

        // 13. The initial rebalance delay starts with the first member.
        if was_empty && cfg.initial_rebalance_delay_ms > 0 && g.delay_until.is_none() {
            g.delay_until = Some(now + Duration::from_millis(cfg.initial_rebalance_delay_ms as u64));
        }

        // 14. The target assignment.
        let delayed = g.delay_until.is_some_and(|until| now < until);
        let mut view = None;
        if delayed {
            statuses.push((
                status::ASSIGNMENT_DELAYED,
                "Assignment delayed due to the configured initial rebalance delay.".into(),
            ));
            let mut v = g.clone();
            v.target.insert(member_id.clone(), TargetTasks::default());
            view = Some(v);
        } else if g.assignment_epoch < g.group_epoch {
            let interval = cfg.assignment_interval_ms as i64;
            if g.assignment_timestamp_ms != 0 && interval > 0 && now_ms < g.assignment_timestamp_ms + interval {
                statuses.push((
                    status::ASSIGNMENT_DELAYED,
                    "Assignment delayed due to the configured assignment interval.".into(),
                ));
            } else if let Err(e) = g.compute_target(None, cfg.num_standby_replicas, now_ms) {
                tracing::error!(group = %g.group_id, epoch = g.group_epoch, error = %e, "Failed to compute a new target assignment");
                return Err(HeartbeatError {
                    error: ResponseError::UnknownServerError,
                    message: None,
                });
            }
        }

        // 15. Reconcile.
        let reconciled = view.as_ref().unwrap_or(&g).reconcile(&member, owned.as_ref())?;
        let assigned_changed = reconciled.assigned != old.assigned;
        if reconciled.user_endpoint != old.user_endpoint
            || (reconciled.assigned != member.assigned && reconciled.user_endpoint.is_some())
        {
            g.endpoint_epoch += 1;
        }
        let rebalance_deadline = (reconciled.state == MemberState::UnrevokedTasks).then(|| {
            let same = member.state == MemberState::UnrevokedTasks && member.member_epoch == reconciled.member_epoch;
            match g.timers.get(&member_id).and_then(|t| t.rebalance_deadline) {
                Some(d) if same => d,
                _ => (
                    now + rebalance_timeout(reconciled.rebalance_timeout_ms),
                    reconciled.member_epoch,
                ),
            }
        });
        g.members.insert(member_id.clone(), reconciled.clone());

        // 16-17. Session, shutdown.
        g.timers.insert(
            member_id.clone(),
            Timers {
                session_deadline: now + Duration::from_millis(cfg.session_timeout_ms.max(0) as u64),
                rebalance_deadline,
            },
        );
        if req.shutdown_application && g.shutdown_requested_by.is_none() {
            g.shutdown_requested_by = Some(member_id.clone());
        }
        if created {
            g.endpoint_epoch = 0;
        }

        // 18. The response.
        if let Some(problem) = &configured.problem {
            statuses.push(problem.clone());
        }
        if let Some(by) = &g.shutdown_requested_by {
            statuses.push((
                status::SHUTDOWN_APPLICATION,
                format!(
                    "Streams group member {by} encountered a fatal error and requested a shutdown for the entire \
                     application."
                ),
            ));
        }
        if version >= 1 && !cfg.rack_aware_assignment_tags.is_empty() {
            let missing: Vec<&str> = cfg
                .rack_aware_assignment_tags
                .iter()
                .filter(|t| !reconciled.client_tags.contains_key(*t))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                statuses.push((
                    status::MISSING_CLIENT_TAGS,
                    format!(
                        "Missing required client tags for rack-aware standby assignment: [{}]. Configure them via \
                         'client.tag.<tagKey>' in your Streams config.",
                        missing.join(", ")
                    ),
                ));
            }
        }
        let mut response = StreamsGroupHeartbeatResponse::default()
            .with_member_id(sb(member_id.clone()))
            .with_member_epoch(reconciled.member_epoch)
            .with_heartbeat_interval_ms(cfg.heartbeat_interval_ms)
            .with_task_offset_interval_ms(cfg.task_offset_interval_ms)
            .with_endpoint_information_epoch(g.endpoint_epoch)
            .with_status(Some(
                statuses
                    .into_iter()
                    .map(|(code, detail)| Status::default().with_status_code(code).with_status_detail(sb(detail)))
                    .collect(),
            ));
        if version >= 1 {
            response.acceptable_recovery_lag = cfg.acceptable_recovery_lag;
        }
        if joining || assigned_changed {
            response.active_tasks = Some(response_tasks(&reconciled.assigned.active_tasks()));
            response.standby_tasks = Some(response_tasks(&reconciled.assigned.standby));
            response.warmup_tasks = Some(response_tasks(&reconciled.assigned.warmup));
        }
        if req.endpoint_information_epoch != g.endpoint_epoch {
            response.partitions_by_user_endpoint = Some(g.endpoints(&configured, topics));
        }
        let to_create = match &configured.problem {
            Some((code, _)) if *code == status::MISSING_INTERNAL_TOPICS => configured.to_create.clone(),
            _ => Vec::new(),
        };
        let changed = g.to_record() != before;
        *self = g;
        Ok(HeartbeatOutcome {
            response,
            changed,
            to_create,
        })
    }

    /// Every member with a user endpoint and the partitions its tasks read. Without a
    /// configured topology the lists are empty (Kafka 4.4 fails the heartbeat there instead,
    /// which kills an application with `application.server` set while its topics are missing).
    fn endpoints(&self, configured: &ConfiguredTopology, topics: &TopicsView) -> Vec<EndpointToPartitions> {
        let partitions = |tasks: &Tasks| -> Vec<TopicPartition> {
            let mut by_topic: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
            for (s, ps) in tasks {
                let Some(sub) = configured.subtopologies.get(s) else {
                    continue;
                };
                let inputs = sub
                    .source_topics
                    .iter()
                    .map(|t| (t.as_str(), topics.topics.get(t).map_or(0, |i| i.partitions)))
                    .chain(sub.repartition_source_topics.iter().map(|(t, (n, _))| (t.as_str(), *n)));
                for (topic, count) in inputs {
                    let chosen: BTreeSet<i32> = ps.iter().copied().filter(|p| *p < count).collect();
                    if !chosen.is_empty() {
                        by_topic.entry(topic).or_default().extend(chosen);
                    }
                }
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicPartition::default()
                        .with_topic(TopicName(sb(t)))
                        .with_partitions(ps.into_iter().collect())
                })
                .collect()
        };
        self.members
            .values()
            .filter_map(|m| {
                let (host, port) = m.user_endpoint.as_ref()?;
                let mut standby = m.assigned.standby.clone();
                for (s, ps) in &m.assigned.warmup {
                    standby.entry(s.clone()).or_default().extend(ps.iter().copied());
                }
                Some(
                    EndpointToPartitions::default()
                        .with_user_endpoint(Endpoint::default().with_host(sb(host.clone())).with_port(*port))
                        .with_active_partitions(partitions(&m.assigned.active_tasks()))
                        .with_standby_partitions(partitions(&standby)),
                )
            })
            .collect()
    }
}
