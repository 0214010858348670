//! Users' SCRAM credentials (AlterUserScramCredentials): set and deleted through the
//! controller like every catalogue change, so every broker checks logins against the same
//! credentials and they survive restarts.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{Outcome, TopicError};
use super::frontend::Controller;
use super::host::TopicHost;
use super::requests::{users_named, ScramDeletion, ScramUpsertion};
use crate::security::scram::{ScramCredential, ScramMechanism, ITERATIONS_MAX, ITERATIONS_MIN};

/// A user name is at most this long (Kafka does not bound it; a catalogue must be).
const USER_BYTES_MAX: usize = 1024;
/// Users with credentials, at most (each costs a few hundred bytes in every catalogue copy).
const USERS_MAX: usize = 100_000;

impl Controller {
    /// Applies deletions and upsertions; results are per user, in request order of first
    /// mention (a user fails whole if any of its changes is refused, as in Kafka).
    pub async fn alter_user_scram_credentials(
        &self,
        host: &impl TopicHost,
        deletions: Vec<ScramDeletion>,
        upsertions: Vec<ScramUpsertion>,
    ) -> Vec<(String, Outcome<()>)> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        let users = users_named(&deletions, &upsertions);
        let mut refused = refusals(&metadata.scram_credentials, &deletions, &upsertions);
        let mut changed = false;
        for deletion in deletions {
            let Some(mechanism) = ScramMechanism::from_code(deletion.mechanism) else {
                continue;
            };
            if refused.contains_key(&deletion.user) {
                continue;
            }
            if let Some(credentials) = metadata.scram_credentials.get_mut(&deletion.user) {
                credentials.remove(&mechanism);
                if credentials.is_empty() {
                    metadata.scram_credentials.remove(&deletion.user);
                }
                changed = true;
            }
        }
        for upsertion in upsertions {
            let Some(mechanism) = ScramMechanism::from_code(upsertion.mechanism) else {
                continue;
            };
            if refused.contains_key(&upsertion.user) {
                continue;
            }
            let new_user = !metadata.scram_credentials.contains_key(&upsertion.user);
            if new_user && metadata.scram_credentials.len() >= USERS_MAX {
                let error = TopicError::PolicyViolation(format!("at most {USERS_MAX} users"));
                refused.insert(upsertion.user, error);
                continue;
            }
            insert_credential(&mut metadata.scram_credentials, mechanism, upsertion);
            changed = true;
        }
        let outcomes: Vec<Outcome<()>> = users
            .iter()
            .map(|user| refused.get(user).map_or(Ok(()), |error| Err(error.clone())))
            .collect();
        let outcomes = if changed {
            self.publish_or_fail(host, metadata, outcomes).await
        } else {
            outcomes
        };
        users.into_iter().zip(outcomes).collect()
    }
}

impl Controller {
    /// A node's bootstrap users (`petrel format --add-scram`), applied once per catalogue:
    /// only while no node has offered its own and no user has a credential (a cluster
    /// made before, or whose users an admin set, keeps them). Every node formatted with
    /// them offers them at start; the first to reach the controller wins.
    pub async fn bootstrap_users(
        &self,
        host: &impl TopicHost,
        upsertions: Vec<ScramUpsertion>,
    ) -> Outcome<()> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        if metadata.bootstrapped {
            return Ok(());
        }
        if metadata.scram_credentials.is_empty() {
            if let Some((user, error)) = refusals(&metadata.scram_credentials, &[], &upsertions)
                .into_iter()
                .next()
            {
                return Err(TopicError::UnacceptableCredential(format!(
                    "bootstrap user {user}: {error}"
                )));
            }
            for upsertion in upsertions {
                let Some(mechanism) = ScramMechanism::from_code(upsertion.mechanism) else {
                    continue;
                };
                insert_credential(&mut metadata.scram_credentials, mechanism, upsertion);
            }
        }
        metadata.bootstrapped = true;
        self.publish_or_fail(host, metadata, vec![Ok(())])
            .await
            .pop()
            .unwrap_or(Ok(()))
    }
}

/// Stores an upsertion's credential (the client salted the password; only derived keys
/// are kept).
fn insert_credential(
    credentials: &mut crate::cluster::metadata::ScramCredentials,
    mechanism: ScramMechanism,
    upsertion: ScramUpsertion,
) {
    let credential = ScramCredential::from_salted_password(
        mechanism,
        upsertion.salt,
        upsertion.iterations,
        &upsertion.salted_password,
    );
    credentials
        .entry(upsertion.user)
        .or_default()
        .insert(mechanism, credential);
}

/// Per user, the first reason its changes are refused: the same user and mechanism twice,
/// an unknown mechanism, a deletion of a credential that does not exist, a credential
/// Kafka would not accept.
fn refusals(
    current: &crate::cluster::metadata::ScramCredentials,
    deletions: &[ScramDeletion],
    upsertions: &[ScramUpsertion],
) -> BTreeMap<String, TopicError> {
    let mut refused = BTreeMap::new();
    let mut refuse = |user: &str, error: TopicError| {
        refused.entry(user.to_string()).or_insert(error);
    };
    let mut seen = BTreeSet::new();
    let keys = deletions
        .iter()
        .map(|d| (d.user.as_str(), d.mechanism))
        .chain(upsertions.iter().map(|u| (u.user.as_str(), u.mechanism)));
    for (user, mechanism) in keys {
        if !seen.insert((user, mechanism)) {
            let reason = format!("{user}: more than one change of one mechanism's credential");
            refuse(user, TopicError::DuplicateResource(reason));
        }
    }
    for deletion in deletions {
        let Some(mechanism) = ScramMechanism::from_code(deletion.mechanism) else {
            refuse(&deletion.user, unknown_mechanism(deletion.mechanism));
            continue;
        };
        let exists = current
            .get(&deletion.user)
            .is_some_and(|credentials| credentials.contains_key(&mechanism));
        if !exists {
            let reason = format!(
                "{}: no {} credential to delete",
                deletion.user,
                mechanism.name()
            );
            refuse(&deletion.user, TopicError::ResourceNotFound(reason));
        }
    }
    for upsertion in upsertions {
        if let Err(error) = check(upsertion) {
            refuse(&upsertion.user, error);
        }
    }
    refused
}

fn unknown_mechanism(code: i8) -> TopicError {
    TopicError::UnsupportedSaslMechanism(format!("unknown SCRAM mechanism {code}"))
}

/// Kafka's checks of a credential to store.
fn check(upsertion: &ScramUpsertion) -> Outcome<()> {
    let Some(mechanism) = ScramMechanism::from_code(upsertion.mechanism) else {
        return Err(unknown_mechanism(upsertion.mechanism));
    };
    let unacceptable = |reason: String| Err(TopicError::UnacceptableCredential(reason));
    if upsertion.user.is_empty() || upsertion.user.len() > USER_BYTES_MAX {
        return unacceptable(format!("a user name is 1 to {USER_BYTES_MAX} bytes"));
    }
    if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&upsertion.iterations) {
        return unacceptable(format!(
            "{}: iterations must be in {ITERATIONS_MIN}..={ITERATIONS_MAX}, not {}",
            mechanism.name(),
            upsertion.iterations
        ));
    }
    if upsertion.salt.is_empty() || upsertion.salt.len() > 1024 {
        return unacceptable("the salt is 1 to 1024 bytes".into());
    }
    if upsertion.salted_password.len() != mechanism.hash_bytes() {
        return unacceptable(format!(
            "a {} salted password is {} bytes",
            mechanism.name(),
            mechanism.hash_bytes()
        ));
    }
    Ok(())
}
