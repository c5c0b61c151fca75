//! Rule evaluation cost per event with the shipped policies, for `cargo
//! xtask bench policy`. Each event kind is an enriched event as the daemon
//! builds it (process with parents, user, unit, cgroup, hash; connects with
//! `dns` and `sni` names; a DNS answer with a CNAME chain). The baseline,
//! measured in the same run on the same events, is what every event costs
//! anyway: serialising its JSON record (`--events-jsonl`, and the source of
//! its receipt). Prints one JSON line: per kind, ns/event of the rules and
//! of the serialisation, and the findings the rules produced (so a fixture
//! that stopped matching shows).
//!
//! `cargo run --release -p observer-daemon --example policy_eval [-- N]`
use std::{hint::black_box, path::Path, time::Instant};

use observer_daemon::{
    enrich::process_table::Origin,
    names::dns::{Answer, Question, Rdata},
    policy::{bench_evaluate, Policy},
    record::*,
};
use serde_json::{json, Value};

fn process(comm: &str, exe: &str, argv: &[&str]) -> ProcessView {
    ProcessView {
        pid: 48213,
        tid: 48213,
        ppid: 48190,
        uid: 1000,
        user: Some("dev".into()),
        gid: 1000,
        group: Some("dev".into()),
        loginuid: Some(1000),
        comm: comm.into(),
        exe: Some(exe.into()),
        exe_sha256: Some(format!("sha256:{}", "3f9a".repeat(16))),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        env_names: vec!["OPENAI_API_KEY".into()],
        cgroup_id: 8123,
        cgroup: Some("/user.slice/user-1000.slice/session-4.scope".into()),
        unit: Some("session-4.scope".into()),
        container_id: None,
        origin: Origin::Exec,
        watched: false,
        agent: None,
    }
}

fn event(name: &'static str, process: ProcessView, detail: Detail) -> Record {
    let parents = [
        (48190, "bash", "/usr/bin/bash"),
        (48001, "sshd", "/usr/sbin/sshd"),
        (812, "sshd", "/usr/sbin/sshd"),
        (1, "systemd", "/usr/lib/systemd/systemd"),
    ];
    Record::Event(Box::new(EnrichedEvent {
        event: name,
        time: "2026-11-23T04:00:00.123456789Z".into(),
        boot_ns: 912_345_678_901,
        cpu: 1,
        seq: 88_412,
        process,
        parents: parents
            .iter()
            .map(|&(pid, comm, exe)| Ancestor {
                pid,
                comm: comm.into(),
                exe: Some(exe.into()),
            })
            .collect(),
        detail,
    }))
}

fn curl() -> ProcessView {
    process(
        "curl",
        "/usr/bin/curl",
        &[
            "curl",
            "-s",
            "https://api.openai.com/v1/models",
            "-H",
            "Authorization: Bearer [REDACTED]",
        ],
    )
}

fn connect(names: &[&str]) -> Detail {
    Detail::Connect(NetDetail {
        fd: 5,
        result: -115,
        error: Some("EINPROGRESS".into()),
        family: "inet",
        socket_type: "stream".into(),
        local_addr: "10.0.0.2".into(),
        local_port: 40312,
        remote_addr: "104.18.7.192".into(),
        remote_port: 443,
        dst_names: names
            .iter()
            .flat_map(|n| {
                [NameSource::Dns, NameSource::Sni].map(|source| DstName {
                    name: n.to_string(),
                    source,
                })
            })
            .collect(),
    })
}

fn open(path: &str) -> Detail {
    Detail::FileOpen(OpenDetail {
        path: path.into(),
        result: 4,
        error: None,
        flags: 0o2_000_000,
        flags_text: "O_RDONLY|O_CLOEXEC".into(),
        mode: 0,
        reasons: vec!["suffix"],
        openat2: false,
        dfd: -100,
    })
}

fn exec(argv: &[&str]) -> Detail {
    Detail::Exec(ExecDetail {
        filename: argv[0].into(),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        argv_truncated: false,
        argv_missing: false,
        result: 0,
        error: None,
        execveat: false,
    })
}

