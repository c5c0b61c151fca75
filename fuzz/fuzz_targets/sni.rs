//! The ClientHello SNI parser on arbitrary bytes: never panics, and a name
//! it returns is a valid lower-case host name.
#![no_main]

// The parser's own source, as the daemon compiles it.
#[path = "../../observer-daemon/src/names/sni.rs"]
#[allow(dead_code)]
mod sni;

use libfuzzer_sys::fuzz_target;
use sni::server_name;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = server_name(data) {
        assert!(!name.is_empty() && name.len() <= 253);
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
    }
});
