//! DescribeClientQuotas (key 48): the quotas whose entity a filter matches, as
//! `kafka-configs --describe --entity-type users|clients` shows them. Read from this
//! broker's catalogue copy. Needs DESCRIBE_CONFIGS on the cluster.

use std::rc::Rc;

use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::ResponseError;

use super::alter_client_quotas::{CLIENT_ID, USER};
use super::str_bytes;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::security::quota::{EntityName, QuotaEntity};
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

/// Kafka's match types.
const EXACT: i8 = 0;
const DEFAULT: i8 = 1;
const SPECIFIED: i8 = 2;

pub fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DescribeClientQuotasRequest = exchange::decode(request)?;
    let mut response = DescribeClientQuotasResponse::default();
    let mut fail = |code: ResponseError, message: String| {
        response.error_code = code.code();
        response.error_message = Some(str_bytes(&message));
        response.entries = None;
    };
    if !shard
        .access(request)
        .may_on_cluster(Operation::DescribeConfigs)
    {
        fail(
            ResponseError::ClusterAuthorizationFailed,
            "quotas need DESCRIBE_CONFIGS on the cluster".into(),
        );
        return exchange::respond(request, &response);
    }
    if let Err(why) = check(&body.components) {
        fail(ResponseError::InvalidRequest, why);
        return exchange::respond(request, &response);
    }
    let metadata = shard.metadata();
    let entries = metadata
        .client_quotas
        .iter()
        .filter(|(entity, _)| matches(entity, &body.components, body.strict))
        .map(|(entity, values)| {
            let mut entry = EntryData::default();
            let parts = [(USER, &entity.user), (CLIENT_ID, &entity.client_id)];
            for (entity_type, name) in parts {
                let Some(name) = name else { continue };
                let mut part = EntityData::default();
                part.entity_type = str_bytes(entity_type);
                part.entity_name = match name {
                    EntityName::Default => None,
                    EntityName::Named(name) => Some(str_bytes(name)),
                };
                entry.entity.push(part);
            }
            entry.values = values
                .iter()
                .map(|(key, value)| {
                    let mut data = ValueData::default();
                    data.key = str_bytes(key);
                    data.value = value.get();
                    data
                })
                .collect();
            entry
        })
        .collect();
    response.entries = Some(entries);
    exchange::respond(request, &response)
}

/// Known entity types, each at most once, known match types, a name only for EXACT.
fn check(components: &[ComponentData]) -> Result<(), String> {
    let mut seen = Vec::new();
    for component in components {
        let entity_type = component.entity_type.as_str();
        if entity_type != USER && entity_type != CLIENT_ID {
            return Err(format!(
                "entity type {entity_type} is not supported (user, client-id)"
            ));
        }
        if seen.contains(&entity_type) {
            return Err(format!("{entity_type} is filtered twice"));
        }
        seen.push(entity_type);
        match (component.match_type, &component._match) {
            (EXACT, Some(_)) | (DEFAULT | SPECIFIED, None) => {}
            (EXACT, None) => return Err("an exact match needs a name".into()),
            (DEFAULT | SPECIFIED, Some(_)) => return Err("only an exact match takes a name".into()),
            (other, _) => return Err(format!("unknown match type {other}")),
        }
    }
    Ok(())
}

/// Whether `entity` passes every component (and, with `strict`, has no other part).
fn matches(entity: &QuotaEntity, components: &[ComponentData], strict: bool) -> bool {
    let part = |entity_type: &str| match entity_type {
        USER => entity.user.as_ref(),
        _ => entity.client_id.as_ref(),
    };
    let each = components.iter().all(|component| {
        match (part(component.entity_type.as_str()), component.match_type) {
            (None, _) => false,
            (Some(name), EXACT) => {
                matches!(name, EntityName::Named(n) if Some(n.as_str()) == component._match.as_deref())
            }
            (Some(name), DEFAULT) => *name == EntityName::Default,
            (Some(_), _) => true,
        }
    });
    let parts = usize::from(entity.user.is_some()) + usize::from(entity.client_id.is_some());
    each && (!strict || parts == components.len())
}
