//! `observerctl fleet hosts|agents|findings|receipts` over a real
//! ClickHouse (Debian's 18.16, started by the test with the shipped
//! schema) that two real daemons, hosts `fq-alpha` and `fq-beta`, forwarded
//! into, each with the shipped policies, a registered agent and shadow-AI
//! findings provoked for it. Every number and every row is checked against
//! the hosts' own SQLite stores (the truth), the listing row for row
//! against the local `observerctl receipts` of each store under the same
//! filters; re-sent rows are counted once, and hostile filter values stay
//! inside their literals.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod clickhouse_kit;
mod forwarding_kit;
mod shadow_ai_kit;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use clickhouse_kit::{expected::host_of, ClickHouse, USER};
use forwarding_kit::agent_execs;
use observer_daemon::receipt::{payload::issued_at, store::Store};
use observer_testkit::{
    ctl::{ctl, run, CtlTarget, Run},
    *,
};
use serde_json::{json, Value};
use shadow_ai_kit::{findings, start_digest};

/// One host that ran and stopped: its state directory and log origin.
struct Host {
    dir: tempfile::TempDir,
    origin: String,
}

impl Host {
    fn db(&self) -> PathBuf {
        self.dir.path().join("observer.db")
    }
}

/// Host `name`: the shipped policies, agent `fq-agent` (a copy of sh), and
/// a clickhouse sink into `ch`.
fn host_config(ch: &ClickHouse, dir: &Path, name: &str, agent: &Path) -> String {
    format!(
        "policies_dir = \"@DIR@/policies\"\n\
         [files]\nprefixes = []\nsuffixes = []\n\
         [receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\n\
         hostname = {name:?}\n\
         [forwarding]\nflush_timeout_ms = 15000\n\
         [[sinks]]\nname = \"fleet\"\ntype = \"clickhouse\"\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
         [sinks.clickhouse]\n{}\
         [[agents]]\nid = \"fq-agent\"\nexecutables = [{:?}]\n",
        ch.sink_settings(&dir.join("ch.password")),
        agent.display().to_string()
    )
}

