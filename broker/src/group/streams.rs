//! KIP-1071 streams groups: the server side of StreamsGroupHeartbeat (API key 88, versions
//! 0-1) and StreamsGroupDescribe (API key 89, versions 0-1), which a Kafka Streams application
//! uses with `group.protocol=streams`. The broker keeps the application's topology, works out
//! the partition counts of its repartition and changelog topics (and has the missing ones
//! created), assigns tasks with Kafka's `sticky` task assignor, and moves each member to its
//! tasks one heartbeat at a time so that no task is ever processed twice.
//!
//! Pure state machine, like [`super::consumer`]: no I/O, time passed in. The behaviour follows
//! Kafka 4.4's group coordinator as docs/streams-groups.md sets it out; deliberate differences:
//! * topic metadata is compared on every heartbeat instead of a hash refreshed on metadata
//!   events (the same epoch bumps);
//! * ties the assignor breaks by hash-map order in Kafka are broken by process and member id;
//! * a member with a user endpoint while the topology cannot be configured gets empty
//!   partition lists, where Kafka 4.4 fails the heartbeat with UNKNOWN_SERVER_ERROR;
//! * there is no topology description plugin (KIP-1331): API 93 answers UNSUPPORTED_VERSION,
//!   as Kafka does without one.
//!
//! KIP-1071: <https://cwiki.apache.org/confluence/display/KAFKA/KIP-1071%3A+Streams+Rebalance+Protocol>

mod assignor;
mod describe;
mod group;
mod heartbeat;
mod reconcile;
#[cfg(test)]
mod tests;
mod topology;

pub use group::{Member, MemberState, StreamsGroup, StreamsGroupConfig, TargetTasks, Tasks};
pub use heartbeat::{
    error_response, validate_request, HeartbeatError, HeartbeatOutcome, LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
};
pub use topology::{status, ConfiguredTopology, TopicToCreate, Topology};

use kafka_protocol::protocol::StrBytes;

fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
