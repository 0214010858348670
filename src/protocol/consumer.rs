//! The consumer protocol's embedded messages (what consumers put in a group's member
//! metadata): only what the coordinator needs to read.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// The topics a consumer's subscription metadata names (ConsumerProtocolSubscription, its
/// version first), or `None` if it does not parse.
pub fn subscribed_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buffer = metadata.clone();
    if buffer.len() < 2 {
        return None;
    }
    let version = buffer.get_i16();
    ConsumerProtocolSubscription::decode(&mut buffer, version.clamp(0, 3))
        .map(|subscription| subscription.topics.iter().map(|t| t.to_string()).collect())
        .ok()
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    #[test]
    fn a_subscription_names_its_topics_and_garbage_names_none() {
        let mut subscription = ConsumerProtocolSubscription::default();
        subscription.topics = vec![
            StrBytes::from_static_str("a"),
            StrBytes::from_static_str("b"),
        ];
        let mut bytes = BytesMut::new();
        bytes.put_i16(1);
        subscription.encode(&mut bytes, 1).expect("encodes");
        assert_eq!(
            subscribed_topics(&bytes.freeze()),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(subscribed_topics(&Bytes::from_static(&[0])), None);
        assert_eq!(subscribed_topics(&Bytes::from_static(&[0, 1, 0xff])), None);
    }
}
