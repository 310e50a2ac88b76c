//! Several `fjord` processes as one cluster: a controller quorum over the controller listener
//! (`controller.quorum.voters`), brokers registered through it, topics spread over the brokers,
//! metadata writes on any node, and the quorum surviving the kill -9 of its leader.
//!
//! A partition of one replica is unavailable while its broker is down, and comes back with it;
//! a replicated one fails over to an in-sync follower that has every acknowledged record.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use fjord_tests::broker::free_port;
use fjord_tests::records::assert_same_records;
use fjord_tests::{codes, encode_batch, error_name, test_records, Broker, BrokerOptions, Client, Topic};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    CreateTopicsRequest, FindCoordinatorRequest, GroupId, MetadataResponse, OffsetCommitRequest,
};
use kafka_protocol::protocol::{Message, StrBytes};
use kafka_protocol::records::Compression;

/// A cluster of `n` nodes on loopback, each a broker and a controller voter.
struct Cluster {
    nodes: Vec<Broker>,
    controller_ports: Vec<u16>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// A cluster whose nodes all get `extra` overrides too.
    fn start_with(n: usize, extra: &[(&str, &str)]) -> Cluster {
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let controller_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let voters = voters_at(&controller_ports);
        let mut nodes: Vec<Broker> = (0..n)
            .map(|i| {
                let client = format!("PLAINTEXT://127.0.0.1:{}", client_ports[i]);
                let opts = BrokerOptions {
                    overrides: vec![
                        ("node.id".into(), (i + 1).to_string()),
                        (
                            "listeners".into(),
                            format!("{client},CONTROLLER://127.0.0.1:{}", controller_ports[i]),
                        ),
                        ("advertised.listeners".into(), client),
                        ("controller.listener.names".into(), "CONTROLLER".into()),
                        ("process.roles".into(), "broker,controller".into()),
                        ("controller.quorum.voters".into(), voters.clone()),
                    ]
                    .into_iter()
                    .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect(),
                    ..BrokerOptions::default()
                };
                Broker::launch(opts, client_ports[i])
            })
            .collect();
        for node in &mut nodes {
            node.await_ready();
        }
        Cluster {
            nodes,
            controller_ports,
        }
    }

    /// Its `controller.quorum.voters`.
    fn voters(&self) -> String {
        voters_at(&self.controller_ports)
    }

    /// The node with Kafka `node.id` `id`.
    fn node(&mut self, id: i32) -> &mut Broker {
        &mut self.nodes[usize::try_from(id - 1).expect("ids start at 1")]
    }
}

/// `controller.quorum.voters` for nodes 1, 2, ... with these controller ports on loopback.
fn voters_at(controller_ports: &[u16]) -> String {
    controller_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

fn metadata(client: &mut Client) -> MetadataResponse {
    client.metadata(None, false)
}

/// Polls a node's Metadata until `cond` holds; returns that Metadata.
fn wait_for_metadata(node: &Broker, what: &str, cond: impl Fn(&MetadataResponse) -> bool) -> MetadataResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = node.client();
    loop {
        let md = metadata(&mut client);
        if cond(&md) {
            return md;
        }
        assert!(Instant::now() < deadline, "{what}: not after 20 s: {md:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls a node's Metadata until it lists `n` brokers: each node applies the others'
/// registrations a moment after they commit, as Kafka brokers learn of each other.
fn wait_for_brokers(node: &Broker, n: usize) -> MetadataResponse {
    wait_for_metadata(node, &format!("{} lists {n} brokers", node.bootstrap()), |md| {
        md.brokers.len() == n
    })
}

/// CreateTopics on one node, asserting success. Like Kafka's admin client it retries
/// NOT_CONTROLLER (a write whose leader stopped answering is in doubt), and then takes
/// TOPIC_ALREADY_EXISTS as the earlier attempt having gone through.
fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    create_replicated_topic(client, name, partitions, 1, &[]);
}

/// [`create_topic`] with a replication factor and topic configs.
fn create_replicated_topic(client: &mut Client, name: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut retried = false;
    loop {
        let mut topic = CreatableTopic::default();
        topic.name = fjord_tests::client::topic_name(name);
        topic.num_partitions = partitions;
        topic.replication_factor = rf;
        topic.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default();
                c.name = StrBytes::from_string(k.to_string());
                c.value = Some(StrBytes::from_string(v.to_string()));
                c
            })
            .collect();
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![topic];
        req.timeout_ms = 30_000;
        let resp = client.send_request(CreateTopicsRequest::VERSIONS.max, req);
        let r = &resp.topics[0];
        if r.error_code == codes::NOT_CONTROLLER && Instant::now() < deadline {
            eprintln!("CreateTopics {name}: NOT_CONTROLLER ({:?}), retrying", r.error_message);
            retried = true;
            continue;
        }
        if retried && r.error_code == codes::TOPIC_ALREADY_EXISTS {
            return;
        }
        assert_eq!(
            r.error_code,
            codes::NONE,
            "CreateTopics {name}: {} {:?}",
            error_name(r.error_code),
            r.error_message
        );
        return;
    }
}

