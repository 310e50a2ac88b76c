//! The metadata quorum as Kafka's DescribeQuorum reports it (`kafka-metadata-quorum.sh describe
//! --status`): leader, epoch, high watermark, and each voter's log end and when it was last
//! heard from. Only the leader knows its followers' progress; other nodes ask it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::controller::Controller;
use crate::error::{ControllerError, Result};

/// One voter's state as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterState {
    /// Node id.
    pub node_id: i32,
    /// Controller endpoint (`host:port`) from the quorum's membership.
    pub endpoint: String,
    /// Offset after the last metadata log entry the leader knows the voter has; -1 if unknown.
    pub log_end_offset: i64,
    /// When the leader last heard from the voter (its broker heartbeat), in ms since the epoch;
    /// -1 if never since it became leader.
    pub last_fetch_timestamp: i64,
    /// The same instant if the voter then had every committed entry, else -1.
    pub last_caught_up_timestamp: i64,
}

/// The quorum, from the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    /// Node id of the leader.
    pub leader_id: i32,
    /// The leader's term (Kafka's leader epoch of `__cluster_metadata`).
    pub leader_epoch: i32,
    /// Offset after the last committed entry.
    pub high_watermark: i64,
    /// The voters, in id order.
    pub voters: Vec<VoterState>,
    /// The observers (nodes that follow the log without voting), in id order.
    #[serde(default)]
    pub observers: Vec<VoterState>,
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Describes the quorum; `controller` must be the leader (else `NotController`).
pub(crate) async fn describe_as_leader(controller: &Controller) -> Result<QuorumDescription> {
    let raft = controller.raft();
    let me = controller.node_id();
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(me) {
        return Err(ControllerError::NotController(format!(
            "node {me} is not the leader ({:?} is)",
            m.current_leader
        )));
    }
    let committed = raft
        .with_raft_state(|st| st.committed.map(|l| l.index))
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;
    // Raft indexes start at 0; a Kafka offset after entry `i` is `i + 1`.
    let high_watermark = committed.map_or(0, |i| i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1));
    let last_log = m.last_log_index;
    let now = SystemTime::now();
    let membership = m.membership_config.membership();
    let state = |id: i32, node: &openraft::BasicNode| {
        let matched = if id == me {
            last_log
        } else {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index)
        };
        let log_end_offset = matched.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1));
        let heard = if id == me {
            Some(Duration::ZERO)
        } else {
            controller.liveness().heard_ago(id)
        };
        let last_fetch_timestamp = heard.map_or(-1, |ago| epoch_ms(now - ago));
        let caught_up = log_end_offset >= high_watermark;
        VoterState {
            node_id: id,
            endpoint: node.addr.clone(),
            log_end_offset,
            last_fetch_timestamp,
            last_caught_up_timestamp: if caught_up { last_fetch_timestamp } else { -1 },
        }
    };
    let (voters, observers): (Vec<VoterState>, Vec<VoterState>) = membership
        .nodes()
        .map(|(&id, node)| state(id, node))
        .partition(|v| membership.voter_ids().any(|id| id == v.node_id));
    Ok(QuorumDescription {
        leader_id: me,
        leader_epoch: i32::try_from(m.current_term).unwrap_or(i32::MAX),
        high_watermark,
        voters,
        observers,
    })
}
