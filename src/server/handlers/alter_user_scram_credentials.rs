//! AlterUserScramCredentials (key 51): sets and deletes users' SCRAM credentials, as
//! `kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=...]' --entity-type users`
//! sends them (the client salts the password; the broker keeps only derived keys).

use std::rc::Rc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};

use super::str_bytes;
use crate::cluster::control::ControlCall;
use crate::cluster::controller::{users_named, ScramDeletion, ScramUpsertion};
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;
use kafka_protocol::ResponseError;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: AlterUserScramCredentialsRequest = exchange::decode(request)?;
    let deletions: Vec<ScramDeletion> = body
        .deletions
        .iter()
        .map(|d| ScramDeletion {
            user: d.name.to_string(),
            mechanism: d.mechanism,
        })
        .collect();
    let upsertions: Vec<ScramUpsertion> = body
        .upsertions
        .iter()
        .map(|u| ScramUpsertion {
            user: u.name.to_string(),
            mechanism: u.mechanism,
            // Negative iterations are out of range as any other bad count is.
            iterations: u32::try_from(u.iterations).unwrap_or(0),
            salt: u.salt.to_vec(),
            salted_password: u.salted_password.to_vec(),
        })
        .collect();
    let users = users_named(&deletions, &upsertions);
    if !shard.access(request).may_on_cluster(Operation::Alter) {
        let mut response = AlterUserScramCredentialsResponse::default();
        for user in users {
            let mut result = AlterUserScramCredentialsResult::default();
            result.user = str_bytes(&user);
            result.error_code = ResponseError::ClusterAuthorizationFailed.code();
            result.error_message = Some(str_bytes("needs ALTER on the cluster"));
            response.results.push(result);
        }
        return exchange::respond(request, &response);
    }
    let results = shard
        .control(ControlCall::AlterUserScramCredentials {
            deletions,
            upsertions,
        })
        .await?
        .into_users(&users);
    let mut response = AlterUserScramCredentialsResponse::default();
    for (user, outcome) in results {
        let mut result = AlterUserScramCredentialsResult::default();
        result.user = str_bytes(&user);
        if let Err(error) = outcome {
            let failure = Failure::from(error);
            result.error_code = failure.code.code();
            result.error_message = Some(str_bytes(&failure.message));
        }
        response.results.push(result);
    }
    exchange::respond(request, &response)
}
