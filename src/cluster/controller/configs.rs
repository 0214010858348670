//! Changing topics' config overrides.

use std::collections::BTreeMap;

use super::error::{Outcome, TopicError};
use super::frontend::Controller;
use super::host::TopicHost;
use super::requests::{ConfigEdit, TopicConfigChange};
use crate::cluster::metadata::Topic;
use crate::cluster::topic_config;

impl Controller {
    /// Changes topics' config overrides (or only validates the change). Results are in
    /// request order. The new overrides are persisted, then every owning shard applies the
    /// new roll and retention limits to its open logs.
    pub async fn alter_topic_configs(
        &self,
        host: &impl TopicHost,
        changes: Vec<TopicConfigChange>,
        validate_only: bool,
    ) -> Vec<Outcome<()>> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        let mut results = Vec::with_capacity(changes.len());
        let mut changed = Vec::new();
        for change in changes {
            let outcome = metadata
                .topic(&change.topic)
                .ok_or_else(|| TopicError::UnknownTopic(change.topic.clone()))
                .and_then(|topic| self.changed_overrides(topic, change.replace_all, change.edits));
            match outcome {
                Ok(overrides) if !validate_only => {
                    if let Some(topic) = metadata.set_topic_configs(&change.topic, overrides) {
                        changed.push(topic.clone());
                    }
                    results.push(Ok(()));
                }
                outcome => results.push(outcome.map(drop)),
            }
        }
        if changed.is_empty() {
            return results;
        }
        let results = self.publish_or_fail(host, metadata, results).await;
        if results.iter().any(Result::is_ok) {
            for topic in changed {
                host.reconfigure_logs(&topic).await;
            }
        }
        results
    }

    /// `topic`'s overrides after `edits`, validated.
    pub(super) fn changed_overrides(
        &self,
        topic: &Topic,
        replace_all: bool,
        edits: Vec<ConfigEdit>,
    ) -> Outcome<BTreeMap<String, String>> {
        let defaults = &self.settings.topic_defaults;
        let mut overrides = if replace_all {
            BTreeMap::new()
        } else {
            topic.configs.clone()
        };
        for edit in edits {
            match edit {
                ConfigEdit::Set(name, value) => overrides.insert(name, value),
                ConfigEdit::Delete(name) => overrides.remove(&name),
            };
        }
        topic_config::validate(&overrides).map_err(|(name, value, reason)| {
            TopicError::InvalidConfig(format!("{name}={value}: {reason}"))
        })?;
        // The largest batch also bounds reads of what is stored (`LogConfig::batch_bytes_max`),
        // so open logs keep the limit they were opened with.
        let old = topic_config::resolve(&topic.configs, defaults).max_message_bytes;
        let new = topic_config::resolve(&overrides, defaults).max_message_bytes;
        if old != new {
            return Err(TopicError::InvalidConfig(format!(
                "max.message.bytes={new}: it can only be set when the topic is created (it is {old})"
            )));
        }
        Ok(overrides)
    }
}
