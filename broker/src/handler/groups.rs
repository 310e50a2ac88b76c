//! Classic group membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and group
//! administration (ListGroups, DescribeGroups, DeleteGroups). The state machine is in
//! `crate::group`; this module decodes, validates what Kafka validates before touching a
//! group, and shapes responses per version.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use tokio::time::Instant;

use super::{str_bytes, RequestContext, AUTHORIZED_OPERATIONS_OMITTED, GROUP_AUTHORIZED_OPERATIONS};
use crate::group::classic::{Answer, ClassicState, JoinInput, SyncInput};
use crate::group::GroupKind;
use crate::Broker;

fn join_error(version: i16, member_id: &str, error: ResponseError) -> JoinGroupResponse {
    finish_join(
        version,
        JoinGroupResponse::default()
            .with_error_code(error.code())
            .with_generation_id(-1)
            .with_member_id(str_bytes(member_id))
            .with_leader(str_bytes("")),
    )
}

/// Before v7 the protocol name is not nullable.
fn finish_join(version: i16, mut r: JoinGroupResponse) -> JoinGroupResponse {
    if version < 7 && r.protocol_name.is_none() {
        r.protocol_name = Some(str_bytes(""));
    }
    r
}

/// JoinGroup.
pub async fn join_group(broker: &Broker, ctx: &RequestContext, req: JoinGroupRequest) -> JoinGroupResponse {
    let v = ctx.version;
    let groups = &broker.groups;
    let group_id = req.group_id.to_string();
    let member_id = req.member_id.to_string();
    if group_id.is_empty() {
        return join_error(v, &member_id, ResponseError::InvalidGroupId);
    }
    if let Err(e) = super::coordinator::check_group(broker, &group_id) {
        return join_error(v, &member_id, e);
    }
    if req.session_timeout_ms < groups.cfg.min_session_timeout_ms
        || req.session_timeout_ms > groups.cfg.max_session_timeout_ms
    {
        return join_error(v, &member_id, ResponseError::InvalidSessionTimeout);
    }
    // A known member of a group that does not exist was forgotten (e.g. the group was
    // deleted): it must start over.
    let Some(mut group) = groups.lock(&group_id, member_id.is_empty()).await else {
        return join_error(v, &member_id, ResponseError::UnknownMemberId);
    };
    let input = JoinInput {
        version: v,
        member_id,
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: ctx.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        client_host: ctx.client_host(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves for both.
        rebalance_timeout_ms: if req.rebalance_timeout_ms < 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
    };
    if matches!(group.kind, GroupKind::Consumer(_) | GroupKind::Streams(_)) {
        if !group.convertible() {
            // Kafka names no member when the group is a streams group.
            let member = if matches!(group.kind, GroupKind::Streams(_)) {
                ""
            } else {
                &input.member_id
            };
            return join_error(v, member, ResponseError::InconsistentGroupProtocol);
        }
        group.make_classic();
    }
    let answer = match &mut group.kind {
        GroupKind::Classic(c) => c.join(&groups.cfg, input, Instant::now()),
        GroupKind::Consumer(_) | GroupKind::Streams(_) => {
            Answer::Now(join_error(v, "", ResponseError::InconsistentGroupProtocol))
        }
    };
    groups.finish(&mut group).await;
    drop(group);
    let resp = match answer {
        Answer::Now(r) => r,
        // The group was unloaded or the member replaced before the join completed.
        Answer::Later(rx) => rx.await.unwrap_or_else(|_| {
            JoinGroupResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_generation_id(-1)
        }),
    };
    finish_join(v, resp)
}

/// SyncGroup.
pub async fn sync_group(broker: &Broker, req: SyncGroupRequest) -> SyncGroupResponse {
    let groups = &broker.groups;
    let group_id = req.group_id.to_string();
    if group_id.is_empty() {
        return SyncGroupResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    if let Err(e) = super::coordinator::check_group(broker, &group_id) {
        return SyncGroupResponse::default().with_error_code(e.code());
    }
    let Some(mut group) = groups.lock(&group_id, false).await else {
        return SyncGroupResponse::default().with_error_code(ResponseError::UnknownMemberId.code());
    };
    let input = SyncInput {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        generation: req.generation_id,
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let answer = match &mut group.kind {
        GroupKind::Classic(c) => c.sync(input, Instant::now()),
        GroupKind::Consumer(_) | GroupKind::Streams(_) => {
            Answer::Now(SyncGroupResponse::default().with_error_code(ResponseError::UnknownMemberId.code()))
        }
    };
    groups.finish(&mut group).await;
    drop(group);
    match answer {
        Answer::Now(r) => r,
        Answer::Later(rx) => rx.await.unwrap_or_else(|_| {
            SyncGroupResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }),
    }
}

/// Heartbeat.
pub async fn heartbeat(broker: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    let groups = &broker.groups;
    let group_id = req.group_id.to_string();
    if group_id.is_empty() {
        return HeartbeatResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    if let Err(e) = super::coordinator::check_group(broker, &group_id) {
        return HeartbeatResponse::default().with_error_code(e.code());
    }
    let Some(mut group) = groups.lock(&group_id, false).await else {
        return HeartbeatResponse::default().with_error_code(ResponseError::UnknownMemberId.code());
    };
    let result = match &mut group.kind {
        GroupKind::Classic(c) => c.heartbeat(
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
            req.generation_id,
            Instant::now(),
        ),
        GroupKind::Consumer(_) | GroupKind::Streams(_) => Err(ResponseError::UnknownMemberId),
    };
    groups.finish(&mut group).await;
    HeartbeatResponse::default().with_error_code(result.err().map(|e| e.code()).unwrap_or(0))
}

/// LeaveGroup (v0-2 one member, v3+ a batch).
pub async fn leave_group(broker: &Broker, ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let groups = &broker.groups;
    let batched = ctx.version >= 3;
    let leaving: Vec<(String, Option<String>)> = if batched {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let group_id = req.group_id.to_string();
    let group_error = |e: ResponseError| LeaveGroupResponse::default().with_error_code(e.code());
    if group_id.is_empty() {
        return group_error(ResponseError::InvalidGroupId);
    }
    if let Err(e) = super::coordinator::check_group(broker, &group_id) {
        return group_error(e);
    }
    let Some(mut group) = groups.lock(&group_id, false).await else {
        return group_error(ResponseError::UnknownMemberId);
    };
    let results = match &mut group.kind {
        GroupKind::Classic(c) => c.leave(&groups.cfg, &leaving, Instant::now()),
        GroupKind::Consumer(_) | GroupKind::Streams(_) => {
            leaving.iter().map(|_| Err(ResponseError::UnknownMemberId)).collect()
        }
    };
    groups.finish(&mut group).await;
    if !batched {
        let code = results.first().and_then(|r| r.err()).map(|e| e.code()).unwrap_or(0);
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = leaving
        .into_iter()
        .zip(results)
        .map(|((member_id, instance_id), r)| {
            MemberResponse::default()
                .with_member_id(str_bytes(member_id))
                .with_group_instance_id(instance_id.map(str_bytes))
                .with_error_code(r.err().map(|e| e.code()).unwrap_or(0))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

/// ListGroups, with the v4 state filter and the v5 type filter (both case-insensitive, as
/// Kafka compares them).
pub async fn list_groups(broker: &Broker, req: ListGroupsRequest) -> ListGroupsResponse {
    let groups = &broker.groups;
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut listed = Vec::new();
    for id in groups.group_ids() {
        let Some(g) = groups.lock(&id, false).await else {
            continue;
        };
        let state = g.state_name();
        if !states.is_empty() && !states.contains(&g.state_filter_name()) {
            continue;
        }
        if !types.is_empty() && !types.iter().any(|t| t == g.type_name()) {
            continue;
        }
        listed.push(
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(g.protocol_type()))
                .with_group_state(str_bytes(state))
                .with_group_type(str_bytes(g.type_name())),
        );
    }
    ListGroupsResponse::default().with_groups(listed)
}

/// DescribeGroups.
pub async fn describe_groups(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = &broker.groups;
    let ops = if req.include_authorized_operations {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let mut out = Vec::with_capacity(req.groups.len());
    for id in req.groups {
        let base = DescribedGroup::default()
            .with_group_id(id.clone())
            .with_authorized_operations(ops)
            .with_protocol_type(str_bytes(""))
            .with_protocol_data(str_bytes(""));
        if let Err(e) = super::coordinator::check_group(broker, id.as_str()) {
            out.push(base.with_group_state(str_bytes("")).with_error_code(e.code()));
            continue;
        }
        let Some(g) = groups.lock(id.as_str(), false).await else {
            // Kafka reports a missing group as Dead; v6 adds an explicit error.
            let mut d = base.with_group_state(str_bytes("Dead"));
            if ctx.version >= 6 {
                d = d
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(format!("Group {} not found.", id.as_str()))));
            }
            out.push(d);
            continue;
        };
        let GroupKind::Classic(c) = &g.kind else {
            // Kafka describes KIP-848 groups only through ConsumerGroupDescribe.
            let mut d = base.with_group_state(str_bytes("Dead"));
            if ctx.version >= 6 {
                d = d
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Group {} is not a classic group.",
                        id.as_str()
                    ))));
            }
            out.push(d);
            continue;
        };
        // Kafka shows members' metadata and assignments only once they mean something.
        let show_member_data = c.state() == ClassicState::Stable;
        let protocol = c.protocol_name().unwrap_or("").to_string();
        let members = c
            .members()
            .map(|m| {
                let mut d = DescribedGroupMember::default()
                    .with_member_id(str_bytes(m.id.clone()))
                    .with_group_instance_id(m.instance_id.clone().map(str_bytes))
                    .with_client_id(str_bytes(m.client_id.clone()))
                    .with_client_host(str_bytes(m.client_host.clone()));
                if show_member_data {
                    let metadata = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    d = d
                        .with_member_metadata(metadata)
                        .with_member_assignment(m.assignment.clone());
                }
                d
            })
            .collect();
        out.push(
            base.with_group_state(str_bytes(c.state().name()))
                .with_protocol_type(str_bytes(c.protocol_type().unwrap_or("")))
                .with_protocol_data(str_bytes(if c.state() == ClassicState::Stable {
                    protocol
                } else {
                    String::new()
                }))
                .with_members(members),
        );
    }
    DescribeGroupsResponse::default().with_groups(out)
}

/// DeleteGroups: only empty groups, with their offsets.
pub async fn delete_groups(broker: &Broker, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let groups = &broker.groups;
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        if let Err(e) = super::coordinator::check_group(broker, id.as_str()) {
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(e.code()),
            );
            continue;
        }
        let code = match groups.lock(id.as_str(), false).await {
            None => ResponseError::GroupIdNotFound.code(),
            Some(mut g) if g.is_empty() => match groups.delete(&mut g).await {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(group = %id.as_str(), error = %e, "could not delete group");
                    ResponseError::CoordinatorNotAvailable.code()
                }
            },
            Some(_) => ResponseError::NonEmptyGroup.code(),
        };
        results.push(DeletableGroupResult::default().with_group_id(id).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}
