//! StreamsGroupDescribe's view of a group (docs/streams-groups.md §8).

use std::collections::BTreeMap;

use kafka_protocol::messages::streams_group_describe_response::{
    Assignment, DescribedGroup, Endpoint, KeyValue, Member as DescribedMember, Subtopology, TaskIds, TaskOffset,
    TopicInfo, Topology as DescribedTopology,
};
use kafka_protocol::messages::{GroupId, TopicName};

use super::group::{StreamsGroup, TargetTasks, Tasks};
use super::sb;
use super::topology::InternalTopic;

fn task_ids(tasks: &Tasks) -> Vec<TaskIds> {
    tasks
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(s, ps)| {
            TaskIds::default()
                .with_subtopology_id(sb(s.clone()))
                .with_partitions(ps.iter().copied().collect())
        })
        .collect()
}

fn assignment(t: &TargetTasks) -> Assignment {
    Assignment::default()
        .with_active_tasks(task_ids(&t.active))
        .with_standby_tasks(task_ids(&t.standby))
        .with_warmup_tasks(task_ids(&t.warmup))
}

fn topic_info(t: &InternalTopic, partitions: i32) -> TopicInfo {
    TopicInfo::default()
        .with_name(TopicName(sb(t.name.clone())))
        .with_partitions(partitions)
        .with_replication_factor(t.replication_factor)
        .with_topic_configs(
            t.configs
                .iter()
                .map(|(k, v)| KeyValue::default().with_key(sb(k.clone())).with_value(sb(v.clone())))
                .collect(),
        )
}

fn offsets(list: &[(String, i32, i64)]) -> Vec<TaskOffset> {
    let mut sorted = list.to_vec();
    sorted.sort();
    sorted
        .into_iter()
        .map(|(s, p, o)| {
            TaskOffset::default()
                .with_subtopology_id(sb(s))
                .with_partition(p)
                .with_offset(o)
        })
        .collect()
}

impl StreamsGroup {
    /// The group as StreamsGroupDescribe reports it (authorized operations and the v1 topology
    /// description status are the caller's).
    pub fn describe(&self) -> DescribedGroup {
        let topology = self.topology.as_ref().map(|t| {
            let subtopologies: Vec<Subtopology> = match self.configured.as_ref().filter(|c| c.is_ready()) {
                Some(c) => c
                    .subtopologies
                    .iter()
                    .map(|(id, s)| {
                        Subtopology::default()
                            .with_subtopology_id(sb(id.clone()))
                            .with_source_topics(s.source_topics.iter().map(|n| TopicName(sb(n.clone()))).collect())
                            .with_repartition_sink_topics(
                                s.repartition_sink_topics
                                    .iter()
                                    .map(|n| TopicName(sb(n.clone())))
                                    .collect(),
                            )
                            .with_state_changelog_topics(
                                s.changelog_topics.values().map(|(n, t)| topic_info(t, *n)).collect(),
                            )
                            .with_repartition_source_topics(
                                s.repartition_source_topics
                                    .values()
                                    .map(|(n, t)| topic_info(t, *n))
                                    .collect(),
                            )
                    })
                    .collect(),
                None => {
                    let mut subs: BTreeMap<&str, Subtopology> = BTreeMap::new();
                    for s in &t.subtopologies {
                        let mut sources = s.source_topics.clone();
                        sources.sort();
                        let mut sinks = s.repartition_sink_topics.clone();
                        sinks.sort();
                        let mut changelogs = s.changelog_topics.clone();
                        changelogs.sort_by(|a, b| a.name.cmp(&b.name));
                        let mut repartitions = s.repartition_source_topics.clone();
                        repartitions.sort_by(|a, b| a.name.cmp(&b.name));
                        subs.insert(
                            &s.id,
                            Subtopology::default()
                                .with_subtopology_id(sb(s.id.clone()))
                                .with_source_topics(sources.into_iter().map(|n| TopicName(sb(n))).collect())
                                .with_repartition_sink_topics(sinks.into_iter().map(|n| TopicName(sb(n))).collect())
                                .with_state_changelog_topics(
                                    changelogs.iter().map(|t| topic_info(t, t.partitions)).collect(),
                                )
                                .with_repartition_source_topics(
                                    repartitions.iter().map(|t| topic_info(t, t.partitions)).collect(),
                                ),
                        );
                    }
                    subs.into_values().collect()
                }
            };
            DescribedTopology::default()
                .with_epoch(t.epoch)
                .with_subtopologies(Some(subtopologies))
        });
        let members = self
            .members
            .values()
            .map(|m| {
                DescribedMember::default()
                    .with_member_id(sb(m.member_id.clone()))
                    .with_member_epoch(m.member_epoch)
                    .with_instance_id(m.instance_id.clone().map(sb))
                    .with_rack_id(m.rack_id.clone().map(sb))
                    .with_client_id(sb(m.client_id.clone()))
                    .with_client_host(sb(m.client_host.clone()))
                    .with_topology_epoch(m.topology_epoch)
                    .with_process_id(sb(m.process_id.clone()))
                    .with_user_endpoint(
                        m.user_endpoint
                            .as_ref()
                            .map(|(h, p)| Endpoint::default().with_host(sb(h.clone())).with_port(*p)),
                    )
                    .with_client_tags(
                        m.client_tags
                            .iter()
                            .map(|(k, v)| KeyValue::default().with_key(sb(k.clone())).with_value(sb(v.clone())))
                            .collect(),
                    )
                    .with_task_offsets(offsets(&m.task_offsets))
                    .with_task_end_offsets(offsets(&m.task_end_offsets))
                    .with_assignment(assignment(&m.assigned.without_epochs()))
                    .with_target_assignment(assignment(&self.target.get(&m.member_id).cloned().unwrap_or_default()))
                    .with_is_classic(false)
            })
            .collect();
        DescribedGroup::default()
            .with_group_id(GroupId(sb(self.group_id.clone())))
            .with_group_state(sb(self.state()))
            .with_group_epoch(self.group_epoch)
            .with_assignment_epoch(self.assignment_epoch)
            .with_topology(topology)
            .with_members(members)
            .with_assignor_name(Some(sb("sticky")))
    }
}
