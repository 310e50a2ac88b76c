//! ApiVersions (KIP-35, KIP-511).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
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
pub fn handle(ctx: &RequestContext, req: ApiVersionsRequest) -> ApiVersionsResponse {
    if ctx.version >= 3 {
        tracing::debug!(client_software_name = %req.client_software_name.as_str(), client_software_version = %req.client_software_version.as_str(), "client identified");
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
        if !valid(req.client_software_name.as_str()) || !valid(req.client_software_version.as_str()) {
            return ApiVersionsResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        }
    }
    ApiVersionsResponse::default().with_api_keys(api_list())
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
