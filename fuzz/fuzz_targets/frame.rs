//! The connection's first two steps on raw socket bytes: the size prefix, then the
//! request header (`protocol::frame`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use petrel::protocol::frame;

#[global_allocator]
static ALLOCATOR: petrel_fuzz::CappedAllocator = petrel_fuzz::CappedAllocator;

/// The broker's default `request_bytes_max` (100 MiB).
const REQUEST_BYTES_MAX: usize = 100 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((prefix, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    if let Ok(size) = frame::frame_size(*prefix, REQUEST_BYTES_MAX) {
        let body = &rest[..size.min(rest.len())];
        let _ = frame::peek_ids(body);
        if let Ok(request) = frame::parse_request(Bytes::copy_from_slice(body)) {
            // A parsed request routes through the API table like the connection does.
            if let Some(api) = petrel::server::registry::find(request.api_key) {
                if api.supports(request.api_version) {
                    let _ = api.decode_only(&request);
                }
            }
        }
    }
});
