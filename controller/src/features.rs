//! Kafka's feature flags (KIP-584, KIP-778, KIP-1022): which feature levels this version of
//! Fjord supports, which a new cluster finalizes, and Kafka's rules for changing them
//! (UpdateFeatures, `kafka-features.sh`).
//!
//! Clients read the finalized levels from ApiVersions and change behaviour by them: the Java
//! producer uses transaction version 2 (KIP-890: Produce v12 adds partitions to the transaction,
//! EndTxn v5 bumps the epoch) only when `transaction.version` is finalized at 2. A new cluster
//! finalizes what Kafka 4.4's storage format does by default, so clients behave as they do
//! against Kafka 4.4. A cluster created before Fjord kept feature levels has none stored and
//! reads as those same defaults (it served KIP-848 and transaction version 2 already); its
//! first UpdateFeatures stores them before changing one.

use std::collections::BTreeMap;

use crate::metadata::ClusterMetadata;

/// `metadata.version`, which every Kafka cluster has finalized.
pub const METADATA_VERSION: &str = "metadata.version";

/// One feature this version of Fjord knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    /// Kafka's name for it.
    pub name: &'static str,
    /// The lowest level supported.
    pub min: i16,
    /// The highest level supported.
    pub max: i16,
    /// The level a new cluster finalizes (Kafka 4.4's defaults for its newest
    /// `metadata.version`).
    pub default: i16,
}

/// `metadata.version` 7 is 3.3-IV3, the oldest Kafka 4 accepts; 33 is 4.4-IV2, Kafka 4.4's
/// newest production level. Fjord's own metadata does not depend on it: the level is reported
/// for tools and clients that read it.
pub const SUPPORTED: &[Feature] = &[
    Feature {
        name: METADATA_VERSION,
        min: 7,
        max: 33,
        default: 33,
    },
    // Fjord's quorum always changes voters dynamically (AddRaftVoter, RemoveRaftVoter), which
    // Kafka calls kraft.version 1.
    Feature {
        name: "kraft.version",
        min: 0,
        max: 1,
        default: 1,
    },
    // Level 1 enables the consumer rebalance protocol (KIP-848).
    Feature {
        name: "group.version",
        min: 0,
        max: 1,
        default: 1,
    },
    // Level 2 is KIP-890's transaction version 2.
    Feature {
        name: "transaction.version",
        min: 0,
        max: 2,
        default: 2,
    },
    // Level 1 enables streams groups (KIP-1071).
    Feature {
        name: "streams.version",
        min: 0,
        max: 1,
        default: 1,
    },
];

/// The finalized levels of a new cluster.
pub fn defaults() -> BTreeMap<String, i16> {
    SUPPORTED.iter().map(|f| (f.name.to_string(), f.default)).collect()
}

/// How an UpdateFeatures request may move a level (Kafka's `FeatureUpdate.UpgradeType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UpgradeType {
    /// Only up (or to the same level).
    Upgrade,
    /// Down, where nothing is lost.
    SafeDowngrade,
    /// Down, even where something is lost.
    UnsafeDowngrade,
}

impl UpgradeType {
    /// From the wire (UpdateFeatures v1+); `None` for a value Kafka does not know.
    pub fn from_wire(v: i8) -> Option<Self> {
        match v {
            1 => Some(Self::Upgrade),
            2 => Some(Self::SafeDowngrade),
            3 => Some(Self::UnsafeDowngrade),
            _ => None,
        }
    }
}

impl ClusterMetadata {
    /// The finalized level of a feature (see the module documentation for a cluster with
    /// none stored).
    pub fn feature_level(&self, name: &str) -> i16 {
        if self.features.is_empty() {
            return SUPPORTED.iter().find(|f| f.name == name).map_or(0, |f| f.default);
        }
        match self.features.get(name) {
            Some(&level) => level,
            None if name == METADATA_VERSION => SUPPORTED[0].min,
            None => 0,
        }
    }

    /// Every finalized feature with its level, `metadata.version` included.
    pub fn finalized_features(&self) -> BTreeMap<String, i16> {
        if self.features.is_empty() {
            return defaults();
        }
        let mut out = self.features.clone();
        out.entry(METADATA_VERSION.to_string())
            .or_insert_with(|| self.feature_level(METADATA_VERSION));
        out
    }
}

