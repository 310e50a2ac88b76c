//! ApiVersions (KIP-35, KIP-511).

use fjord_controller::features::SUPPORTED;
use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseKind};

use super::{advertised_versions, Reply, RequestContext, IMPLEMENTED};

fn api_list() -> Vec<ApiVersion> {
    let mut keys: Vec<ApiKey> = IMPLEMENTED.to_vec();
    keys.sort_by_key(|k| *k as i16);
    keys.into_iter()
        .filter_map(|k| {
            let r = advertised_versions(k)?;
            Some(
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(r.min)
                    .with_max_version(r.max),
            )
        })
        .collect()
}

/// Answers ApiVersions. KIP-511's client name and version are logged for operators; an
/// invalid name (v3+) gets `INVALID_REQUEST` like Kafka's `ApiVersionsRequest.isValid`.
/// From v5 (KIP-1242) a client may say which cluster and node it means to reach: when either
/// is not this broker's, it gets `REBOOTSTRAP_REQUIRED` (its metadata is stale, say after an
/// address moved to another broker) and no ranges, as Kafka answers.
///
/// v3+ also carry the features this broker supports and the levels the cluster finalized
/// (KIP-584): clients act on them (the Java producer uses transaction version 2 only when
/// `transaction.version` is finalized at 2). As in Kafka, a level-0 finalized feature is left
/// out, and before v4 so is a supported feature whose range starts at 0 (KAFKA-17011: older
/// clients refuse a minimum of 0).
pub fn handle(
    ctx: &RequestContext,
    req: ApiVersionsRequest,
    meta: &ClusterMetadata,
    node_id: i32,
) -> ApiVersionsResponse {
    if ctx.version >= 3 {
        tracing::debug!(client_software_name = %req.client_software_name.as_str(), client_software_version = %req.client_software_version.as_str(), "client identified");
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
        if !valid(req.client_software_name.as_str()) || !valid(req.client_software_version.as_str()) {
            return ApiVersionsResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        }
    }
    if ctx.version >= 5 {
        if let Some(wanted) = &req.cluster_id {
            if wanted.as_str() != meta.cluster_id || req.node_id != node_id {
                return ApiVersionsResponse::default().with_error_code(ResponseError::RebootstrapRequired.code());
            }
        }
    }
    let supported = SUPPORTED
        .iter()
        .filter(|f| ctx.version >= 4 || f.min > 0)
        .map(|f| {
            SupportedFeatureKey::default()
                .with_name(super::str_bytes(f.name))
                .with_min_version(f.min)
                .with_max_version(f.max)
        })
        .collect();
    let finalized = meta
        .finalized_features()
        .into_iter()
        .filter(|&(_, level)| level != 0)
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(super::str_bytes(name))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_api_keys(api_list())
        .with_supported_features(supported)
        .with_finalized_features(finalized)
        .with_finalized_features_epoch(meta.features_epoch)
}

/// The answer to an ApiVersions request newer than we know: a v0 response (which every
/// client can parse) with `UNSUPPORTED_VERSION` and our ranges, so the client retries with a
/// version we support (KIP-511).
pub fn fallback(header: &RequestHeader) -> Reply {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_list());
    match fjord_protocol::frame::encode_response(
        ApiKey::ApiVersions,
        0,
        header.correlation_id,
        &ResponseKind::ApiVersions(body),
    ) {
        Ok(b) => Reply::Send(b),
        Err(_) => Reply::Close,
    }
}
