//! Kafka 4.4's `sticky` task assignor (`StickyTaskAssignor`): active tasks stay with their
//! owner while it is under its quota, then go to a member that has their state (a standby, or
//! reported offsets), then to the least-loaded process; standby replicas go preferably to
//! members that had the task, never to a process that already holds a copy of it. Ties that
//! Kafka breaks by hash-map order are broken here by process id, then member id.

use std::collections::{BTreeMap, BTreeSet};

use super::group::{TargetTasks, Tasks};

/// A task: (subtopology id, partition).
pub type Task = (String, i32);

/// What the assignor knows of a member.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub member_id: String,
    pub process_id: String,
    /// Active and standby tasks the member owns now (not pending revocation).
    pub active: BTreeSet<Task>,
    pub standby: BTreeSet<Task>,
    /// The changelog offset sums the member last reported, by task.
    pub task_offsets: BTreeMap<Task, i64>,
}

/// A subtopology as the assignor sees it.
#[derive(Debug, Clone)]
pub struct SubtopologySpec {
    pub id: String,
    pub num_tasks: i32,
    pub stateful: bool,
}

struct Quota {
    in_pool: BTreeSet<String>,
    remaining: usize,
    quota: usize,
}

impl Quota {
    fn new(members: &[MemberSpec], total: usize) -> Self {
        let mut q = Quota {
            in_pool: members.iter().map(|m| m.member_id.clone()).collect(),
            remaining: total,
            quota: 0,
        };
        q.recompute();
        q
    }

    fn recompute(&mut self) {
        self.quota = if self.in_pool.is_empty() {
            0
        } else {
            self.remaining.div_ceil(self.in_pool.len())
        };
    }

    fn has_room(&self, member: &str, count: usize) -> bool {
        self.in_pool.contains(member) && count < self.quota
    }

    /// After an assignment: a member that reached the quota leaves the pool with its tasks.
    fn assigned(&mut self, member: &str, count: usize) {
        if self.in_pool.contains(member) && count == self.quota {
            self.in_pool.remove(member);
            self.remaining = self.remaining.saturating_sub(count);
            self.recompute();
        }
    }
}

struct State<'a> {
    members: &'a [MemberSpec],
    /// Process id → number of members.
    capacity: BTreeMap<&'a str, usize>,
    /// Process id → tasks given to its members so far.
    process_tasks: BTreeMap<&'a str, usize>,
    member_tasks: BTreeMap<&'a str, usize>,
    process_of: BTreeMap<&'a str, &'a str>,
    /// Processes that hold a copy (active or standby) of each task.
    holders: BTreeMap<Task, BTreeSet<&'a str>>,
    out: BTreeMap<String, TargetTasks>,
    active_quota: Quota,
    total_quota: Quota,
}

impl<'a> State<'a> {
    fn load(&self, process: &str) -> f64 {
        let cap = self.capacity.get(process).copied().unwrap_or(1).max(1);
        self.process_tasks.get(process).copied().unwrap_or(0) as f64 / cap as f64
    }

    fn count(&self, member: &str) -> usize {
        self.member_tasks.get(member).copied().unwrap_or(0)
    }

    fn give(&mut self, member: &'a str, task: &Task, active: bool) {
        let process = self.process_of[member];
        *self.process_tasks.entry(process).or_default() += 1;
        *self.member_tasks.entry(member).or_default() += 1;
        self.holders.entry(task.clone()).or_default().insert(process);
        let target = self.out.entry(member.to_string()).or_default();
        let tasks = if active {
            &mut target.active
        } else {
            &mut target.standby
        };
        tasks.entry(task.0.clone()).or_default().insert(task.1);
        let count = self.count(member);
        if active {
            self.active_quota.assigned(member, count);
        }
        self.total_quota.assigned(member, count);
    }

    fn holds(&self, member: &str, task: &Task) -> bool {
        let process = self.process_of[member];
        self.holders.get(task).is_some_and(|p| p.contains(process))
    }

    /// The members that have state for `task`: its standbys first, then the members that
    /// reported offsets for it, by offset, largest first.
    fn candidates(&self, task: &Task) -> Vec<&'a str> {
        let mut with_weight: Vec<(bool, i64, &'a str)> = Vec::new();
        for m in self.members {
            let offset = m.task_offsets.get(task).copied();
            if m.standby.contains(task) {
                with_weight.push((true, offset.unwrap_or(0), m.member_id.as_str()));
            } else if let Some(o) = offset {
                with_weight.push((false, o, m.member_id.as_str()));
            }
        }
        with_weight.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        with_weight.into_iter().map(|(_, _, m)| m).collect()
    }