/// Polls a node's Metadata until `name` is there with every partition led; returns the topic
/// and the leader of each partition.
fn wait_for_topic(node: &Broker, name: &str, partitions: i32) -> (Topic, Vec<i32>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = node.client();
    loop {
        let md = client.metadata(Some(&[name]), false);
        if let Some(t) = md.topics.iter().find(|t| t.error_code == 0) {
            let mut leaders: Vec<(i32, i32)> = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            leaders.sort();
            if leaders.len() == partitions as usize && leaders.iter().all(|(_, l)| *l >= 0) {
                let topic = Topic {
                    name: name.to_string(),
                    id: t.topic_id,
                    partitions,
                };
                return (topic, leaders.into_iter().map(|(_, l)| l).collect());
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} not in {}'s metadata after 20 s: {md:?}",
            node.bootstrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces `records` to a partition on `node`, retrying while the leader has not opened the
/// partition yet (Kafka answers NOT_LEADER_OR_FOLLOWER for a moment after CreateTopics too).
fn produce_to(node: &Broker, topic: &Topic, partition: i32, tag: &str) -> Vec<kafka_protocol::records::Record> {
    let records = test_records(5, tag);
    let mut client = node.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client.produce(
            kafka_protocol::messages::ProduceRequest::VERSIONS.max,
            topic,
            partition,
            encode_batch(&records, Compression::None),
            -1,
        );
        if r.error_code == codes::NONE {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "produce to {}/{partition} on {}: {}",
            topic.name,
            node.bootstrap(),
            error_name(r.error_code)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every record of a partition, read from `node` once it serves the partition (a restarted
/// leader takes a moment to lead again).
fn read_partition(node: &Broker, topic: &Topic, partition: i32) -> Vec<kafka_protocol::records::Record> {
    const FETCH: i16 = kafka_protocol::messages::FetchRequest::VERSIONS.max;
    let mut client = node.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let data = client.fetch(FETCH, topic, partition, 0);
        if data.error_code == codes::NONE {
            return client.fetch_all(FETCH, topic, partition, 0).0;
        }
        assert!(
            Instant::now() < deadline,
            "fetch {}/{partition} from {}: {}",
            topic.name,
            node.bootstrap(),
            error_name(data.error_code)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_nodes_form_one_cluster_and_survive_the_controller_leader() {
    let mut cluster = Cluster::start(3);

    // Every node lists the three brokers, each at its own advertised address, and agrees on the
    // cluster id and the controller.
    let mds: Vec<MetadataResponse> = cluster.nodes.iter().map(|n| wait_for_brokers(n, 3)).collect();
    for (i, md) in mds.iter().enumerate() {
        let brokers: BTreeMap<i32, i32> = md.brokers.iter().map(|b| (b.node_id.0, b.port)).collect();
        let expected: BTreeMap<i32, i32> = cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(j, n)| (j as i32 + 1, i32::from(n.port())))
            .collect();
        assert_eq!(brokers, expected, "node {} lists the brokers", i + 1);
        assert_eq!(md.cluster_id, mds[0].cluster_id, "one cluster id");
        assert!(md.cluster_id.is_some());
    }

    // A topic created through any node spreads over the three brokers; every node sees it.
    create_topic(&mut cluster.nodes[1].client(), "spread", 6);
    let (topic, leaders) = wait_for_topic(&cluster.nodes[0], "spread", 6);
    assert_eq!(
        leaders.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2, 3])
    );
    for n in &cluster.nodes {
        assert_eq!(
            wait_for_topic(n, "spread", 6).1,
            leaders,
            "{} agrees on the leaders",
            n.bootstrap()
        );
    }

    // Each partition takes records on its leader and refuses them elsewhere.
    let mut written = Vec::new();
    for (p, &leader) in leaders.iter().enumerate() {
        let p = p as i32;
        let records = produce_to(cluster.node(leader), &topic, p, &format!("p{p}"));
        let other = cluster.node(leader % 3 + 1).client().produce(
            kafka_protocol::messages::ProduceRequest::VERSIONS.max,
            &topic,
            p,
            encode_batch(&records, Compression::None),
            -1,
        );
        assert_eq!(
            other.error_code,
            codes::NOT_LEADER_OR_FOLLOWER,
            "produce to a broker that does not lead {p}: {}",
            error_name(other.error_code)
        );
        written.push(records);
    }

    // kill -9 the controller leader. The two others elect a new one and take metadata writes.
    let md = metadata(&mut cluster.nodes[0].client());
    let controller = md.controller_id.0;
    assert!((1..=3).contains(&controller), "a controller: {md:?}");
    cluster.node(controller).kill();
    let survivor = controller % 3 + 1;
    let started = Instant::now();
    create_topic(&mut cluster.node(survivor).client(), "after-kill", 2);
    let took = started.elapsed();
    eprintln!("first metadata write after kill -9 of the controller leader: {took:?}");
    let third = (1..=3)
        .find(|&id| id != controller && id != survivor)
        .expect("three nodes");
    wait_for_topic(cluster.node(third), "after-kill", 2);

    // The killed node comes back, catches up with what it missed, and still has its records.
    cluster.node(controller).relaunch();
    cluster.node(controller).await_ready();
    wait_for_topic(cluster.node(controller), "after-kill", 2);
    for (p, &leader) in leaders.iter().enumerate() {
        let got = read_partition(cluster.node(leader), &topic, p as i32);
        assert_same_records(
            &got,
            &written[p],
            0,
            &format!("partition {p} after its leader restarted"),
        );
    }
}

#[test]
fn the_controller_listener_refuses_kafka_requests() {
    let cluster = Cluster::start(3);
    let controller_port = cluster.controller_ports[0];
    let mut s = std::net::TcpStream::connect(("127.0.0.1", controller_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    // An ApiVersions v3 frame: the listener is not a Kafka listener and closes the connection.
    let frame =
        fjord_tests::client::encode_request_frame(3, 1, &kafka_protocol::messages::ApiVersionsRequest::default())
            .expect("encode");
    s.write_all(&frame).expect("write");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the controller listener answered a Kafka request: {other:?}"),
    }
    // A connection that never finishes its preamble is closed too, not held forever.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", controller_port)).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    silent.write_all(b"FJR").expect("write");
    let started = Instant::now();
    match silent.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "a connection without a preamble got {other:?} after {:?}",
            started.elapsed()
        ),
    }
    // The cluster is unaffected.
    wait_for_brokers(&cluster.nodes[2], 3);
}

/// FindCoordinator v3 (one key) on `node`: (error code, coordinator node id, its port).
fn find_coordinator(node: &Broker, key_type: i8, key: &str) -> (i16, i32, i32) {
    let mut req = FindCoordinatorRequest::default();
    req.key = StrBytes::from_string(key.to_string());
    req.key_type = key_type;
    let resp = node.client().send_request(3, req);
    (resp.error_code, resp.node_id.0, resp.port)
}

/// A group-less OffsetCommit (v8, generation -1) of offset 1 for partition 0 of `topic`:
/// the partition's error code.
fn commit_offset(node: &Broker, group: &str, topic: &str) -> i16 {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = 1;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = fjord_tests::client::topic_name(topic);
    t.partitions = vec![p];
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.generation_id_or_member_epoch = -1;
    req.topics = vec![t];
    let resp = node.client().send_request(8, req);
    resp.topics[0].partitions[0].error_code
}

/// Asks until the answer is not one of `transient` (20 s at most) and returns it.
fn retry_while(transient: &[i16], mut ask: impl FnMut() -> i16) -> i16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let code = ask();
        if !transient.contains(&code) || Instant::now() >= deadline {
            return code;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_node_names_one_coordinator_per_group_and_transactions_are_refused() {
    let mut cluster = Cluster::start(3);
    create_topic(&mut cluster.nodes[0].client(), "offsets-for", 1);
    for n in &cluster.nodes {
        wait_for_brokers(n, 3);
        wait_for_topic(n, "offsets-for", 1);
    }
    // The first FindCoordinator creates the offsets topic, as on Kafka: until it has leaders
    // the answer is COORDINATOR_NOT_AVAILABLE.
    let code = retry_while(&[codes::COORDINATOR_NOT_AVAILABLE], || {
        find_coordinator(&cluster.nodes[0], 0, "group-0").0
    });
    assert_eq!(code, codes::NONE, "{}", error_name(code));
    let md = cluster.nodes[1].client().metadata(Some(&["__consumer_offsets"]), false);
    let offsets = md
        .topics
        .iter()
        .find(|t| t.error_code == 0)
        .expect("__consumer_offsets is listed");
    assert!(offsets.is_internal, "and internal");
    assert_eq!(offsets.partitions.len(), 50, "offsets.topic.num.partitions");
    assert!(
        offsets.partitions.iter().all(|p| p.replica_nodes.len() == 3),
        "offsets.topic.replication.factor"
    );

    let mut coordinators = BTreeSet::new();
    for g in 0..12 {
        let group = format!("group-{g}");
        let answers: Vec<(i16, i32, i32)> = cluster.nodes.iter().map(|n| find_coordinator(n, 0, &group)).collect();
        let (code, coordinator, port) = answers[0];
        assert_eq!(code, codes::NONE, "{group}: {}", error_name(code));
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{group}: every node names the same coordinator: {answers:?}"
        );
        assert_eq!(
            port,
            i32::from(cluster.node(coordinator).port()),
            "{group}: at its address"
        );
        coordinators.insert(coordinator);
        // The coordinator takes the group's commits once its partition is loaded; the others
        // send the client back.
        for id in 1..=3 {
            let code = retry_while(&[codes::COORDINATOR_LOAD_IN_PROGRESS], || {
                commit_offset(cluster.node(id), &group, "offsets-for")
            });
            let expected = if id == coordinator {
                codes::NONE
            } else {
                codes::NOT_COORDINATOR
            };
            assert_eq!(code, expected, "{group} committed on node {id}: {}", error_name(code));
        }
    }
    assert!(
        coordinators.len() >= 2,
        "groups spread over the nodes: {coordinators:?}"
    );

    // Transactions cannot span brokers yet: refused up front, on every node.
    for n in &cluster.nodes {
        let (code, _, _) = find_coordinator(n, 1, "a-transactional-id");
        assert_eq!(code, codes::COORDINATOR_NOT_AVAILABLE, "{}", error_name(code));
    }
}

#[test]
fn a_silent_broker_is_fenced_and_leads_again_when_it_returns() {
    let mut cluster = Cluster::start_with(
        3,
        &[
            ("broker.session.timeout.ms", "2000"),
            ("broker.heartbeat.interval.ms", "300"),
        ],
    );
    create_topic(&mut cluster.nodes[0].client(), "fenced", 6);
    let (topic, leaders) = wait_for_topic(&cluster.nodes[0], "fenced", 6);
    let mut written = BTreeMap::new();
    for (p, &leader) in leaders.iter().enumerate() {
        written.insert(p, produce_to(cluster.node(leader), &topic, p as i32, &format!("f{p}")));
    }
    // Not the controller leader: this is about the broker's session, not about elections.
    let controller = metadata(&mut cluster.nodes[0].client()).controller_id.0;
    let victim = (1..=3).find(|&id| id != controller).expect("three nodes");
    let watcher = (1..=3)
        .find(|&id| id != controller && id != victim)
        .expect("three nodes");
    cluster.node(victim).kill();

    // Within the session timeout and a few checks, the others stop listing it and its
    // partitions go offline (one replica each: nobody to take over).
    let started = Instant::now();
    let md = wait_for_metadata(cluster.node(watcher), &format!("broker {victim} fenced"), |md| {
        md.brokers.len() == 2
    });
    eprintln!("broker fenced {:?} after kill -9 (session 2 s)", started.elapsed());
    assert!(md.brokers.iter().all(|b| b.node_id.0 != victim));
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some("fenced"))
        .expect("topic");
    for p in &t.partitions {
        if leaders[p.partition_index as usize] == victim {
            assert_eq!(
                (p.leader_id.0, p.error_code),
                (-1, codes::LEADER_NOT_AVAILABLE),
                "{p:?}"
            );
        } else {
            assert_eq!(
                (p.leader_id.0, p.error_code),
                (leaders[p.partition_index as usize], codes::NONE)
            );
        }
    }
    // New partitions go to the live brokers only.
    create_topic(&mut cluster.node(watcher).client(), "while-fenced", 4);
    let (_, new_leaders) = wait_for_topic(cluster.node(watcher), "while-fenced", 4);
    assert!(new_leaders.iter().all(|l| *l != victim), "{new_leaders:?}");

    // It comes back: listed again, leading its partitions with a newer epoch, data intact.
    cluster.node(victim).relaunch();
    cluster.node(victim).await_ready();
    let (_, back) = wait_for_topic(cluster.node(watcher), "fenced", 6);
    assert_eq!(back, leaders, "every partition led by its broker again");
    wait_for_brokers(cluster.node(watcher), 3);
    for (p, records) in &written {
        let got = read_partition(cluster.node(leaders[*p]), &topic, *p as i32);
        assert_same_records(&got, records, 0, &format!("partition {p} after its broker returned"));
    }
}

#[test]
fn a_paused_controller_leader_is_replaced_and_rejoins_as_a_follower() {
    let mut cluster = Cluster::start_with(
        3,
        &[
            ("broker.session.timeout.ms", "2000"),
            ("broker.heartbeat.interval.ms", "300"),
        ],
    );
    wait_for_brokers(&cluster.nodes[0], 3);
    let leader = metadata(&mut cluster.nodes[0].client()).controller_id.0;
    let other = (1..=3).find(|&id| id != leader).expect("three nodes");
    // SIGSTOP: the process keeps its sockets open but answers nothing.
    cluster.node(leader).pause();
    let started = Instant::now();
    create_topic(&mut cluster.node(other).client(), "while-paused", 2);
    eprintln!("first metadata write with the leader paused: {:?}", started.elapsed());
    let md = wait_for_metadata(cluster.node(other), "the paused leader fenced and replaced", |md| {
        md.brokers.len() == 2 && md.controller_id.0 != leader
    });
    assert!(md.brokers.iter().all(|b| b.node_id.0 != leader));

    // SIGCONT: it finds a newer term, follows, heartbeats again and is unfenced; a write sent to
    // it goes to the new leader.
    cluster.node(leader).resume();
    wait_for_brokers(cluster.node(other), 3);
    create_topic(&mut cluster.node(leader).client(), "after-resume", 2);
    for n in &cluster.nodes {
        wait_for_topic(n, "while-paused", 2);
        wait_for_topic(n, "after-resume", 2);
    }
    let controllers: BTreeSet<i32> = cluster
        .nodes
        .iter()
        .map(|n| metadata(&mut n.client()).controller_id.0)
        .collect();
    assert_eq!(controllers.len(), 1, "one controller: {controllers:?}");
}

#[test]
fn five_nodes_keep_a_quorum_through_two_failures_and_not_three() {
    let mut cluster = Cluster::start_with(
        5,
        &[
            ("broker.session.timeout.ms", "2000"),
            ("broker.heartbeat.interval.ms", "300"),
        ],
    );
    for n in &cluster.nodes {
        wait_for_brokers(n, 5);
    }
    let leader = metadata(&mut cluster.nodes[0].client()).controller_id.0;
    let mut down: Vec<i32> = vec![leader];
    down.extend((1..=5).filter(|&id| id != leader).take(1));
    for &id in &down {
        cluster.node(id).kill();
    }
    let up: Vec<i32> = (1..=5).filter(|id| !down.contains(id)).collect();
    // Once the two are fenced, new partitions go to the three that are up.
    wait_for_brokers(cluster.node(up[0]), 3);
    create_topic(&mut cluster.node(up[0]).client(), "two-down", 3);
    for &id in &up {
        wait_for_topic(cluster.node(id), "two-down", 3);
    }

    // A third failure leaves two of five: no majority, so no metadata write can commit. The
    // write is refused with NOT_CONTROLLER (retriable) once the controller gives up waiting.
    cluster.node(up[2]).kill();
    let mut topic = CreatableTopic::default();
    topic.name = fjord_tests::client::topic_name("no-quorum");
    topic.num_partitions = 1;
    topic.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![topic];
    req.timeout_ms = 30_000;
    let resp = cluster
        .node(up[0])
        .client()
        .send_request(CreateTopicsRequest::VERSIONS.max, req);
    assert_eq!(
        resp.topics[0].error_code,
        codes::NOT_CONTROLLER,
        "{}",
        error_name(resp.topics[0].error_code)
    );

    // One back: a majority again, and the node that returned catches up.
    cluster.node(up[2]).relaunch();
    cluster.node(up[2]).await_ready();
    wait_for_brokers(cluster.node(up[1]), 3);
    create_topic(&mut cluster.node(up[1]).client(), "three-up", 1);
    wait_for_topic(cluster.node(up[2]), "two-down", 3);
    wait_for_topic(cluster.node(up[2]), "three-up", 1);
}

#[test]
fn sigterm_fences_the_broker_at_once_and_a_restart_unfences_it() {
    // The default session (9 s) would take far longer to notice than the controlled shutdown.
    let mut cluster = Cluster::start(3);
    for n in &cluster.nodes {
        wait_for_brokers(n, 3);
    }
    create_topic(&mut cluster.nodes[0].client(), "rolling", 3);
    let (_, leaders) = wait_for_topic(&cluster.nodes[0], "rolling", 3);
    let victim = 3;
    let started = Instant::now();
    let status = cluster.node(victim).terminate();
    assert!(status.success(), "{status}");
    let md = wait_for_metadata(&cluster.nodes[0], "the stopped broker fenced", |md| {
        md.brokers.len() == 2
    });
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "fenced by its own shutdown, not by its session timing out: {:?}",
        started.elapsed()
    );
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some("rolling"))
        .expect("topic");
    for p in &t.partitions {
        let offline = leaders[p.partition_index as usize] == victim;
        assert_eq!(p.leader_id.0 < 0, offline, "{p:?}");
    }
    cluster.node(victim).relaunch();
    cluster.node(victim).await_ready();
    assert_eq!(wait_for_topic(&cluster.nodes[0], "rolling", 3).1, leaders);
}

/// Each partition of `topic` as `node` lists it: (partition, replicas, ISR), sorted.
fn isrs(node: &Broker, topic: &str) -> Vec<(i32, Vec<i32>, Vec<i32>)> {
    let md = node.client().metadata(Some(&[topic]), false);
    let t = md.topics.iter().find(|t| t.error_code == 0).expect("topic listed");
    t.partitions
        .iter()
        .map(|p| {
            let mut replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            replicas.sort();
            isr.sort();
            (p.partition_index, replicas, isr)
        })
        .collect()
}

/// Every record of a partition, read from `node` once it serves them all: a new leader's high
/// watermark moves up to what it holds once its in-sync followers have fetched from it (as on
/// Kafka), so a read right after a failover may see fewer for a moment.
fn read_all_of(node: &Broker, topic: &Topic, partition: i32, want: usize) -> Vec<kafka_protocol::records::Record> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = read_partition(node, topic, partition);
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls until every replica of every partition of `topic` is in its ISR, as `node` says.
fn wait_for_full_isr(node: &Broker, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = isrs(node, topic);
        if all.iter().all(|(_, replicas, isr)| replicas == isr) {
            return;
        }
        assert!(Instant::now() < deadline, "ISR of {topic} never full: {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_replicated_partition_fails_over_to_an_in_sync_follower_with_every_acknowledged_record() {
    let mut cluster = Cluster::start_with(
        3,
        &[
            ("broker.session.timeout.ms", "2000"),
            ("broker.heartbeat.interval.ms", "300"),
            ("replica.lag.time.max.ms", "3000"),
        ],
    );
    wait_for_brokers(&cluster.nodes[0], 3);
    create_replicated_topic(
        &mut cluster.nodes[0].client(),
        "replicated",
        3,
        3,
        &[("min.insync.replicas", "2")],
    );
    let (topic, leaders) = wait_for_topic(&cluster.nodes[0], "replicated", 3);
    wait_for_full_isr(&cluster.nodes[0], "replicated");

    // acks=all on each leader: acknowledged once the followers have it.
    let mut written: BTreeMap<usize, Vec<kafka_protocol::records::Record>> = BTreeMap::new();
    for round in 0..3 {
        for (p, &leader) in leaders.iter().enumerate() {
            let records = produce_to(cluster.node(leader), &topic, p as i32, &format!("r{round}p{p}"));
            written.entry(p).or_default().extend(records);
        }
    }
    // A follower refuses produce and consumer fetches alike.
    let follower = leaders[0] % 3 + 1;
    let refused = cluster.node(follower).client().produce(
        kafka_protocol::messages::ProduceRequest::VERSIONS.max,
        &topic,
        0,
        encode_batch(&test_records(1, "x"), Compression::None),
        -1,
    );
    assert_eq!(refused.error_code, codes::NOT_LEADER_OR_FOLLOWER);

    // kill -9 the leader of partition 0: another in-sync replica leads it within the session
    // timeout, with every acknowledged record, and takes acks=all writes with the ISR of two.
    let victim = leaders[0];
    let watcher = victim % 3 + 1;
    cluster.node(victim).kill();
    let started = Instant::now();
    let (_, now_leaders) = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (t, l) = wait_for_topic(cluster.node(watcher), "replicated", 3);
            if l.iter().all(|&x| x != victim) {
                break (t, l);
            }
            assert!(Instant::now() < deadline, "leaders still on {victim}: {l:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let after = now_leaders[0];
    eprintln!(
        "partition 0 led by {after} {:?} after kill -9 of {victim}",
        started.elapsed()
    );
    for (p, records) in &written {
        let got = read_all_of(cluster.node(now_leaders[*p]), &topic, *p as i32, records.len());
        assert_same_records(&got, records, 0, &format!("partition {p} after its leader died"));
    }
    let more = produce_to(cluster.node(after), &topic, 0, "after-failover");
    written.get_mut(&0).expect("p0").extend(more);

    // The killed node comes back as a follower, catches up and rejoins every ISR.
    cluster.node(victim).relaunch();
    cluster.node(victim).await_ready();
    wait_for_full_isr(cluster.node(watcher), "replicated");

    // Now kill the new leader of partition 0: the one that came back may lead it, and has
    // every record, the ones written while it was down included.
    cluster.node(after).kill();
    let survivor = (1..=3).find(|&id| id != after).expect("three nodes");
    let (_, now_leaders) = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (t, l) = wait_for_topic(cluster.node(survivor), "replicated", 3);
            if l.iter().all(|&x| x != after) {
                break (t, l);
            }
            assert!(Instant::now() < deadline, "leaders still on {after}: {l:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for (p, records) in &written {
        let got = read_all_of(cluster.node(now_leaders[*p]), &topic, *p as i32, records.len());
        assert_same_records(&got, records, 0, &format!("partition {p} after the second failover"));
    }
}

#[test]
fn a_dead_broker_is_fenced_at_once_and_a_paused_one_keeps_its_session() {
    // Kafka's default session (9 s): a dead process is fenced long before it, a stopped one
    // is not. Five voters, so that the quorum survives one dead and one paused.
    let mut cluster = Cluster::start(5);
    wait_for_brokers(&cluster.nodes[0], 5);
    create_replicated_topic(&mut cluster.nodes[0].client(), "fast", 3, 3, &[]);
    let (_, leaders) = wait_for_topic(&cluster.nodes[0], "fast", 3);
    wait_for_full_isr(&cluster.nodes[0], "fast");
    let controller = metadata(&mut cluster.nodes[0].client()).controller_id.0;
    let mut others = (1..=5).filter(|&id| id != controller && leaders.contains(&id));
    let (paused, victim) = (others.next().expect("two others"), others.next().expect("two others"));

    cluster.node(paused).pause();
    cluster.node(victim).kill();
    let started = Instant::now();
    let md = wait_for_metadata(cluster.node(controller), &format!("broker {victim} fenced"), |md| {
        md.brokers.iter().all(|b| b.node_id.0 != victim)
    });
    let took = started.elapsed();
    eprintln!("a killed broker was fenced {took:?} after kill -9 (session 9 s)");
    assert!(took < Duration::from_secs(4), "fenced only after {took:?}");
    assert!(
        md.brokers.iter().any(|b| b.node_id.0 == paused),
        "a paused broker is not fenced before its session ends: {md:?}"
    );
    // Its partitions moved to an in-sync replica (the paused one may lead some: it is not
    // fenced yet).
    let (_, now) = wait_for_topic(cluster.node(controller), "fast", 3);
    for (p, &l) in now.iter().enumerate() {
        assert_ne!(l, victim, "partition {p} still led by the dead broker");
        if leaders[p] != victim {
            assert_eq!(l, leaders[p], "partition {p} kept its leader");
        }
    }
    cluster.node(paused).resume();
}

/// The replicas and leader of each partition of `topic`, as `node` lists them.
fn assignment(node: &Broker, topic: &str) -> Vec<(i32, Vec<i32>)> {
    let md = node.client().metadata(Some(&[topic]), false);
    let t = md.topics.iter().find(|t| t.error_code == 0).expect("topic listed");
    let mut out: Vec<(i32, i32, Vec<i32>)> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.leader_id.0,
                p.replica_nodes.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, l, r)| (l, r)).collect()
}

#[test]
fn an_old_leader_cuts_what_it_alone_acknowledged_with_acks_1_and_rejoins() {
    // Five nodes, so that the quorum outlives a dead leader and a paused follower.
    let mut cluster = Cluster::start(5);
    wait_for_brokers(&cluster.nodes[0], 5);
    create_replicated_topic(&mut cluster.nodes[0].client(), "diverge", 5, 2, &[]);
    wait_for_topic(&cluster.nodes[0], "diverge", 5);
    wait_for_full_isr(&cluster.nodes[0], "diverge");
    let controller = metadata(&mut cluster.nodes[0].client()).controller_id.0;
    let (p, (old, replicas)) = assignment(&cluster.nodes[0], "diverge")
        .into_iter()
        .enumerate()
        .find(|(_, (_, r))| !r.contains(&controller))
        .expect("a partition away from the controller");
    let p = p as i32;
    let follower = *replicas.iter().find(|r| **r != old).expect("two replicas");
    let (topic, _) = wait_for_topic(cluster.node(old), "diverge", 5);
    let committed = produce_to(cluster.node(old), &topic, p, "both");
    let _ = read_all_of(cluster.node(old), &topic, p, committed.len());

    // The follower stops; the leader alone takes acks=1 writes, then dies with them.
    cluster.node(follower).pause();
    let mut client = cluster.node(old).client();
    for i in 0..3 {
        let r = client.produce(
            kafka_protocol::messages::ProduceRequest::VERSIONS.max,
            &topic,
            p,
            encode_batch(&test_records(4, &format!("alone{i}")), Compression::None),
            1,
        );
        assert_eq!(r.error_code, codes::NONE, "acks=1 on the leader alone");
    }
    cluster.node(old).kill();
    cluster.node(follower).resume();
    let watcher = (1..=5).find(|id| *id != old && *id != follower).expect("five nodes");
    let leader = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (l, _) = assignment(cluster.node(watcher), "diverge")[p as usize].clone();
            if l == follower {
                break l;
            }
            assert!(Instant::now() < deadline, "partition {p} not led by {follower}: {l}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let after = produce_to(cluster.node(leader), &topic, p, "after");
    // What the new leader holds: the committed records, perhaps a batch the follower had
    // fetched before it stopped, and the new ones; never all three batches only the old
    // leader had.
    let want = read_all_of(cluster.node(leader), &topic, p, committed.len() + after.len());
    assert!(
        want.len() < committed.len() + 12 + after.len(),
        "{} records",
        want.len()
    );
    assert_same_records(
        &want[..committed.len()],
        &committed,
        0,
        "committed records on the new leader",
    );

    // The old leader comes back as a follower, cuts the records only it had, copies the new
    // leader's, and rejoins the ISR; then it leads again with the same log.
    cluster.node(old).relaunch();
    cluster.node(old).await_ready();
    wait_for_full_isr(cluster.node(watcher), "diverge");
    cluster.node(leader).kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while assignment(cluster.node(watcher), "diverge")[p as usize].0 != old {
        assert!(Instant::now() < deadline, "partition {p} not led by {old} again");
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = read_all_of(cluster.node(old), &topic, p, want.len());
    assert_same_records(&got, &want, 0, "the old leader's log after it rejoined");
}

/// A second process started with a live node's `node.id` (its own ports and data, the same
/// voters) refuses to start and says why, and the cluster keeps that node as it was: listed
/// at its own address, unfenced, leading what it led.
#[test]
fn a_second_process_with_a_live_node_id_refuses_to_start() {
    let mut cluster = Cluster::start(3);
    let before = wait_for_brokers(&cluster.nodes[0], 3);
    let voters = cluster.voters();
    let client = format!("PLAINTEXT://127.0.0.1:{}", free_port());
    let listeners = format!("{client},CONTROLLER://127.0.0.1:{}", free_port());
    let report = Broker::run_until_exit(
        BrokerOptions::with_overrides(&[
            ("node.id", "2"),
            ("listeners", &listeners),
            ("advertised.listeners", &client),
            ("controller.listener.names", "CONTROLLER"),
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", &voters),
        ]),
        Duration::from_secs(60),
    );
    let status = report.status.expect("the second node 2 exits by itself");
    assert!(!status.success(), "it must not start: {report:?}");
    assert!(
        report.stderr.contains("node.id 2 is taken"),
        "it says why: {}",
        report.stderr
    );

    // Nothing moved: node 2 is still listed at its own address, and answers.
    let after = metadata(&mut cluster.node(1).client());
    let address = |md: &MetadataResponse| {
        md.brokers
            .iter()
            .find(|b| b.node_id.0 == 2)
            .map(|b| (b.host.to_string(), b.port))
    };
    assert_eq!(address(&after), address(&before));
    assert!(address(&after).is_some(), "node 2 listed: {after:?}");
    let mut c = cluster.node(2).client();
    create_topic(&mut c, "after-the-duplicate", 3);
    let (topic, leaders) = wait_for_topic(cluster.node(2), "after-the-duplicate", 3);
    assert!(leaders.contains(&2), "node 2 leads a partition again: {leaders:?}");
    let p = i32::try_from(leaders.iter().position(|l| *l == 2).expect("a partition of node 2")).expect("index");
    let sent = produce_to(cluster.node(2), &topic, p, "after");
    assert_same_records(
        &read_partition(cluster.node(2), &topic, p),
        &sent,
        0,
        "node 2's partition",
    );
}

/// A replica fetch (Fetch v12 with `replica_id`, as followers send it) with a leader epoch older
/// than the partition's is FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH, and any fetch
/// sent to a follower NOT_LEADER_OR_FOLLOWER, as Kafka answers them; none of them moves the
/// partition: every replica stays in sync and the records read back the same.
#[test]
fn replica_fetches_with_a_stale_or_future_leader_epoch_are_refused() {
    let mut cluster = Cluster::start_with(
        3,
        &[
            ("broker.session.timeout.ms", "2000"),
            ("broker.heartbeat.interval.ms", "300"),
        ],
    );
    wait_for_brokers(&cluster.nodes[0], 3);
    create_replicated_topic(&mut cluster.node(1).client(), "epochs", 1, 3, &[]);
    let (_, leaders) = wait_for_topic(cluster.node(1), "epochs", 1);
    wait_for_full_isr(cluster.node(1), "epochs");
    // A leader change, so that there is an older epoch to send.
    let first = leaders[0];
    cluster.node(first).kill();
    let watcher = if first == 1 { 2 } else { 1 };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (topic, leader) = loop {
        let (topic, leaders) = wait_for_topic(cluster.node(watcher), "epochs", 1);
        if leaders[0] != first {
            break (topic, leaders[0]);
        }
        assert!(Instant::now() < deadline, "no new leader for epochs");
        std::thread::sleep(Duration::from_millis(50));
    };
    cluster.node(first).relaunch();
    cluster.node(first).await_ready();
    wait_for_full_isr(cluster.node(leader), "epochs");
    let sent = produce_to(cluster.node(leader), &topic, 0, "epochs");
    let epoch = {
        let md = cluster.node(leader).client().metadata(Some(&["epochs"]), false);
        md.topics[0].partitions[0].leader_epoch
    };
    assert!(epoch >= 1, "the leader changed: epoch {epoch}");
    let follower = (1..=3).find(|&n| n != leader).expect("a follower");

    let replica_fetch = |node: &Broker, current_epoch: i32| -> i16 {
        let mut req = Client::fetch_request(&topic, 0, 0, 0, 0);
        req.replica_id = kafka_protocol::messages::BrokerId(follower);
        req.topics[0].partitions[0].current_leader_epoch = current_epoch;
        let resp = node.client().send_request(12, req);
        fjord_tests::client::single_fetch_partition(resp.responses, 0).error_code
    };
    assert_eq!(
        replica_fetch(cluster.node(leader), epoch - 1),
        codes::FENCED_LEADER_EPOCH
    );
    assert_eq!(
        replica_fetch(cluster.node(leader), epoch + 1),
        codes::UNKNOWN_LEADER_EPOCH
    );
    let other = (1..=3)
        .find(|&n| n != leader && n != follower)
        .expect("another follower");
    assert_eq!(replica_fetch(cluster.node(other), epoch), codes::NOT_LEADER_OR_FOLLOWER);
    assert_eq!(replica_fetch(cluster.node(leader), epoch), codes::NONE);

    // Nothing moved: the ISR is whole and every record reads back from the leader.
    let all = isrs(cluster.node(leader), "epochs");
    assert_eq!(all[0].1, all[0].2, "every replica in sync: {all:?}");
    let got = read_all_of(cluster.node(leader), &topic, 0, sent.len());
    assert_same_records(&got, &sent, 0, "the partition after the refused fetches");
}
