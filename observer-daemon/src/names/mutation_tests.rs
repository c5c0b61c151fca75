//! Runs both parsers over many deterministic mutations of their fixtures
//! (bit flips, byte overwrites with boundary values, truncations,
//! duplicated and deleted ranges), so CI exercises what `fuzz/` explores
//! without cargo-fuzz: no panic, and whatever parses is within bounds.
use super::{dns, sni};

/// xorshift64*: a fixed seed makes every run test the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        if v.is_empty() {
            v.push(0);
        }
        let i = rng.below(v.len());
        match rng.below(6) {
            0 => v[i] ^= 1 << rng.below(8),
            1 => v[i] = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xff][rng.below(8)],
            2 => v.truncate(i),
            3 => {
                let end = (i + 1 + rng.below(16)).min(v.len());
                let chunk = v[i..end].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, chunk);
            }
            4 => {
                let end = (i + 1 + rng.below(16)).min(v.len());
                v.drain(i..end);
            }
            _ => {
                // A compression pointer (DNS) or a length (TLS) anywhere.
                let b = rng.next().to_be_bytes();
                v[i] = 0xc0 | (b[0] & 0x3f);
                if i + 1 < v.len() {
                    v[i + 1] = b[1];
                }
            }
        }
    }
    v
}

const ROUNDS: usize = 20_000;

#[test]
fn dns_parser_survives_mutations() {
    let seeds = [dns::fixtures::simple_a(), dns::fixtures::cname_chain()];
    let mut rng = Rng(0x5eed_d115);
    let mut parsed = 0;
    for round in 0..ROUNDS {
        let input = mutate(&seeds[round % seeds.len()], &mut rng);
        if let Ok(r) = dns::parse_response(&input) {
            parsed += 1;
            assert!(r.question.name.len() <= 255);
            assert!(r.answers.len() <= 64);
            assert!(r.chain().len() <= 17);
            for a in &r.answers {
                assert!(a.name.len() <= 255 && i32::try_from(a.ttl).is_ok());
            }
        }
    }
    // The mutations must not all be rejected at the header.
    assert!(parsed > ROUNDS / 20, "only {parsed} mutations parsed");
}

#[test]
fn sni_parser_survives_mutations() {
    let seeds = [
        sni::fixtures::typical("api.openai.com"),
        sni::fixtures::client_hello(&[sni::fixtures::sni_ext("a.example")]),
    ];
    let mut rng = Rng(0x05ee_d5a1);
    let mut parsed = 0;
    for round in 0..ROUNDS {
        let input = mutate(&seeds[round % seeds.len()], &mut rng);
        if let Ok(name) = sni::server_name(&input) {
            parsed += 1;
            assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
        }
    }
    assert!(parsed > ROUNDS / 20, "only {parsed} mutations parsed");
}
