//! DescribeUserScramCredentials (key 50): which mechanisms each user has a credential for,
//! and their iterations (never a salt or key), as `kafka-configs --describe --entity-type
//! users` shows them. No users named: every user with a credential.

use std::rc::Rc;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::cluster::metadata::ScramCredentials;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DescribeUserScramCredentialsRequest = exchange::decode(request)?;
    if !shard.access(request).may_on_cluster(Operation::Describe) {
        let mut response = DescribeUserScramCredentialsResponse::default();
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        response.error_message = Some(str_bytes("needs DESCRIBE on the cluster"));
        return exchange::respond(request, &response);
    }
    let metadata = shard.metadata();
    let all = &metadata.scram_credentials;
    let asked: Vec<String> = match &body.users {
        Some(users) if !users.is_empty() => users.iter().map(|u| u.name.to_string()).collect(),
        _ => all.keys().cloned().collect(),
    };
    // Linear in the request: how often each name is asked, then one answer per name.
    let mut times: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for user in &asked {
        *times.entry(user.as_str()).or_default() += 1;
    }
    let mut answered = std::collections::HashSet::new();
    let mut response = DescribeUserScramCredentialsResponse::default();
    for user in &asked {
        if !answered.insert(user.as_str()) {
            continue; // answered once, as DUPLICATE_RESOURCE
        }
        let duplicate = times.get(user.as_str()).is_some_and(|&count| count > 1);
        response.results.push(describe(all, user, duplicate));
    }
    exchange::respond(request, &response)
}

fn describe(
    all: &ScramCredentials,
    user: &str,
    duplicate: bool,
) -> DescribeUserScramCredentialsResult {
    let mut result = DescribeUserScramCredentialsResult::default();
    result.user = str_bytes(user);
    if duplicate {
        result.error_code = ResponseError::DuplicateResource.code();
        result.error_message = Some(str_bytes(&format!("{user} is asked for more than once")));
        return result;
    }
    match all.get(user) {
        None => {
            result.error_code = ResponseError::ResourceNotFound.code();
            result.error_message = Some(str_bytes(&format!("{user} has no SCRAM credential")));
        }
        Some(credentials) => {
            result.credential_infos = credentials
                .iter()
                .map(|(mechanism, credential)| {
                    let mut info = CredentialInfo::default();
                    info.mechanism = mechanism.code();
                    info.iterations = i32::try_from(credential.iterations).unwrap_or(i32::MAX);
                    info
                })
                .collect();
        }
    }
    result
}
