//! A SASL login's messages from a stranger, before anyone is known
//! (`security::{scram, plain}`): a SCRAM client-first, then a client-final, against a
//! known user and an unknown one; a PLAIN message. Never a panic, never more than the
//! 4 KiB a message may hold.
#![no_main]

use std::num::NonZeroU32;

use libfuzzer_sys::fuzz_target;
use petrel::security::plain;
use petrel::security::scram::{ScramCredential, ScramMechanism, ScramServer};

#[global_allocator]
static ALLOCATOR: petrel_fuzz::CappedAllocator = petrel_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    // The first byte splits the rest into two messages.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize).min(rest.len());
    let (first, last) = rest.split_at(at);
    let mechanism = if split % 2 == 0 {
        ScramMechanism::Sha256
    } else {
        ScramMechanism::Sha512
    };
    // The minimum iterations: a fuzz run should not spend its time in PBKDF2.
    let iterations = NonZeroU32::new(4096).expect("non-zero");
    let salted = mechanism.salted_password(b"secret", b"salt", iterations);
    let known = ScramCredential::from_salted_password(mechanism, b"salt".to_vec(), 4096, &salted);
    for exists in [true, false] {
        let lookup = |_: &str| exists.then(|| known.clone());
        let mut server = ScramServer::new(mechanism);
        if server.step(first, lookup).is_ok() {
            let _ = server.step(last, lookup);
        }
    }
    let _ = plain::authenticate(first, |_, m| (m == mechanism).then(|| known.clone()));
});
