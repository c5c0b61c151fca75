//! Rule evaluation cost per event with the shipped policies, for `cargo
//! xtask bench`: prints one JSON line with ns/event for an event no rule
//! matches (the allocation-free path), a connect to a non-AI name, and a
//! matching AI API connect.
//!
//! `cargo run --release -p observer-daemon --example policy_eval [-- N]`
use std::path::Path;

use observer_daemon::{
    policy::{bench_evaluate, Policy},
    process_table::Origin,
    record::*,
};

fn event(detail: Detail) -> EnrichedEvent {
    EnrichedEvent {
        event: "x",
        time: String::new(),
        boot_ns: 0,
        cpu: 0,
        seq: 0,
        process: ProcessView {
            pid: 1000,
            tid: 1000,
            ppid: 1,
            uid: 1000,
            user: None,
            gid: 1000,
            group: None,
            loginuid: None,
            comm: "python3".into(),
            exe: Some("/usr/bin/python3.11".into()),
            exe_sha256: None,
            argv: vec!["python3".into(), "app.py".into()],
            env_names: vec![],
            cgroup_id: 0,
            cgroup: None,
            unit: None,
            container_id: None,
            origin: Origin::Exec,
            watched: false,
            agent: None,
        },
        parents: vec![],
        detail,
    }
}

fn connect(name: &str) -> Detail {
    Detail::Connect(NetDetail {
        fd: 3,
        result: 0,
        error: None,
        family: "inet",
        socket_type: "stream".into(),
        local_addr: "10.0.0.2".into(),
        local_port: 40000,
        remote_addr: "104.18.7.192".into(),
        remote_port: 443,
        dst_names: vec![DstName {
            name: name.into(),
            source: NameSource::Sni,
        }],
    })
}

fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let policy = Policy::load(&dir, &[])?;
    let open = event(Detail::FileOpen(OpenDetail {
        path: "/usr/include/stdio.h".into(),
        result: 3,
        error: None,
        flags: 0,
        flags_text: String::new(),
        mode: 0,
        reasons: vec![],
        openat2: false,
        dfd: -100,
    }));
    let ns = |ev: &EnrichedEvent| bench_evaluate(&policy, ev, n).as_nanos() as u64;
    println!(
        "{}",
        serde_json::json!({
            "events": n,
            "rules": policy.rules.rules.len(),
            "ns_per_event_no_match_file_open": ns(&open),
            "ns_per_event_no_match_connect": ns(&event(connect("example.com"))),
            "ns_per_event_ai_api_match": ns(&event(connect("api.openai.com"))),
        })
    );
    Ok(())
}
