//! Raft transport. Fjord's metadata quorum is a single voter for now, so Raft never has a peer to
//! talk to; this stub exists so that the rest of the node is the real thing.

use std::fmt;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use crate::raft_types::{NodeId, TypeConfig};

/// Builds a client per peer. STUB: the multi-voter cluster issue replaces this with a real
/// transport; until then every peer is [`Unreachable`], which openraft handles like a network
/// partition (back off, retry), so a stray membership change cannot crash the node.
#[derive(Clone, Debug, Default)]
pub(crate) struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = UnreachablePeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        tracing::debug!(target, addr = %node.addr, "raft peer client created (stub transport)");
        UnreachablePeer {
            target,
            addr: node.addr.clone(),
        }
    }
}

/// A peer that cannot be reached: every RPC fails with [`Unreachable`].
pub(crate) struct UnreachablePeer {
    target: NodeId,
    addr: String,
}

/// Why every RPC fails.
#[derive(Debug)]
struct NoTransport {
    target: NodeId,
    addr: String,
}

impl fmt::Display for NoTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no raft transport to node {} at {} (single-voter controller)",
            self.target, self.addr
        )
    }
}

impl std::error::Error for NoTransport {}

impl UnreachablePeer {
    fn unreachable(&self) -> Unreachable {
        Unreachable::new(&NoTransport {
            target: self.target,
            addr: self.addr.clone(),
        })
    }
}

impl RaftNetwork<TypeConfig> for UnreachablePeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }
}
