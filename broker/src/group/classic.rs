//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup): one group's
//! state machine, as Kafka's `ClassicGroup` and `GroupMetadataManager` run it.
//!
//! States: `Empty` -> `PreparingRebalance` (members (re)join) -> `CompletingRebalance`
//! (the leader computes the assignment and sends it with SyncGroup) -> `Stable`. A member
//! joining, leaving, changing its protocols or missing its session timeout sends the group
//! back to `PreparingRebalance`.
//!
//! Nothing here does IO or waits: JoinGroup and SyncGroup requests that must wait for the
//! rest of the group leave a oneshot sender in their member, and whatever completes them
//! (another member's request, a timer) puts the responses in [`ClassicGroup::outbox`]; the
//! coordinator persists the group when [`ClassicGroup::dirty`] says so and only then sends
//! them, so no member learns an assignment that a crash could forget.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ConsumerProtocolSubscription, JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::GroupConfig;

/// Protocol type of Kafka consumers (the one type whose metadata the coordinator reads).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A classic group's state, named as Kafka names it in DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    /// No members (offsets may remain).
    Empty,
    /// Members are (re)joining.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Everyone has an assignment.
    Stable,
}

impl ClassicState {
    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

/// A response that must be sent, after the group is persisted if it is dirty.
pub enum Delivery {
    /// To a waiting JoinGroup.
    Join(oneshot::Sender<JoinGroupResponse>, JoinGroupResponse),
    /// To a waiting SyncGroup.
    Sync(oneshot::Sender<SyncGroupResponse>, SyncGroupResponse),
}

impl Delivery {
    /// Sends it (a client that went away is not an error).
    pub fn send(self) {
        match self {
            Delivery::Join(tx, r) => drop(tx.send(r)),
            Delivery::Sync(tx, r) => drop(tx.send(r)),
        }
    }

    /// Turns it into an error answer (used when persisting the group failed).
    pub fn fail(self, error: ResponseError) -> Self {
        match self {
            Delivery::Join(tx, r) => Delivery::Join(tx, r.with_error_code(error.code())),
            Delivery::Sync(tx, r) => Delivery::Sync(tx, r.with_error_code(error.code()).with_assignment(Bytes::new())),
        }
    }
}

/// An answer now, or one to wait for.
pub enum Answer<T> {
    /// Ready.
    Now(T),
    /// Completed when the rest of the group catches up.
    Later(oneshot::Receiver<T>),
}

/// One member of a classic group.
#[derive(Debug)]
pub struct Member {
    /// The id the coordinator gave it.
    pub id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Its `client.id`.
    pub client_id: String,
    /// Its address, as Kafka shows it (`/127.0.0.1`).
    pub client_host: String,
    /// How long the group waits for it to rejoin during a rebalance.
    pub rebalance_timeout_ms: i32,
    /// How long it may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// Its protocols, in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// What the leader assigned it in the current generation.
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinGroupResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncGroupResponse>>,
    deadline: Instant,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn touch(&mut self, now: Instant) {
        self.deadline = now + Duration::from_millis(self.session_timeout_ms.max(0) as u64);
    }
}

/// What a JoinGroup asks, decoded.
pub struct JoinInput {
    /// Request version (v4+ requires a known member id, KIP-394).
    pub version: i16,
    /// Member id, empty on a first join.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// `client.id` of the request.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v0: the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Protocol type ("consumer", "connect", ...).
    pub protocol_type: String,
    /// Protocols with metadata.
    pub protocols: Vec<(String, Bytes)>,
}

/// What a SyncGroup asks, decoded.
pub struct SyncInput {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// The generation the member believes in.
    pub generation: i32,
    /// v5+: the protocol type the member believes in.
    pub protocol_type: Option<String>,
    /// v5+: the protocol name the member believes in.
    pub protocol_name: Option<String>,
    /// The leader's assignment, by member id.
    pub assignments: Vec<(String, Bytes)>,
}

/// One classic group.
pub struct ClassicGroup {
    /// The group id, for logs.
    pub id: String,
    state: ClassicState,
    /// Wall-clock ms of the last state change (offset expiry of empty groups counts from it).
    pub state_since_ms: i64,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    generation: i32,
    leader: Option<String>,
    members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to come back by.
    pending: HashMap<String, Instant>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    join_deadline: Option<Instant>,
    /// Set during the delayed first rebalance of an empty group: how much of the rebalance
    /// timeout is left for further delays.
    initial_remaining_ms: Option<u64>,
    new_member_added: bool,
    /// Members that joined this generation but have not sent SyncGroup yet.
    pending_sync: HashSet<String>,
    sync_deadline: Option<Instant>,
    /// Responses to send once the group is persisted.
    pub outbox: Vec<Delivery>,
    /// Whether the persisted record is out of date.
    pub dirty: bool,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_error(member_id: &str, error: ResponseError) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error.code())
        .with_generation_id(-1)
        .with_member_id(s(member_id))
        .with_leader(s(""))
}

