//! The replica Fetch between brokers (Fetch v15: `ReplicaState` with the follower's id and
//! its registration epoch (KIP-903), `LastFetchedEpoch`, answered with `DivergingEpoch`;
//! topics by id): a follower's request as one frame, and the leader's answer in Petrel's
//! own terms, so the follower's fetch loop (`shard::replication::follower`) knows nothing of
//! the wire.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use uuid::Uuid;

/// Fetch version used between brokers.
pub const VERSION: i16 = 15;
/// Kafka's OFFSET_OUT_OF_RANGE, in a replica fetch's answer.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
/// The client id followers send.
const CLIENT_ID: &str = "petrel-replica";

#[derive(Debug, thiserror::Error)]
pub enum ReplicaFetchError {
    #[error("encoding the replica fetch failed: {0}")]
    Encode(String),
    #[error("the replica fetch of {0} bytes is too large")]
    TooLarge(usize),
    #[error("undecodable replica fetch answer: {0}")]
    Decode(String),
    #[error("an answer to request {got}, not {expected}")]
    Correlation { expected: i32, got: i32 },
}

/// A partition a follower fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// The leader epoch the follower follows at.
    pub current_leader_epoch: i32,
    /// The follower's log end: it holds everything below.
    pub fetch_offset: i64,
    /// The epoch of the follower's last batch (-1: none): the leader checks divergence.
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
}

/// How long and how much a fetch may wait for and return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_wait_ms: i32,
    pub partition_bytes_max: i32,
    pub response_bytes_max: i32,
}

/// The leader's answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// The follower's log diverges: (epoch, end offset) to truncate to.
    pub diverging: Option<(i32, i64)>,
    pub records: Option<Bytes>,
}

/// Who fetches: a broker's id and its registration epoch (the catalogue's `epoch` of its
/// latest registration), which the leader checks against its own catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    pub id: i32,
    pub epoch: i64,
}

/// Follower `replica`'s fetch of `wanted` as one frame (size prefix included).
pub fn encode_request(
    replica: Replica,
    correlation: i32,
    wanted: &[Wanted],
    limits: Limits,
) -> Result<Bytes, ReplicaFetchError> {
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Fetch as i16;
    header.request_api_version = VERSION;
    header.correlation_id = correlation;
    header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ApiKey::Fetch.request_header_version(VERSION))
        .map_err(|error| ReplicaFetchError::Encode(error.to_string()))?;
    request(replica, wanted, limits)
        .encode(&mut body, VERSION)
        .map_err(|error| ReplicaFetchError::Encode(error.to_string()))?;
    let size = i32::try_from(body.len()).map_err(|_| ReplicaFetchError::TooLarge(body.len()))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(size);
    frame.put_slice(&body);
    Ok(frame.freeze())
}

fn request(replica: Replica, wanted: &[Wanted], limits: Limits) -> FetchRequest {
    // Grouped by topic in the order first named.
    let mut topics: Vec<FetchTopic> = Vec::new();
    for want in wanted {
        let mut partition = FetchPartition::default();
        partition.partition = want.partition;
        partition.current_leader_epoch = want.current_leader_epoch;
        partition.fetch_offset = want.fetch_offset;
        partition.last_fetched_epoch = want.last_fetched_epoch;
        partition.log_start_offset = want.log_start_offset;
        partition.partition_max_bytes = limits.partition_bytes_max;
        match topics.last_mut().filter(|t| t.topic_id == want.topic_id) {
            Some(topic) => topic.partitions.push(partition),
            None => {
                let mut topic = FetchTopic::default();
                topic.topic_id = want.topic_id;
                topic.partitions.push(partition);
                topics.push(topic);
            }
        }
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1); // v15 names the replica in ReplicaState
    request.replica_state.replica_id = BrokerId(replica.id);
    request.replica_state.replica_epoch = replica.epoch;
    request.max_wait_ms = limits.max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = limits.response_bytes_max;
    request.session_epoch = -1; // no fetch sessions: every request names every partition
    request.topics = topics;
    request
}

