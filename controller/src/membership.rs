//! Changing the controller quorum online, as KIP-853 does for Kafka's KRaft: a node started
//! with `controller.quorum.bootstrap.servers` (and no `controller.quorum.voters`) joins the
//! quorum as an observer (an openraft learner: it receives and applies the metadata log, and
//! serves as a broker, but does not vote), AddRaftVoter makes an observer that has caught up a
//! voter, and RemoveRaftVoter makes a voter an observer again. Each change goes through Raft's
//! joint consensus, one at a time.
//!
//! Every change is decided by the leader; another node forwards it ([`Controller::change_voters`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use crate::controller::Controller;
use crate::error::{ControllerError, Result};
use crate::network::CallError;
use crate::raft_types::NodeId;

/// A change of the quorum's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change {
    /// A node asks to follow the metadata log as an observer; `addr` is its controller endpoint.
    Join { node_id: NodeId, addr: String },
    /// AddRaftVoter: an observer becomes a voter once it has caught up, within `timeout_ms`.
    AddVoter { node_id: NodeId, timeout_ms: u64 },
    /// RemoveRaftVoter: a voter becomes an observer.
    RemoveVoter { node_id: NodeId },
}

/// Why the leader refused a change (each maps to Kafka's error for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// Not the leader; the leader it knows of.
    NotLeader(Option<NodeId>),
    /// `DUPLICATE_VOTER`.
    DuplicateVoter(String),
    /// `VOTER_NOT_FOUND`.
    VoterNotFound(String),
    /// `INVALID_REQUEST`.
    Invalid(String),
    /// `REQUEST_TIMED_OUT`: the new voter did not catch up in time, or another change is under
    /// way.
    TimedOut(String),
    /// The leader's Raft failed or stopped.
    Stopped(String),
}

impl From<Refusal> for ControllerError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotLeader(l) => ControllerError::NotController(format!("the leader is {l:?}")),
            Refusal::DuplicateVoter(m) => ControllerError::DuplicateVoter(m),
            Refusal::VoterNotFound(m) => ControllerError::VoterNotFound(m),
            Refusal::Invalid(m) => ControllerError::InvalidRequest(m),
            Refusal::TimedOut(m) => ControllerError::TimedOut(m),
            Refusal::Stopped(m) => ControllerError::Raft(m),
        }
    }
}

/// Applies `change` on this node, which must be the leader.
pub(crate) async fn apply_as_leader(c: &Controller, change: Change) -> std::result::Result<(), Refusal> {
    let raft = c.raft();
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(c.node_id()) {
        return Err(Refusal::NotLeader(m.current_leader));
    }
    let membership = m.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let known: BTreeMap<NodeId, BasicNode> = membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
    let write_error = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Refusal::NotLeader(f.leader_id),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(p))) => {
            Refusal::TimedOut(format!("another voter change is under way: {p}"))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => Refusal::Invalid(e.to_string()),
        RaftError::Fatal(f) => Refusal::Stopped(f.to_string()),
    };
    match change {
        Change::Join { node_id, addr } => {
            if let Some(n) = known.get(&node_id) {
                if n.addr != addr {
                    return Err(Refusal::Invalid(format!(
                        "node {node_id} is in the quorum with the controller endpoint {}, not {addr}: \
                         every process of a cluster needs a node.id of its own",
                        n.addr
                    )));
                }
                return Ok(());
            }
            tracing::info!(node_id, %addr, "a node joins the controller quorum as an observer");
            raft.add_learner(node_id, BasicNode::new(addr), false)
                .await
                .map_err(write_error)?;
            Ok(())
        }
        Change::AddVoter { node_id, timeout_ms } => {
            if voters.contains(&node_id) {
                return Err(Refusal::DuplicateVoter(format!("node {node_id} is already a voter")));
            }
            let Some(node) = known.get(&node_id).cloned() else {
                return Err(Refusal::TimedOut(format!(
                    "node {node_id} is not an observer of the quorum: start it with \
                     controller.quorum.bootstrap.servers first"
                )));
            };
            // A broker-only node (process.roles=broker) follows the log but must never vote.
            // One that cannot be asked is refused later, as it cannot catch up either.
            if let Ok(Ok(who)) = c.peer(node_id, node.addr.clone()).identify().await {
                if who.node_id == node_id && !who.controller {
                    return Err(Refusal::Invalid(format!(
                        "node {node_id} is a broker-only node (process.roles=broker); only a node \
                         with the controller role can be a voter"
                    )));
                }
            }
            // add_learner of a learner only waits for it to be caught up.
            let caught_up = tokio::time::timeout(
                Duration::from_millis(timeout_ms.max(1)),
                raft.add_learner(node_id, node, true),
            )
            .await
            .map_err(|_| {
                Refusal::TimedOut(format!(
                    "node {node_id} did not catch up with the metadata log within {timeout_ms} ms"
                ))
            })?;
            caught_up.map_err(write_error)?;
            tracing::info!(node_id, "adding a controller voter");
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
                .await
                .map_err(write_error)?;
            Ok(())
        }
        Change::RemoveVoter { node_id } => {
            if !voters.contains(&node_id) {
                return Err(Refusal::VoterNotFound(format!("node {node_id} is not a voter")));
            }
            if voters.len() == 1 {
                return Err(Refusal::Invalid(format!(
                    "node {node_id} is the only voter; a quorum needs one"
                )));
            }
            tracing::info!(node_id, "removing a controller voter; it stays an observer");
            raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([node_id])), true)
                .await
                .map_err(write_error)?;
            if node_id == c.node_id() {
                resign(c).await;
            }
            Ok(())
        }
    }
}

