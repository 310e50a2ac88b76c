//! The target assignment and each member's path to it (Kafka's streams `TargetAssignmentBuilder`
//! and `CurrentAssignmentBuilder`): a member gives up what it must before it is given anything,
//! and is never given a task that another member still holds, so that no task runs twice and
//! no process holds two copies of one.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;

use super::assignor::{self, MemberSpec, SubtopologySpec};
use super::group::{EpochTasks, Member, MemberState, MemberTasks, StreamsGroup, TargetTasks, Tasks};
use super::heartbeat::HeartbeatError;

impl StreamsGroup {
    /// Runs the assignor over every member (`updated` in place of its stored self) and makes the
    /// result the target at the group epoch. With a topology that is not ready, every member's
    /// target is empty.
    pub(super) fn compute_target(
        &mut self,
        updated: Option<&Member>,
        num_standby: i32,
        now_ms: i64,
    ) -> Result<(), String> {
        let mut members: Vec<&Member> = self
            .members
            .values()
            .filter(|m| updated.is_none_or(|u| u.member_id != m.member_id))
            .collect();
        if let Some(u) = updated {
            members.push(u);
        }
        let target = match self.configured.as_ref().filter(|c| c.is_ready()) {
            None => members
                .iter()
                .map(|m| (m.member_id.clone(), TargetTasks::default()))
                .collect(),
            Some(configured) => {
                let specs: Vec<MemberSpec> = members
                    .iter()
                    .map(|m| MemberSpec {
                        member_id: m.member_id.clone(),
                        process_id: m.process_id.clone(),
                        active: assignor::task_set(&m.assigned.active_tasks()),
                        standby: assignor::task_set(&m.assigned.standby),
                        task_offsets: m.task_offsets.iter().map(|(s, p, o)| ((s.clone(), *p), *o)).collect(),
                    })
                    .collect();
                let subtopologies: Vec<SubtopologySpec> = configured
                    .subtopologies
                    .iter()
                    .map(|(id, s)| SubtopologySpec {
                        id: id.clone(),
                        num_tasks: s.num_tasks,
                        stateful: s.is_stateful(),
                    })
                    .collect();
                assignor::assign(&specs, &subtopologies, num_standby.max(0) as usize)?
            }
        };
        self.target = target;
        self.assignment_epoch = self.group_epoch;
        self.assignment_timestamp_ms = now_ms;
        Ok(())
    }

    /// Kafka's `CurrentAssignmentBuilder.build`: the member's next state. `owned` is what the
    /// request says the member owns (None when it did not say).
    pub(super) fn reconcile(&self, member: &Member, owned: Option<&TargetTasks>) -> Result<Member, HeartbeatError> {
        let target_epoch = self.assignment_epoch;
        if member.is_reconciled_to(target_epoch) {
            return Ok(member.clone());
        }
        match member.state {
            MemberState::Stable | MemberState::UnreleasedTasks => {
                Ok(self.next_step(member, member.member_epoch, owned))
            }
            MemberState::UnrevokedTasks => {
                if released(member, owned) {
                    Ok(self.next_step(member, member.member_epoch + 1, owned))
                } else {
                    Ok(member.clone())
                }
            }
            MemberState::Unknown => {
                let owns_nothing = owned.is_some_and(|o| {
                    o.active.values().all(|p| p.is_empty())
                        && o.standby.values().all(|p| p.is_empty())
                        && o.warmup.values().all(|p| p.is_empty())
                });
                if !owns_nothing {
                    return Err(HeartbeatError::new(
                        ResponseError::FencedMemberEpoch,
                        "The streams group member is in a unknown state. The member must abandon all its tasks and \
                         rejoin.",
                    ));
                }
                Ok(self.next_step(member, target_epoch, owned))
            }
        }
    }