fn dns_answer() -> Detail {
    let answer = |name: &str, data: Rdata| Answer {
        name: name.into(),
        ttl: 60,
        data,
    };
    Detail::DnsAnswer(DnsAnswerDetail {
        transport: "udp",
        server_addr: "127.0.0.53".into(),
        server_port: 53,
        local_addr: "127.0.0.1".into(),
        local_port: 51234,
        id: 0xbeef,
        rcode: "NOERROR".into(),
        truncated: false,
        question: Question {
            name: "api.openai.com".into(),
            qtype: "A".into(),
        },
        answers: vec![
            answer(
                "api.openai.com",
                Rdata::Cname("api.openai.com.cdn.cloudflare.net".into()),
            ),
            answer(
                "api.openai.com.cdn.cloudflare.net",
                Rdata::A([104, 18, 7, 192].into()),
            ),
            answer(
                "api.openai.com.cdn.cloudflare.net",
                Rdata::A([172, 66, 0, 243].into()),
            ),
        ],
        cname_chain: vec![
            "api.openai.com".into(),
            "api.openai.com.cdn.cloudflare.net".into(),
        ],
        addresses: vec!["104.18.7.192".into(), "172.66.0.243".into()],
    })
}

/// (kind, event): the kinds the daemon sees most, each as it usually is
/// (no rule matches) and, where a rule can, as a finding.
fn events() -> Vec<(&'static str, Record)> {
    let claude = &["claude", "--dangerously-skip-permissions", "-p", "fix it"];
    vec![
        (
            "exec",
            event(
                "exec",
                curl(),
                exec(&["/usr/bin/curl", "-s", "https://example.com/"]),
            ),
        ),
        (
            "exec_agent_cli_autonomous",
            event(
                "exec",
                process("claude", "/usr/local/bin/claude", claude),
                exec(claude),
            ),
        ),
        (
            "connect_other",
            event("connect", curl(), connect(&["deb.debian.org"])),
        ),
        (
            "connect_ai_api",
            event("connect", curl(), connect(&["api.openai.com"])),
        ),
        (
            "file_open",
            event(
                "file_open",
                process("python3", "/usr/bin/python3.11", &["python3", "app.py"]),
                open("/usr/lib/python3/dist-packages/requests/__init__.py"),
            ),
        ),
        (
            "file_open_model",
            event(
                "file_open",
                process("python3", "/usr/bin/python3.11", &["python3", "app.py"]),
                open("/home/dev/models/llama-3.1-8b-instruct.Q4_K_M.gguf"),
            ),
        ),
        ("dns_answer", event("dns_answer", curl(), dns_answer())),
    ]
}

fn json_ns(record: &Record, n: u32) -> anyhow::Result<f64> {
    let mut buf = Vec::with_capacity(4096);
    let start = Instant::now();
    for _ in 0..n {
        buf.clear();
        serde_json::to_writer(&mut buf, black_box(record))?;
        black_box(&buf);
    }
    Ok(start.elapsed().as_nanos() as f64 / f64::from(n))
}

fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000)
        .max(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let policy = Policy::load(&dir, &[])?;
    let mut kinds = serde_json::Map::new();
    for (kind, record) in events() {
        let Record::Event(ev) = &record else {
            unreachable!("events() builds event records")
        };
        let (mut argv, mut hits) = (String::new(), Vec::new());
        policy.evaluate(ev, &mut argv, &mut hits);
        let rules: Vec<&str> = hits
            .iter()
            .map(|h| policy.rules.rules[h.rule].id.as_str())
            .collect();
        // Warm both paths once, then measure them alternately, twice,
        // keeping the faster run of each (noise only adds time).
        let mut eval = f64::MAX;
        let mut json = f64::MAX;
        for _ in 0..2 {
            eval = eval.min(bench_evaluate(&policy, ev, n).as_nanos() as f64);
            json = json.min(json_ns(&record, n)?);
        }
        kinds.insert(
            kind.into(),
            json!({"eval_ns": eval, "json_ns": json, "json_bytes": serde_json::to_vec(&record)?.len(), "findings": rules}),
        );
    }
    let out: Value = json!({
        "events": n,
        "rules": policy.rules.rules.len(),
        "policy_digest": policy.digest,
        "kinds": kinds,
    });
    println!("{out}");
    Ok(())
}
