//! A scripted consumer and a group to run it against, shared by the tests of every submodule:
//! most properties of the state machine only show over a sequence of heartbeats.

use std::collections::BTreeSet;
use std::time::Instant;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as ReqTopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName};
use uuid::Uuid;

use super::{str_bytes, ConsumerGroup, ConsumerGroupConfig, TopicInfo, TopicsView};
use crate::group::assignor::Assignment;

const REBALANCE_TIMEOUT_MS: i32 = 300_000;

pub(super) fn topic_id(name: &str) -> Uuid {
    let mut bytes = [0u8; 16];
    for (i, b) in name.bytes().enumerate() {
        bytes[i % 16] ^= b.wrapping_add(i as u8);
    }
    bytes[15] ^= 0x5a;
    Uuid::from_bytes(bytes)
}

fn view(topics: &[(&str, i32)]) -> TopicsView {
    TopicsView {
        topics: topics
            .iter()
            .map(|(name, partitions)| {
                (
                    name.to_string(),
                    TopicInfo {
                        topic_id: topic_id(name),
                        partitions: *partitions,
                    },
                )
            })
            .collect(),
    }
}

/// A consumer that does what the Java client does: it owns exactly the last assignment it
/// received (revoking at once whatever the new one leaves out) and reports it.
#[derive(Debug, Clone)]
pub(super) struct Client {
    pub(super) member_id: String,
    pub(super) instance_id: Option<String>,
    pub(super) epoch: i32,
    pub(super) owned: Assignment,
    pub(super) names: Option<Vec<String>>,
    pub(super) regex: Option<String>,
    pub(super) assignor: Option<String>,
    pub(super) rebalance_timeout_ms: i32,
}

impl Client {
    pub(super) fn new(member_id: &str, names: &[&str]) -> Self {
        Client {
            member_id: member_id.to_string(),
            instance_id: None,
            epoch: 0,
            owned: Assignment::new(),
            names: Some(names.iter().map(|s| s.to_string()).collect()),
            regex: None,
            assignor: None,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        }
    }

    fn owned_wire(&self) -> Vec<ReqTopicPartitions> {
        self.owned
            .iter()
            .map(|(t, ps)| {
                ReqTopicPartitions::default()
                    .with_topic_id(*t)
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect()
    }

    pub(super) fn join_request(&self) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(&self.member_id))
            .with_member_epoch(0)
            .with_instance_id(self.instance_id.as_deref().map(str_bytes))
            .with_rebalance_timeout_ms(self.rebalance_timeout_ms)
            .with_subscribed_topic_names(
                self.names
                    .as_ref()
                    .map(|ns| ns.iter().map(|n| TopicName(str_bytes(n))).collect()),
            )
            .with_subscribed_topic_regex(self.regex.as_deref().map(str_bytes))
            .with_server_assignor(self.assignor.as_deref().map(str_bytes))
            .with_topic_partitions(Some(vec![]))
    }

    /// A regular heartbeat: only the epoch and the owned partitions; the rest null.
    pub(super) fn heartbeat_request(&self) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(&self.member_id))
            .with_member_epoch(self.epoch)
            .with_instance_id(self.instance_id.as_deref().map(str_bytes))
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(Some(self.owned_wire()))
    }

    pub(super) fn leave_request(&self, epoch: i32) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(&self.member_id))
            .with_member_epoch(epoch)
            .with_instance_id(self.instance_id.as_deref().map(str_bytes))
            .with_rebalance_timeout_ms(-1)
    }

    fn apply(&mut self, response: &ConsumerGroupHeartbeatResponse) {
        if response.error_code != 0 {
            return;
        }
        if let Some(id) = &response.member_id {
            self.member_id = id.as_str().to_string();
        }
        self.epoch = response.member_epoch;
        if let Some(a) = &response.assignment {
            self.owned = a
                .topic_partitions
                .iter()
                .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
                .filter(|(_, ps): &(Uuid, BTreeSet<i32>)| !ps.is_empty())
                .collect();
        }
    }
}

pub(super) struct Harness {
    pub(super) group: ConsumerGroup,
    pub(super) topics: TopicsView,
    pub(super) cfg: ConsumerGroupConfig,
    pub(super) now: Instant,
}

impl Harness {
    pub(super) fn new(topics: &[(&str, i32)]) -> Self {
        Harness {
            group: ConsumerGroup::new("g"),
            topics: view(topics),
            cfg: ConsumerGroupConfig::default(),
            now: Instant::now(),
        }
    }

    pub(super) fn send(
        &mut self,
        client: &mut Client,
        req: ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        let out = self
            .group
            .heartbeat(1, &req, "client", "/127.0.0.1", &self.topics, &self.cfg, self.now);
        client.apply(&out.response);
        assert!(
            self.group.partitions_have_single_owner(),
            "server: a partition has two owners"
        );
        out.response
    }

    pub(super) fn join(&mut self, client: &mut Client) -> ConsumerGroupHeartbeatResponse {
        let req = client.join_request();
        let response = self.send(client, req);
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        response
    }

    pub(super) fn heartbeat(&mut self, client: &mut Client) -> ConsumerGroupHeartbeatResponse {
        let req = client.heartbeat_request();
        self.send(client, req)
    }

    /// Heartbeats every client in turn until the group is stable, checking after every
    /// single heartbeat that no partition is owned by two clients.
    pub(super) fn converge(&mut self, clients: &mut [Client]) -> usize {
        for round in 1..=20 {
            for i in 0..clients.len() {
                let response = self.heartbeat(&mut clients[i]);
                assert_eq!(response.error_code, 0, "{:?}", response.error_message);
                assert_clients_disjoint(clients);
            }
            let epoch = self.group.assignment_epoch();
            if self.group.state() == "Stable" && clients.iter().all(|c| c.epoch == epoch) {
                for c in clients.iter() {
                    let m = self.group.member(&c.member_id).expect("member");
                    assert_eq!(c.owned, m.assigned_partitions, "client and server agree");
                }
                return round;
            }
        }
        panic!("group did not converge: {:?}", self.group.describe(&self.topics));
    }
}

pub(super) fn assert_clients_disjoint(clients: &[Client]) {
    let mut seen = BTreeSet::new();
    for c in clients {
        for (t, ps) in &c.owned {
            for p in ps {
                assert!(seen.insert((*t, *p)), "{t}-{p} owned by two clients");
            }
        }
    }
}

pub(super) fn owned_count(c: &Client) -> usize {
    c.owned.values().map(BTreeSet::len).sum()
}

pub(super) fn all_partitions(clients: &[Client]) -> BTreeSet<(Uuid, i32)> {
    clients
        .iter()
        .flat_map(|c| c.owned.iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))))
        .collect()
}

pub(super) fn three_stable_members(h: &mut Harness) -> Vec<Client> {
    let mut clients: Vec<Client> = ["m1", "m2", "m3"].iter().map(|id| Client::new(id, &["t"])).collect();
    for c in clients.iter_mut() {
        h.join(c);
    }
    h.converge(&mut clients);
    clients
}
