//! Produce's check of a batch before the log stores it (`record_batch::validate`), with
//! length and CRC resealed so mutations reach the record walk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel::record_batch::{self, RecordLimits};

#[global_allocator]
static ALLOCATOR: petrel_fuzz::CappedAllocator = petrel_fuzz::CappedAllocator;

/// Smaller than the broker's default cap so bombs are found quickly; the code path is the
/// same.
const LIMITS: RecordLimits = RecordLimits {
    decompressed_bytes_max: 1 << 20,
};
/// Kafka's default `max.message.bytes`.
const BATCH_BYTES_MAX: usize = 1_048_588;

fuzz_target!(|data: &[u8]| {
    let mut batch = data.to_vec();
    petrel_fuzz::reseal(&mut batch);
    if let Ok(view) = record_batch::validate(&batch, BATCH_BYTES_MAX, LIMITS) {
        // A valid batch walks to the end with exactly its declared count.
        let mut records = 0i64;
        record_batch::for_each_record(&view, LIMITS, |_| {
            records += 1;
            std::ops::ControlFlow::Continue(())
        })
        .expect("a validated batch walks again");
        assert_eq!(records, i64::from(view.header.records_count.get()));
    }
});
