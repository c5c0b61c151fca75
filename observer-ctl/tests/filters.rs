//! `observerctl` for daily use: the time syntaxes, the glob filters, the
//! summary column and `stats`, run by the real binary over a store the
//! receipt pipeline wrote (signed receipts with real context shapes, at
//! fixed times). Every receipt carries a distinct `process.pid`, so each
//! answer is checked as the exact set of pids it must hold.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use observer_receipts::{
    chain::{Draft, Identity},
    keys::MasterSeed,
    payload::{self, Mappings, Mode, RiskClass},
    pipeline::{Pipeline, PipelineConfig},
    store::RunKind,
};
use serde_json::{json, Value};

/// 2026-11-22T18:00:00Z: 13:00 in New York (EST, UTC-5).
const BASE: u64 = 1_795_370_400_000_000_000;
const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SECOND;
/// New York, rules written out: no tz database needed.
const NEW_YORK: &str = "EST5EDT,M3.2.0,M11.1.0";

struct Fixture {
    dir: tempfile::TempDir,
    /// When the store was written (the receipts 10 min and 2 h before).
    now_ns: u64,
}

impl Fixture {
    fn db(&self) -> PathBuf {
        self.dir.path().join("observer.db")
    }
}

fn process(pid: u64, user: &str, unit: &str, exe: &str) -> Value {
    json!({"pid": pid, "user": user, "uid": if user == "root" { 0 } else { 1000 },
           "unit": unit, "exe": exe, "comm": "x"})
}

