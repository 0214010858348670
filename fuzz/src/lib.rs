//! Shared by the fuzz targets: an allocator that turns a huge allocation into a crash
//! libFuzzer reports, and helpers that let mutated batches past the CRC check.
//!
//! Without a sanitizer (stable Rust, `--sanitizer none`), libFuzzer's `-malloc_limit_mb`
//! has no hook into allocations, and a hostile length that makes the code *try* to
//! allocate hundreds of GiB would at best fail slowly; the defect this crate exists for
//! (a CRC-valid batch claiming 2^31 records) was exactly such an allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

use petrel::record_batch::{HEADER_BYTES, LOG_OVERHEAD_BYTES};

/// No single allocation made while parsing one fuzz input may exceed this. Inputs are a
/// few KiB and decompression is capped far below it, so anything larger is a length or
/// count taken from the input.
pub const ALLOCATION_BYTES_MAX: usize = 256 << 20;

/// The system allocator, aborting (a crash libFuzzer records with its input) on any
/// single allocation larger than [`ALLOCATION_BYTES_MAX`].
pub struct CappedAllocator;

fn check(bytes: usize) {
    if bytes > ALLOCATION_BYTES_MAX {
        // A fixed message: formatting would allocate inside the allocator.
        let _ =
            std::io::stderr().write_all(b"petrel-fuzz: allocation above ALLOCATION_BYTES_MAX\n");
        std::process::abort();
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the only addition is an abort before oversized requests.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Rewrites `batch_length` to the buffer's length and recomputes the CRC-32C, so mutations
/// reach the checks behind the CRC (a random CRC never matches).
pub fn reseal(batch: &mut [u8]) {
    if batch.len() < HEADER_BYTES {
        return;
    }
    let length = i32::try_from(batch.len() - LOG_OVERHEAD_BYTES).unwrap_or(i32::MAX);
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    reseal_crc(batch);
}

/// Recomputes only the CRC-32C (bytes 17..21, over `attributes..end`).
pub fn reseal_crc(batch: &mut [u8]) {
    if batch.len() < HEADER_BYTES {
        return;
    }
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}
