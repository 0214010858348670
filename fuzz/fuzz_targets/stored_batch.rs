//! Readers of stored batches, which must survive whatever is on disk (a batch stored by an
//! older version passes the recovery scan's cheap check but may not validate): ListOffsets
//! by time, the offsets-log replay, and `petrel log dump`'s per-batch check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel::group::offsets::{self, OffsetStore};
use petrel::protocol::records;
use petrel::record_batch::{self, RecordLimits};

#[global_allocator]
static ALLOCATOR: petrel_fuzz::CappedAllocator = petrel_fuzz::CappedAllocator;

const LIMITS: RecordLimits = RecordLimits {
    decompressed_bytes_max: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    // Byte 0: whether to reseal (stored data is usually CRC-valid) and a timestamp to look
    // up; the rest is the batch.
    let Some((&control, batch)) = data.split_first() else {
        return;
    };
    let mut batch = batch.to_vec();
    if control & 1 == 0 {
        petrel_fuzz::reseal(&mut batch);
    }
    let timestamp = i64::from(control >> 1) * 1000 - 1;
    let _ = records::first_at_or_after(&batch, timestamp, LIMITS);
    let _ = records::max_timestamp_record(&batch, LIMITS);
    let _ = offsets::replay_batch(&batch, LIMITS, &mut OffsetStore::default());
    // `petrel log dump` checks each stored batch with `validate` at its own size.
    let _ = record_batch::validate(&batch, batch.len(), LIMITS);
});
