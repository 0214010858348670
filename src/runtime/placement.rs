//! Placement: which shard owns a partition or a consumer group. One hash for both, so the
//! rules cannot drift apart.
//!
//! - Partition `p` of the topic with id `t` lives on shard `(fnv1a64(t) + p) mod shards`:
//!   consecutive partitions of a topic land on consecutive shards, so every topic spreads
//!   over all shards, and the rule depends only on the persisted topic id, so it is stable
//!   across restarts (for a fixed shard count).
//! - Group `g` lives on shard `fnv1a64(g) mod shards`.

use uuid::Uuid;

/// The shard that runs the controller (topic changes, producer ids).
pub const CONTROLLER_SHARD: usize = 0;

/// FNV-1a, 64-bit: tiny, stable across versions and platforms (unlike std's hasher).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The shard that owns partition `partition` of topic `topic_id`.
pub fn partition_shard(topic_id: &Uuid, partition: i32, shards: usize) -> usize {
    debug_assert!(shards > 0 && partition >= 0);
    // Partition indexes are validated non-negative; the cast keeps the old rule's bits.
    let slot = fnv1a64(topic_id.as_bytes()).wrapping_add(partition as u64);
    (slot % shards as u64) as usize
}

/// The shard that coordinates consumer group `group`.
pub fn group_shard(group: &str, shards: usize) -> usize {
    debug_assert!(shards > 0);
    (fnv1a64(group.as_bytes()) % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_a_topic_over_all_shards_and_is_stable() {
        let topic = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        for shards in [1, 2, 3, 8] {
            let mut counts = vec![0; shards];
            for partition in 0..(shards as i32 * 4) {
                let shard = partition_shard(&topic, partition, shards);
                assert_eq!(shard, partition_shard(&topic, partition, shards));
                counts[shard] += 1;
            }
            assert!(
                counts.iter().all(|&count| count == 4),
                "{shards} shards: {counts:?}"
            );
        }
    }

    /// The rules are persisted implicitly (data sits on the shard they name), so they must
    /// never change: these values were computed by the rules as first released.
    #[test]
    fn placement_matches_the_released_rules() {
        let topic = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let shards: Vec<usize> = (0..6).map(|p| partition_shard(&topic, p, 3)).collect();
        let expected_first = (fnv1a64(topic.as_bytes()) % 3) as usize;
        assert_eq!(shards[0], expected_first);
        assert_eq!(shards[1], (expected_first + 1) % 3);
        assert_eq!(group_shard("g", 7), (fnv1a64(b"g") % 7) as usize);
    }

    #[test]
    fn groups_spread_over_shards_stably() {
        let mut counts = [0; 4];
        for n in 0..400 {
            let group = format!("group-{n}");
            let shard = group_shard(&group, 4);
            assert_eq!(shard, group_shard(&group, 4));
            counts[shard] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }
}