/// A leader that removed itself from the voters resigns, as Kafka's does: openraft 0.9 would
/// keep it leading a quorum it no longer counts in. It goes silent, so that the voters'
/// election timers run out and they elect one of themselves, whose first append makes this
/// node a follower; it cannot stand again, not being a voter. Bounded: a stream of metadata
/// writes through this node can keep the voters' timers from running out.
async fn resign(c: &Controller) {
    let raft = c.raft();
    let me = c.node_id();
    raft.runtime_config().heartbeat(false);
    let handed_over = raft
        .wait(Some(RESIGN_WAIT))
        .metrics(|m| m.current_leader.is_some_and(|l| l != me), "another leader")
        .await;
    raft.runtime_config().heartbeat(true);
    match handed_over {
        Ok(m) => {
            tracing::info!(leader = ?m.current_leader, "removed from the voters, this node handed over the leadership")
        }
        Err(e) => {
            tracing::warn!(error = %e, "removed from the voters, this node still leads; the voters elect another once it is silent")
        }
    }
}

/// How long a leader that removed itself waits for the voters to elect another.
const RESIGN_WAIT: Duration = Duration::from_secs(10);

impl Controller {
    /// Applies a quorum change on the leader, from any node.
    pub(crate) async fn change_voters(&self, change: Change) -> Result<()> {
        let Some((leader, addr)) = self.leader_endpoint() else {
            return Err(ControllerError::NotController("no leader".to_string()));
        };
        if leader == self.node_id() {
            return apply_as_leader(self, change).await.map_err(Into::into);
        }
        match self.peer(leader, addr).change_membership(change).await {
            Ok(r) => r.map_err(Into::into),
            Err(e) => Err(ControllerError::NotController(format!("leader {leader}: {e}"))),
        }
    }

    /// Kafka's AddRaftVoter: makes observer `node_id` a voter once it has caught up with the
    /// metadata log, waiting at most `timeout_ms` for that.
    ///
    /// Errors: `DuplicateVoter`, `TimedOut` (not an observer, not caught up in time, or another
    /// change under way), `NotController`.
    pub async fn add_voter(&self, node_id: i32, timeout_ms: u64) -> Result<()> {
        self.change_voters(Change::AddVoter {
            node_id: node_id_of(node_id)?,
            timeout_ms,
        })
        .await
    }

    /// Kafka's RemoveRaftVoter: voter `node_id` stops voting; it stays an observer.
    ///
    /// Errors: `VoterNotFound`, `InvalidRequest` (the last voter), `TimedOut`, `NotController`.
    pub async fn remove_voter(&self, node_id: i32) -> Result<()> {
        self.change_voters(Change::RemoveVoter {
            node_id: node_id_of(node_id)?,
        })
        .await
    }

    /// Asks the quorum, through one of `bootstrap` (controller endpoints), to take this node as
    /// an observer at `addr`; the node asked forwards to its leader. Errors say why none did.
    pub(crate) async fn join(&self, bootstrap: &[String], addr: &str) -> Result<()> {
        let change = Change::Join {
            node_id: self.node_id(),
            addr: addr.to_string(),
        };
        let mut last = String::from("no bootstrap server");
        for server in bootstrap.iter().filter(|s| s.as_str() != addr) {
            match self
                .peer(self.node_id(), server.clone())
                .change_membership(change.clone())
                .await
            {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(Refusal::Invalid(m))) => return Err(ControllerError::InvalidRequest(m)),
                Ok(Err(r)) => last = format!("{server}: {r:?}"),
                Err(e @ (CallError::Connect(_) | CallError::Io(_))) => last = format!("{server}: {e}"),
            }
        }
        Err(ControllerError::NotController(last))
    }
}

fn node_id_of(id: i32) -> Result<NodeId> {
    if id < 0 {
        return Err(ControllerError::InvalidRequest(format!("invalid node id {id}")));
    }
    Ok(id)
}

/// A refusal to send back to the node that forwarded a change.
pub(crate) fn refusal(e: ControllerError) -> Refusal {
    match e {
        ControllerError::NotController(_) => Refusal::NotLeader(None),
        ControllerError::DuplicateVoter(m) => Refusal::DuplicateVoter(m),
        ControllerError::VoterNotFound(m) => Refusal::VoterNotFound(m),
        ControllerError::InvalidRequest(m) => Refusal::Invalid(m),
        ControllerError::TimedOut(m) => Refusal::TimedOut(m),
        other => Refusal::Stopped(other.to_string()),
    }
}