    fn next_step(&self, member: &Member, epoch: i32, owned: Option<&TargetTasks>) -> Member {
        let target_epoch = self.assignment_epoch;
        let empty = TargetTasks::default();
        let target = self.target.get(&member.member_id).unwrap_or(&empty);
        let holders = Holders::of(self, &member.member_id);
        let process = member.process_id.as_str();

        let cur_active = member.assigned.active_tasks();
        let cur_standby = &member.assigned.standby;
        let cur_warmup = &member.assigned.warmup;
        let mut has_unreleased = false;

        // Active: keep (with epochs), revoke, grant (stamped with the target epoch).
        let mut keep_active: EpochTasks = BTreeMap::new();
        let mut revoke_active: EpochTasks = BTreeMap::new();
        for (s, ps) in &member.assigned.active {
            for (p, e) in ps {
                let dest = if contains(&target.active, s, *p) {
                    &mut keep_active
                } else {
                    &mut revoke_active
                };
                dest.entry(s.clone()).or_default().insert(*p, *e);
            }
        }
        let mut grant_active: EpochTasks = BTreeMap::new();
        for (s, p) in iter(&target.active) {
            if contains(&cur_active, s, p) {
                continue;
            }
            if holders.active_unreleased(s, p, process) {
                has_unreleased = true;
            } else {
                grant_active.entry(s.to_string()).or_default().insert(p, target_epoch);
            }
        }
        let (keep_standby, mut revoke_standby, grant_standby) = split(
            cur_standby,
            &target.standby,
            |s, p| holders.standby_unreleased(s, p, process),
            &mut has_unreleased,
        );
        let (keep_warmup, mut revoke_warmup, grant_warmup) = split(
            cur_warmup,
            &target.warmup,
            |s, p| holders.warmup_unreleased(s, p, process) || contains(&cur_active, s, p),
            &mut has_unreleased,
        );
        // Demotion: an active task the member is giving up that it is to keep as a standby is
        // granted as a standby at once.
        let mut demoted: Tasks = BTreeMap::new();
        for (s, p) in iter(&grant_standby) {
            if contains(&cur_active, s, p) {
                demoted.entry(s.to_string()).or_default().insert(p);
            }
        }
        // Promotion: a standby or warm-up the member holds that is now one of its active tasks
        // is not revoked as such.
        let mut promoted: Tasks = BTreeMap::new();
        for (s, p) in iter(&target.active) {
            if contains(cur_standby, s, p) || contains(cur_warmup, s, p) {
                remove(&mut revoke_standby, s, p);
                remove(&mut revoke_warmup, s, p);
                promoted.entry(s.to_string()).or_default().insert(p);
            }
        }
        let revoke = MemberTasks {
            active: revoke_active,
            standby: revoke_standby,
            warmup: revoke_warmup,
        };
        let still_owned = owned.is_none_or(|o| owns_any(o, &revoke));
        let revoking = !revoke.is_empty() && still_owned;

        let mut next = member.clone();
        next.previous_member_epoch = member.member_epoch;
        if revoking {
            let mut standby = keep_standby;
            let mut warmup = keep_warmup;
            merge(&mut standby, &demoted);
            for (s, p) in iter(&promoted) {
                if contains(cur_standby, s, p) {
                    standby.entry(s.to_string()).or_default().insert(p);
                }
                if contains(cur_warmup, s, p) {
                    warmup.entry(s.to_string()).or_default().insert(p);
                }
            }
            next.state = MemberState::UnrevokedTasks;
            next.member_epoch = epoch;
            next.assigned = MemberTasks {
                active: keep_active,
                standby: prune(standby),
                warmup: prune(warmup),
            };
            next.pending_revocation = prune_tasks(revoke);
            return next;
        }
        let mut standby = keep_standby;
        merge(&mut standby, &grant_standby);
        let mut warmup = keep_warmup;
        merge(&mut warmup, &grant_warmup);
        // A promoted task still held as active elsewhere stays a standby (or warm-up) here
        // until it can be granted.
        for (s, p) in iter(&promoted) {
            if grant_active.get(s).is_some_and(|ps| ps.contains_key(&p)) {
                continue;
            }
            if contains(cur_standby, s, p) {
                standby.entry(s.to_string()).or_default().insert(p);
            }
            if contains(cur_warmup, s, p) {
                warmup.entry(s.to_string()).or_default().insert(p);
            }
        }
        let mut active = keep_active;
        for (s, ps) in grant_active {
            active.entry(s).or_default().extend(ps);
        }
        next.state = if has_unreleased {
            MemberState::UnreleasedTasks
        } else {
            MemberState::Stable
        };
        next.member_epoch = target_epoch;
        next.assigned = prune_tasks(MemberTasks {
            active,
            standby,
            warmup,
        });
        next.pending_revocation = MemberTasks::default();
        next
    }
}

