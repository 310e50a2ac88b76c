use super::*;
use crate::group::consumer::test_support::*;

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
