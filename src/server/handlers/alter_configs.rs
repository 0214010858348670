//! AlterConfigs (key 33, the older, non-incremental API): replaces a topic's config
//! overrides with exactly the set it names; configs left out return to their defaults.
//! Validation, the broker refusal and the controller call are shared with
//! IncrementalAlterConfigs.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::incremental_alter_configs::{apply, check_resource, check_unique};
use super::str_bytes;
use crate::cluster::controller::{ConfigEdit, TopicConfigChange};
use crate::protocol::frame::Request;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: AlterConfigsRequest = exchange::decode(request)?;
    let access = shard.access(request);
    let changes = body
        .resources
        .iter()
        .map(|resource| {
            let topic = check_resource(&access, resource.resource_type, &resource.resource_name)?;
            check_unique(resource.configs.iter().map(|c| c.name.as_str()))?;
            let edits = resource
                .configs
                .iter()
                .map(|config| match &config.value {
                    Some(value) => ConfigEdit::Set(config.name.to_string(), value.to_string()),
                    None => ConfigEdit::Delete(config.name.to_string()),
                })
                .collect();
            Ok(TopicConfigChange {
                topic,
                replace_all: true,
                edits,
            })
        })
        .collect();
    let outcomes = apply(shard, changes, body.validate_only).await?;
    let mut response = AlterConfigsResponse::default();
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
