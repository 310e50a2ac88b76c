use super::*;

fn cfg(delay_ms: u64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: delay_ms,
        ..GroupConfig::default()
    }
}

fn input(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinInput {
    JoinInput {
        version: 9,
        member_id: member_id.into(),
        instance_id: instance.map(Into::into),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
    }
}

fn now_of(a: Answer<JoinGroupResponse>) -> JoinGroupResponse {
    match a {
        Answer::Now(r) => r,
        Answer::Later(_) => panic!("expected an immediate answer"),
    }
}

fn deliver(g: &mut ClassicGroup) {
    for d in std::mem::take(&mut g.outbox) {
        d.send();
    }
}

/// First join with an unknown id: MEMBER_ID_REQUIRED, then the join proper.
fn join_new(g: &mut ClassicGroup, c: &GroupConfig, now: Instant) -> (String, oneshot::Receiver<JoinGroupResponse>) {
    let r = now_of(g.join(c, input("", None, &["range"]), now));
    assert_eq!(r.error_code, ResponseError::MemberIdRequired.code());
    let id = r.member_id.to_string();
    assert!(!id.is_empty());
    match g.join(c, input(&id, None, &["range"]), now) {
        Answer::Later(rx) => (id, rx),
        Answer::Now(r) => panic!("join answered early: {r:?}"),
    }
}

fn sync(
    g: &mut ClassicGroup,
    id: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
    now: Instant,
) -> Answer<SyncGroupResponse> {
    g.sync(
        SyncInput {
            member_id: id.into(),
            instance_id: None,
            generation,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.into()),
            protocol_name: Some("range".into()),
            assignments,
        },
        now,
    )
}

#[tokio::test]
async fn two_members_join_sync_and_rebalance_when_one_leaves() {
    let c = cfg(0);
    let now = Instant::now();
    let mut g = ClassicGroup::new();
    let (a, mut rx_a) = join_new(&mut g, &c, now);
    deliver(&mut g);
    assert!(
        rx_a.try_recv().is_err(),
        "the first join completes on the next timer tick"
    );
    g.tick(&c, now);
    deliver(&mut g);
    let ra = rx_a
        .try_recv()
        .expect("a single member completes the join at the first tick");
    assert_eq!(ra.generation_id, 1);
    assert_eq!(ra.leader.as_str(), a);
    assert_eq!(ra.members.len(), 1);
    assert_eq!(g.state(), ClassicState::CompletingRebalance);
    let Answer::Later(mut srx) = sync(&mut g, &a, 1, vec![(a.clone(), Bytes::from_static(b"A"))], now) else {
        panic!("leader sync waits for the group to persist")
    };
    assert!(g.dirty);
    deliver(&mut g);
    assert_eq!(
        srx.try_recv().expect("sync answered").assignment,
        Bytes::from_static(b"A")
    );
    assert_eq!(g.state(), ClassicState::Stable);

    // A second member: the group rebalances; the first must rejoin before it completes.
    let (b, mut rx_b) = join_new(&mut g, &c, now);
    assert_eq!(g.state(), ClassicState::PreparingRebalance);
    assert_eq!(g.heartbeat(&a, None, 1, now), Err(ResponseError::RebalanceInProgress));
    assert!(rx_b.try_recv().is_err());
    let Answer::Later(mut rx_a) = g.join(&c, input(&a, None, &["range"]), now) else {
        panic!("rejoin waits")
    };
    deliver(&mut g);
    let (ra, rb) = (rx_a.try_recv().expect("a"), rx_b.try_recv().expect("b"));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty(), "followers see none");
    assert_eq!(g.heartbeat(&b, None, 1, now), Err(ResponseError::IllegalGeneration));
    assert_eq!(g.heartbeat("nobody", None, 2, now), Err(ResponseError::UnknownMemberId));

    // The follower syncs first and waits for the leader.
    let Answer::Later(mut srx_b) = sync(&mut g, &b, 2, vec![], now) else {
        panic!()
    };
    let Answer::Later(mut srx_a) = sync(
        &mut g,
        &a,
        2,
        vec![
            (a.clone(), Bytes::from_static(b"A2")),
            (b.clone(), Bytes::from_static(b"B2")),
        ],
        now,
    ) else {
        panic!()
    };
    deliver(&mut g);
    assert_eq!(srx_b.try_recv().expect("b").assignment, Bytes::from_static(b"B2"));
    assert_eq!(srx_a.try_recv().expect("a").assignment, Bytes::from_static(b"A2"));

    // b leaves: a must rejoin into generation 3 alone.
    assert_eq!(g.leave(&c, &[(b.clone(), None)], now), vec![Ok(())]);
    assert_eq!(g.state(), ClassicState::PreparingRebalance);
    let Answer::Later(mut rx_a) = g.join(&c, input(&a, None, &["range"]), now) else {
        panic!()
    };
    deliver(&mut g);
    let ra = rx_a.try_recv().expect("a");
    assert_eq!(ra.generation_id, 3);
    assert_eq!(ra.members.len(), 1);
}

