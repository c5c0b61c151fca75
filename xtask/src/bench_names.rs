//! `cargo xtask bench names`: what naming connections costs and whether it
//! names all of them. A loopback connect storm (each connection sends a TLS
//! ClientHello) runs with and without the observer in alternating rounds;
//! every storm connection of an attached round must carry its SNI name.
//! The DNS and ClientHello parse rates come from the `names_parse` example,
//! the rule evaluation cost per event (`cargo xtask bench policy`) from the
//! `policy_eval` example.
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::bench_kit::{best_high, median, Daemon, PinToLastCpu};

const STORM_NAME: &str = "bench-storm.example";
/// Connect-storm ratio target (attached / baseline connects per second).
const TARGET_RATIO: f64 = 0.95;

pub fn build() -> anyhow::Result<()> {
    crate::cargo(&[
        "build",
        "--release",
        "--package",
        "observer-daemon",
        "--example",
        "names_parse",
        "--example",
        "policy_eval",
    ])
}

/// Rule evaluation cost per event kind with the shipped policies, as a
/// ratio of the JSON serialisation of the same event (which every event
/// costs anyway), both measured by `policy_eval` in one process.
pub fn policy(root: &Path) -> anyhow::Result<()> {
    let out = Command::new(root.join("target/release/examples/policy_eval"))
        .arg("200000")
        .output()
        .context("running policy_eval")?;
    if !out.status.success() {
        bail!("policy_eval: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    println!(
        "policy: rule evaluation per event, shipped policies ({} rules, {}), one core; \
         baseline: the event's JSON record serialised",
        v["rules"],
        v["policy_digest"].as_str().unwrap_or("?")
    );
    let kinds = v["kinds"].as_object().context("policy_eval: no kinds")?;
    for (kind, k) in kinds {
        let eval = k["eval_ns"].as_f64().unwrap_or(0.0);
        let json = k["json_ns"].as_f64().unwrap_or(0.0);
        let findings: Vec<&str> = k["findings"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "policy:   {kind:<26} rules {eval:>7.1} ns/event ({:>10.0} events/s), \
             JSON ({} B) {json:>7.1} ns/event, ratio rules/JSON {:.3}; findings [{}]",
            1e9 / eval.max(0.001),
            k["json_bytes"],
            eval / json.max(0.001),
            findings.join(", "),
        );
    }
    Ok(())
}

pub fn run(root: &Path, work: &Path, connects: u32, rounds: u32) -> anyhow::Result<()> {
    crate::bench_kit::warn_if_other_observers()?;
    let config = std::fs::read_to_string(root.join("observer.toml"))?;
    let hello = client_hello(STORM_NAME);
    let _pinned = PinToLastCpu::new()?;
    let mut base = Vec::new();
    let mut attached = Vec::new();
    let mut unattributed = 0u64;
    let mut named = 0u64;
    let events = work.join("events.jsonl");
    for _ in 0..rounds.max(1) {
        base.push(storm(connects, &hello)?.0);
        let _ = std::fs::remove_file(&events);
        let d = Daemon::start(root, work, &config, true)?;
        let (rate, port) = storm(connects, &hello)?;
        attached.push(rate);
        d.stop()?;
        let n = named_storm_connects(&events, port)?;
        named += n;
        unattributed += u64::from(connects).saturating_sub(n);
    }
    let (b, a) = (best_high(&base), best_high(&attached));
    println!(
        "names: connect storm ({connects} loopback TCP connects, each sending a {}-byte ClientHello): \
         baseline {b:.0}/s, attached {a:.0}/s, ratio {:.3} [{:.3}] (target >= {TARGET_RATIO}); \
         storm connects named by SNI {named}, unattributed {unattributed} (target 0)",
        hello.len(),
        a / b,
        median(&attached) / median(&base),
    );
    let out = Command::new(root.join("target/release/examples/names_parse"))
        .args(["--count", "1000000"])
        .output()
        .context("running names_parse")?;
    if !out.status.success() {
        bail!("names_parse: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rates: Value = serde_json::from_slice(&out.stdout)?;
    println!(
        "names: parse rate, one core: DNS response ({} B, CNAME chain, A and AAAA) {:.0}/s; \
         ClientHello ({} B, SNI after GREASE and a key share) {:.0}/s",
        rates["dns_bytes"],
        rates["dns_per_s"].as_f64().unwrap_or(0.0),
        rates["hello_bytes"],
        rates["sni_per_s"].as_f64().unwrap_or(0.0),
    );
    Ok(())
}

/// `connects` sequential connections to a local listener, each writing
/// `hello` and reading the server's close; returns connects per second
/// and the listener's port. The client resets its end (SO_LINGER 0), so
/// rounds do not exhaust ephemeral ports in TIME_WAIT.
fn storm(connects: u32, hello: &[u8]) -> anyhow::Result<(f64, u16)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let len = hello.len();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = vec![0u8; len];
        for _ in 0..connects {
            let (mut s, _) = listener.accept()?;
            s.read_exact(&mut buf)?;
        }
        Ok(())
    });
    let start = Instant::now();
    for _ in 0..connects {
        let mut c = TcpStream::connect(addr)?;
        c.write_all(hello)?;
        let mut rest = Vec::new();
        c.read_to_end(&mut rest)?;
        reset_on_close(&c)?;
    }
    let secs = start.elapsed().as_secs_f64();
    server
        .join()
        .map_err(|_| anyhow::anyhow!("storm server panicked"))??;
    Ok((f64::from(connects) / secs, addr.port()))
}

fn reset_on_close(s: &TcpStream) -> anyhow::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("SO_LINGER: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Storm connect records (to `port`) carrying the storm's SNI name.
fn named_storm_connects(events: &Path, port: u16) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(events).with_context(|| format!("reading {}", events.display()))?;
    let mut n = 0;
    for line in text.lines() {
        if !line.contains("\"connect\"") {
            continue;
        }
        let r: Value = serde_json::from_str(line)?;
        let c = &r["connect"];
        if r["event"] == "connect"
            && c["remote_port"] == port
            && c["dst_names"].as_array().is_some_and(|names| {
                names
                    .iter()
                    .any(|x| x["name"] == STORM_NAME && x["source"] == "sni")
            })
        {
            n += 1;
        }
    }
    Ok(n)
}

/// A TLS 1.3-style ClientHello: GREASE, supported_versions, a 1216-byte
/// hybrid key share (as sent with X25519MLKEM768), then server_name.
fn client_hello(host: &str) -> Vec<u8> {
    let ext = |t: u16, d: &[u8]| -> Vec<u8> {
        let mut v = t.to_be_bytes().to_vec();
        v.extend_from_slice(&(d.len() as u16).to_be_bytes());
        v.extend_from_slice(d);
        v
    };
    let mut entry = vec![0];
    entry.extend_from_slice(&(host.len() as u16).to_be_bytes());
    entry.extend_from_slice(host.as_bytes());
    let mut sni = (entry.len() as u16).to_be_bytes().to_vec();
    sni.extend(entry);
    let exts = [
        ext(0x0a0a, &[]),
        ext(0, &sni),
        ext(43, &[2, 3, 4]),
        ext(51, &[0x5a; 1216]),
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