    /// Kafka's least-loaded previous member: the first candidate, replaced by a later one only
    /// if both its process load and its own task count are smaller.
    fn least_loaded(&self, candidates: &[&'a str], skip_holders_of: Option<&Task>) -> Option<&'a str> {
        let mut best: Option<&'a str> = None;
        for &m in candidates {
            if skip_holders_of.is_some_and(|t| self.holds(m, t)) {
                continue;
            }
            match best {
                None => best = Some(m),
                Some(b) => {
                    if self.load(self.process_of[m]) < self.load(self.process_of[b]) && self.count(m) < self.count(b) {
                        best = Some(m);
                    }
                }
            }
        }
        best
    }

    /// The process with the lowest load (optionally one that does not hold `task`), and in it
    /// the member with the fewest tasks.
    fn least_loaded_member(&self, not_holding: Option<&Task>) -> Option<&'a str> {
        let mut processes: Vec<&'a str> = self.capacity.keys().copied().collect();
        processes.sort_by(|a, b| self.load(a).total_cmp(&self.load(b)).then(a.cmp(b)));
        let process = processes
            .into_iter()
            .find(|p| not_holding.is_none_or(|t| !self.holders.get(t).is_some_and(|h| h.contains(p))))?;
        self.members
            .iter()
            .filter(|m| m.process_id == process)
            .map(|m| m.member_id.as_str())
            .min_by(|a, b| self.count(a).cmp(&self.count(b)).then(a.cmp(b)))
    }
}

/// Assigns every task of `subtopologies` to `members`, with `num_standby` standby replicas
/// of each stateful task where capacity allows. `Err` only when there is no member at all
/// and there are tasks.
pub fn assign(
    members: &[MemberSpec],
    subtopologies: &[SubtopologySpec],
    num_standby: usize,
) -> Result<BTreeMap<String, TargetTasks>, String> {
    let mut tasks: Vec<Task> = Vec::new();
    let mut stateful: BTreeSet<String> = BTreeSet::new();
    for s in subtopologies {
        if s.stateful {
            stateful.insert(s.id.clone());
        }
        tasks.extend((0..s.num_tasks).map(|p| (s.id.clone(), p)));
    }
    let total_active = tasks.len();
    let total = total_active + tasks.iter().filter(|t| stateful.contains(&t.0)).count() * num_standby;
    let mut st = State {
        members,
        capacity: BTreeMap::new(),
        process_tasks: BTreeMap::new(),
        member_tasks: BTreeMap::new(),
        process_of: BTreeMap::new(),
        holders: BTreeMap::new(),
        out: members
            .iter()
            .map(|m| (m.member_id.clone(), TargetTasks::default()))
            .collect(),
        active_quota: Quota::new(members, total_active),
        total_quota: Quota::new(members, total),
    };
    for m in members {
        *st.capacity.entry(m.process_id.as_str()).or_default() += 1;
        st.process_of.insert(m.member_id.as_str(), m.process_id.as_str());
    }

    // Active tasks, by (partition, subtopology).
    let mut by_partition = tasks.clone();
    by_partition.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let previous_owner: BTreeMap<&Task, &str> = members
        .iter()
        .flat_map(|m| m.active.iter().map(move |t| (t, m.member_id.as_str())))
        .collect();
    let mut unassigned: Vec<Task> = Vec::new();
    for t in &by_partition {
        match previous_owner.get(t) {
            Some(&m) if st.active_quota.has_room(m, st.count(m)) => st.give(m, t, true),
            _ => unassigned.push(t.clone()),
        }
    }
    let mut rest: Vec<Task> = Vec::new();
    for t in unassigned {
        let candidates = st.candidates(&t);
        match st.least_loaded(&candidates, None) {
            Some(m) if st.active_quota.has_room(m, st.count(m)) => st.give(m, &t, true),
            _ => rest.push(t),
        }
    }
    rest.sort();
    for t in rest {
        let m = st
            .least_loaded_member(None)
            .ok_or_else(|| format!("No process available to assign active task {}_{}.", t.0, t.1))?;
        st.give(m, &t, true);
    }

    // Standby tasks, by (partition, subtopology), descending.
    if num_standby > 0 {
        let mut stateful_tasks: Vec<Task> = by_partition.into_iter().filter(|t| stateful.contains(&t.0)).collect();
        stateful_tasks.reverse();
        let mut left: Vec<(Task, usize)> = Vec::new();
        for t in stateful_tasks {
            for replica in 0..num_standby {
                let owner = previous_owner.get(&t).copied();
                if let Some(m) = owner.filter(|m| !st.holds(m, &t) && st.total_quota.has_room(m, st.count(m))) {
                    st.give(m, &t, false);
                    continue;
                }
                let candidates = st.candidates(&t);
                match st.least_loaded(&candidates, Some(&t)) {
                    Some(m) if st.total_quota.has_room(m, st.count(m)) => st.give(m, &t, false),
                    _ => {
                        left.push((t.clone(), num_standby - replica));
                        break;
                    }
                }
            }
        }
        left.sort_by(|a, b| b.0.cmp(&a.0));
        for (t, replicas) in left {
            for _ in 0..replicas {
                match st.least_loaded_member(Some(&t)) {
                    Some(m) => st.give(m, &t, false),
                    None => {
                        tracing::debug!(task = ?t, "not enough capacity for a standby replica");
                        break;
                    }
                }
            }
        }
    }
    Ok(st.out)
}

/// Tasks as the assignor's set.
pub fn task_set(tasks: &Tasks) -> BTreeSet<Task> {
    tasks
        .iter()
        .flat_map(|(s, ps)| ps.iter().map(move |p| (s.clone(), *p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, process: &str, active: &[(&str, i32)]) -> MemberSpec {
        MemberSpec {
            member_id: id.into(),
            process_id: process.into(),
            active: active.iter().map(|(s, p)| (s.to_string(), *p)).collect(),
            standby: BTreeSet::new(),
            task_offsets: BTreeMap::new(),
        }
    }

    fn sub(id: &str, n: i32, stateful: bool) -> SubtopologySpec {
        SubtopologySpec {
            id: id.into(),
            num_tasks: n,
            stateful,
        }
    }

    fn count(t: &TargetTasks) -> usize {
        t.active.values().map(|p| p.len()).sum()
    }

    #[test]
    fn balanced_and_sticky() {
        let members = [member("a", "p1", &[]), member("b", "p2", &[])];
        let out = assign(&members, &[sub("0", 4, false), sub("1", 4, true)], 0).expect("assigned");
        assert_eq!(count(&out["a"]), 4);
        assert_eq!(count(&out["b"]), 4);
        // A third member: the first two keep what they can, the third gets its share.
        let a: Vec<(&str, i32)> = out["a"]
            .active
            .iter()
            .flat_map(|(s, ps)| ps.iter().map(move |p| (s.as_str(), *p)))
            .collect();
        let members = [member("a", "p1", &a), member("b", "p2", &[]), member("c", "p3", &[])];
        let again = assign(&members, &[sub("0", 4, false), sub("1", 4, true)], 0).expect("assigned");
        let kept = task_set(&again["a"].active)
            .intersection(&task_set(&out["a"].active))
            .count();
        assert_eq!(kept, 3, "a keeps as many as its quota allows");
        let total: usize = again.values().map(count).sum();
        assert_eq!(total, 8);
        let all: BTreeSet<Task> = again.values().flat_map(|t| task_set(&t.active)).collect();
        assert_eq!(all.len(), 8, "every task exactly once");
    }

    #[test]
    fn standbys_never_share_a_process_with_their_active() {
        let members = [member("a", "p1", &[]), member("b", "p1", &[]), member("c", "p2", &[])];
        let out = assign(&members, &[sub("0", 3, true)], 1).expect("assigned");
        for t in (0..3).map(|p| ("0".to_string(), p)) {
            let active: Vec<&str> = out
                .iter()
                .filter(|(_, tt)| task_set(&tt.active).contains(&t))
                .map(|(m, _)| m.as_str())
                .collect();
            let standby: Vec<&str> = out
                .iter()
                .filter(|(_, tt)| task_set(&tt.standby).contains(&t))
                .map(|(m, _)| m.as_str())
                .collect();
            assert_eq!(active.len(), 1);
            assert_eq!(standby.len(), 1, "one standby for {t:?}");
            let process = |m: &str| {
                members
                    .iter()
                    .find(|x| x.member_id == m)
                    .expect("assigned")
                    .process_id
                    .clone()
            };
            assert_ne!(process(active[0]), process(standby[0]));
        }
    }

    #[test]
    fn no_members_no_tasks_is_fine_but_tasks_need_a_process() {
        assert!(assign(&[], &[], 0).expect("assigned").is_empty());
        assert!(assign(&[], &[sub("0", 1, false)], 0).is_err());
    }
}