fn sync_error(error: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error.code())
}

impl ClassicGroup {
    /// A new, empty group.
    pub fn new() -> Self {
        ClassicGroup {
            id: String::new(),
            state: ClassicState::Empty,
            state_since_ms: crate::txn::now_ms(),
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            join_deadline: None,
            initial_remaining_ms: None,
            new_member_added: false,
            pending_sync: HashSet::new(),
            sync_deadline: None,
            outbox: Vec::new(),
            dirty: false,
        }
    }

    /// Current state.
    pub fn state(&self) -> ClassicState {
        self.state
    }

    /// Current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Protocol type, `None` for a simple (commit-only) group.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol chosen for the current generation.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// Members in join order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Whether a member with this id is in the group.
    pub fn has_member(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    fn set_state(&mut self, state: ClassicState) {
        self.state = state;
        self.state_since_ms = crate::txn::now_ms();
    }

    /// Topics the members subscribe to, when the group runs the consumer protocol and its
    /// metadata parses (as Kafka's `computeSubscribedTopics`); `None` when unknown.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let meta = m.metadata(protocol);
            if meta.len() < 2 {
                return None;
            }
            // A version prefix, then the v0 layout that every later version extends.
            let mut buf = meta.slice(2..);
            let sub = ConsumerProtocolSubscription::decode(&mut buf, 0).ok()?;
            topics.extend(sub.topics.into_iter().map(|t| t.to_string()));
        }
        Some(topics)
    }

    /// Whether OffsetDelete must refuse a topic (GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        if self.state == ClassicState::Empty {
            return false;
        }
        match self.subscribed_topics() {
            Some(t) => t.contains(topic),
            None => self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE),
        }
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == ClassicState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&String> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == *n)))
            .collect();
        let mut votes: Vec<(&String, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| *c == name) {
                    v.1 += 1;
                }
            }
        }
        // Most votes; ties go to the first member's preference.
        let best = votes.iter().map(|(_, v)| *v).max()?;
        votes.into_iter().find(|(_, v)| *v == best).map(|(c, _)| c.clone())
    }

    fn max_rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    fn is_full(&self, cfg: &GroupConfig) -> bool {
        self.members.len() >= cfg.max_size
    }

    /// JoinGroup. Group-level checks (group id, session timeout bounds) are the caller's.
    pub fn join(&mut self, cfg: &GroupConfig, input: JoinInput, now: Instant) -> Answer<JoinGroupResponse> {
        if input.member_id.is_empty() {
            self.join_unknown(cfg, input, now)
        } else {
            self.join_known(cfg, input, now)
        }
    }

    fn join_unknown(&mut self, cfg: &GroupConfig, input: JoinInput, now: Instant) -> Answer<JoinGroupResponse> {
        if !self.supports(&input.protocol_type, &input.protocols) {
            return Answer::Now(join_error("", ResponseError::InconsistentGroupProtocol));
        }
        let uuid = uuid::Uuid::new_v4();
        if let Some(iid) = input.instance_id.clone() {
            if let Some(old) = self.static_members.get(&iid).cloned() {
                return self.replace_static_member(cfg, old, format!("{iid}-{uuid}"), input, now);
            }
            if self.is_full(cfg) {
                return Answer::Now(join_error("", ResponseError::GroupMaxSizeReached));
            }
            let id = format!("{iid}-{uuid}");
            return self.add_member_and_rebalance(cfg, id, input, now);
        }
        if self.is_full(cfg) {
            return Answer::Now(join_error("", ResponseError::GroupMaxSizeReached));
        }
        let id = format!("{}-{uuid}", input.client_id);
        if input.version >= 4 {
            // KIP-394: hand out the id and make the client come back with it, so a client
            // that retries a timed-out first join does not leave a ghost member behind.
            self.pending.insert(
                id.clone(),
                now + Duration::from_millis(input.session_timeout_ms.max(0) as u64),
            );
            return Answer::Now(join_error(&id, ResponseError::MemberIdRequired));
        }
        self.add_member_and_rebalance(cfg, id, input, now)
    }

    fn join_known(&mut self, cfg: &GroupConfig, input: JoinInput, now: Instant) -> Answer<JoinGroupResponse> {
        let id = input.member_id.clone();
        if self.pending.remove(&id).is_some() {
            if !self.supports(&input.protocol_type, &input.protocols) {
                return Answer::Now(join_error(&id, ResponseError::InconsistentGroupProtocol));
            }
            if self.is_full(cfg) {
                return Answer::Now(join_error(&id, ResponseError::GroupMaxSizeReached));
            }
            return self.add_member_and_rebalance(cfg, id, input, now);
        }
        if let Err(e) = self.validate_member(&id, input.instance_id.as_deref()) {
            return Answer::Now(join_error(&id, e));
        }
        if !self.supports(&input.protocol_type, &input.protocols) {
            return Answer::Now(join_error(&id, ResponseError::InconsistentGroupProtocol));
        }
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let same = self
            .members
            .get(&id)
            .is_some_and(|m| m.same_protocols(&input.protocols));
        match self.state {
            ClassicState::PreparingRebalance => self.update_member_and_wait(cfg, &id, input, now),
            ClassicState::CompletingRebalance if same => {
                // The member lost the join response: send it again.
                Answer::Now(self.join_response_for(&id))
            }
            ClassicState::Stable if same && !is_leader => Answer::Now(self.join_response_for(&id)),
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                tracing::debug!(group = %self.id, member = %id, is_leader, same, state = self.state.name(), "known member rejoined");
                let answer = self.update_member_and_wait(cfg, &id, input, now);
                self.prepare_rebalance(cfg, now, "member changed its protocols or the leader rejoined");
                answer
            }
            ClassicState::Empty => Answer::Now(join_error(&id, ResponseError::UnknownMemberId)),
        }
    }

    fn update_member_and_wait(
        &mut self,
        cfg: &GroupConfig,
        id: &str,
        input: JoinInput,
        now: Instant,
    ) -> Answer<JoinGroupResponse> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id) {
            m.protocols = input.protocols;
            m.rebalance_timeout_ms = input.rebalance_timeout_ms;
            m.session_timeout_ms = input.session_timeout_ms;
            m.client_id = input.client_id;
            m.client_host = input.client_host;
            m.join_waiter = Some(tx);
            m.touch(now);
        }
        self.try_complete_join(cfg, now);
        Answer::Later(rx)
    }

    fn add_member_and_rebalance(
        &mut self,
        cfg: &GroupConfig,
        id: String,
        input: JoinInput,
        now: Instant,
    ) -> Answer<JoinGroupResponse> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(input.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if let Some(iid) = &input.instance_id {
            self.static_members.insert(iid.clone(), id.clone());
        }
        let mut member = Member {
            id: id.clone(),
            instance_id: input.instance_id,
            client_id: input.client_id,
            client_host: input.client_host,
            rebalance_timeout_ms: input.rebalance_timeout_ms,
            session_timeout_ms: input.session_timeout_ms,
            protocols: input.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(tx),
            sync_waiter: None,
            deadline: now,
        };
        member.touch(now);
        self.members.insert(id, member);
        self.new_member_added = true;
        match self.state {
            ClassicState::PreparingRebalance => self.try_complete_join(cfg, now),
            _ => self.prepare_rebalance(cfg, now, "a member joined"),
        }
        Answer::Later(rx)
    }

    fn replace_static_member(
        &mut self,
        cfg: &GroupConfig,
        old_id: String,
        new_id: String,
        input: JoinInput,
        now: Instant,
    ) -> Answer<JoinGroupResponse> {
        let Some(mut member) = self.members.shift_remove(&old_id) else {
            return Answer::Now(join_error("", ResponseError::UnknownMemberId));
        };
        // The old incarnation's waiting requests are fenced.
        if let Some(tx) = member.join_waiter.take() {
            self.outbox
                .push(Delivery::Join(tx, join_error(&old_id, ResponseError::FencedInstanceId)));
        }
        if let Some(tx) = member.sync_waiter.take() {
            self.outbox
                .push(Delivery::Sync(tx, sync_error(ResponseError::FencedInstanceId)));
        }
        let leader_before = self.leader.clone();
        member.protocols = input.protocols.clone();
        member.id = new_id.clone();
        member.rebalance_timeout_ms = input.rebalance_timeout_ms;
        member.session_timeout_ms = input.session_timeout_ms;
        member.client_id = input.client_id.clone();
        member.client_host = input.client_host.clone();
        member.touch(now);
        if self.pending_sync.remove(&old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if let Some(iid) = &member.instance_id {
            self.static_members.insert(iid.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        if self.state == ClassicState::Stable && self.select_protocol() == self.protocol_name {
            // KIP-345: a static member coming back with the same protocols gets its old
            // assignment under the new id; nobody else rebalances.
            self.dirty = true;
            let resp = if input.version >= 9 {
                // KIP-814: a returning leader gets the members but must not reassign.
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                let mut r = self.join_response_for(&new_id).with_skip_assignment(is_leader);
                if !is_leader {
                    r.members.clear();
                }
                r
            } else {
                // Older clients cannot be told to skip the assignment: like Kafka, answer as
                // to a follower, naming the leader as it was, so the returning member does
                // not compute an assignment (and then rejoin to apply it).
                let mut r = self.join_response_for(&new_id);
                r.members.clear();
                r.leader = s(leader_before.as_deref().unwrap_or(""));
                r
            };
            return Answer::Now(resp);
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&new_id) {
            m.join_waiter = Some(tx);
        }
        match self.state {
            // The old id may already be in the leader's assignment: rebalance so that the
            // new id gets one (Kafka does the same).
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.prepare_rebalance(cfg, now, "a static member rejoined")
            }
            _ => self.try_complete_join(cfg, now),
        }
        Answer::Later(rx)
    }

    /// The JoinGroup response of the current generation for one member.
    fn join_response_for(&self, id: &str) -> JoinGroupResponse {
        let is_leader = self.leader.as_deref() == Some(id);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if is_leader {
            self.members
                .values()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(&m.id))
                        .with_group_instance_id(m.instance_id.as_deref().map(s))
                        .with_metadata(m.metadata(&protocol))
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.as_deref().map(s))
            .with_protocol_name(self.protocol_name.as_deref().map(s))
            .with_leader(s(self.leader.as_deref().unwrap_or("")))
            .with_member_id(s(id))
            .with_members(members)
    }

    /// Who may commit offsets to this group (Kafka's `ClassicGroup.validateOffsetCommit`).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let empty = self.state == ClassicState::Empty;
        if generation < 0 && empty {
            // The admin client, or a consumer that assigns partitions itself.
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if !empty {
            return Err(ResponseError::UnknownMemberId);
        }
        if self.state == ClassicState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    fn validate_member(&self, id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        if let Some(iid) = instance_id {
            match self.static_members.get(iid) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(existing) if existing != id => return Err(ResponseError::FencedInstanceId),
                Some(_) => {}
            }
        }
        if !self.members.contains_key(id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: Instant, reason: &str) {
        tracing::debug!(group = %self.id, reason, generation = self.generation, state = self.state.name(), "preparing rebalance");
        // Members waiting for the assignment of a generation that will not complete.
        for m in self.members.values_mut() {
            if let Some(tx) = m.sync_waiter.take() {
                self.outbox
                    .push(Delivery::Sync(tx, sync_error(ResponseError::RebalanceInProgress)));
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let was_empty = self.state == ClassicState::Empty;
        self.set_state(ClassicState::PreparingRebalance);
        if was_empty {
            // group.initial.rebalance.delay.ms: wait for more of a starting group's members,
            // extending while they keep arriving, within the rebalance timeout. Even with a
            // delay of 0 the join completes on the next timer tick rather than inside this
            // request, as Kafka's timer does: members starting together land in one generation
            // instead of forcing a second rebalance at once.
            let delay = cfg.initial_rebalance_delay_ms;
            self.initial_remaining_ms = Some(self.max_rebalance_timeout_ms().saturating_sub(delay));
            self.new_member_added = false;
            self.join_deadline = Some(now + Duration::from_millis(delay));
        } else {
            self.initial_remaining_ms = None;
            self.join_deadline = Some(now + Duration::from_millis(self.max_rebalance_timeout_ms()));
            self.try_complete_join(cfg, now);
        }
    }

    fn try_complete_join(&mut self, cfg: &GroupConfig, now: Instant) {
        if self.state != ClassicState::PreparingRebalance || self.initial_remaining_ms.is_some() {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        if all_joined {
            self.complete_join(cfg, now);
        }
    }

    fn complete_join(&mut self, _cfg: &GroupConfig, now: Instant) {
        self.join_deadline = None;
        self.initial_remaining_ms = None;
        // Dynamic members that did not rejoin in time are out; static ones keep their place
        // until their session times out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.set_state(ClassicState::Empty);
            self.dirty = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(ClassicState::CompletingRebalance);
        tracing::debug!(group = %self.id, generation = self.generation, members = self.members.len(), leader = ?self.leader, "join complete");
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let resp = self.join_response_for(id);
            if let Some(m) = self.members.get_mut(id) {
                m.touch(now);
                if let Some(tx) = m.join_waiter.take() {
                    self.outbox.push(Delivery::Join(tx, resp));
                }
            }
        }
        self.pending_sync = ids.into_iter().collect();
        self.sync_deadline = Some(now + Duration::from_millis(self.max_rebalance_timeout_ms()));
    }

    fn remove_member(&mut self, id: &str) {
        let Some(mut m) = self.members.shift_remove(id) else {
            return;
        };
        if let Some(tx) = m.join_waiter.take() {
            self.outbox
                .push(Delivery::Join(tx, join_error(id, ResponseError::UnknownMemberId)));
        }
        if let Some(tx) = m.sync_waiter.take() {
            self.outbox
                .push(Delivery::Sync(tx, sync_error(ResponseError::UnknownMemberId)));
        }
        if let Some(iid) = &m.instance_id {
            if self.static_members.get(iid).is_some_and(|x| x == id) {
                self.static_members.remove(iid);
            }
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Reacts to a member having gone (left or timed out).
    fn after_removal(&mut self, cfg: &GroupConfig, now: Instant, reason: &str) {
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => self.prepare_rebalance(cfg, now, reason),
            ClassicState::PreparingRebalance => self.try_complete_join(cfg, now),
            ClassicState::Empty => {}
        }
    }

    /// SyncGroup.
    pub fn sync(&mut self, input: SyncInput, now: Instant) -> Answer<SyncGroupResponse> {
        if let Err(e) = self.validate_member(&input.member_id, input.instance_id.as_deref()) {
            return Answer::Now(sync_error(e));
        }
        if input.generation != self.generation {
            return Answer::Now(sync_error(ResponseError::IllegalGeneration));
        }
        let type_ok = input
            .protocol_type
            .as_ref()
            .is_none_or(|t| Some(t) == self.protocol_type.as_ref());
        let name_ok = input
            .protocol_name
            .as_ref()
            .is_none_or(|n| Some(n) == self.protocol_name.as_ref());
        if !type_ok || !name_ok {
            return Answer::Now(sync_error(ResponseError::InconsistentGroupProtocol));
        }
        let id = input.member_id.clone();
        match self.state {
            ClassicState::Empty => Answer::Now(sync_error(ResponseError::UnknownMemberId)),
            ClassicState::PreparingRebalance => Answer::Now(sync_error(ResponseError::RebalanceInProgress)),
            ClassicState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                self.pending_sync.remove(&id);
                if let Some(m) = self.members.get_mut(&id) {
                    m.sync_waiter = Some(tx);
                    m.touch(now);
                }
                if self.leader.as_deref() == Some(id.as_str()) {
                    let given: HashMap<String, Bytes> = input.assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                    }
                    self.set_state(ClassicState::Stable);
                    self.dirty = true;
                    let (ptype, pname) = (self.protocol_type.clone(), self.protocol_name.clone());
                    for m in self.members.values_mut() {
                        if let Some(tx) = m.sync_waiter.take() {
                            let resp = SyncGroupResponse::default()
                                .with_protocol_type(ptype.as_deref().map(s))
                                .with_protocol_name(pname.as_deref().map(s))
                                .with_assignment(m.assignment.clone());
                            self.outbox.push(Delivery::Sync(tx, resp));
                        }
                    }
                }
                Answer::Later(rx)
            }
            ClassicState::Stable => {
                self.pending_sync.remove(&id);
                let m = self.members.get_mut(&id).map(|m| {
                    m.touch(now);
                    m.assignment.clone()
                });
                Answer::Now(
                    SyncGroupResponse::default()
                        .with_protocol_type(self.protocol_type.as_deref().map(s))
                        .with_protocol_name(self.protocol_name.as_deref().map(s))
                        .with_assignment(m.unwrap_or_default()),
                )
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == ClassicState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        self.validate_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.touch(now);
        }
        match self.state {
            ClassicState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for a batch of members; one result per member, in order.
    pub fn leave(
        &mut self,
        cfg: &GroupConfig,
        members: &[(String, Option<String>)],
        now: Instant,
    ) -> Vec<Result<(), ResponseError>> {
        let mut removed = false;
        let mut out = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let result = match instance_id {
                Some(iid) => match self.static_members.get(iid).cloned() {
                    None => Err(ResponseError::UnknownMemberId),
                    Some(existing) if !member_id.is_empty() && existing != *member_id => {
                        Err(ResponseError::FencedInstanceId)
                    }
                    Some(existing) => {
                        self.remove_member(&existing);
                        removed = true;
                        Ok(())
                    }
                },
                None if self.pending.remove(member_id).is_some() => {
                    removed = true;
                    Ok(())
                }
                None if self.members.contains_key(member_id) => {
                    self.remove_member(member_id);
                    removed = true;
                    Ok(())
                }
                None => Err(ResponseError::UnknownMemberId),
            };
            out.push(result);
        }
        if removed {
            self.after_removal(cfg, now, "members left");
        }
        out
    }

    /// Timers: the delayed first join, the rebalance and sync timeouts, session and
    /// pending-member expiry.
    pub fn tick(&mut self, cfg: &GroupConfig, now: Instant) {
        if self.state == ClassicState::PreparingRebalance && self.join_deadline.is_some_and(|d| now >= d) {
            match self.initial_remaining_ms {
                Some(remaining) if self.new_member_added && remaining > 0 => {
                    self.new_member_added = false;
                    let delay = cfg.initial_rebalance_delay_ms.min(remaining);
                    self.initial_remaining_ms = Some(remaining - delay);
                    self.join_deadline = Some(now + Duration::from_millis(delay));
                }
                _ => {
                    self.initial_remaining_ms = None;
                    self.complete_join(cfg, now);
                }
            }
        }
        if self.sync_deadline.is_some_and(|d| now >= d) {
            self.sync_deadline = None;
            let late: Vec<String> = self.pending_sync.drain().collect();
            if !late.is_empty() {
                for id in &late {
                    self.remove_member(id);
                }
                self.after_removal(cfg, now, "members did not send SyncGroup in time");
            }
        }
        let expired_pending: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, d)| now >= **d)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired_pending {
            self.pending.remove(id);
        }
        if !expired_pending.is_empty() {
            self.try_complete_join(cfg, now);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none() && now >= m.deadline)
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.id, member = %id, "member's session timed out; removing it from the group");
                self.remove_member(id);
            }
            self.after_removal(cfg, now, "session timeout");
        }
    }

    /// Whether nothing is timed in this group (an empty group with no pending members).
    pub fn is_idle(&self) -> bool {
        self.state == ClassicState::Empty && self.pending.is_empty()
    }

    /// The persisted form.
    pub fn to_record(&self) -> Vec<u8> {
        let rec = ClassicRecord {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            state_since_ms: self.state_since_ms,
            members: self
                .members
                .values()
                .map(|m| MemberRecord {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: m.protocols.iter().map(|(n, b)| (n.clone(), b.to_vec())).collect(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        };
        serde_json::to_vec(&rec).unwrap_or_default()
    }

    /// Rebuilds a group from its record: a group with members comes back `Stable` with fresh
    /// session deadlines, as after a coordinator failover in Kafka.
    pub fn from_record(bytes: &[u8], now: Instant) -> Option<Self> {
        let rec: ClassicRecord = serde_json::from_slice(bytes).ok()?;
        let mut g = ClassicGroup::new();
        g.protocol_type = rec.protocol_type;
        g.protocol_name = rec.protocol_name;
        g.generation = rec.generation;
        g.leader = rec.leader;
        g.state_since_ms = rec.state_since_ms;
        for m in rec.members {
            if let Some(iid) = &m.instance_id {
                g.static_members.insert(iid.clone(), m.id.clone());
            }
            let mut member = Member {
                id: m.id.clone(),
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocols: m.protocols.into_iter().map(|(n, b)| (n, Bytes::from(b))).collect(),
                assignment: Bytes::from(m.assignment),
                join_waiter: None,
                sync_waiter: None,
                deadline: now,
            };
            member.touch(now);
            g.members.insert(m.id, member);
        }
        g.state = if g.members.is_empty() {
            ClassicState::Empty
        } else {
            ClassicState::Stable
        };
        Some(g)
    }
}

impl Default for ClassicGroup {
    fn default() -> Self {
        ClassicGroup::new()
    }
}

#[derive(Serialize, Deserialize)]
struct ClassicRecord {
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    generation: i32,
    leader: Option<String>,
    state_since_ms: i64,
    members: Vec<MemberRecord>,
}

#[derive(Serialize, Deserialize)]
struct MemberRecord {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
}

#[cfg(test)]
mod tests;
