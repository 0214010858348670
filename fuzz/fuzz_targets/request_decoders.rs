//! Every request decoder in the API table (`server::registry::APIS`): byte 0 picks the row,
//! bytes 1-2 the version (folded into the row's supported range), the rest is the body.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use petrel::protocol::frame::Request;
use petrel::server::registry::APIS;

#[global_allocator]
static ALLOCATOR: petrel_fuzz::CappedAllocator = petrel_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    let Some((&row, rest)) = data.split_first() else {
        return;
    };
    let Some((version, body)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let api = &APIS[usize::from(row) % APIS.len()];
    let span = i32::from(api.max_version) - i32::from(api.min_version) + 1;
    let version = i32::from(u16::from_be_bytes(*version)) % span + i32::from(api.min_version);
    let request = Request {
        api_key: api.key,
        api_version: version as i16,
        correlation_id: 0,
        client_id: None,
        client_host: String::new(),
        principal: std::rc::Rc::from("User:ANONYMOUS"),
        mute: std::rc::Rc::default(),
        throttle: std::cell::Cell::default(),
        listener: 0,
        body: Bytes::copy_from_slice(body),
    };
    let _ = api.decode_only(&request);
});
