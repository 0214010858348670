//! IncrementalAlterConfigs (key 44): changes topic configs at runtime (`kafka-configs
//! --alter`, `Admin.incrementalAlterConfigs`). Broker configs are static in Petrel (flags,
//! environment, config file) and are refused with INVALID_REQUEST.

use std::collections::{BTreeSet, HashSet};
use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::cluster::control::ControlCall;
use crate::cluster::controller::{ConfigEdit, TopicConfigChange};
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::access::Access;
use crate::shard::{Shard, ShardGone};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;
/// The one list-valued topic config Petrel knows (APPEND and SUBTRACT apply to lists only).
const LIST_CONFIGS: &[&str] = &["cleanup.policy"];

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: IncrementalAlterConfigsRequest = exchange::decode(request)?;
    let metadata = shard.metadata();
    let access = shard.access(request);
    let changes = body
        .resources
        .iter()
        .map(|resource| {
            let topic = check_resource(&access, resource.resource_type, &resource.resource_name)?;
            check_unique(resource.configs.iter().map(|c| c.name.as_str()))?;
            let current = metadata
                .topic(&topic)
                .map(|t| t.configs.clone())
                .unwrap_or_default();
            let edits = resource
                .configs
                .iter()
                .map(|config| {
                    let name = config.name.to_string();
                    let value = config.value.as_ref().map(|v| v.to_string());
                    edit(name, config.config_operation, value, &current)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(TopicConfigChange {
                topic,
                replace_all: false,
                edits,
            })
        })
        .collect();
    let outcomes = apply(shard, changes, body.validate_only).await?;
    let mut response = IncrementalAlterConfigsResponse::default();
    for (resource, outcome) in body.resources.iter().zip(outcomes) {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        if let Err(failure) = outcome {
            result.error_code = failure.code.code();
            result.error_message = Some(str_bytes(&failure.message));
        }
        response.responses.push(result);
    }
    exchange::respond(request, &response)
}

/// One incremental operation as an edit of the topic's overrides (`current`).
fn edit(
    name: String,
    operation: i8,
    value: Option<String>,
    current: &std::collections::BTreeMap<String, String>,
) -> Result<ConfigEdit, Failure> {
    let list_op = |append: bool, value: Option<String>| -> Result<ConfigEdit, Failure> {
        if !LIST_CONFIGS.contains(&name.as_str()) {
            return Err(invalid_config(format!(
                "{name}: APPEND and SUBTRACT apply only to list configs ({})",
                LIST_CONFIGS.join(", ")
            )));
        }
        let value = value.ok_or_else(|| invalid_request(format!("{name}: no value")))?;
        let mut items: Vec<String> = current
            .get(&name)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        // Sets beside the order-keeping list: linear in the items, however many are sent.
        if append {
            let mut present: HashSet<String> = items.iter().cloned().collect();
            for item in value.split(',').map(str::trim) {
                if present.insert(item.to_string()) {
                    items.push(item.to_string());
                }
            }
        } else {
            let removed: HashSet<&str> = value.split(',').map(str::trim).collect();
            items.retain(|i| !removed.contains(i.as_str()));
        }
        Ok(if items.is_empty() {
            ConfigEdit::Delete(name.clone())
        } else {
            ConfigEdit::Set(name.clone(), items.join(","))
        })
    };
    match operation {
        OP_SET => match value {
            Some(value) => Ok(ConfigEdit::Set(name, value)),
            None => Err(invalid_request(format!("{name}: SET needs a value"))),
        },
        OP_DELETE => Ok(ConfigEdit::Delete(name)),
        OP_APPEND => list_op(true, value),
        OP_SUBTRACT => list_op(false, value),
        other => Err(invalid_request(format!(
            "{name}: unknown config operation {other}"
        ))),
    }
}

/// The topic a resource names, or why it cannot be altered (Kafka: ALTER_CONFIGS on the
/// topic, or on the cluster for a broker).
pub fn check_resource(
    access: &Access<'_>,
    resource_type: i8,
    name: &str,
) -> Result<String, Failure> {
    match resource_type {
        RESOURCE_TOPIC if !access.may_on_topic(Operation::AlterConfigs, name) => Err(Failure::new(
            ResponseError::TopicAuthorizationFailed,
            "the principal may not ALTER_CONFIGS on this topic",
        )),
        RESOURCE_TOPIC => Ok(name.to_string()),
        RESOURCE_BROKER if !access.may_on_cluster(Operation::AlterConfigs) => Err(Failure::new(
            ResponseError::ClusterAuthorizationFailed,
            "the principal may not ALTER_CONFIGS on the cluster",
        )),
        RESOURCE_BROKER => Err(invalid_request(
            "broker configs are static in Petrel: set them with `petrel serve` flags, \
             PETREL_* environment variables or the config file, and restart"
                .to_string(),
        )),
        other => Err(invalid_request(format!(
            "resource type {other} has no configs in Petrel"
        ))),
    }
}

/// Kafka refuses a resource that names a config twice.
pub fn check_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), Failure> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(invalid_request(format!("config {name} is named twice")));
        }
    }
    Ok(())
}