#[tokio::test]
async fn session_timeout_removes_a_silent_member() {
    let c = cfg(0);
    let t0 = Instant::now();
    let mut g = ClassicGroup::new();
    let (a, _rx) = join_new(&mut g, &c, t0);
    g.tick(&c, t0);
    deliver(&mut g);
    let _ = sync(&mut g, &a, 1, vec![], t0);
    deliver(&mut g);
    assert_eq!(g.state(), ClassicState::Stable);
    g.tick(&c, t0 + Duration::from_millis(9_000));
    assert_eq!(g.state(), ClassicState::Stable, "within the session timeout");
    g.tick(&c, t0 + Duration::from_millis(10_001));
    assert_eq!(
        g.state(),
        ClassicState::Empty,
        "the only member expired, and the empty join completed"
    );
    assert_eq!(g.generation(), 2);
}

#[tokio::test]
async fn inconsistent_protocols_are_refused_and_the_group_is_unharmed() {
    let c = cfg(0);
    let now = Instant::now();
    let mut g = ClassicGroup::new();
    let (a, _rx) = join_new(&mut g, &c, now);
    g.tick(&c, now);
    deliver(&mut g);
    let mut other = input("", None, &["roundrobin"]);
    let r = now_of(g.join(&c, other, now));
    assert_eq!(r.error_code, ResponseError::InconsistentGroupProtocol.code());
    other = input("", None, &["range"]);
    other.protocol_type = "connect".into();
    let r = now_of(g.join(&c, other, now));
    assert_eq!(r.error_code, ResponseError::InconsistentGroupProtocol.code());
    assert!(g.has_member(&a));
    assert_eq!(g.state(), ClassicState::CompletingRebalance);
}

#[tokio::test]
async fn static_member_rejoin_keeps_its_assignment_without_rebalance() {
    let c = cfg(0);
    let now = Instant::now();
    let mut g = ClassicGroup::new();
    let Answer::Later(mut rx) = g.join(&c, input("", Some("i1"), &["range"]), now) else {
        panic!("static members join without MEMBER_ID_REQUIRED")
    };
    g.tick(&c, now);
    deliver(&mut g);
    let r = rx.try_recv().expect("joined");
    let first_id = r.member_id.to_string();
    let _ = sync(
        &mut g,
        &first_id,
        1,
        vec![(first_id.clone(), Bytes::from_static(b"P"))],
        now,
    );
    deliver(&mut g);
    assert_eq!(g.state(), ClassicState::Stable);
    // The process restarts: same instance id, no member id.
    let r = now_of(g.join(&c, input("", Some("i1"), &["range"]), now));
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1, "no new generation");
    assert_ne!(r.member_id.as_str(), first_id);
    assert_eq!(g.state(), ClassicState::Stable);
    let Answer::Now(s) = g.sync(
        SyncInput {
            member_id: r.member_id.to_string(),
            instance_id: Some("i1".into()),
            generation: 1,
            protocol_type: None,
            protocol_name: None,
            assignments: vec![],
        },
        now,
    ) else {
        panic!("stable sync answers at once")
    };
    assert_eq!(s.assignment, Bytes::from_static(b"P"));
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(&first_id, Some("i1"), 1, now),
        Err(ResponseError::FencedInstanceId)
    );
}

#[tokio::test]
async fn records_round_trip() {
    let c = cfg(0);
    let now = Instant::now();
    let mut g = ClassicGroup::new();
    let (a, _rx) = join_new(&mut g, &c, now);
    g.tick(&c, now);
    deliver(&mut g);
    let _ = sync(&mut g, &a, 1, vec![(a.clone(), Bytes::from_static(b"X"))], now);
    deliver(&mut g);
    let back = ClassicGroup::from_record(&g.to_record(), now).expect("decodes");
    assert_eq!(back.state(), ClassicState::Stable);
    assert_eq!(back.generation(), 1);
    assert_eq!(
        back.members().next().map(|m| m.assignment.clone()),
        Some(Bytes::from_static(b"X"))
    );
}

#[tokio::test]
async fn initial_delay_waits_for_more_members() {
    let c = cfg(3_000);
    let t0 = Instant::now();
    let mut g = ClassicGroup::new();
    let (_a, mut rx_a) = join_new(&mut g, &c, t0);
    deliver(&mut g);
    assert!(rx_a.try_recv().is_err(), "the first join waits for the initial delay");
    let (_b, mut rx_b) = join_new(&mut g, &c, t0 + Duration::from_millis(1_000));
    g.tick(&c, t0 + Duration::from_millis(3_001));
    deliver(&mut g);
    assert!(rx_a.try_recv().is_err(), "a new member extended the delay");
    g.tick(&c, t0 + Duration::from_millis(6_002));
    deliver(&mut g);
    assert_eq!(rx_a.try_recv().expect("a").generation_id, 1);
    assert_eq!(rx_b.try_recv().expect("b").generation_id, 1);
}