/// Who holds each task, from every other member's assigned and revoking tasks.
struct Holders<'a> {
    /// Task → process ids of other members holding it as active.
    active: BTreeMap<(&'a str, i32), BTreeSet<&'a str>>,
    standby: BTreeMap<(&'a str, i32), BTreeSet<&'a str>>,
    warmup: BTreeMap<(&'a str, i32), BTreeSet<&'a str>>,
}

impl<'a> Holders<'a> {
    fn of(group: &'a StreamsGroup, except: &str) -> Self {
        let mut h = Holders {
            active: BTreeMap::new(),
            standby: BTreeMap::new(),
            warmup: BTreeMap::new(),
        };
        for m in group.members.values().filter(|m| m.member_id != except) {
            let process = m.process_id.as_str();
            for tasks in [&m.assigned, &m.pending_revocation] {
                for (s, ps) in &tasks.active {
                    for p in ps.keys() {
                        h.active.entry((s.as_str(), *p)).or_default().insert(process);
                    }
                }
                for (s, p) in iter(&tasks.standby) {
                    h.standby.entry((s, p)).or_default().insert(process);
                }
                for (s, p) in iter(&tasks.warmup) {
                    h.warmup.entry((s, p)).or_default().insert(process);
                }
            }
        }
        h
    }

    fn held(map: &BTreeMap<(&'a str, i32), BTreeSet<&'a str>>, s: &str, p: i32, process: Option<&str>) -> bool {
        map.get(&(s, p))
            .is_some_and(|procs| process.is_none_or(|pr| procs.contains(pr)))
    }

    fn active_unreleased(&self, s: &str, p: i32, process: &str) -> bool {
        Self::held(&self.active, s, p, None)
            || Self::held(&self.standby, s, p, Some(process))
            || Self::held(&self.warmup, s, p, Some(process))
    }

    fn standby_unreleased(&self, s: &str, p: i32, process: &str) -> bool {
        Self::held(&self.active, s, p, Some(process))
            || Self::held(&self.standby, s, p, Some(process))
            || Self::held(&self.warmup, s, p, Some(process))
    }

    fn warmup_unreleased(&self, s: &str, p: i32, process: &str) -> bool {
        Self::held(&self.active, s, p, Some(process))
            || Self::held(&self.standby, s, p, Some(process))
            || Self::held(&self.warmup, s, p, Some(process))
    }
}

fn iter(t: &Tasks) -> impl Iterator<Item = (&str, i32)> + '_ {
    t.iter().flat_map(|(s, ps)| ps.iter().map(move |p| (s.as_str(), *p)))
}

fn contains(t: &Tasks, s: &str, p: i32) -> bool {
    t.get(s).is_some_and(|ps| ps.contains(&p))
}

fn remove(t: &mut Tasks, s: &str, p: i32) {
    if let Some(ps) = t.get_mut(s) {
        ps.remove(&p);
    }
}

fn merge(into: &mut Tasks, from: &Tasks) {
    for (s, ps) in from {
        into.entry(s.clone()).or_default().extend(ps.iter().copied());
    }
}

fn prune(t: Tasks) -> Tasks {
    t.into_iter().filter(|(_, ps)| !ps.is_empty()).collect()
}

fn prune_tasks(t: MemberTasks) -> MemberTasks {
    MemberTasks {
        active: t.active.into_iter().filter(|(_, ps)| !ps.is_empty()).collect(),
        standby: prune(t.standby),
        warmup: prune(t.warmup),
    }
}

/// keep = current ∩ target, revoke = current − target, grant = target − current − unreleased.
fn split(
    current: &Tasks,
    target: &Tasks,
    unreleased: impl Fn(&str, i32) -> bool,
    has_unreleased: &mut bool,
) -> (Tasks, Tasks, Tasks) {
    let (mut keep, mut revoke, mut grant) = (Tasks::new(), Tasks::new(), Tasks::new());
    for (s, p) in iter(current) {
        let dest = if contains(target, s, p) { &mut keep } else { &mut revoke };
        dest.entry(s.to_string()).or_default().insert(p);
    }
    for (s, p) in iter(target) {
        if contains(current, s, p) {
            continue;
        }
        if unreleased(s, p) {
            *has_unreleased = true;
        } else {
            grant.entry(s.to_string()).or_default().insert(p);
        }
    }
    (keep, revoke, grant)
}

/// Whether the member, by its request, still owns any of `revoke` (a request that did not
/// list its tasks counts as owning them).
fn owns_any(owned: &TargetTasks, revoke: &MemberTasks) -> bool {
    let active: Tasks = revoke.active_tasks();
    iter(&active).any(|(s, p)| contains(&owned.active, s, p))
        || iter(&revoke.standby).any(|(s, p)| contains(&owned.standby, s, p))
        || iter(&revoke.warmup).any(|(s, p)| contains(&owned.warmup, s, p))
}

/// Kafka's released check: the request listed the member's tasks, and none of those it is
/// revoking is among them.
fn released(member: &Member, owned: Option<&TargetTasks>) -> bool {
    owned.is_some_and(|o| !owns_any(o, &member.pending_revocation))
}
