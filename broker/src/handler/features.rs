//! UpdateFeatures (KIP-584, KIP-778): finalizing feature levels, as `kafka-features.sh
//! upgrade|downgrade|disable` and `Admin.updateFeatures` ask. Reading them is ApiVersions'
//! (`Admin.describeFeatures` asks a broker for its ApiVersions).

use fjord_controller::features::{check_update, UpgradeType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};

use super::{str_bytes, RequestContext};
use crate::error::controller_error_code;
use crate::Broker;

/// Answers UpdateFeatures: every update is checked by Kafka's rules and applied through the
/// controller all together, or none is (the first refusal is the answer, INVALID_UPDATE_VERSION
/// with Kafka's message). `validate_only` (v1+) checks without applying. v0 says "downgrade
/// allowed" with a flag, which Kafka reads as a safe downgrade. v0-1 list each feature's
/// result when all succeed; v2 has only the top-level error.
pub async fn update_features(
    broker: &Broker,
    ctx: &RequestContext,
    req: UpdateFeaturesRequest,
) -> UpdateFeaturesResponse {
    let updates: Vec<(String, i16, Option<UpgradeType>)> = req
        .feature_updates
        .iter()
        .map(|u| {
            let upgrade = if ctx.version == 0 {
                Some(if u.allow_downgrade {
                    UpgradeType::SafeDowngrade
                } else {
                    UpgradeType::Upgrade
                })
            } else {
                UpgradeType::from_wire(u.upgrade_type)
            };
            (u.feature.to_string(), u.max_version_level, upgrade)
        })
        .collect();
    let meta = broker.metadata();
    let checked: Result<Vec<(String, i16, UpgradeType)>, String> = updates
        .into_iter()
        .map(|(name, level, upgrade)| {
            check_update(&meta, broker.node_id(), &name, level, upgrade)?;
            Ok((name, level, upgrade.expect("a checked update has a known type")))
        })
        .collect();
    let outcome = match checked {
        Err(message) => Err((ResponseError::InvalidUpdateVersion, message)),
        Ok(_) if req.validate_only => Ok(()),
        // The controller checks again as it applies: another update may have come first.
        Ok(updates) => broker
            .controller
            .update_features(updates.clone())
            .await
            .map(|()| {
                for (name, level, _) in &updates {
                    tracing::info!(feature = %name, level, "feature level finalized");
                }
            })
            .map_err(|e| (controller_error_code(&e), e.to_string())),
    };
    match outcome {
        Ok(()) => UpdateFeaturesResponse::default().with_results(
            req.feature_updates
                .into_iter()
                .map(|u| UpdatableFeatureResult::default().with_feature(u.feature))
                .collect(),
        ),
        Err((code, message)) => UpdateFeaturesResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message))),
    }
}
