use super::*;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as ReqTopicPartitions;

const REBALANCE_TIMEOUT_MS: i32 = 300_000;

fn topic_id(name: &str) -> Uuid {
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
struct Client {
    member_id: String,
    instance_id: Option<String>,
    epoch: i32,
    owned: Assignment,
    names: Option<Vec<String>>,
    regex: Option<String>,
    assignor: Option<String>,
    rebalance_timeout_ms: i32,
}

impl Client {
    fn new(member_id: &str, names: &[&str]) -> Self {
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

    fn join_request(&self) -> ConsumerGroupHeartbeatRequest {
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
    fn heartbeat_request(&self) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(&self.member_id))
            .with_member_epoch(self.epoch)
            .with_instance_id(self.instance_id.as_deref().map(str_bytes))
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(Some(self.owned_wire()))
    }

    fn leave_request(&self, epoch: i32) -> ConsumerGroupHeartbeatRequest {
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

struct Harness {
    group: ConsumerGroup,
    topics: TopicsView,
    cfg: ConsumerGroupConfig,
    now: Instant,
}

impl Harness {
    fn new(topics: &[(&str, i32)]) -> Self {
        Harness {
            group: ConsumerGroup::new("g"),
            topics: view(topics),
            cfg: ConsumerGroupConfig::default(),
            now: Instant::now(),
        }
    }

    fn send(&mut self, client: &mut Client, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
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

    fn join(&mut self, client: &mut Client) -> ConsumerGroupHeartbeatResponse {
        let req = client.join_request();
        let response = self.send(client, req);
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        response
    }

    fn heartbeat(&mut self, client: &mut Client) -> ConsumerGroupHeartbeatResponse {
        let req = client.heartbeat_request();
        self.send(client, req)
    }

    /// Heartbeats every client in turn until the group is stable, checking after every
    /// single heartbeat that no partition is owned by two clients.
    fn converge(&mut self, clients: &mut [Client]) -> usize {
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

fn assert_clients_disjoint(clients: &[Client]) {
    let mut seen = BTreeSet::new();
    for c in clients {
        for (t, ps) in &c.owned {
            for p in ps {
                assert!(seen.insert((*t, *p)), "{t}-{p} owned by two clients");
            }
        }
    }
}

fn owned_count(c: &Client) -> usize {
    c.owned.values().map(BTreeSet::len).sum()
}

fn all_partitions(clients: &[Client]) -> BTreeSet<(Uuid, i32)> {
    clients
        .iter()
        .flat_map(|c| c.owned.iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))))
        .collect()
}

fn three_stable_members(h: &mut Harness) -> Vec<Client> {
    let mut clients: Vec<Client> = ["m1", "m2", "m3"].iter().map(|id| Client::new(id, &["t"])).collect();
    for c in clients.iter_mut() {
        h.join(c);
    }
    h.converge(&mut clients);
    clients
}

#[test]
fn three_members_converge_to_two_partitions_each() {
    let mut h = Harness::new(&[("t", 6)]);
    let mut clients: Vec<Client> = ["m1", "m2", "m3"].iter().map(|id| Client::new(id, &["t"])).collect();
    let first = h.join(&mut clients[0]);
    assert_eq!(first.member_epoch, 1);
    assert_eq!(first.heartbeat_interval_ms, DEFAULT_HEARTBEAT_INTERVAL_MS);
    assert_eq!(owned_count(&clients[0]), 6, "a lone member gets everything");
    for i in 1..3 {
        let (head, tail) = clients.split_at_mut(i);
        h.join(&mut tail[0]);
        assert_clients_disjoint(head);
    }
    assert_eq!(h.group.state(), "Reconciling");
    let rounds = h.converge(&mut clients);
    assert!(rounds <= 3, "took {rounds} rounds");
    assert_eq!(h.group.group_epoch(), 3);
    for c in &clients {
        assert_eq!(owned_count(c), 2);
        assert_eq!(c.epoch, 3);
    }
    assert_eq!(all_partitions(&clients).len(), 6);

    // A steady heartbeat changes nothing and does not resend the assignment.
    let out = h.group.heartbeat(
        1,
        &clients[0].heartbeat_request(),
        "client",
        "/127.0.0.1",
        &h.topics,
        &h.cfg,
        h.now,
    );
    assert!(!out.changed);
    assert!(out.response.assignment.is_none());
    assert_eq!(out.response.heartbeat_interval_ms, DEFAULT_HEARTBEAT_INTERVAL_MS);
}

#[test]
fn fourth_member_gets_partitions_only_after_revocation() {
    let mut h = Harness::new(&[("t", 6)]);
    let mut clients = three_stable_members(&mut h);
    let before: BTreeMap<String, Assignment> = clients.iter().map(|c| (c.member_id.clone(), c.owned.clone())).collect();

    let mut m4 = Client::new("m4", &["t"]);
    let response = h.join(&mut m4);
    // Everything is still owned: m4 moves to the new epoch with nothing yet.
    assert_eq!(response.member_epoch, 4);
    assert_eq!(owned_count(&m4), 0);
    assert_eq!(
        h.group.member("m4").expect("m4").state,
        MemberState::UnreleasedPartitions
    );
    clients.push(m4);
    assert_clients_disjoint(&clients);

    // Quotas go in member-id order (2, 2, 1, 1): m1 keeps its two partitions and moves
    // straight to epoch 4; m3 must give one up and stays at epoch 3 until it has.
    let response = h.heartbeat(&mut clients[0]);
    assert_eq!(response.member_epoch, 4);
    assert!(response.assignment.is_none(), "m1's partitions did not change");
    let response = h.heartbeat(&mut clients[2]);
    assert_eq!(response.member_epoch, 3);
    assert_eq!(owned_count(&clients[2]), 1, "m3 was told to keep one partition");
    let m3 = h.group.member("m3").expect("m3");
    assert_eq!(m3.state, MemberState::UnrevokedPartitions);
    let revoked = m3.partitions_pending_revocation.clone();
    assert_eq!(revoked.values().map(BTreeSet::len).sum::<usize>(), 1);
    // m4 cannot have it before m3 confirms the revocation in its next heartbeat ...
    h.heartbeat(&mut clients[3]);
    assert_eq!(owned_count(&clients[3]), 0);
    h.heartbeat(&mut clients[2]);
    assert_eq!(clients[2].epoch, 4);
    // ... after which it is free.
    h.heartbeat(&mut clients[3]);
    assert_eq!(clients[3].owned, revoked);
    h.converge(&mut clients);
    let mut sizes: Vec<usize> = clients.iter().map(owned_count).collect();
    sizes.sort();
    assert_eq!(sizes, vec![1, 1, 2, 2]);
    assert_eq!(all_partitions(&clients).len(), 6);
    // Uniform is sticky: old members only lost partitions.
    for c in &clients[..3] {
        for (t, ps) in &c.owned {
            assert!(ps.is_subset(&before[&c.member_id][t]));
        }
    }
}

#[test]
fn leave_and_session_expiry_reassign() {
    let mut h = Harness::new(&[("t", 6)]);
    let mut clients = three_stable_members(&mut h);
    let epoch = h.group.group_epoch();

    let req = clients[0].leave_request(LEAVE_GROUP_MEMBER_EPOCH);
    let response = h.send(&mut clients[0], req);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.member_epoch, LEAVE_GROUP_MEMBER_EPOCH);
    assert_eq!(h.group.group_epoch(), epoch + 1);
    assert!(h.group.member("m1").is_none());
    let mut rest: Vec<Client> = clients.drain(1..).collect();
    h.converge(&mut rest);
    assert_eq!(rest.iter().map(owned_count).collect::<Vec<_>>(), vec![3, 3]);

    // m2 goes silent; m3 keeps heartbeating.
    h.now += Duration::from_secs(30);
    h.heartbeat(&mut rest[1]);
    assert!(!h.group.tick(h.now, &h.cfg), "nobody expired yet");
    h.now += Duration::from_secs(16);
    assert!(h.group.tick(h.now, &h.cfg), "m2's session expired");
    assert!(h.group.member("m2").is_none());
    assert_eq!(h.group.state(), "Assigning");
    let mut last: Vec<Client> = rest.drain(1..).collect();
    h.converge(&mut last);
    assert_eq!(owned_count(&last[0]), 6);

    h.now += Duration::from_secs(46);
    assert!(h.group.tick(h.now, &h.cfg));
    assert!(h.group.is_empty());
    assert_eq!(h.group.state(), "Empty");
}

#[test]
fn rebalance_timeout_fences_a_member_that_does_not_revoke() {
    let mut h = Harness::new(&[("t", 4)]);
    let mut m1 = Client::new("m1", &["t"]);
    m1.rebalance_timeout_ms = 10_000;
    h.join(&mut m1);
    let mut m2 = Client::new("m2", &["t"]);
    h.join(&mut m2);
    h.heartbeat(&mut m1);
    assert_eq!(
        h.group.member("m1").expect("m1").state,
        MemberState::UnrevokedPartitions
    );
    // m1 keeps its session alive but never reports the revocation.
    let mut stubborn = m1.clone();
    stubborn.owned = h.group.member("m1").expect("m1").partitions_pending_revocation.clone();
    for (t, ps) in &m1.owned {
        stubborn.owned.entry(*t).or_default().extend(ps.iter().copied());
    }
    h.now += Duration::from_secs(5);
    let req = stubborn.heartbeat_request();
    let response = h.group.heartbeat(1, &req, "c", "h", &h.topics, &h.cfg, h.now).response;
    assert_eq!(response.error_code, 0);
    assert!(!h.group.tick(h.now, &h.cfg));
    h.now += Duration::from_secs(6);
    assert!(h.group.tick(h.now, &h.cfg), "rebalance timeout fences m1");
    assert!(h.group.member("m1").is_none());
    h.converge(std::slice::from_mut(&mut m2));
    assert_eq!(owned_count(&m2), 4);
}

#[test]
fn static_member_rejoins_with_its_partitions() {
    let mut h = Harness::new(&[("t", 6)]);
    let mut s1 = Client::new("s1", &["t"]);
    s1.instance_id = Some("i1".into());
    let mut s2 = Client::new("s2", &["t"]);
    s2.instance_id = Some("i2".into());
    h.join(&mut s1);
    h.join(&mut s2);
    let mut clients = vec![s1, s2];
    h.converge(&mut clients);
    let s1_owned = clients[0].owned.clone();
    assert_eq!(owned_count(&clients[0]), 3);
    let epoch = h.group.group_epoch();

    // Temporary leave: no rebalance, the assignment is kept.
    let req = clients[0].leave_request(LEAVE_GROUP_STATIC_MEMBER_EPOCH);
    let response = h.send(&mut clients[0], req);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.member_epoch, LEAVE_GROUP_STATIC_MEMBER_EPOCH);
    assert_eq!(h.group.group_epoch(), epoch);

    // Another process may not take the instance id of a live member.
    let mut intruder = Client::new("x", &["t"]);
    intruder.instance_id = Some("i2".into());
    let response = {
        let req = intruder.join_request();
        h.send(&mut intruder, req)
    };
    assert_eq!(response.error_code, ResponseError::UnreleasedInstanceId.code());

    // The instance comes back with a new member id and gets its partitions back.
    let mut back = Client::new("s1-new", &["t"]);
    back.instance_id = Some("i1".into());
    let response = h.join(&mut back);
    assert_eq!(response.member_epoch, epoch);
    assert_eq!(back.owned, s1_owned);
    assert_eq!(h.group.group_epoch(), epoch, "no rebalance");
    assert!(h.group.member("s1").is_none());

    // The old member id is fenced now.
    let mut old = clients[0].clone();
    old.epoch = epoch;
    let response = {
        let req = old.heartbeat_request();
        h.send(&mut old, req)
    };
    assert_eq!(response.error_code, ResponseError::FencedInstanceId.code());

    clients[0] = back;
    h.converge(&mut clients);
    assert_eq!(clients[0].owned, s1_owned);
}

#[test]
fn regex_subscription_picks_up_new_topics() {
    let mut h = Harness::new(&[("orders-1", 2), ("other", 3), ("__consumer_offsets", 50)]);
    let mut bad = Client::new("bad", &[]);
    bad.names = None;
    bad.regex = Some("orders-(".into());
    let response = {
        let req = bad.join_request();
        h.send(&mut bad, req)
    };
    assert_eq!(response.error_code, ResponseError::InvalidRegularExpression.code());
    assert!(h.group.is_empty());

    let mut everything = Client::new("all", &[]);
    everything.names = None;
    everything.regex = Some(".*".into());
    h.join(&mut everything);
    let mut c = Client::new("c", &[]);
    c.names = None;
    c.regex = Some("orders-.*".into());
    h.join(&mut c);
    let mut clients = vec![everything, c];
    h.converge(&mut clients);
    let offsets = topic_id("__consumer_offsets");
    assert!(
        clients.iter().all(|c| !c.owned.contains_key(&offsets)),
        "internal topics never match"
    );
    assert_eq!(all_partitions(&clients).len(), 5);
    assert!(clients[1].owned.keys().all(|t| *t == topic_id("orders-1")));

    let epoch = h.group.group_epoch();
    h.topics.topics.insert(
        "orders-2".into(),
        TopicInfo {
            topic_id: topic_id("orders-2"),
            partitions: 2,
        },
    );
    h.converge(&mut clients);
    assert!(h.group.group_epoch() > epoch, "a new matching topic bumps the epoch");
    assert_eq!(all_partitions(&clients).len(), 7);
    let names = h.group.subscribed_topic_names(&h.topics);
    assert!(names.contains("orders-2") && names.contains("other") && !names.contains("__consumer_offsets"));

    // Partitions added to a subscribed topic are picked up too.
    h.topics.topics.insert(
        "other".into(),
        TopicInfo {
            topic_id: topic_id("other"),
            partitions: 5,
        },
    );
    h.converge(&mut clients);
    assert_eq!(all_partitions(&clients).len(), 9);

    // A deleted topic is revoked.
    h.topics.topics.remove("orders-1");
    h.converge(&mut clients);
    assert_eq!(all_partitions(&clients).len(), 7);
    assert!(clients.iter().all(|c| !c.owned.contains_key(&topic_id("orders-1"))));
}

#[test]
fn range_assignor_co_partitions() {
    let mut h = Harness::new(&[("a", 6), ("b", 6)]);
    let mut clients: Vec<Client> = ["m1", "m2", "m3"]
        .iter()
        .map(|id| {
            let mut c = Client::new(id, &["a", "b"]);
            c.assignor = Some("range".into());
            c
        })
        .collect();
    for c in clients.iter_mut() {
        h.join(c);
    }
    h.converge(&mut clients);
    let (a, b) = (topic_id("a"), topic_id("b"));
    for c in &clients {
        assert_eq!(c.owned[&a].len(), 2);
        assert_eq!(c.owned[&a], c.owned[&b], "same partition numbers of both topics");
    }
    assert_eq!(h.group.assignor_name(), "range");
    assert_eq!(h.group.describe(&h.topics).assignor_name.as_str(), "range");
}

#[test]
fn fenced_and_unknown_members() {
    let mut h = Harness::new(&[("t", 4)]);
    let mut m1 = Client::new("m1", &["t"]);
    h.join(&mut m1);
    let epoch = m1.epoch;

    let mut ahead = m1.clone();
    ahead.epoch = epoch + 1;
    let response = {
        let req = ahead.heartbeat_request();
        h.send(&mut ahead, req)
    };
    assert_eq!(response.error_code, ResponseError::FencedMemberEpoch.code());
    assert_eq!(response.heartbeat_interval_ms, 0);

    let mut stranger = Client::new("nobody", &["t"]);
    stranger.epoch = 1;
    let response = {
        let req = stranger.heartbeat_request();
        h.send(&mut stranger, req)
    };
    assert_eq!(response.error_code, ResponseError::UnknownMemberId.code());
    let response = {
        let req = stranger.leave_request(LEAVE_GROUP_MEMBER_EPOCH);
        h.send(&mut stranger, req)
    };
    assert_eq!(response.error_code, ResponseError::UnknownMemberId.code());

    // m2 joins; m1 moves from epoch 1 to 2 giving up partitions. A heartbeat at the
    // previous epoch is still accepted while m1 owns no more than its assignment.
    let mut m2 = Client::new("m2", &["t"]);
    h.join(&mut m2);
    let mut clients = vec![m1, m2];
    h.converge(&mut clients);
    let m1 = h.group.member("m1").expect("m1").clone();
    assert_eq!(m1.member_epoch, 2);
    let mut lagging = clients[0].clone();
    lagging.epoch = m1.previous_member_epoch;
    let response = {
        let req = lagging.heartbeat_request();
        h.send(&mut lagging, req)
    };
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    assert_eq!(response.member_epoch, 2);
    // ... but not when it claims partitions it does not have.
    let mut greedy = clients[0].clone();
    greedy.epoch = m1.previous_member_epoch;
    greedy.owned = clients[1].owned.clone();
    let response = {
        let req = greedy.heartbeat_request();
        h.send(&mut greedy, req)
    };
    assert_eq!(response.error_code, ResponseError::FencedMemberEpoch.code());
    // An epoch below -2 is not a valid request.
    let mut invalid = clients[0].clone();
    invalid.epoch = -5;
    let req = invalid.heartbeat_request();
    let response = h.send(&mut invalid, req);
    assert_eq!(response.error_code, ResponseError::InvalidRequest.code());
}

#[test]
fn request_validation() {
    let mut h = Harness::new(&[("t", 1)]);
    let mut c = Client::new("", &["t"]);
    let response = {
        let req = c.join_request();
        h.send(&mut c, req)
    };
    assert_eq!(response.error_code, ResponseError::InvalidRequest.code());
    assert_eq!(
        response.error_message.as_ref().map(|m| m.as_str()),
        Some("MemberId can't be empty.")
    );

    // Version 0: the server generates the member id.
    let out = h
        .group
        .heartbeat(0, &c.join_request(), "c", "h", &h.topics, &h.cfg, h.now);
    assert_eq!(out.response.error_code, 0);
    assert!(out.changed);
    let id = out.response.member_id.expect("member id");
    assert_eq!(id.len(), 22);

    let mut c = Client::new("m", &["t"]);
    c.assignor = Some("sticky".into());
    let response = {
        let req = c.join_request();
        h.send(&mut c, req)
    };
    assert_eq!(response.error_code, ResponseError::UnsupportedAssignor.code());

    let mut c = Client::new("m", &["t"]);
    c.names = None;
    let response = {
        let req = c.join_request();
        h.send(&mut c, req)
    };
    assert_eq!(response.error_code, ResponseError::InvalidRequest.code());

    let c = Client::new("m", &["t"]);
    let req = c.join_request().with_topic_partitions(None);
    let response = h.group.heartbeat(1, &req, "c", "h", &h.topics, &h.cfg, h.now).response;
    assert_eq!(response.error_code, ResponseError::InvalidRequest.code());

    let mut c = Client::new("m", &["t"]);
    let response = {
        let req = c.leave_request(LEAVE_GROUP_STATIC_MEMBER_EPOCH);
        h.send(&mut c, req)
    };
    assert_eq!(
        response.error_code,
        ResponseError::InvalidRequest.code(),
        "-2 needs an instance id"
    );

    h.cfg.max_size = 1;
    let response = {
        let req = c.join_request();
        h.send(&mut c, req)
    };
    assert_eq!(response.error_code, ResponseError::GroupMaxSizeReached.code());

    assert_eq!(
        group_not_found_response("x").error_code,
        ResponseError::GroupIdNotFound.code()
    );
    assert!(ConsumerGroupConfig::default().validate().is_ok());
}

#[test]
fn describe_and_offset_validation() {
    let mut h = Harness::new(&[("t", 2)]);
    assert_eq!(h.group.validate_offset_commit("", -1), Ok(()));
    let mut m1 = Client::new("m1", &["t"]);
    h.join(&mut m1);

    let described = h.group.describe(&h.topics);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.group_epoch, 1);
    assert_eq!(described.assignment_epoch, 1);
    assert_eq!(described.assignor_name.as_str(), "uniform");
    let member = &described.members[0];
    assert_eq!(member.member_id.as_str(), "m1");
    assert_eq!(member.client_host.as_str(), "/127.0.0.1");
    assert_eq!(member.subscribed_topic_names[0].0.as_str(), "t");
    assert_eq!(member.assignment.topic_partitions[0].topic_name.0.as_str(), "t");
    assert_eq!(member.assignment.topic_partitions[0].partitions, vec![0, 1]);
    assert_eq!(member.target_assignment, member.assignment);

    assert_eq!(h.group.validate_offset_commit("m1", 1), Ok(()));
    assert_eq!(
        h.group.validate_offset_commit("m1", 0),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        h.group.validate_offset_commit("zz", 1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        h.group.validate_offset_commit("", -1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(h.group.validate_offset_fetch(None, -1), Ok(()));
    assert_eq!(h.group.validate_offset_fetch(Some("m1"), 1), Ok(()));
    assert_eq!(
        h.group.validate_offset_fetch(Some("m1"), 2),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        h.group.validate_offset_fetch(Some("zz"), 1),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn record_round_trip() {
    let mut h = Harness::new(&[("t", 6), ("orders-1", 2)]);
    let mut clients = three_stable_members(&mut h);
    let mut r = Client::new("r", &[]);
    r.names = None;
    r.regex = Some("orders-.*".into());
    r.instance_id = Some("i-r".into());
    r.assignor = Some("range".into());
    h.join(&mut r);
    // Mid-rebalance, so some members have partitions pending revocation.
    h.heartbeat(&mut clients[0]);
    clients.push(r);

    let bytes = h.group.to_record();
    let loaded = ConsumerGroup::from_record(&bytes, h.now).expect("loads");
    assert_eq!(loaded.to_record(), bytes);
    assert_eq!(loaded.group_epoch(), h.group.group_epoch());
    assert_eq!(loaded.state(), h.group.state());
    assert_eq!(
        loaded.members().cloned().collect::<Vec<_>>(),
        h.group.members().cloned().collect::<Vec<_>>()
    );
    assert_eq!(loaded.describe(&h.topics), h.group.describe(&h.topics));
    assert!(ConsumerGroup::from_record(b"{not json", h.now).is_none());

    // The loaded group carries on.
    h.group = loaded;
    h.converge(&mut clients);
    assert_eq!(all_partitions(&clients).len(), 8);
}
