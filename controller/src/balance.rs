//! Kafka's automatic leader balancing (`auto.leader.rebalance.enable`): after a failover a
//! partition stays with the replica that took over, so leadership piles up on the brokers
//! that stayed up. Every `leader.imbalance.check.interval.seconds` the active controller hands
//! each partition whose preferred replica (its first) is alive and in sync back to it, as
//! Kafka's `maybeBalancePartitionLeaders` does.

use std::time::Duration;

use crate::command::Command;
use crate::controller::Controller;
use crate::metadata::ClusterMetadata;

/// Partitions not led by their preferred replica, where that replica could lead.
pub(crate) fn imbalanced(meta: &ClusterMetadata) -> Vec<(String, i32)> {
    let live = meta.live_brokers();
    meta.topics
        .iter()
        .flat_map(|(name, t)| {
            t.partitions
                .iter()
                .filter(|p| {
                    p.replicas
                        .first()
                        .is_some_and(|r| p.leader != *r && p.isr.contains(r) && live.contains(r))
                })
                .map(move |p| (name.clone(), p.partition))
        })
        .collect()
}

/// While this node leads the quorum, moves leadership back to preferred replicas every
/// `interval`.
pub(crate) async fn balance_loop(controller: Controller, interval: Duration) {
    let me = i64::from(controller.node_id());
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; a cluster that just started has nothing to balance.
    tick.tick().await;
    loop {
        tick.tick().await;
        if controller.raft_status().leader != Some(me) {
            continue;
        }
        let partitions = imbalanced(&controller.metadata());
        if partitions.is_empty() {
            continue;
        }
        tracing::info!(
            partitions = partitions.len(),
            "moving leadership back to preferred replicas (auto.leader.rebalance.enable)"
        );
        let elect = Command::ElectLeaders {
            partitions: Some(partitions),
            unclean: false,
        };
        if let Err(e) = controller.write_as_leader(elect).await {
            tracing::warn!(error = %e, "could not balance partition leaders");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::command::{apply, CommandResponse};
    use crate::metadata::BrokerInfo;

    #[test]
    fn only_partitions_whose_preferred_replica_can_lead_are_imbalanced() {
        let mut meta = ClusterMetadata::default();
        for id in 1..=3 {
            let broker = BrokerInfo {
                node_id: id,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                listeners: Vec::new(),
            };
            apply(&mut meta, Command::RegisterBroker(broker));
        }
        let create = Command::CreateTopic {
            name: "t".into(),
            topic_id: uuid::Uuid::new_v4(),
            num_partitions: 3,
            replication_factor: 3,
            configs: BTreeMap::new(),
            assignment: None,
        };
        assert!(matches!(apply(&mut meta, create), CommandResponse::Topic(_)));
        assert!(
            imbalanced(&meta).is_empty(),
            "new partitions are led by their first replica"
        );
        let p = meta.topics["t"].partitions[0].clone();
        let preferred = p.replicas[0];
        apply(&mut meta, Command::FenceBroker { node_id: preferred });
        assert!(imbalanced(&meta).is_empty(), "a fenced preferred replica cannot lead");
        apply(&mut meta, Command::UnfenceBroker { node_id: preferred });
        assert!(imbalanced(&meta).is_empty(), "nor one out of the ISR");
        let moved = meta.topics["t"].partitions[0].clone();
        apply(
            &mut meta,
            Command::AlterIsr {
                topic: "t".into(),
                partition: 0,
                leader: moved.leader,
                leader_epoch: moved.leader_epoch,
                expected_isr: moved.isr.clone(),
                new_isr: moved.replicas.clone(),
            },
        );
        let led_elsewhere: Vec<(String, i32)> = meta.topics["t"]
            .partitions
            .iter()
            .filter(|p| p.leader != p.replicas[0])
            .map(|p| ("t".to_string(), p.partition))
            .collect();
        assert!(!led_elsewhere.is_empty());
        assert_eq!(imbalanced(&meta), led_elsewhere);
    }
}
