//! A streams group's topology: the copy the first member sent, and what it becomes against
//! the cluster's topics (Kafka's `InternalTopicManager.configureTopics`): partition counts for
//! the repartition and changelog topics, the number of tasks of each subtopology, and the
//! internal topics still to create, or the problem that keeps the group from being assigned.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::streams_group_heartbeat_request as req;
use serde::{Deserialize, Serialize};

use super::group::TopicsView;

/// The topology as a member sent it (Kafka's `StreamsGroupTopology` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub epoch: i32,
    pub subtopologies: Vec<Subtopology>,
}

/// One subtopology, lists in the order the member sent them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtopology {
    pub id: String,
    pub source_topics: Vec<String>,
    pub source_topic_regex: Vec<String>,
    pub changelog_topics: Vec<InternalTopic>,
    pub repartition_sink_topics: Vec<String>,
    pub repartition_source_topics: Vec<InternalTopic>,
    pub copartition_groups: Vec<CopartitionGroup>,
}

/// A changelog or repartition topic: partitions 0 means "decided by the broker".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// Topics that must have the same partition count: indexes into the subtopology's source
/// topics and repartition source topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopartitionGroup {
    pub source_topics: Vec<i16>,
    pub source_topic_regex: Vec<i16>,
    pub repartition_source_topics: Vec<i16>,
}

