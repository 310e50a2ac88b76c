use super::*;
use crate::group::consumer::test_support::*;
use crate::group::consumer::LEAVE_GROUP_MEMBER_EPOCH;

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
fn describe_and_offset_validation() {
    let mut h = Harness::new(&[("t", 2)]);
    assert_eq!(h.group.validate_offset_commit("", -1, []), Ok(()));
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

    assert_eq!(h.group.validate_offset_commit("m1", 1, []), Ok(()));
    assert_eq!(
        h.group.validate_offset_commit("m1", 2, []),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        h.group.validate_offset_commit("zz", 1, []),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        h.group.validate_offset_commit("", -1, []),
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

/// Kafka's assignment-epoch validator: a commit at an epoch older than the member's current
/// one is accepted for partitions the member already had at that epoch, and refused for a
/// partition it received later, or never had.
#[test]
fn offset_commit_at_an_older_epoch() {
    let mut h = Harness::new(&[("t", 4)]);
    let t = topic_id("t");
    let mut m1 = Client::new("m1", &["t"]);
    h.join(&mut m1);
    let first_epoch = m1.epoch;
    assert_eq!(
        h.group.member("m1").expect("present").assignment_epoch(t, 0),
        Some(first_epoch)
    );
    // A second member joins: m1 revokes half, and moves on to the new epoch.
    let mut m2 = Client::new("m2", &["t"]);
    h.join(&mut m2);
    let mut clients = [m1, m2];
    h.converge(&mut clients);
    let [m1, m2] = clients;
    assert!(m1.epoch > first_epoch);
    let kept: Vec<i32> = m1.owned[&t].iter().copied().collect();
    let given: Vec<i32> = m2.owned[&t].iter().copied().collect();
    assert_eq!(kept.len(), 2);
    // m1 kept these since its first epoch: a commit at that epoch still lands.
    for p in &kept {
        assert_eq!(
            h.group.member("m1").expect("present").assignment_epoch(t, *p),
            Some(first_epoch)
        );
    }
    assert_eq!(
        h.group
            .validate_offset_commit("m1", first_epoch, kept.iter().map(|p| (t, *p))),
        Ok(())
    );
    // Partitions it no longer owns, or a newer epoch than its own, are refused.
    assert_eq!(
        h.group.validate_offset_commit("m1", first_epoch, [(t, given[0])]),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        h.group.validate_offset_commit("m1", m1.epoch + 1, []),
        Err(ResponseError::StaleMemberEpoch)
    );
    // m2 received its partitions at its first epoch: an epoch before that is refused.
    let m2_at = h
        .group
        .member("m2")
        .expect("present")
        .assignment_epoch(t, given[0])
        .expect("present");
    assert_eq!(m2_at, m2.epoch);
    assert_eq!(
        h.group.validate_offset_commit("m2", m2_at - 1, [(t, given[0])]),
        Err(ResponseError::StaleMemberEpoch)
    );
    // The epochs survive the group's record.
    let loaded = ConsumerGroup::from_record(&h.group.to_record(), std::time::Instant::now()).expect("present");
    assert_eq!(
        loaded.member("m1").expect("present").assignment_epochs,
        h.group.member("m1").expect("present").assignment_epochs
    );
}
