//! Scenarios of docs/streams-groups.md §14, verified against Kafka 4.4, replayed on the state
//! machine.

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::streams_group_heartbeat_request::{
    Endpoint, Subtopology, TaskIds, TopicInfo as ReqTopicInfo, Topology as ReqTopology,
};
use kafka_protocol::messages::{StreamsGroupHeartbeatRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::group::{TopicInfo, TopicsView};
use super::*;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topics(list: &[(&str, i32)]) -> TopicsView {
    TopicsView {
        topics: list
            .iter()
            .map(|(n, p)| {
                (
                    n.to_string(),
                    TopicInfo {
                        topic_id: Uuid::new_v4(),
                        partitions: *p,
                    },
                )
            })
            .collect(),
    }
}

fn internal(name: &str) -> ReqTopicInfo {
    ReqTopicInfo::default()
        .with_name(TopicName(sb(name)))
        .with_replication_factor(-1)
}

/// Scenario 1's topology: `0` reads `in` into a store and repartitions to `app-rep`; `1` reads
/// `app-rep` into another store.
fn two_subtopologies() -> ReqTopology {
    ReqTopology::default().with_epoch(0).with_subtopologies(vec![
        Subtopology::default()
            .with_subtopology_id(sb("0"))
            .with_source_topics(vec![TopicName(sb("in"))])
            .with_state_changelog_topics(vec![internal("app-store-changelog")])
            .with_repartition_sink_topics(vec![TopicName(sb("app-rep"))]),
        Subtopology::default()
            .with_subtopology_id(sb("1"))
            .with_repartition_source_topics(vec![internal("app-rep")])
            .with_state_changelog_topics(vec![internal("app-agg-changelog")]),
    ])
}

fn one_subtopology() -> ReqTopology {
    ReqTopology::default()
        .with_epoch(0)
        .with_subtopologies(vec![Subtopology::default()
            .with_subtopology_id(sb("0"))
            .with_source_topics(vec![TopicName(sb("in"))])])
}

fn join(member: &str, process: &str, topology: ReqTopology) -> StreamsGroupHeartbeatRequest {
    StreamsGroupHeartbeatRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(sb("app")))
        .with_member_id(sb(member))
        .with_member_epoch(0)
        .with_endpoint_information_epoch(-1)
        .with_rebalance_timeout_ms(300_000)
        .with_topology(Some(topology))
        .with_active_tasks(Some(vec![]))
        .with_standby_tasks(Some(vec![]))
        .with_warmup_tasks(Some(vec![]))
        .with_process_id(Some(sb(process)))
        .with_client_tags(Some(vec![]))
}

fn beat(member: &str, epoch: i32) -> StreamsGroupHeartbeatRequest {
    StreamsGroupHeartbeatRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(sb("app")))
        .with_member_id(sb(member))
        .with_member_epoch(epoch)
        .with_endpoint_information_epoch(-1)
        .with_rebalance_timeout_ms(-1)
}

fn owning(mut req: StreamsGroupHeartbeatRequest, active: &[i32]) -> StreamsGroupHeartbeatRequest {
    req.active_tasks = Some(vec![TaskIds::default()
        .with_subtopology_id(sb("0"))
        .with_partitions(active.to_vec())]);
    req.standby_tasks = Some(vec![]);
    req.warmup_tasks = Some(vec![]);
    req
}

struct H {
    group: StreamsGroup,
    cfg: StreamsGroupConfig,
    topics: TopicsView,
    now: Instant,
    now_ms: i64,
}

impl H {
    fn new(topics: TopicsView, delay_ms: i32) -> Self {
        H {
            group: StreamsGroup::new("app"),
            cfg: StreamsGroupConfig {
                initial_rebalance_delay_ms: delay_ms,
                assignment_interval_ms: 0,
                ..Default::default()
            },
            topics,
            now: Instant::now(),
            now_ms: 1_000_000,
        }
    }

    fn send(&mut self, req: &StreamsGroupHeartbeatRequest) -> std::result::Result<HeartbeatOutcome, HeartbeatError> {
        validate_request(req)?;
        if req.member_epoch < 0 {
            return self.group.leave(1, req);
        }
        let created = self.group.is_empty() && self.group.topology().is_none();
        self.group.heartbeat(
            1,
            req,
            "client",
            "/127.0.0.1",
            &self.topics,
            &self.cfg,
            self.now,
            self.now_ms,
            created,
        )
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.now_ms += ms as i64;
        self.group.tick(self.now, self.now_ms, &self.cfg);
    }
}

