//! `create-partitions`: how long the broker takes to create many partitions at once through
//! the AdminClient (one CreateTopics request for all topics), how long until Metadata shows
//! every one of them with a leader, and what they cost in broker memory. The topics are then
//! deleted (also timed) unless `--keep-topic`.

use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::client::{Admin, ADMIN_TIMEOUT_S};
use crate::result::ScenarioResult;
use crate::{sampler, Common};

/// After deleting, how long to wait for the topics to leave Metadata.
const DELETE_WAIT_S: u64 = 120;

#[derive(Args, Debug, Clone, Serialize)]
pub struct CreatePartitionsArgs {
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub topics: u32,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions_per_topic: i32,
    /// Topic names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "fjord-bench-cp")]
    pub topic_prefix: String,
}

pub fn run(c: &Common, a: &CreatePartitionsArgs, r: &mut ScenarioResult) -> Result<(), String> {
    let total = u64::from(a.topics) * a.partitions_per_topic as u64; // both positive
    let names: Vec<String> = (0..a.topics).map(|i| format!("{}-{i}", a.topic_prefix)).collect();
    let admin = Admin::new(c)?;
    // Connect before the clock starts.
    let md = admin
        .client
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| format!("Metadata: {e}"))?;
    // Leftovers of an interrupted run would fail the create: remove them first.
    let leftover: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|t| names.contains(t))
        .collect();
    if !leftover.is_empty() {
        r.note(format!(
            "deleted {} leftover topics named {}-N first",
            leftover.len(),
            a.topic_prefix
        ));
        admin.delete_topics(&leftover);
        admin.wait_for_topics_gone(&leftover, Duration::from_secs(DELETE_WAIT_S));
    }
    let rss_before = c.broker_pid.and_then(sampler::sample).map(|s| s.rss_bytes);

    let start = Instant::now();
    let results = admin.create_topics(&names, a.partitions_per_topic)?;
    let create_s = start.elapsed().as_secs_f64();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|x| x.as_ref().err())
        .map(|(t, e)| format!("{t}: {e}"))
        .collect();
    r.metric("partitions", total as f64);
    r.metric("create_s", create_s);
    r.errors += failed.len() as u64;
    if let Some(first) = failed.first() {
        r.note(format!(
            "{} of {} topics failed to create (first: {first})",
            failed.len(),
            names.len()
        ));
    }
    let created: Vec<String> = names
        .iter()
        .zip(&results)
        .filter(|(_, x)| x.is_ok())
        .map(|(n, _)| n.clone())
        .collect();
    let partitions = usize::try_from(a.partitions_per_topic).unwrap_or(0);
    match admin.wait_for_topics(&created, partitions, Duration::from_secs(ADMIN_TIMEOUT_S)) {
        Ok(_) => {
            let visible_s = start.elapsed().as_secs_f64();
            r.metric("visible_s", visible_s);
            r.metric(
                "partitions_per_s",
                crate::result::per_s(created.len() as f64 * partitions as f64, visible_s),
            );
            r.duration_s = visible_s;
        }
        Err(e) => {
            r.errors += 1;
            r.note(e);
            r.duration_s = start.elapsed().as_secs_f64();
        }
    }
    if let (Some(before), Some(after)) = (rss_before, c.broker_pid.and_then(sampler::sample).map(|s| s.rss_bytes)) {
        r.metric("rss_before_bytes", before as f64);
        r.metric("rss_after_bytes", after as f64);
        r.metric("rss_delta_bytes", after as f64 - before as f64);
        r.metric("rss_per_partition_bytes", (after as f64 - before as f64) / total as f64);
    }

    if !c.keep_topic && !created.is_empty() {
        let start = Instant::now();
        let errors = admin.delete_topics(&created);
        let gone = admin.wait_for_topics_gone(&created, Duration::from_secs(DELETE_WAIT_S));
        r.metric("delete_s", start.elapsed().as_secs_f64());
        if !gone {
            r.note(format!("topics still in Metadata {DELETE_WAIT_S} s after DeleteTopics"));
        }
        if let Some(first) = errors.first() {
            r.note(format!("cleanup: {} delete errors (first: {first})", errors.len()));
        }
        if let Some(s) = c.broker_pid.and_then(sampler::sample) {
            r.metric("rss_after_delete_bytes", s.rss_bytes as f64);
        }
    }
    Ok(())
}
