//! AlterClientQuotas (key 49): sets and removes byte-rate quotas of users and client ids,
//! as `kafka-configs --alter --entity-type users|clients --add-config
//! 'producer_byte_rate=...'` sends them, through the controller. Needs ALTER_CONFIGS on
//! the cluster. Per entry: INVALID_REQUEST for a malformed entity, INVALID_CONFIG for a key
//! or value Kafka would refuse (and for `request_percentage`, which Petrel does not
//! enforce).

use std::rc::Rc;

use kafka_protocol::messages::alter_client_quotas_request::EntityData;
use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AnsweredEntity, EntryData as AnsweredEntry,
};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, with_denied};
use crate::cluster::control::ControlCall;
use crate::cluster::controller::QuotaAlteration;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::security::quota::{EntityName, QuotaEntity, QuotaValue};
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

/// Kafka's entity types.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: AlterClientQuotasRequest = exchange::decode(request)?;
    let allowed = shard
        .access(request)
        .may_on_cluster(Operation::AlterConfigs);
    let checked: Vec<Result<QuotaAlteration, Failure>> = body
        .entries
        .iter()
        .map(|entry| {
            if !allowed {
                return Err(Failure::new(
                    ResponseError::ClusterAuthorizationFailed,
                    "quotas need ALTER_CONFIGS on the cluster",
                ));
            }
            let entity = entity_of(&entry.entity)?;
            let ops = entry
                .ops
                .iter()
                .map(|op| {
                    let value = (!op.remove).then(|| QuotaValue::new(op.value));
                    (op.key.to_string(), value)
                })
                .collect();
            Ok(QuotaAlteration { entity, ops })
        })
        .collect();
    let valid: Vec<QuotaAlteration> = checked.iter().flatten().cloned().collect();
    let sent: Vec<bool> = checked.iter().map(Result::is_ok).collect();
    let outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        let count = valid.len();
        shard
            .control(ControlCall::AlterClientQuotas {
                alterations: valid,
                validate_only: body.validate_only,
            })
            .await?
            .into_done(count)
            .into_iter()
            .map(|outcome| outcome.map_err(Failure::from))
            .collect()
    };
    let mut refusals = checked.iter().filter_map(|c| c.as_ref().err().cloned());
    let outcomes = with_denied(&sent, outcomes, || {
        Err(refusals
            .next()
            .unwrap_or_else(|| Failure::new(ResponseError::UnknownServerError, "")))
    });
    let mut response = AlterClientQuotasResponse::default();
    for (entry, outcome) in body.entries.iter().zip(outcomes) {
        let mut answered = AnsweredEntry::default();
        answered.entity = entry
            .entity
            .iter()
            .map(|e| {
                let mut entity = AnsweredEntity::default();
                entity.entity_type = e.entity_type.clone();
                entity.entity_name = e.entity_name.clone();
                entity
            })
            .collect();
        if let Err(failure) = outcome {
            answered.error_code = failure.code.code();
            answered.error_message = Some(str_bytes(&failure.message));
        }
        response.entries.push(answered);
    }
    exchange::respond(request, &response)
}

/// A user, a client id or both, each once (a null name is the default); `ip` entities
/// (KIP-612) are not supported.
fn entity_of(parts: &[EntityData]) -> Result<QuotaEntity, Failure> {
    let invalid = |why: String| Failure::new(ResponseError::InvalidRequest, why);
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    for part in parts {
        let name = match &part.entity_name {
            None => EntityName::Default,
            Some(name) => EntityName::Named(name.to_string()),
        };
        let slot = match part.entity_type.as_str() {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            other => {
                return Err(invalid(format!(
                    "entity type {other} is not supported (user, client-id)"
                )))
            }
        };
        if slot.replace(name).is_some() {
            return Err(invalid(format!("{} is named twice", part.entity_type)));
        }
    }
    if entity.user.is_none() && entity.client_id.is_none() {
        return Err(invalid(
            "an entity names a user, a client id or both".into(),
        ));
    }
    Ok(entity)
}
