//! Client quotas (AlterClientQuotas): set and removed through the controller like every
//! catalogue change, so every broker throttles by the same quotas and they survive
//! restarts. Each entry is checked as Kafka checks it; an entry fails whole.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::error::{Outcome, TopicError};
use super::frontend::Controller;
use super::host::TopicHost;
use crate::security::quota::{QuotaEntity, QuotaValue, KEYS, REQUEST_PERCENTAGE};

/// Entities with quotas, at most (each is a few hundred bytes in every catalogue copy).
const QUOTA_ENTITIES_MAX: usize = 100_000;
/// A user name or client id in an entity is at most this long.
const NAME_BYTES_MAX: usize = 1024;

/// One entry of AlterClientQuotas: an entity and its changes, `None` removing a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaAlteration {
    pub entity: QuotaEntity,
    pub ops: Vec<(String, Option<QuotaValue>)>,
}

impl Controller {
    /// Applies each entry that passes Kafka's checks (with `validate_only`, none).
    pub async fn alter_client_quotas(
        &self,
        host: &impl TopicHost,
        alterations: Vec<QuotaAlteration>,
        validate_only: bool,
    ) -> Vec<Outcome<()>> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        let mut changed = false;
        let outcomes: Vec<Outcome<()>> = alterations
            .into_iter()
            .map(|alteration| {
                check(&alteration)?;
                let quotas = &mut metadata.client_quotas;
                if !quotas.contains_key(&alteration.entity) && quotas.len() >= QUOTA_ENTITIES_MAX {
                    return Err(TopicError::PolicyViolation(format!(
                        "at most {QUOTA_ENTITIES_MAX} entities with quotas"
                    )));
                }
                if validate_only {
                    return Ok(());
                }
                let values = quotas.entry(alteration.entity.clone()).or_default();
                for (key, value) in alteration.ops {
                    match value {
                        Some(value) => values.insert(key, value),
                        None => values.remove(&key),
                    };
                }
                if values.is_empty() {
                    quotas.remove(&alteration.entity);
                }
                changed = true;
                Ok(())
            })
            .collect();
        if changed {
            self.publish_or_fail(host, metadata, outcomes).await
        } else {
            outcomes
        }
    }
}

/// Kafka's checks: a user or client id (or both), names within bounds, known keys each
/// once, values positive whole numbers (byte rates are longs in Kafka's config).
fn check(alteration: &QuotaAlteration) -> Outcome<()> {
    let invalid = |why: String| Err(TopicError::InvalidConfig(why));
    let entity = &alteration.entity;
    if entity.user.is_none() && entity.client_id.is_none() {
        return invalid("an entity names a user, a client id or both".into());
    }
    for name in [&entity.user, &entity.client_id].into_iter().flatten() {
        if let crate::security::quota::EntityName::Named(name) = name {
            if name.len() > NAME_BYTES_MAX {
                return invalid(format!("an entity name is at most {NAME_BYTES_MAX} bytes"));
            }
        }
    }
    let mut seen = HashSet::new();
    for (key, value) in &alteration.ops {
        if !KEYS.contains(&key.as_str()) {
            return invalid(format!(
                "{key} is not a client quota Petrel enforces ({})",
                KEYS.join(", ")
            ));
        }
        if !seen.insert(key.as_str()) {
            return invalid(format!("{key} is changed twice"));
        }
        if let Some(value) = value.map(QuotaValue::get) {
            // Kafka's types: byte rates are longs, request_percentage a double.
            let fraction_allowed = key == REQUEST_PERCENTAGE;
            if !value.is_finite()
                || value <= 0.0
                || (value.fract() != 0.0 && !fraction_allowed)
                || value > 1e18
            {
                return invalid(format!(
                    "{key}={value}: must be a positive {}",
                    if fraction_allowed {
                        "number"
                    } else {
                        "whole number"
                    }
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::quota::EntityName;

    fn alteration(user: Option<&str>, ops: Vec<(&str, Option<f64>)>) -> QuotaAlteration {
        QuotaAlteration {
            entity: QuotaEntity {
                user: user.map(|u| EntityName::Named(u.into())),
                client_id: None,
            },
            ops: ops
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.map(QuotaValue::new)))
                .collect(),
        }
    }

    #[test]
    fn quota_changes_are_checked_as_kafka_checks_them() {
        let ok = alteration(Some("a"), vec![("producer_byte_rate", Some(1024.0))]);
        assert!(check(&ok).is_ok());
        assert!(check(&alteration(Some("a"), vec![("producer_byte_rate", None)])).is_ok());
        for bad in [
            alteration(None, vec![("producer_byte_rate", Some(1.0))]),
            alteration(Some("a"), vec![("request_rate", Some(1.0))]),
            alteration(Some("a"), vec![("producer_byte_rate", Some(0.0))]),
            alteration(Some("a"), vec![("producer_byte_rate", Some(1.5))]),
            alteration(Some("a"), vec![("producer_byte_rate", Some(f64::NAN))]),
            alteration(
                Some("a"),
                vec![
                    ("producer_byte_rate", Some(1.0)),
                    ("producer_byte_rate", None),
                ],
            ),
        ] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
    }
}
