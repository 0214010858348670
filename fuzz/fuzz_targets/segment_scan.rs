//! The recovery scan's per-batch decision (`storage::segment::scan_header` and
//! `scan_batch`) over an input taken as a whole segment file, batch after batch, as
//! `Segment::scan` drives it on open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel::record_batch::HEADER_BYTES;
use petrel::storage::segment::{scan_batch, scan_header};

#[global_allocator]
static ALLOCATOR: petrel_fuzz::CappedAllocator = petrel_fuzz::CappedAllocator;

const BATCH_BYTES_MAX: usize = 1_048_588;
/// The segment's base offset (from its file name).
const SEGMENT_BASE: i64 = 1000;

fuzz_target!(|data: &[u8]| {
    let Some((&control, file)) = data.split_first() else {
        return;
    };
    let mut file = file.to_vec();
    let mut position = 0usize;
    let mut next_offset = SEGMENT_BASE;
    while position < file.len() {
        let available = file.len() - position;
        let header = &file[position..position + HEADER_BYTES.min(available)];
        let Ok(total) = scan_header(header, available, BATCH_BYTES_MAX) else {
            return;
        };
        let batch = &mut file[position..position + total];
        if control & 1 == 0 {
            // Only the CRC: the declared length is what the scan must get right.
            petrel_fuzz::reseal_crc(batch);
        }
        let Ok(scanned) = scan_batch(
            batch,
            position as u64,
            SEGMENT_BASE,
            next_offset,
            BATCH_BYTES_MAX,
        ) else {
            return;
        };
        assert!(scanned.next_offset > next_offset, "the log moves forward");
        assert_eq!(scanned.total_bytes as usize, total);
        next_offset = scanned.next_offset;
        position += total;
    }
});
