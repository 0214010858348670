//! The topic under load: created with the admin API if missing, then waited for until every
//! partition has a leader, so the first seconds of a run do not measure topic creation.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use super::LoadArgs;

const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes sure the topic exists and is ready; returns its partition count (which may differ
/// from `--partitions` if the topic already existed).
pub fn ensure(args: &LoadArgs) -> anyhow::Result<usize> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "petrel-bench-admin");
    // The connection's security settings from `--extra` (the rest are for producers and
    // consumers).
    let security = ["security.", "ssl.", "sasl."];
    for (key, value) in &args.extra {
        if security.iter().any(|prefix| key.starts_with(prefix)) {
            config.set(key, value);
        }
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating the admin client")?;
    let partitions = i32::try_from(args.partitions).context("--partitions")?;
    let replication = i32::from(args.replication_factor);
    let new_topic = NewTopic::new(
        &args.topic,
        partitions,
        TopicReplication::Fixed(replication),
    );
    let options = AdminOptions::new().operation_timeout(Some(CREATE_TIMEOUT));
    let results = futures_lite::future::block_on(admin.create_topics([&new_topic], &options))
        .context("CreateTopics request")?;
    for result in results {
        match result {
            Ok(name) => eprintln!("created topic {name} with {partitions} partitions"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("topic {name} exists; using it as it is")
            }
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    wait_until_ready(&admin, &args.topic)
}

fn wait_until_ready(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let metadata = admin.inner().fetch_metadata(Some(topic), METADATA_TIMEOUT);
        let problem = match &metadata {
            Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == topic) {
                None => "topic not in metadata".to_string(),
                Some(t) if t.error().is_some() => format!("topic error {:?}", t.error()),
                Some(t) if t.partitions().is_empty() => "no partitions yet".to_string(),
                Some(t)
                    if t.partitions()
                        .iter()
                        .any(|p| p.leader() < 0 || p.error().is_some()) =>
                {
                    "partitions without a leader".to_string()
                }
                Some(t) => return Ok(t.partitions().len()),
            },
            Err(error) => format!("metadata request failed: {error}"),
        };
        if Instant::now() >= deadline {
            bail!("topic {topic} not ready after {READY_TIMEOUT:?}: {problem}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