fn active(resp: &kafka_protocol::messages::StreamsGroupHeartbeatResponse) -> Vec<(String, Vec<i32>)> {
    resp.active_tasks
        .as_ref()
        .map(|l| {
            l.iter()
                .map(|t| (t.subtopology_id.to_string(), t.partitions.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn statuses(resp: &kafka_protocol::messages::StreamsGroupHeartbeatResponse) -> Vec<i8> {
    resp.status
        .as_ref()
        .expect("present")
        .iter()
        .map(|s| s.status_code)
        .collect()
}

#[test]
fn first_join_waits_for_the_delay_and_the_internal_topics() {
    let mut h = H::new(topics(&[("in", 4)]), 3000);
    let mut req = join("m1", "p1", two_subtopologies());
    req.user_endpoint = Some(Endpoint::default().with_host(sb("localhost")).with_port(8080));
    let out = h.send(&req).expect("present");
    let r = out.response;
    assert_eq!(r.member_epoch, 1);
    assert_eq!(statuses(&r), vec![5, 3]);
    assert_eq!(
        r.status.as_ref().expect("present")[1].status_detail.as_str(),
        "Internal topics are missing: app-agg-changelog, app-rep, app-store-changelog"
    );
    assert_eq!(r.endpoint_information_epoch, 0);
    assert_eq!(r.partitions_by_user_endpoint.as_ref().expect("present").len(), 1);
    let mut created: Vec<(String, i32)> = out.to_create.iter().map(|t| (t.name.clone(), t.partitions)).collect();
    created.sort();
    assert_eq!(
        created,
        vec![
            ("app-agg-changelog".to_string(), 4),
            ("app-rep".to_string(), 4),
            ("app-store-changelog".to_string(), 4)
        ]
    );
    assert_eq!(h.group.state(), "NotReady");
    assert_eq!((h.group.group_epoch(), h.group.assignment_epoch()), (2, 1));

    // The topics appear; once the delay is over the member gets every task.
    h.topics = topics(&[
        ("in", 4),
        ("app-rep", 4),
        ("app-store-changelog", 4),
        ("app-agg-changelog", 4),
    ]);
    h.advance(3100);
    let r = h.send(&beat("m1", 1)).expect("present").response;
    assert_eq!(r.member_epoch, 3);
    assert!(statuses(&r).is_empty(), "{:?}", r.status);
    assert_eq!(
        active(&r),
        vec![("0".to_string(), vec![0, 1, 2, 3]), ("1".to_string(), vec![0, 1, 2, 3])]
    );
    assert_eq!(h.group.state(), "Stable");
    let d = h.group.describe();
    let subs = d.topology.expect("present").subtopologies.expect("present");
    assert_eq!(subs[1].repartition_source_topics[0].partitions, 4);
}

#[test]
fn a_second_member_gets_tasks_only_after_the_first_revokes() {
    let mut h = H::new(topics(&[("in", 4)]), 0);
    let r = h.send(&join("m1", "p1", one_subtopology())).expect("present").response;
    assert_eq!(active(&r), vec![("0".to_string(), vec![0, 1, 2, 3])]);
    let e1 = r.member_epoch;
    let r2 = h.send(&join("m2", "p2", one_subtopology())).expect("present").response;
    assert_eq!(r2.member_epoch, e1 + 1);
    assert_eq!(active(&r2), vec![], "all four still held by m1");
    // m1 is asked to give up two tasks and stays at its epoch.
    let r = h.send(&beat("m1", e1)).expect("present").response;
    assert_eq!(r.member_epoch, e1);
    let kept = active(&r)[0].1.clone();
    assert_eq!(kept.len(), 2);
    // Without its task lists nothing moves.
    let r = h.send(&beat("m1", e1)).expect("present").response;
    assert_eq!(r.member_epoch, e1);
    // Reporting only what it kept, it moves on; m2 then gets the other two.
    let r = h.send(&owning(beat("m1", e1), &kept)).expect("present").response;
    assert_eq!(r.member_epoch, e1 + 1);
    let r2 = h.send(&owning(beat("m2", e1 + 1), &[])).expect("present").response;
    let given = &active(&r2)[0].1;
    assert_eq!(given.len(), 2);
    assert!(given.iter().all(|p| !kept.contains(p)));
    assert_eq!(h.group.state(), "Stable");

    // Offsets: an older epoch is accepted for a task held since then, not for a new one.
    assert_eq!(
        h.group.validate_offset_commit("m1", None, e1, false, [("in", kept[0])]),
        Ok(())
    );
    assert_eq!(
        h.group
            .validate_offset_commit("m2", None, e1, false, [("in", given[0])]),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        h.group.validate_offset_commit("m1", None, e1 + 5, false, []),
        Err(ResponseError::StaleMemberEpoch)
    );
    // The record round-trips.
    let loaded = StreamsGroup::from_record(&h.group.to_record(), h.now, &h.cfg).expect("present");
    assert_eq!(loaded.to_record(), h.group.to_record());

    // m1 leaves: the group epoch moves on and m2 takes everything.
    let r = h.send(&beat("m1", -1)).expect("present").response;
    assert_eq!(r.member_epoch, -1);
    let r2 = h.send(&owning(beat("m2", e1 + 1), given)).expect("present").response;
    assert_eq!(active(&r2)[0].1, vec![0, 1, 2, 3]);
}

#[test]
fn validation_texts() {
    let mut h = H::new(topics(&[("in", 4)]), 0);
    let mut req = join("m1", "p1", one_subtopology());
    req.rebalance_timeout_ms = -1;
    assert_eq!(
        h.send(&req).expect_err("refused").message.expect("present"),
        "RebalanceTimeoutMs must be provided in first request."
    );
    let err = h.send(&beat("nobody", 3)).expect_err("refused");
    assert_eq!(err.error, ResponseError::UnknownMemberId);
    let mut t = one_subtopology();
    t.subtopologies[0]
        .source_topics
        .push(TopicName(sb("__consumer_offsets")));
    let err = h.send(&join("m1", "p1", t)).expect_err("refused");
    assert_eq!(
        err.message.expect("present"),
        "Use of Kafka internal topics __consumer_offsets in a Kafka Streams topology is prohibited."
    );
    h.send(&join("m1", "p1", one_subtopology())).expect("present");
    let mut other = one_subtopology();
    other.subtopologies[0].source_topics.push(TopicName(sb("in2")));
    let err = h.send(&join("m2", "p2", other)).expect_err("refused");
    assert_eq!(err.message.expect("present"), "Topology updates are not supported yet.");
    let err = h.send(&beat("m1", 99)).expect_err("refused");
    assert_eq!(err.error, ResponseError::FencedMemberEpoch);
}

#[test]
fn missing_source_topics_are_a_status() {
    let mut h = H::new(topics(&[]), 0);
    let r = h.send(&join("m1", "p1", one_subtopology())).expect("present").response;
    let s = &r.status.expect("present")[0];
    assert_eq!(s.status_code, 1);
    assert_eq!(s.status_detail.as_str(), "Source topics in are missing.");
    assert_eq!(h.group.state(), "NotReady");
    assert_eq!(h.group.state_filter_name(), "not_ready");
}

#[test]
fn static_member_leaves_for_a_while_and_comes_back() {
    let mut h = H::new(topics(&[("in", 2)]), 0);
    let mut j = join("a", "p1", one_subtopology());
    j.instance_id = Some(sb("i1"));
    let r = h.send(&j).expect("present").response;
    assert_eq!(active(&r)[0].1, vec![0, 1]);
    let mut again = join("b", "p1", one_subtopology());
    again.instance_id = Some(sb("i1"));
    assert_eq!(
        h.send(&again).expect_err("refused").error,
        ResponseError::UnreleasedInstanceId
    );
    let mut leave = beat("a", -2);
    leave.instance_id = Some(sb("i1"));
    let epoch_before = h.group.group_epoch();
    assert_eq!(h.send(&leave).expect("present").response.member_epoch, -2);
    assert_eq!(h.group.state(), "Reconciling");
    let r = h.send(&again).expect("present").response;
    assert_eq!(active(&r)[0].1, vec![0, 1], "the same tasks at once");
    assert_eq!(h.group.group_epoch(), epoch_before);
    assert_eq!(h.group.state(), "Stable");
}