/// The leader's answer to request `correlation` for `wanted` (the frame's body, after its
/// size). A topic id not asked for is a stray answer.
pub fn decode_response(
    mut body: Bytes,
    correlation: i32,
    wanted: &[Wanted],
) -> Result<Vec<Answer>, ReplicaFetchError> {
    let header = ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(VERSION))
        .map_err(|error| ReplicaFetchError::Decode(error.to_string()))?;
    if header.correlation_id != correlation {
        return Err(ReplicaFetchError::Correlation {
            expected: correlation,
            got: header.correlation_id,
        });
    }
    let response = FetchResponse::decode(&mut body, VERSION)
        .map_err(|error| ReplicaFetchError::Decode(error.to_string()))?;
    let names: HashMap<Uuid, &str> = wanted
        .iter()
        .map(|want| (want.topic_id, want.topic.as_str()))
        .collect();
    let mut answers = Vec::new();
    for topic in response.responses {
        let name = names
            .get(&topic.topic_id)
            .ok_or_else(|| {
                ReplicaFetchError::Decode(format!(
                    "an answer for topic id {} not asked for",
                    topic.topic_id
                ))
            })?
            .to_string();
        for partition in topic.partitions {
            let diverging = &partition.diverging_epoch;
            answers.push(Answer {
                topic: name.clone(),
                partition: partition.partition_index,
                error_code: partition.error_code,
                high_watermark: partition.high_watermark,
                log_start_offset: partition.log_start_offset,
                diverging: (diverging.epoch >= 0 || diverging.end_offset >= 0)
                    .then_some((diverging.epoch, diverging.end_offset)),
                records: partition.records,
            });
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};

    use super::*;

    fn wanted(topic: &str, partition: i32) -> Wanted {
        Wanted {
            topic: topic.into(),
            topic_id: Uuid::from_u128(topic.bytes().map(u128::from).sum()),
            partition,
            current_leader_epoch: 3,
            fetch_offset: 10,
            last_fetched_epoch: 2,
            log_start_offset: 0,
        }
    }

    #[test]
    fn a_request_names_every_partition_grouped_by_topic() {
        let limits = Limits {
            max_wait_ms: 500,
            partition_bytes_max: 1 << 20,
            response_bytes_max: 8 << 20,
        };
        let wanted = [wanted("a", 0), wanted("a", 1), wanted("b", 0)];
        let replica = Replica { id: 7, epoch: 31 };
        let mut frame = encode_request(replica, 42, &wanted, limits).expect("encodes");
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(size as usize, frame.len() - 4);
        let mut body = frame.split_off(4);
        let header =
            RequestHeader::decode(&mut body, ApiKey::Fetch.request_header_version(VERSION))
                .expect("header");
        assert_eq!(
            (header.correlation_id, header.request_api_version),
            (42, VERSION)
        );
        let request = FetchRequest::decode(&mut body, VERSION).expect("body");
        assert_eq!(request.replica_state.replica_id, BrokerId(7));
        assert_eq!(request.replica_state.replica_epoch, 31);
        assert_eq!(request.topics.len(), 2);
        assert_eq!(request.topics[0].partitions.len(), 2);
        assert_eq!(request.topics[1].partitions[0].last_fetched_epoch, 2);
    }

    #[test]
    fn an_answer_decodes_into_petrels_terms_and_a_stray_one_is_refused() {
        let mut partition = PartitionData::default();
        partition.partition_index = 1;
        partition.high_watermark = 90;
        partition.diverging_epoch.epoch = 2;
        partition.diverging_epoch.end_offset = 50;
        let mut topic = FetchableTopicResponse::default();
        topic.topic_id = wanted("a", 1).topic_id;
        topic.partitions.push(partition);
        let mut response = FetchResponse::default();
        response.responses.push(topic);
        let mut body = BytesMut::new();
        let mut header = ResponseHeader::default();
        header.correlation_id = 5;
        header
            .encode(&mut body, ApiKey::Fetch.response_header_version(VERSION))
            .unwrap();
        response.encode(&mut body, VERSION).unwrap();
        let body = body.freeze();
        let asked = [wanted("a", 1)];
        let answers = decode_response(body.clone(), 5, &asked).expect("decodes");
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].topic, "a");
        assert_eq!(answers[0].diverging, Some((2, 50)));
        assert_eq!(answers[0].high_watermark, 90);
        assert!(matches!(
            decode_response(body.clone(), 6, &asked),
            Err(ReplicaFetchError::Correlation {
                expected: 6,
                got: 5
            })
        ));
        assert!(decode_response(body.slice(..body.len() / 2), 5, &asked).is_err());
        assert!(
            decode_response(body.clone(), 5, &[wanted("b", 1)]).is_err(),
            "a topic not asked for"
        );
    }
}