/// Kafka's check of one feature update (`FeatureControlManager.updateFeature`), with its
/// messages; the error is INVALID_UPDATE_VERSION. `node_id` names the node that checks, as
/// Kafka's "Local controller N" does.
pub fn check_update(
    meta: &ClusterMetadata,
    node_id: i32,
    name: &str,
    level: i16,
    upgrade: Option<UpgradeType>,
) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("Invalid update version {level} for feature {name}. {why}"));
    let Some(upgrade) = upgrade else {
        return invalid("The controller does not support the given upgrade type.");
    };
    let current = meta.feature_level(name);
    if level < 0 {
        return invalid("A feature version cannot be less than 0.");
    }
    let (min, max) = SUPPORTED
        .iter()
        .find(|f| f.name == name)
        .map_or((0, 0), |f| (f.min, f.max));
    if level < min || level > max {
        return if max == 0 {
            invalid(&format!("Local controller {node_id} does not support this feature."))
        } else {
            // Kafka's VersionRange prints as "1", "0-2" or "7+".
            let range = if min == max {
                min.to_string()
            } else {
                format!("{min}-{max}")
            };
            invalid(&format!("Local controller {node_id} only supports versions {range}"))
        };
    }
    if level < current && upgrade == UpgradeType::Upgrade {
        return invalid(
            "Can't downgrade the version of this feature without setting the upgrade type to either safe or unsafe downgrade.",
        );
    }
    if level > current && upgrade != UpgradeType::Upgrade {
        return invalid("Can't downgrade to a newer version.");
    }
    if name == METADATA_VERSION && level < current && upgrade == UpgradeType::UnsafeDowngrade {
        // Kafka 4.4's own answer: it has no lossy metadata downgrade either.
        return Err(format!(
            "Unsupported metadata.version downgrade from {current} to {level}. Unsafe metadata downgrade is not supported in this version."
        ));
    }
    if name == "kraft.version" && level != current && upgrade != UpgradeType::Upgrade {
        return invalid("Can't downgrade the version of this feature.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(levels: &[(&str, i16)]) -> ClusterMetadata {
        ClusterMetadata {
            features: levels.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_cluster_without_stored_levels_reads_as_the_defaults() {
        let m = meta(&[]);
        assert_eq!(m.feature_level(METADATA_VERSION), 33);
        assert_eq!(m.feature_level("transaction.version"), 2);
        assert_eq!(m.feature_level("no.such.feature"), 0);
        assert_eq!(m.finalized_features(), defaults());
        let stored = meta(&[("group.version", 1)]);
        assert_eq!(
            stored.feature_level(METADATA_VERSION),
            7,
            "a stored set without it has the oldest"
        );
        assert_eq!(stored.feature_level("transaction.version"), 0);
    }

    fn refused(r: Result<(), String>) -> String {
        r.expect_err("the update is refused")
    }

    #[test]
    fn updates_follow_kafkas_rules_and_messages() {
        let m = meta(&[("transaction.version", 2), (METADATA_VERSION, 33), ("kraft.version", 1)]);
        let up = Some(UpgradeType::Upgrade);
        let safe = Some(UpgradeType::SafeDowngrade);
        assert_eq!(check_update(&m, 1, "transaction.version", 2, up), Ok(()));
        assert_eq!(check_update(&m, 1, "transaction.version", 1, safe), Ok(()));
        assert_eq!(
            refused(check_update(&m, 1, "transaction.version", 1, up)),
            "Invalid update version 1 for feature transaction.version. Can't downgrade the version of this feature without setting the upgrade type to either safe or unsafe downgrade."
        );
        assert_eq!(
            refused(check_update(&m, 1, "transaction.version", 3, up)),
            "Invalid update version 3 for feature transaction.version. Local controller 1 only supports versions 0-2"
        );
        assert_eq!(
            refused(check_update(&m, 3, "no.such.feature", 1, up)),
            "Invalid update version 1 for feature no.such.feature. Local controller 3 does not support this feature."
        );
        assert_eq!(check_update(&m, 1, "no.such.feature", 0, up), Ok(()));
        assert!(refused(check_update(&m, 1, "group.version", 1, safe)).ends_with("Can't downgrade to a newer version."));
        assert!(
            refused(check_update(&m, 1, "group.version", -1, up)).ends_with("A feature version cannot be less than 0.")
        );
        assert!(refused(check_update(&m, 1, "group.version", 1, None))
            .ends_with("The controller does not support the given upgrade type."));
        assert!(refused(check_update(&m, 1, "kraft.version", 0, safe))
            .ends_with("Can't downgrade the version of this feature."));
        assert_eq!(check_update(&m, 1, METADATA_VERSION, 30, safe), Ok(()));
        assert!(refused(check_update(
            &m,
            1,
            METADATA_VERSION,
            30,
            Some(UpgradeType::UnsafeDowngrade)
        ))
        .starts_with("Unsupported metadata.version downgrade from 33 to 30."));
        assert!(refused(check_update(&m, 1, METADATA_VERSION, 0, safe)).ends_with("only supports versions 7-33"));
    }
}