fn connect(addr: &str, port: u16, names: &[(&str, &str)]) -> Value {
    let names: Vec<Value> = names
        .iter()
        .map(|(n, s)| json!({"name": n, "source": s}))
        .collect();
    json!({"remote_addr": addr, "remote_port": port, "local_addr": "10.0.0.2",
           "local_port": 40000, "dst_names": names})
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("observer.db");
        let (seed, _) = MasterSeed::load_or_create(&dir.path().join("master.seed")).unwrap();
        let cfg = PipelineConfig {
            store: db.clone(),
            signing_threads: 1,
            queue_capacity: 16,
            checkpoint_interval: std::time::Duration::from_secs(1),
            batch_max: 16,
            waiting_for_room: None,
        };
        let identity = Identity {
            deployer_id: "did:web:example.invalid".into(),
            hostname: "filters-test-host".into(),
            mode: Mode::Payload,
            observer_executable_hash: sha256_file(Path::new(env!("CARGO_BIN_EXE_observerctl"))),
        };
        let now_ns = payload::now_unix_ns();
        let (mut p, _) = Pipeline::start(
            &cfg,
            identity,
            seed,
            RunKind::Maintenance,
            &payload::issued_at(BASE - 48 * HOUR),
        )
        .unwrap();
        let (hash_a, hash_b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let draft = |agent: &str, action: &'static str, at: u64, risk, hash: &str, ctx| Draft {
            agent_id: agent.into(),
            action_type: action,
            unix_ns: at,
            context: ctx,
            risk_class: risk,
            executable_hash: hash.to_string(),
            mappings: Mappings::default(),
            detection_rules_digest: (action == "shadow_ai.finding")
                .then(|| format!("sha256:{}", "c".repeat(64))),
            erases: None,
            prunes: None,
        };
        let claude = |pid| process(pid, "alice", "claude.service", "/usr/bin/claude");
        let python = |pid| process(pid, "bob", "cron.service", "/usr/bin/python3");
        let node = |pid| process(pid, "root", "backup.service", "/opt/[x]/node");
        let (low, medium, high) = (RiskClass::Low, RiskClass::Medium, RiskClass::High);
        let (ua, ub) = ("unregistered:aaaaaaaaaaaa", "unregistered:bbbbbbbbbbbb");
        for d in [
            // pid 100: the day before, 13:00 New York.
            draft("claude", "process.exec", BASE - 24 * HOUR, low, &hash_a,
                  json!({"process": claude(100), "exec": {"argv": ["claude", "-p", "hi"]}})),
            draft("claude", "network.connect", BASE, low, &hash_a,
                  json!({"process": claude(101),
                         "connect": connect("104.18.32.7", 443, &[("api.openai.com", "dns"), ("api.openai.com", "sni")])})),
            draft("claude", "network.connect", BASE + SECOND, low, &hash_a,
                  json!({"process": claude(102),
                         "connect": connect("104.18.32.8", 443, &[("api.openai.com", "sni")])})),
            draft("claude", "network.connect", BASE + 2 * SECOND, low, &hash_a,
                  json!({"process": claude(103), "connect": connect("10.0.0.9", 8080, &[])})),
            draft(ua, "network.connect", BASE + 3 * SECOND, medium, &hash_a,
                  json!({"process": python(104),
                         "connect": connect("160.79.104.10", 443, &[("api.anthropic.com", "dns")])})),
            draft(ua, "shadow_ai.finding", BASE + 4 * SECOND, high, &hash_a,
                  json!({"process": python(105), "rule_id": "llm-api-call", "event": "connect",
                         "reason": "an unregistered process called an AI API",
                         "matched": {"indicator": "ai_api", "provider": "anthropic",
                                     "destination": "api.anthropic.com"}})),
            // pids 106-108: 18:00 New York, 23:00 UTC.
            draft(ub, "file.open", BASE + 5 * HOUR, low, &hash_b,
                  json!({"process": node(106), "file_open": {"path": "/root/.config/openai/key", "count": 2}})),
            draft(ub, "shadow_ai.finding", BASE + 5 * HOUR + SECOND, medium, &hash_b,
                  json!({"process": node(107), "rule_id": "ai-credential-read", "event": "file_open",
                         "reason": "an AI credential was read",
                         "matched": {"indicator": "ai_credential", "path": "/root/.config/openai/key"}})),
            draft(ub, "shadow_ai.finding", BASE + 5 * HOUR + 2 * SECOND, medium, &hash_b,
                  json!({"process": node(108), "rule_id": "ai-credential-read", "event": "file_open",
                         "reason": "an AI credential was read",
                         "matched": {"indicator": "ai_credential", "path": "/root/.aws/credentials"}})),
            // Relative to the real clock: 2 h and 10 min ago.
            draft("claude", "process.exit", now_ns - 2 * HOUR, low, &hash_a,
                  json!({"process": claude(109), "exit": {"exit_code": 0}})),
            draft("claude", "process.exit", now_ns - 600 * SECOND, low, &hash_a,
                  json!({"process": claude(110), "exit": {"exit_code": 1}})),
        ] {
            p.submit(d).unwrap();
        }
        p.finish(&payload::issued_at(now_ns)).unwrap();
        Fixture { dir, now_ns }
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The real binary with `TZ` set for its local times.
fn ctl(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_observerctl"))
        .env("TZ", NEW_YORK)
        .arg("--db")
        .arg(fixture().db())
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json_of(r: &Run) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr))
}