/// Waits until `db` holds `n` findings of `rule`.
fn wait_findings(db: &Path, rule: &str, n: usize) {
    let start = Instant::now();
    let count = || {
        findings(db)
            .iter()
            .filter(|f| f.context.as_ref().unwrap()["rule_id"] == rule)
            .count()
    };
    while count() < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{n} {rule} findings"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs host `name`: `execs` execs of its agent, `weights` unregistered
/// reads of model weights (one finding each), and, with `secrets`, the
/// agent reading an AWS credentials file (a high finding on its chain).
/// The stop signs a final checkpoint and forwards everything.
fn run_host(ch: &ClickHouse, name: &str, execs: usize, weights: usize, secrets: bool) -> Host {
    let dir = tempfile::tempdir().unwrap();
    install_policies(dir.path(), "");
    let agent = copy_executable("/bin/sh", dir.path(), &unique("fq-agent"));
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &host_config(ch, dir.path(), name, &agent),
    );
    start_digest(&d.store());
    agent_execs(&agent, execs);
    for i in 0..weights {
        let w = dir.path().join(format!("m{i}.gguf"));
        write_file(&w, "GGUF");
        let status = Command::new("/usr/bin/cat")
            .arg(&w)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    wait_findings(&d.store(), "model-weights-unregistered", weights);
    if secrets {
        let aws = dir.path().join("home/.aws");
        std::fs::create_dir_all(&aws).unwrap();
        write_file(&aws.join("credentials"), "[default]\n");
        let status = Command::new(&agent)
            .arg("-c")
            .arg(format!("cat {}/credentials >/dev/null", aws.display()))
            .status()
            .unwrap();
        assert!(status.success());
        wait_findings(&d.store(), "agent-reads-other-secrets", 1);
    }
    d.stop();
    let origin = host_of(&dir.path().join("observer.db"));
    Host { dir, origin }
}

/// `observerctl fleet ARGS --clickhouse ...` (logging in as the sink does).
fn fleet(ch: &ClickHouse, password: &Path, args: &[&str]) -> Run {
    let mut c = Command::new(observerctl());
    c.arg("fleet").args(args).args([
        "--clickhouse",
        &format!("http://127.0.0.1:{}", ch.port),
        "--clickhouse-user",
        USER,
        "--password-file",
        password.to_str().unwrap(),
        "--allow-password-over-http",
    ]);
    run(c)
}

fn fleet_json(ch: &ClickHouse, password: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = fleet(ch, password, &all);
    assert_eq!(out.code, 0, "fleet {args:?}: {}{}", out.stderr, out.stdout);
    out.json()
}

/// Every receipt's issue time, agent, action, risk and context of a store.
struct Stored {
    issued_ns: u64,
    agent: String,
    action: String,
    risk: String,
    chain: String,
    context: Option<Value>,
}

fn stored(db: &Path) -> Vec<Stored> {
    stored_receipts(db)
        .into_iter()
        .map(|r| Stored {
            issued_ns: humantime::parse_rfc3339(r.payload["issued_at"].as_str().unwrap())
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
            agent: r.payload["agent_id"].as_str().unwrap().into(),
            action: r.payload["action_type"].as_str().unwrap().into(),
            risk: r.payload["risk_class"].as_str().unwrap().into(),
            chain: r.chain,
            context: r.context,
        })
        .collect()
}

/// What `fleet hosts --json` must say of `h` (its checkpoint's age aside).
fn expected_host(h: &Host) -> Value {
    let rs = stored(&h.db());
    let cp = Store::open_read_only(&h.db())
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    json!({
        "host": h.origin,
        "receipts": rs.len(),
        "chains": rs.iter().map(|r| &r.chain).collect::<BTreeSet<_>>().len(),
        "first_issued_at": issued_at(rs.iter().map(|r| r.issued_ns).min().unwrap()),
        "last_issued_at": issued_at(rs.iter().map(|r| r.issued_ns).max().unwrap()),
        "checkpoint": {"size": cp.size, "created_at": cp.created_at},
    })
}

/// The rows of `fleet hosts --json`, each checkpoint's age checked to be
/// of this run and then left out.
fn hosts_without_age(doc: &Value) -> Vec<Value> {
    let mut rows = doc["hosts"].as_array().unwrap().clone();
    for r in &mut rows {
        let age = r["checkpoint"]["age_s"].as_u64().unwrap();
        assert!(age < 600, "{r}");
        r["checkpoint"].as_object_mut().unwrap().remove("age_s");
    }
    rows
}

/// What `fleet agents --json` must list for `h`, issued in `since..`.
fn expected_agents(h: &Host, since: u64) -> Vec<Value> {
    let mut by: BTreeMap<String, (u64, BTreeMap<String, u64>, u64, u64)> = BTreeMap::new();
    for r in stored(&h.db()).into_iter().filter(|r| r.issued_ns >= since) {
        let e = by
            .entry(r.agent)
            .or_insert_with(|| (0, BTreeMap::new(), u64::MAX, 0));
        e.0 += 1;
        *e.1.entry(r.action).or_default() += 1;
        e.2 = e.2.min(r.issued_ns);
        e.3 = e.3.max(r.issued_ns);
    }
    by.into_iter()
        .map(|(agent, (n, actions, first, last))| {
            json!({"host": h.origin, "agent_id": agent, "receipts": n, "actions": actions,
                   "first_seen": issued_at(first), "last_seen": issued_at(last)})
        })
        .collect()
}

/// What `fleet findings --json` must list for `h`: per rule, largest first.
fn expected_findings(h: &Host) -> Vec<Value> {
    let mut by: BTreeMap<String, Vec<Stored>> = BTreeMap::new();
    for r in stored(&h.db())
        .into_iter()
        .filter(|r| r.action == "shadow_ai.finding")
    {
        let rule = r.context.as_ref().unwrap()["rule_id"]
            .as_str()
            .unwrap()
            .to_string();
        by.entry(rule).or_default().push(r);
    }
    let mut out: Vec<Value> = by
        .into_iter()
        .map(|(rule, rs)| {
            let n = |risk: &str| rs.iter().filter(|r| r.risk == risk).count();
            let max_risk = ["high", "medium", "low", "unknown"]
                .into_iter()
                .find(|risk| n(risk) > 0);
            json!({
                "host": h.origin, "rule_id": rule, "count": rs.len(),
                "risk": {"high": n("high"), "medium": n("medium"), "low": n("low"), "unknown": n("unknown")},
                "max_risk": max_risk,
                "agents": rs.iter().map(|r| &r.agent).collect::<BTreeSet<_>>().len(),
                "first_seen": issued_at(rs.iter().map(|r| r.issued_ns).min().unwrap()),
                "last_seen": issued_at(rs.iter().map(|r| r.issued_ns).max().unwrap()),
            })
        })
        .collect();
    out.sort_by(|a, b| b["count"].as_u64().cmp(&a["count"].as_u64()));
    out
}

/// The local `receipts --json` rows of every host under `filters`, each
/// with its host, in the fleet's order (time, host, log index).
fn local_rows(hosts: &[&Host], filters: &[&str]) -> Vec<Value> {
    let mut rows = Vec::new();
    for h in hosts {
        let mut args = vec!["receipts", "--json"];
        args.extend_from_slice(filters);
        let out = ctl(CtlTarget::Db(&h.db()), &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        for mut r in out.json()["receipts"].as_array().unwrap().clone() {
            r["host"] = json!(h.origin);
            rows.push(r);
        }
    }
    let key = |r: &Value| {
        (
            r["issued_ns"].as_u64().unwrap(),
            r["host"].as_str().unwrap().to_string(),
            r["leaf_index"].as_u64().unwrap(),
        )
    };
    rows.sort_by_key(key);
    rows
}

#[test]
fn fleet_queries_agree_with_every_host_store() {
    let started = Instant::now();
    let ch_dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(ch_dir.path());
    let alpha = run_host(&ch, "fq-alpha", 6, 2, true);
    let beta = run_host(&ch, "fq-beta", 3, 1, false);
    let password = alpha.dir.path().join("ch.password");
    let hosts = [&alpha, &beta];
    let ran = started.elapsed();

    // A replay of beta's rows, held unmerged: every query must count
    // each receipt once.
    ch.query("SYSTEM STOP MERGES observer.receipts");
    ch.query(&format!(
        "INSERT INTO observer.receipts SELECT * FROM observer.receipts WHERE host = '{}'",
        beta.origin
    ));
    let stored_total: usize = hosts.iter().map(|h| stored_receipts(&h.db()).len()).sum();
    assert_eq!(
        ch.count("SELECT count() FROM observer.receipts") as usize,
        stored_total + stored_receipts(&beta.db()).len()
    );

    // hosts
    let got = hosts_without_age(&fleet_json(&ch, &password, &["hosts"]));
    let mut want: Vec<Value> = hosts.iter().map(|h| expected_host(h)).collect();
    want.sort_by_key(|h| h["host"].as_str().unwrap().to_string());
    assert_eq!(got, want);
    let one = hosts_without_age(&fleet_json(
        &ch,
        &password,
        &["hosts", "--hosts", "fq-beta"],
    ));
    assert_eq!(one, [expected_host(&beta)]);

    // agents, whole and from the middle of alpha's run on
    let mut want: Vec<Value> = hosts.iter().flat_map(|h| expected_agents(h, 0)).collect();
    want.sort_by_key(|a| {
        (
            a["host"].as_str().unwrap().to_string(),
            a["agent_id"].as_str().unwrap().to_string(),
        )
    });
    assert_eq!(
        fleet_json(&ch, &password, &["agents"])["agents"],
        json!(want)
    );
    assert!(want
        .iter()
        .any(|a| a["host"] == alpha.origin.as_str() && a["agent_id"] == "fq-agent"));
    assert!(want
        .iter()
        .any(|a| a["host"] == beta.origin.as_str() && a["agent_id"] == "fq-agent"));
    let alpha_ns: Vec<u64> = stored(&alpha.db()).iter().map(|r| r.issued_ns).collect();
    let mid = alpha_ns[alpha_ns.len() / 2];
    let since = issued_at(mid);
    let got = fleet_json(
        &ch,
        &password,
        &["agents", "--hosts", &alpha.origin, "--since", &since],
    );
    assert_eq!(got["agents"], json!(expected_agents(&alpha, mid)));

    // findings: per host and rule, the rule read from each context
    let got = fleet_json(&ch, &password, &["findings"]);
    let mut want = Vec::new();
    for h in [&alpha, &beta] {
        let mut w = expected_findings(h);
        w.sort_by(|a, b| {
            b["count"]
                .as_u64()
                .cmp(&a["count"].as_u64())
                .then(a["rule_id"].as_str().cmp(&b["rule_id"].as_str()))
        });
        want.extend(w);
    }
    want.sort_by_key(|f| f["host"].as_str().unwrap().to_string());
    assert_eq!(got["findings"], json!(want), "{got:#}");
    let rule_count = |doc: &Value, host: &Host, rule: &str| {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["host"] == host.origin.as_str() && f["rule_id"] == rule)
            .map(|f| f["count"].as_u64().unwrap())
    };
    assert!(rule_count(&got, &alpha, "model-weights-unregistered") >= Some(2));
    assert!(rule_count(&got, &beta, "model-weights-unregistered") >= Some(1));
    let secrets = got["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["host"] == alpha.origin.as_str() && f["rule_id"] == "agent-reads-other-secrets")
        .unwrap()
        .clone();
    assert_eq!(secrets["max_risk"], "high");
    let models = fleet_json(&ch, &password, &["findings", "--rule", "model-*"]);
    assert_eq!(
        models["findings"],
        json!(want
            .iter()
            .filter(|f| f["rule_id"].as_str().unwrap().starts_with("model-"))
            .collect::<Vec<_>>())
    );

    // receipts: row for row the local listing of each store
    let exe_hash = sha256_file(Path::new("/usr/bin/cat"));
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--agent", "fq-agent"],
        vec!["--action", "process.*", "--risk", "low"],
        vec!["--rule", "model-*"],
        vec!["--path", "*.gguf"],
        vec!["--path", "*/credentials", "--agent", "fq-*"],
        vec!["--user", "root", "--action", "process.exec"],
        vec!["--exe", "/usr/bin/cat"],
        vec!["--exe", &exe_hash],
        vec!["--chain", "*/agent/unregistered:*"],
        vec!["--since", &since],
    ];
    let all = local_rows(&hosts, &[]).len();
    for filters in &cases {
        let want = local_rows(&hosts, filters);
        // Each filter selects some rows and leaves others out: a case
        // that agreed on nothing, or on everything, would prove nothing.
        assert!(!want.is_empty(), "{filters:?} selects nothing");
        assert!(
            filters.is_empty() || want.len() < all,
            "{filters:?} selects everything"
        );
        let mut args = vec!["receipts"];
        args.extend_from_slice(filters);
        let got = fleet_json(&ch, &password, &args);
        assert_eq!(
            got["receipts"].as_array().unwrap().len(),
            want.len(),
            "{filters:?}"
        );
        assert_eq!(got["receipts"], json!(want), "{filters:?}");
        // --limit: the newest of the whole fleet, oldest first.
        for n in [1, 3] {
            let mut args = args.clone();
            let n_text = n.to_string();
            args.extend(["--limit", n_text.as_str()]);
            let got = fleet_json(&ch, &password, &args);
            let tail = &want[want.len().saturating_sub(n)..];
            assert_eq!(got["receipts"], json!(tail), "{filters:?} --limit {n}");
        }
    }
    let beta_only = fleet_json(&ch, &password, &["receipts", "--hosts", "fq-b*"]);
    assert_eq!(beta_only["receipts"], json!(local_rows(&[&beta], &[])));

    // --jsonl: the same rows, one a line.
    let out = fleet(
        &ch,
        &password,
        &["receipts", "--jsonl", "--agent", "fq-agent"],
    );
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        json!(lines),
        json!(local_rows(&hosts, &["--agent", "fq-agent"]))
    );

    // The tables.
    let table = fleet(&ch, &password, &["receipts", "--limit", "2"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.starts_with("ISSUED_AT"), "{}", table.stdout);
    assert_eq!(table.stdout.lines().count(), 3, "{}", table.stdout);
    let table = fleet(&ch, &password, &["hosts"]);
    assert!(table.stdout.contains(&alpha.origin) && table.stdout.contains(&beta.origin));
    let table = fleet(&ch, &password, &["findings"]);
    assert!(
        table.stdout.contains("agent-reads-other-secrets"),
        "{}",
        table.stdout
    );

    // Bad input is refused before ClickHouse is asked, naming the flag.
    for (args, flag) in [
        (vec!["receipts", "--since", "last blue moon"], "--since"),
        (vec!["findings", "--until", "2026-13-01"], "--until"),
        (vec!["agents", "--since", "x"], "--since"),
        (vec!["receipts", "--limit", "ten"], "--limit"),
        (vec!["receipts", "--risk", "extreme"], "--risk"),
        (vec!["receipts", "--pid", "12ab"], "--pid"),
        (vec!["hosts", "--hosts", "did:web:x/fq-alpha"], "--hosts"),
        (vec!["receipts", "--hosts", "fq-alpha,"], "--hosts"),
    ] {
        let out = fleet(&ch, &password, &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert!(out.stderr.contains(flag), "{args:?}: {}", out.stderr);
    }

    // Values stay inside their literals: a quote is a character, `_` and
    // `%` in a glob are literal.
    for agent in ["x' OR 1=1 OR agent='", "fq_agen*", "fq%", "x\\' OR 1=1 --"] {
        let got = fleet_json(&ch, &password, &["receipts", "--agent", agent]);
        assert_eq!(got["receipts"], json!([]), "{agent}");
    }
    let got = fleet_json(&ch, &password, &["findings", "--rule", "' OR 1=1 --"]);
    assert_eq!(got["findings"], json!([]));
    assert!(ch.count("SELECT count() FROM observer.receipts") > 0);

    // A fleet store from before the `rule` column: the rows the sinks
    // sent (every column they name), `fleet findings` refused with the way
    // out, then the ALTER of docs/fleet.md: the same findings, each rule
    // computed from the rows already there.
    ch.query("CREATE DATABASE v1");
    for table in ["receipts", "checkpoints", "keys"] {
        ch.query(&format!("CREATE TABLE v1.{table} AS observer.{table}"));
    }
    ch.query("ALTER TABLE v1.receipts DROP COLUMN rule");
    let sent = "host, chain, seq, leaf_index, agent, action, risk, issued_ns, receipt_hash, \
                previous_hash, envelope, context";
    ch.query(&format!(
        "INSERT INTO v1.receipts ({sent}) SELECT {sent} FROM observer.receipts"
    ));
    let old = fleet(&ch, &password, &["findings", "--database", "v1"]);
    assert_eq!(old.code, 4, "{}", old.stderr);
    assert!(
        old.stderr.contains("predates its `rule` column") && old.stderr.contains("docs/fleet.md"),
        "{}",
        old.stderr
    );
    let fleet_md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/fleet.md"))
            .unwrap();
    let statement = |what: &str| {
        fleet_md
            .split("```sql\n")
            .map(|b| b.split("```").next().unwrap())
            .find(|b| b.contains(what))
            .unwrap_or_else(|| panic!("docs/fleet.md has no `{what}`"))
            .replace("observer.receipts", "v1.receipts")
    };
    ch.query(&statement("ADD COLUMN rule"));
    ch.query(&statement("UPDATE rule ="));
    let deadline = Instant::now() + Duration::from_secs(60);
    while ch.count("SELECT count() FROM system.mutations WHERE database = 'v1' AND is_done = 0") > 0
    {
        assert!(
            Instant::now() < deadline,
            "the UPDATE's mutation is not done"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let migrated = fleet_json(&ch, &password, &["findings", "--database", "v1"]);
    assert_eq!(migrated["findings"], json!(want));
    eprintln!("hosts ran in {ran:?}, all in {:?}", started.elapsed());
}
