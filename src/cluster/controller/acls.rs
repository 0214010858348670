//! ACL bindings (CreateAcls, DeleteAcls): changed through the controller like every
//! catalogue change, so every broker's authorizer checks the same set and it survives
//! restarts. The handlers check each binding's fields (`AclBinding::from_codes`) before
//! they get here.

use super::error::{Outcome, TopicError};
use super::frontend::Controller;
use super::host::TopicHost;
use crate::security::acl::{AclBinding, AclFilter};

/// Bindings in the catalogue, at most (each costs a few hundred bytes in every catalogue
/// copy, and every shard indexes them all).
const ACLS_MAX: usize = 100_000;

impl Controller {
    /// Adds `bindings`; one already there is a success that changes nothing, as in Kafka.
    pub async fn create_acls(
        &self,
        host: &impl TopicHost,
        bindings: Vec<AclBinding>,
    ) -> Vec<Outcome<()>> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        let mut changed = false;
        let outcomes: Vec<Outcome<()>> = bindings
            .into_iter()
            .map(|binding| {
                if metadata.acls.contains(&binding) {
                    return Ok(());
                }
                if metadata.acls.len() >= ACLS_MAX {
                    return Err(TopicError::PolicyViolation(format!(
                        "at most {ACLS_MAX} ACL bindings"
                    )));
                }
                metadata.acls.insert(binding);
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

    /// Removes every binding each filter matches; per filter, the bindings it removed (a
    /// binding two filters match is reported by both).
    pub async fn delete_acls(
        &self,
        host: &impl TopicHost,
        filters: Vec<AclFilter>,
    ) -> Vec<Outcome<Vec<AclBinding>>> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        let outcomes: Vec<Outcome<Vec<AclBinding>>> = filters
            .iter()
            .map(|filter| {
                Ok(metadata
                    .acls
                    .iter()
                    .filter(|binding| filter.matches(binding))
                    .cloned()
                    .collect())
            })
            .collect();
        let before = metadata.acls.len();
        metadata
            .acls
            .retain(|binding| !filters.iter().any(|filter| filter.matches(binding)));
        if metadata.acls.len() != before {
            self.publish_or_fail(host, metadata, outcomes).await
        } else {
            outcomes
        }
    }
}
