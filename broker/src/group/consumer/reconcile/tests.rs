use std::collections::BTreeMap;

use super::*;
use crate::group::consumer::test_support::*;
use crate::group::consumer::DEFAULT_HEARTBEAT_INTERVAL_MS;

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
