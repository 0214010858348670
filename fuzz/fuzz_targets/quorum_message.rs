//! Bytes from quorum peers and from the metadata journal: Raft messages and journal
//! records (`cluster::quorum::codec`), and metadata records (`cluster::records`); whatever
//! decodes must encode back to the same bytes. Also what a peer sends before it is known:
//! its hello, and the certificate whose subject becomes its principal (mTLS links and
//! listeners, `security::principal`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use petrel::cluster::quorum::codec;
use petrel::cluster::quorum::transport::Hello;
use petrel::cluster::records::MetadataRecord;
use petrel::security::principal::{self, MappingRules};

#[global_allocator]
static ALLOCATOR: petrel_fuzz::CappedAllocator = petrel_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let bytes = Bytes::copy_from_slice(rest);
    match selector % 5 {
        0 => {
            if let Ok(message) = codec::decode_message(bytes.clone()) {
                assert_eq!(codec::encode_message(&message), bytes);
            }
        }
        1 => {
            if let Ok(record) = codec::decode_record(bytes.clone()) {
                assert_eq!(codec::encode_record(&record), bytes);
            }
        }
        2 => {
            let _ = MetadataRecord::decode(rest);
        }
        3 => {
            let _ = Hello::decode(rest);
        }
        _ => {
            if let Ok(dn) = principal::subject_dn(rest) {
                let _ = MappingRules::default().name_of(&dn);
            }
        }
    }
});
