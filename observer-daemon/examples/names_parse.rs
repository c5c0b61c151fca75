//! Parse rate of the names parsers, for `cargo xtask bench names`: parses
//! a DNS response with a compressed CNAME chain and a typical ClientHello
//! `--count` times each and prints one JSON line of rates.
use std::{hint::black_box, time::Instant};

use observer_daemon::names::{dns::parse_response, sni::server_name};

fn name(n: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in n.split('.') {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

/// api.anthropic.com CNAME edge.example.com, A and AAAA.
fn dns_response() -> Vec<u8> {
    let mut m = Vec::new();
    for x in [0x1234u16, 0x8180, 1, 3, 0, 0] {
        m.extend_from_slice(&x.to_be_bytes());
    }
    m.extend(name("api.anthropic.com"));
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, 15]);
    let target = m.len();
    m.extend_from_slice(&[4, b'e', b'd', b'g', b'e', 7]);
    m.extend_from_slice(b"example");
    m.extend_from_slice(&[0xc0, 26]);
    let ptr = [0xc0, target as u8];
    m.extend_from_slice(&ptr);
    m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
    m.extend_from_slice(&ptr);
    m.extend_from_slice(&[0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
    m.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    m
}

/// GREASE, supported_versions, a 300-byte key share, then server_name.
fn client_hello() -> Vec<u8> {
    let ext = |t: u16, d: &[u8]| -> Vec<u8> {
        let mut v = t.to_be_bytes().to_vec();
        v.extend_from_slice(&(d.len() as u16).to_be_bytes());
        v.extend_from_slice(d);
        v
    };
    let host = b"api.openai.com";
    let mut entry = vec![0];
    entry.extend_from_slice(&(host.len() as u16).to_be_bytes());
    entry.extend_from_slice(host);
    let mut sni = (entry.len() as u16).to_be_bytes().to_vec();
    sni.extend(entry);
    let exts = [
        ext(0x0a0a, &[]),
        ext(43, &[2, 3, 4]),
        ext(51, &[0x5a; 300]),
        ext(0, &sni),
    ]
    .concat();
    let mut hello = vec![3, 3];
    hello.extend_from_slice(&[0x11; 32]);
    hello.push(0);
    hello.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    hello.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    hello.extend(exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend(hello);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

fn main() -> anyhow::Result<()> {
    let mut count: u64 = 1_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => count = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let dns = dns_response();
    let parsed = parse_response(&dns)?;
    anyhow::ensure!(parsed.addresses().len() == 2, "fixture: {parsed:?}");
    let start = Instant::now();
    for _ in 0..count {
        black_box(parse_response(black_box(&dns)).map(|r| r.addresses().len())?);
    }
    let dns_rate = count as f64 / start.elapsed().as_secs_f64();
    let hello = client_hello();
    anyhow::ensure!(server_name(&hello)? == "api.openai.com");
    let start = Instant::now();
    for _ in 0..count {
        black_box(server_name(black_box(&hello))?);
    }
    let sni_rate = count as f64 / start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "count": count,
            "dns_bytes": dns.len(),
            "hello_bytes": hello.len(),
            "dns_per_s": dns_rate,
            "sni_per_s": sni_rate,
        })
    );
    Ok(())
}