impl Topology {
    /// From a heartbeat's topology.
    pub fn from_request(t: &req::Topology) -> Self {
        let topic = |i: &req::TopicInfo| InternalTopic {
            name: i.name.to_string(),
            partitions: i.partitions,
            replication_factor: i.replication_factor,
            configs: i
                .topic_configs
                .iter()
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect(),
        };
        Topology {
            epoch: t.epoch,
            subtopologies: t
                .subtopologies
                .iter()
                .map(|s| Subtopology {
                    id: s.subtopology_id.to_string(),
                    source_topics: s.source_topics.iter().map(|n| n.to_string()).collect(),
                    source_topic_regex: s.source_topic_regex.iter().map(|n| n.to_string()).collect(),
                    changelog_topics: s.state_changelog_topics.iter().map(topic).collect(),
                    repartition_sink_topics: s.repartition_sink_topics.iter().map(|n| n.to_string()).collect(),
                    repartition_source_topics: s.repartition_source_topics.iter().map(topic).collect(),
                    copartition_groups: s
                        .copartition_groups
                        .iter()
                        .map(|g| CopartitionGroup {
                            source_topics: g.source_topics.clone(),
                            source_topic_regex: g.source_topic_regex.clone(),
                            repartition_source_topics: g.repartition_source_topics.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Every topic the topology reads or keeps state in: source, repartition source and
    /// changelog topics, each once, in order of appearance (Kafka's required topics).
    pub fn required_topics(&self) -> Vec<String> {
        self.topics(false)
    }

    /// The topics Kafka checks for validity and for internal names before anything else:
    /// the required topics and the repartition sink topics.
    pub fn named_topics(&self) -> Vec<String> {
        self.topics(true)
    }

    fn topics(&self, with_sinks: bool) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for s in &self.subtopologies {
            let sinks = s.repartition_sink_topics.iter().filter(|_| with_sinks);
            let names = s
                .source_topics
                .iter()
                .chain(sinks)
                .chain(s.repartition_source_topics.iter().map(|t| &t.name))
                .chain(s.changelog_topics.iter().map(|t| &t.name));
            for n in names {
                if seen.insert(n.clone()) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// The subtopology whose source or repartition source topics include `topic`.
    pub fn subtopology_of_topic(&self, topic: &str) -> Option<&str> {
        self.subtopologies
            .iter()
            .find(|s| {
                s.source_topics.iter().any(|t| t == topic)
                    || s.repartition_source_topics.iter().any(|t| t.name == topic)
            })
            .map(|s| s.id.as_str())
    }
}

/// Status codes of a heartbeat response (Kafka's `StreamsGroupHeartbeatResponse.Status`).
pub mod status {
    pub const STALE_TOPOLOGY: i8 = 0;
    pub const MISSING_SOURCE_TOPICS: i8 = 1;
    pub const INCORRECTLY_PARTITIONED_TOPICS: i8 = 2;
    pub const MISSING_INTERNAL_TOPICS: i8 = 3;
    pub const SHUTDOWN_APPLICATION: i8 = 4;
    pub const ASSIGNMENT_DELAYED: i8 = 5;
    pub const MISSING_CLIENT_TAGS: i8 = 6;
}

/// An internal topic to create, with its decided partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicToCreate {
    pub name: String,
    pub partitions: i32,
    /// -1: the broker's default.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// A subtopology with its partition counts decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredSubtopology {
    pub num_tasks: i32,
    pub source_topics: BTreeSet<String>,
    pub repartition_sink_topics: BTreeSet<String>,
    /// Name → (decided partitions, the topic as sent).
    pub repartition_source_topics: BTreeMap<String, (i32, InternalTopic)>,
    pub changelog_topics: BTreeMap<String, (i32, InternalTopic)>,
}

impl ConfiguredSubtopology {
    /// Whether the subtopology keeps state (standby tasks exist only for those).
    pub fn is_stateful(&self) -> bool {
        !self.changelog_topics.is_empty()
    }
}

/// The topology against the cluster's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredTopology {
    pub epoch: i32,
    /// By id; empty when a problem other than missing internal topics stops the group.
    pub subtopologies: BTreeMap<String, ConfiguredSubtopology>,
    /// What keeps the group from being assigned: a status code and its detail.
    pub problem: Option<(i8, String)>,
    /// Internal topics to create (with the MISSING_INTERNAL_TOPICS problem).
    pub to_create: Vec<TopicToCreate>,
}

impl ConfiguredTopology {
    /// Tasks can be assigned.
    pub fn is_ready(&self) -> bool {
        self.problem.is_none()
    }
}

/// Kafka's way of naming topics in a status: at most three, then how many more.
pub fn topic_list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    let mut out = shown.join(", ");
    if names.len() > 3 {
        out.push_str(&format!(" and {} additional topics", names.len() - 3));
    }
    out
}

fn counts_map(counts: &BTreeMap<&str, i32>) -> String {
    let items: Vec<String> = counts.iter().map(|(t, n)| format!("{t}={n}")).collect();
    format!("{{{}}}", items.join(", "))
}

/// Configures `topology` against the cluster's topics. `Err` is a STREAMS_INVALID_TOPOLOGY
/// refusal of the request; a topology that cannot run yet is `Ok` with a problem.
pub fn configure(topology: &Topology, topics: &TopicsView) -> Result<ConfiguredTopology, String> {
    let existing = |t: &str| topics.topics.get(t).map(|i| i.partitions);
    let not_ready = |code: i8, detail: String| ConfiguredTopology {
        epoch: topology.epoch,
        subtopologies: BTreeMap::new(),
        problem: Some((code, detail)),
        to_create: Vec::new(),
    };

    // 1. Every source topic must exist.
    let missing: BTreeSet<String> = topology
        .subtopologies
        .iter()
        .flat_map(|s| s.source_topics.iter())
        .filter(|t| existing(t).is_none())
        .cloned()
        .collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing.into_iter().collect();
        return Ok(not_ready(
            status::MISSING_SOURCE_TOPICS,
            format!("Source topics {} are missing.", topic_list(&list)),
        ));
    }

    // 2. Repartition topics: a sink's count is the largest of its subtopology's inputs.
    let repartition_names: BTreeSet<&str> = topology
        .subtopologies
        .iter()
        .flat_map(|s| s.repartition_source_topics.iter().map(|t| t.name.as_str()))
        .collect();
    let fixed: BTreeMap<&str, i32> = topology
        .subtopologies
        .iter()
        .flat_map(|s| s.repartition_source_topics.iter())
        .filter(|t| t.partitions != 0)
        .map(|t| (t.name.as_str(), t.partitions))
        .collect();
    let mut decided: BTreeMap<&str, i32> = fixed.clone();
    loop {
        let undecided = topology
            .subtopologies
            .iter()
            .flat_map(|s| s.repartition_sink_topics.iter())
            .any(|t| !decided.contains_key(t.as_str()));
        if !undecided {
            break;
        }
        let mut progress = false;
        for s in &topology.subtopologies {
            for sink in &s.repartition_sink_topics {
                if decided.contains_key(sink.as_str()) {
                    continue;
                }
                let inputs = s
                    .repartition_source_topics
                    .iter()
                    .filter_map(|t| decided.get(t.name.as_str()).copied())
                    .chain(s.source_topics.iter().filter_map(|t| existing(t)));
                if let Some(n) = inputs.max() {
                    decided.insert(sink.as_str(), n);
                    progress = true;
                }
            }
        }
        if !progress {
            return Err(
                "Failed to compute number of partitions for all repartition topics. There may be loops in \
                        the topology that cannot be resolved."
                    .into(),
            );
        }
    }
    if repartition_names.iter().any(|t| !decided.contains_key(t)) {
        return Err(
            "Failed to compute number of partitions for all repartition topics, because a repartition \
                    source topic is never used as a sink topic."
                .into(),
        );
    }

    // 3. Copartition groups.
    for s in &topology.subtopologies {
        for g in &s.copartition_groups {
            let mut names: Vec<&str> = Vec::new();
            for &i in &g.source_topics {
                let t = s
                    .source_topics
                    .get(i as usize)
                    .ok_or("copartition group index out of range")?;
                names.push(t);
            }
            for &i in &g.repartition_source_topics {
                let t = s
                    .repartition_source_topics
                    .get(i as usize)
                    .ok_or("copartition group index out of range")?;
                names.push(&t.name);
            }
            let count = |t: &str| existing(t).or_else(|| decided.get(t).copied()).unwrap_or(0);
            let (repartition, external): (Vec<&str>, Vec<&str>) =
                names.iter().partition(|t| repartition_names.contains(**t));
            let chosen = if external.is_empty() {
                let fixed_counts: BTreeMap<&str, i32> = repartition
                    .iter()
                    .filter_map(|t| fixed.get(t).map(|n| (*t, *n)))
                    .collect();
                if !fixed_counts.is_empty() {
                    let first = *fixed_counts.values().next().expect("non-empty");
                    if fixed_counts.values().any(|n| *n != first) {
                        return Ok(not_ready(
                            status::INCORRECTLY_PARTITIONED_TOPICS,
                            format!(
                                "Following topics do not have the same number of partitions: [{}]",
                                counts_map(&fixed_counts)
                            ),
                        ));
                    }
                    first
                } else {
                    let max = repartition.iter().map(|t| count(t)).max().unwrap_or(0);
                    if max == 0 {
                        return Err(format!(
                            "All topics in the copartition group had undefined partition number: [{}]",
                            repartition.join(", ")
                        ));
                    }
                    max
                }
            } else {
                let counts: BTreeMap<&str, i32> = external.iter().map(|t| (*t, count(t))).collect();
                let first = *counts.values().next().expect("non-empty");
                if counts.values().any(|n| *n != first) {
                    return Ok(not_ready(
                        status::INCORRECTLY_PARTITIONED_TOPICS,
                        format!(
                            "Following topics do not have the same number of partitions: [{}]",
                            counts_map(&counts)
                        ),
                    ));
                }
                first
            };
            for t in repartition {
                if let Some(&n) = fixed.get(t) {
                    if n != chosen {
                        return Ok(not_ready(
                            status::INCORRECTLY_PARTITIONED_TOPICS,
                            format!(
                                "Number of partitions [{n}] of repartition topic [{t}] doesn't match number of \
                                 partitions [{chosen}] of the source topic."
                            ),
                        ));
                    }
                }
                decided.insert(t, chosen);
            }
        }
    }

    // 4-5. Changelog counts and the number of tasks.
    let mut subtopologies = BTreeMap::new();
    for s in &topology.subtopologies {
        let inputs = s.source_topics.iter().filter_map(|t| existing(t)).chain(
            s.repartition_source_topics
                .iter()
                .filter_map(|t| decided.get(t.name.as_str()).copied()),
        );
        let Some(num_tasks) = inputs.max() else {
            return Err(format!("No source topics found for subtopology {}", s.id));
        };
        subtopologies.insert(
            s.id.clone(),
            ConfiguredSubtopology {
                num_tasks,
                source_topics: s.source_topics.iter().cloned().collect(),
                repartition_sink_topics: s.repartition_sink_topics.iter().cloned().collect(),
                repartition_source_topics: s
                    .repartition_source_topics
                    .iter()
                    .map(|t| (t.name.clone(), (decided[t.name.as_str()], t.clone())))
                    .collect(),
                changelog_topics: s
                    .changelog_topics
                    .iter()
                    .map(|t| (t.name.clone(), (num_tasks, t.clone())))
                    .collect(),
            },
        );
    }

    // 6. Internal topics: mis-sized ones stop the group, missing ones are to be created.
    let mut to_create: Vec<TopicToCreate> = Vec::new();
    let mut seen = BTreeSet::new();
    for sub in subtopologies.values() {
        for (name, (n, t)) in sub.repartition_source_topics.iter().chain(sub.changelog_topics.iter()) {
            if !seen.insert(name.clone()) {
                continue;
            }
            match existing(name) {
                Some(found) if found != *n => {
                    return Ok(not_ready(
                        status::INCORRECTLY_PARTITIONED_TOPICS,
                        format!(
                            "Existing topic {name} has different number of partitions: expected {n}, found {found}"
                        ),
                    ));
                }
                Some(_) => {}
                None => to_create.push(TopicToCreate {
                    name: name.clone(),
                    partitions: *n,
                    replication_factor: if t.replication_factor == 0 {
                        -1
                    } else {
                        t.replication_factor
                    },
                    configs: t.configs.clone(),
                }),
            }
        }
    }
    // Kafka lists them in hash-map order; sorted here.
    to_create.sort_by(|a, b| a.name.cmp(&b.name));
    let problem = (!to_create.is_empty()).then(|| {
        let names: Vec<String> = to_create.iter().map(|t| t.name.clone()).collect();
        (
            status::MISSING_INTERNAL_TOPICS,
            format!("Internal topics are missing: {}", topic_list(&names)),
        )
    });
    Ok(ConfiguredTopology {
        epoch: topology.epoch,
        subtopologies,
        problem,
        to_create,
    })
}
