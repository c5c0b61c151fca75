//! The DNS response parser on arbitrary bytes: never panics, and whatever
//! it accepts stays within its documented bounds.
#![no_main]

// The parser's own source, as the daemon compiles it.
#[path = "../../observer-daemon/src/names/dns.rs"]
#[allow(dead_code)]
mod dns;

use dns::parse_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_response(data) {
        assert!(r.question.name.len() <= 255);
        assert!(r.answers.len() <= 64);
        let chain = r.chain();
        assert!(!chain.is_empty() && chain.len() <= 17);
        for a in r.addresses() {
            assert!(r.answers.iter().any(|x| x.ttl == a.ttl));
        }
    }
});