/// The pids of the agent receipts `receipts --json <args>` lists, in
/// order (the pipeline's own observer receipts have none).
fn pids(args: &[&str]) -> Vec<u64> {
    let mut all = vec!["receipts", "--json"];
    all.extend_from_slice(args);
    let r = ctl(&all);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    json_of(&r)["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["pid"].as_u64())
        .collect()
}

#[test]
fn local_dates_and_times_are_read_in_the_local_zone() {
    // 13:00 New York is 18:00 UTC: the connects and the first finding.
    assert_eq!(
        pids(&[
            "--since",
            "2026-11-22 13:00",
            "--until",
            "2026-11-22 13:00:04"
        ]),
        [101, 102, 103, 104, 105]
    );
    // 18:00 New York: read as UTC it would take everything from 101 on.
    assert_eq!(
        pids(&["--since", "2026-11-22 18:00", "--until", "2026-11-23"]),
        [106, 107, 108]
    );
    assert_eq!(
        pids(&["--since", "2026-11-21", "--until", "2026-11-22"]),
        [100]
    );
    assert_eq!(
        pids(&[
            "--since",
            "2026-11-22T18:00:00Z",
            "--until",
            "2026-11-22T13:00:01-05:00"
        ]),
        [101, 102]
    );
}

#[test]
fn relative_times_and_today() {
    // `-1h` and `1h ago`: the old parser took a leading '-' for a date.
    assert_eq!(pids(&["--since", "-1h"]), [110]);
    assert_eq!(pids(&["--since", "3h ago", "--until", "-30m"]), [109]);
    // today and yesterday: local midnights, computed here with jiff's own
    // zone arithmetic from the moment the store was written.
    let tz = jiff::tz::TimeZone::posix(NEW_YORK).unwrap();
    let now = jiff::Timestamp::from_nanosecond(i128::from(fixture().now_ns))
        .unwrap()
        .to_zoned(tz);
    let midnight = |z: jiff::Zoned| z.start_of_day().unwrap().timestamp().as_nanosecond() as u64;
    let today = midnight(now.clone());
    let yesterday = midnight(now.yesterday().unwrap());
    let expect = |from: u64, to: u64| -> Vec<u64> {
        [
            (109, fixture().now_ns - 2 * HOUR),
            (110, fixture().now_ns - 600 * SECOND),
        ]
        .into_iter()
        .filter(|(_, t)| *t >= from && *t <= to)
        .map(|(p, _)| p)
        .collect()
    };
    assert_eq!(pids(&["--since", "today"]), expect(today, u64::MAX));
    assert_eq!(
        pids(&["--since", "yesterday", "--until", "today"]),
        expect(yesterday, today)
    );
}

#[test]
fn a_bad_time_names_the_flag_and_the_forms() {
    let r = ctl(&["receipts", "--until", "2026-11-22 25:00"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--until \"2026-11-22 25:00\""),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("yesterday") && r.stderr.contains("RFC 3339"),
        "{}",
        r.stderr
    );
}

#[test]
fn globs_and_repeated_flags() {
    // Globs on the indexed columns; before, these were exact values.
    assert_eq!(
        pids(&["--agent", "unregistered:*"]),
        [104, 105, 106, 107, 108]
    );
    assert_eq!(pids(&["--action", "network.*"]), [101, 102, 103, 104]);
    assert_eq!(pids(&["--action", "process.e?it"]), [109, 110]);
    // Repeated: OR; different flags: AND.
    assert_eq!(
        pids(&["--action", "file.open", "--action", "process.exec"]),
        [100, 106]
    );
    assert_eq!(
        pids(&[
            "--agent",
            "claude",
            "--agent",
            "unregistered:b*",
            "--action",
            "network.*"
        ]),
        [101, 102, 103]
    );
    assert_eq!(
        pids(&["--risk", "high", "--risk", "medium", "--agent", "*:b*"]),
        [107, 108]
    );
}

#[test]
fn context_filters() {
    assert_eq!(pids(&["--user", "bob"]), [104, 105]);
    assert_eq!(pids(&["--user", "0"]), [106, 107, 108]);
    assert_eq!(pids(&["--rule", "ai-credential-*"]), [107, 108]);
    assert_eq!(pids(&["--rule", "llm-api-call", "--rule", "nope"]), [105]);
    // A destination by name (DNS or SNI), by address, by address:port.
    assert_eq!(pids(&["--dst", "api.openai.com"]), [101, 102]);
    assert_eq!(pids(&["--dst", "api.anthropic.com"]), [104, 105]);
    assert_eq!(pids(&["--dst", "104.18.32.8"]), [102]);
    assert_eq!(pids(&["--dst", "10.0.0.9:8080"]), [103]);
    assert_eq!(
        pids(&["--dst", "*.openai.com", "--dst", "10.*"]),
        [101, 102, 103]
    );
    assert_eq!(pids(&["--path", "/root/.config/*"]), [106, 107]);
    assert_eq!(
        pids(&["--unit", "cron.service", "--unit", "backup.*"]),
        [104, 105, 106, 107, 108]
    );
    // '[' is literal in a glob.
    assert_eq!(
        pids(&["--exe", "/opt/[x]/*", "--action", "file.open"]),
        [106]
    );
    assert_eq!(pids(&["--pid", "100", "--pid", "110"]), [100, 110]);
}

#[test]
fn tail_and_export_take_the_same_filters() {
    let r = ctl(&[
        "tail",
        "-n",
        "2",
        "--jsonl",
        "--agent",
        "unregistered:*",
        "--rule",
        "*",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tail: Vec<u64> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["pid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(tail, [107, 108]);
    let r = ctl(&["export", "--format", "jsonl", "--dst", "api.*"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let exported: Vec<u64> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| v["context"]["process"]["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(exported, [101, 102, 104, 105]);
}

#[test]
fn the_summary_names_destinations_and_rules() {
    let r = ctl(&[
        "receipts", "--json", "--pid", "101", "--pid", "103", "--pid", "107",
    ]);
    let rows = json_of(&r)["receipts"].as_array().unwrap().clone();
    let summaries: Vec<&str> = rows
        .iter()
        .map(|r| r["summary"].as_str().unwrap())
        .collect();
    assert_eq!(
        summaries,
        [
            "connect 104.18.32.7:443 (api.openai.com)",
            "connect 10.0.0.9:8080",
            "ai-credential-read: an AI credential was read",
        ]
    );
    let table = ctl(&["receipts", "--pid", "101"]);
    assert!(
        table
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("connect 104.18.32.7:443 (api.openai.com)"),
        "{}",
        table.stdout
    );
}

#[test]
fn stats_counts_agents_findings_and_destinations() {
    let r = ctl(&[
        "stats",
        "--json",
        "--since",
        "2026-11-22",
        "--until",
        "2026-11-23",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json_of(&r);
    // The pipeline's own key announcements for the three agent chains fall
    // in the window too (issued with each chain's first receipt).
    let observer = &v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "observer");
    let observer_receipts = observer.map_or(0, |o| o["receipts"].as_u64().unwrap());
    assert_eq!(v["receipts"], 8 + observer_receipts);
    assert_eq!(v["since"], "2026-11-22T05:00:00.000000000Z");
    let agents: Vec<&Value> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["agent_id"] != "observer")
        .collect();
    assert_eq!(
        agents,
        [
            &json!({"agent_id": "claude", "executable": null, "receipts": 3, "findings": 0,
                    "actions": {"network.connect": 3}}),
            &json!({"agent_id": "unregistered:bbbbbbbbbbbb", "executable": "/opt/[x]/node",
                    "receipts": 3, "findings": 2,
                    "actions": {"file.open": 1, "shadow_ai.finding": 2}}),
            &json!({"agent_id": "unregistered:aaaaaaaaaaaa", "executable": "/usr/bin/python3",
                    "receipts": 2, "findings": 1,
                    "actions": {"network.connect": 1, "shadow_ai.finding": 1}}),
        ]
    );
    assert_eq!(
        v["findings"],
        json!([
            {"rule_id": "ai-credential-read", "risk_class": "medium", "count": 2, "agents": 1},
            {"rule_id": "llm-api-call", "risk_class": "high", "count": 1, "agents": 1},
        ])
    );
    assert_eq!(
        v["destinations"],
        json!([
            {"destination": "api.openai.com", "connects": 2,
             "addresses": ["104.18.32.7:443", "104.18.32.8:443"], "agents": ["claude"]},
            {"destination": "10.0.0.9:8080", "connects": 1, "addresses": ["10.0.0.9:8080"],
             "agents": ["claude"]},
            {"destination": "api.anthropic.com", "connects": 1, "addresses": ["160.79.104.10:443"],
             "agents": ["unregistered:aaaaaaaaaaaa"]},
        ])
    );
    // --top and the filters apply; the table shows the three sections.
    let top = json_of(&ctl(&[
        "stats", "--json", "--agent", "claude", "--top", "1",
    ]));
    assert_eq!(top["receipts"], 6);
    assert_eq!(top["destinations"].as_array().unwrap().len(), 1);
    let table = ctl(&["summary", "--since", "2026-11-22", "--until", "2026-11-23"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    for header in [
        "AGENT  ",
        "RULE  ",
        "DESTINATION  ",
        "ai-credential-read",
        "api.openai.com",
    ] {
        assert!(table.stdout.contains(header), "{header}: {}", table.stdout);
    }
}

/// `sha256:<hex>` of a file (the executable hash receipts carry).
fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read file");
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
}
