//! The KIP-848 consumer group: the server side of ConsumerGroupHeartbeat (API key 68,
//! versions 0-1) and ConsumerGroupDescribe (API key 69, versions 0-1).
//!
//! Pure state machine: no I/O, no clock of its own (callers pass `now`), no globals. The handler
//! looks the group up, calls [`ConsumerGroup::heartbeat`] / [`ConsumerGroup::tick`], and
//! persists [`ConsumerGroup::to_record`] whenever they report a change.
//!
//! The behaviour follows Apache Kafka 4.1's group coordinator (`GroupMetadataManager`,
//! `modern/consumer/ConsumerGroup`, `modern/consumer/CurrentAssignmentBuilder`):
//!
//! * Every change of subscriptions, membership or subscribed-topic metadata bumps the *group
//!   epoch*. When the group epoch is ahead of the *assignment epoch*, the next heartbeat
//!   recomputes the *target assignment* with the server assignor ([`super::assignor`]).
//! * Each member then converges on its target one heartbeat at a time: it first revokes what
//!   it must give up (staying at its epoch, state `UnrevokedPartitions`), then moves to the new
//!   epoch, receiving only partitions that no other member still owns (state
//!   `UnreleasedPartitions` while some are still held elsewhere). So a partition never has two
//!   owners.
//!
//! Deliberate differences from Kafka, each for a pure, synchronous module:
//! * Regular expressions are resolved synchronously on every heartbeat, not by a background
//!   task rate-limited to one refresh per 10 s; a new regex subscription therefore bumps the
//!   epoch on the join itself. Kafka matches with RE2/J; this uses the `regex` crate, see
//!   [`compile_regex`].
//! * Subscribed-topic metadata (names, ids, partition counts) is compared on every heartbeat
//!   instead of a hash refreshed on metadata-image changes; a difference bumps the epoch.
//! * Internal topics are never matched by a regex (Kafka matches them, subject to ACLs).
//!
//! KIP-848: <https://cwiki.apache.org/confluence/display/KAFKA/KIP-848%3A+The+Next+Generation+of+the+Consumer+Rebalance+Protocol>

use kafka_protocol::protocol::StrBytes;

mod group;
mod heartbeat;
mod persistence;
mod reconcile;
#[cfg(test)]
mod test_support;

pub use group::{
    compile_regex, ConsumerGroup, ConsumerGroupConfig, Member, TopicInfo, TopicsView, DEFAULT_HEARTBEAT_INTERVAL_MS,
    DEFAULT_SESSION_TIMEOUT_MS, INTERNAL_TOPICS,
};
pub use heartbeat::{
    error_response, group_not_found_response, validate_heartbeat_request, HeartbeatError, HeartbeatOutcome,
    CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION, LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH,
};
pub use reconcile::MemberState;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