/// Runs the valid changes on the controller; results in resource order.
pub async fn apply(
    shard: &Rc<Shard>,
    changes: Vec<Result<TopicConfigChange, Failure>>,
    validate_only: bool,
) -> Result<Vec<Result<(), Failure>>, ShardGone> {
    let valid: Vec<TopicConfigChange> = changes.iter().filter_map(|c| c.clone().ok()).collect();
    let mut applied = if valid.is_empty() {
        Vec::new()
    } else {
        let count = valid.len();
        shard
            .control(ControlCall::AlterTopicConfigs {
                changes: valid,
                validate_only,
            })
            .await?
            .into_done(count)
    }
    .into_iter();
    Ok(changes
        .into_iter()
        .map(|change| match change {
            Ok(_) => match applied.next() {
                Some(outcome) => outcome.map_err(Failure::from),
                None => Err(invalid_request("the controller gave no answer".to_string())),
            },
            Err(failure) => Err(failure),
        })
        .collect())
}

fn invalid_request(message: String) -> Failure {
    Failure::new(ResponseError::InvalidRequest, message)
}

fn invalid_config(message: String) -> Failure {
    Failure::new(ResponseError::InvalidConfig, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn current(policy: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("cleanup.policy".to_string(), policy.to_string())])
    }

    #[test]
    fn operations_become_edits_of_the_overrides() {
        let none = BTreeMap::new();
        assert!(matches!(
            edit("retention.ms".into(), OP_SET, Some("5".into()), &none),
            Ok(ConfigEdit::Set(n, v)) if n == "retention.ms" && v == "5"
        ));
        assert!(matches!(
            edit("retention.ms".into(), OP_DELETE, None, &none),
            Ok(ConfigEdit::Delete(n)) if n == "retention.ms"
        ));
        assert_eq!(
            edit("retention.ms".into(), OP_SET, None, &none)
                .unwrap_err()
                .code,
            ResponseError::InvalidRequest
        );
        assert_eq!(
            edit("retention.ms".into(), OP_APPEND, Some("1".into()), &none)
                .unwrap_err()
                .code,
            ResponseError::InvalidConfig
        );
        assert_eq!(
            edit("retention.ms".into(), 9, None, &none)
                .unwrap_err()
                .code,
            ResponseError::InvalidRequest
        );
        // Lists: append skips what is there; subtracting the last item deletes the override.
        assert!(matches!(
            edit("cleanup.policy".into(), OP_APPEND, Some("delete,compact".into()), &current("delete")),
            Ok(ConfigEdit::Set(_, v)) if v == "delete,compact"
        ));
        assert!(matches!(
            edit(
                "cleanup.policy".into(),
                OP_SUBTRACT,
                Some("delete".into()),
                &current("delete")
            ),
            Ok(ConfigEdit::Delete(_))
        ));
    }

    #[test]
    fn brokers_and_duplicates_are_refused() {
        assert_eq!(
            check_resource(&Access::unchecked(), RESOURCE_TOPIC, "t").unwrap(),
            "t"
        );
        assert_eq!(
            check_resource(&Access::unchecked(), RESOURCE_BROKER, "0")
                .unwrap_err()
                .code,
            ResponseError::InvalidRequest
        );
        assert!(check_unique(["a", "b"].into_iter()).is_ok());
        assert!(check_unique(["a", "a"].into_iter()).is_err());
    }
}
