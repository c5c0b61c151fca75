//! Observation receipts end to end: a registered agent acts on the real
//! kernel, the real daemon signs, chains and stores receipts, and the
//! store verifies offline, with a second ML-DSA implementation too.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{net::TcpListener, path::Path, process::Command};

use observer_daemon::receipt::{
    jcs,
    mldsa::{RustCryptoVerifier, Verifier},
    payload,
};
use observer_testkit::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

struct AgentRun {
    records: Vec<Value>,
    dir: tempfile::TempDir,
    agent_exe: std::path::PathBuf,
    file: std::path::PathBuf,
    port: u16,
    agent_pid: u64,
}

/// Runs an agent (a copy of sh) that execs, opens a file three times and
/// connects to a local listener, then stops the daemon cleanly.
fn run_agent(extra: &str) -> AgentRun {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("agent");
    let agent_exe = copy_executable("/bin/sh", dir.path(), &name);
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config("test-agent", &agent_exe, extra),
    );
    let file = dir.path().join(format!("{}.txt", unique("f")));
    write_file(&file, "hello");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || {
        let _ = listener.accept();
    });
    // No pause: the kernel marks the agent watched at its exec, so the cats
    // it forks at once are watched too.
    let script = format!(
        "/bin/true; for i in 1 2 3; do cat {f} >/dev/null; done; \
         /usr/bin/curl -s --max-time 2 http://127.0.0.1:{port}/ >/dev/null; exit 3",
        f = file.display()
    );
    let status = Command::new(&agent_exe)
        .args(["-c", &script])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    accept.join().unwrap();
    let mut d = d;
    let agent_path = agent_exe.display().to_string();
    let exec = d.wait_for(|r| is_event(r, "exec") && r["exec"]["filename"] == agent_path.as_str());
    let agent_pid = exec["process"]["pid"].as_u64().unwrap();
    d.wait_for(|r| is_event(r, "exit") && r["process"]["pid"] == agent_pid);
    let records = d.stop();
    AgentRun {
        records,
        dir,
        agent_exe,
        file,
        port,
        agent_pid,
    }
}

fn of_action<'a>(rs: &'a [StoredReceipt], action: &str) -> Vec<&'a StoredReceipt> {
    rs.iter()
        .filter(|r| r.payload["action_type"] == action)
        .collect()
}

#[test]
fn agent_activity_becomes_signed_chained_verified_receipts() {
    let run = run_agent("");
    let db = run.dir.path().join("observer.db");
    let seed = run.dir.path().join("master.seed");
    let rs = stored_receipts(&db);
    let agent_chain = rs
        .iter()
        .find(|r| r.payload["agent_id"] == "test-agent")
        .expect("agent receipts")
        .chain
        .clone();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        agent_chain,
        format!(
            "{}/host/{}/agent/test-agent",
            default_deployer_id(),
            host.trim()
        )
    );

    // The observer chain: self-announced master key, start, policy, the
    // agent chain's key before its first receipt, and a clean stop.
    let observer: Vec<_> = rs
        .iter()
        .filter(|r| r.payload["agent_id"] == "observer")
        .collect();
    let actions: Vec<_> = observer
        .iter()
        .map(|r| r.payload["action_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..4],
        [
            "observer.key",
            "observer.start",
            "observer.policy",
            "observer.key"
        ]
    );
    assert_eq!(*actions.last().unwrap(), "observer.stop");
    assert_eq!(
        observer[3].context.as_ref().unwrap()["issuer_id"],
        agent_chain.as_str()
    );
    let first_agent = rs.iter().position(|r| r.chain == agent_chain).unwrap();
    assert!(
        observer[3].leaf < first_agent as u64,
        "the key is announced before its first use"
    );
    assert_eq!(
        observer[1].context.as_ref().unwrap()["previous_run"],
        Value::Null
    );

    // Every receipt of the agent chain, in order, exactly linked.
    let chain: Vec<_> = rs.iter().filter(|r| r.chain == agent_chain).collect();
    let mut prev = payload::GENESIS_HASH.to_string();
    for (i, r) in chain.iter().enumerate() {
        let p = &r.payload;
        assert_eq!(p["seq"], i as u64 + 1);
        assert_eq!(p["previousReceiptHash"], prev.as_str());
        assert_eq!(p["v"], 1);
        assert_eq!(p["type"], "protectmcp:observation");
        assert_eq!(p["decision"], "observation");
        assert_eq!(p["mode"], "payload");
        assert_eq!(p["policy_digest"], Value::Null);
        assert_eq!(p["issuer_id"], agent_chain.as_str());
        let ctx = jcs::canonicalize(r.context.as_ref().unwrap()).unwrap();
        assert_eq!(p["payload_digest"]["hash"], payload::sha256_hex(&ctx));
        assert_eq!(p["payload_digest"]["size"], ctx.len());
        let action_ref = jcs::canonicalize(&serde_json::json!({
            "agentId": "test-agent", "actionType": p["action_type"],
            "scopeRequired": [], "timestamp": p["issued_at"]}))
        .unwrap();
        assert_eq!(
            p["action_ref"],
            format!("sha256:{}", payload::sha256_hex(&action_ref))
        );
        prev = payload::sha256_hex(&jcs::canonicalize(p).unwrap());
        assert_eq!(r.hash, hex::encode(Sha256::digest(r.envelope.as_bytes())));
    }

    // The agent's own exec, with the hash of its executable.
    let agent_path = run.agent_exe.display().to_string();
    let execs = of_action(&rs, "process.exec");
    let agent_exec = execs
        .iter()
        .find(|r| r.context.as_ref().unwrap()["exec"]["filename"] == agent_path.as_str())
        .expect("agent exec receipt");
    assert_eq!(
        agent_exec.payload["executable_hash"],
        sha256_file(&run.agent_exe)
    );
    assert_eq!(agent_exec.chain, agent_chain);
    assert_eq!(
        agent_exec.context.as_ref().unwrap()["process"]["pid"],
        run.agent_pid
    );
    // Its children are the agent's too: /bin/true, cat, curl.
    for child in ["/bin/true", "/usr/bin/curl"] {
        let r = execs
            .iter()
            .find(|r| r.context.as_ref().unwrap()["exec"]["filename"] == child)
            .unwrap_or_else(|| panic!("receipt for {child}"));
        assert_eq!(r.chain, agent_chain);
        assert_eq!(
            r.context.as_ref().unwrap()["process"]["agent"],
            "test-agent"
        );
    }
    // Three cats opened the file: three processes, each listed once in the
    // agent's list of opens, with its pid and executable.
    let file = run.file.display().to_string();
    let listed_in = |r: &StoredReceipt| -> Vec<Value> {
        r.context.as_ref().unwrap()["file_open"]["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["path"] == file.as_str())
            .cloned()
            .collect()
    };
    let opens: Vec<_> = of_action(&rs, "file.open")
        .into_iter()
        .filter(|r| !listed_in(r).is_empty())
        .collect();
    let entries: Vec<Value> = opens.iter().flat_map(|r| listed_in(r)).collect();
    assert_eq!(entries.len(), 3, "one entry per cat: {entries:#?}");
    let pids: std::collections::HashSet<u64> =
        entries.iter().map(|e| e["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 3, "three processes");
    for e in &entries {
        assert_eq!(e["count"], 1);
        assert!(e["exe"].as_str().unwrap().ends_with("/cat"), "{e}");
    }
    let connect = of_action(&rs, "network.connect")
        .into_iter()
        .find(|r| r.context.as_ref().unwrap()["connect"]["remote_port"] == run.port)
        .expect("connect receipt");
    assert_eq!(
        connect.context.as_ref().unwrap()["connect"]["remote_addr"],
        "127.0.0.1"
    );
    let exit = of_action(&rs, "process.exit")
        .into_iter()
        .find(|r| r.context.as_ref().unwrap()["process"]["pid"] == run.agent_pid)
        .expect("agent exit receipt");
    assert_eq!(exit.context.as_ref().unwrap()["exit"]["exit_code"], 3);

    // Nothing outside the agent's tree became a receipt.
    assert!(rs
        .iter()
        .all(|r| r.payload["agent_id"] == "observer" || r.chain == agent_chain));
    assert!(run.records.iter().any(|r| r["kind"] == "observer_stop"));

    // Offline verification with both implementations; a clean stop leaves
    // every receipt under a checkpoint.
    let report = verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    assert_eq!(report.receipts, rs.len() as u64);
    assert_eq!(report.uncheckpointed, 0);
    assert!(report.checkpoints_verified >= 1);
    assert_eq!(report.checks["signature"].pass, rs.len() as u64);
    assert_eq!(report.verifiers.len(), 2);

    // And directly with RustCrypto, against the announced chain key.
    let announced = observer[3].context.as_ref().unwrap()["jwk"].clone();
    let pk = observer_daemon::receipt::keys::public_key_from_jwk(&announced).unwrap();
    use base64::Engine as _;
    for r in &chain {
        let env: Value = serde_json::from_str(&r.envelope).unwrap();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(env["signature"]["sig"].as_str().unwrap())
            .unwrap();
        RustCryptoVerifier
            .verify(&pk, &jcs::canonicalize(&r.payload).unwrap(), &sig)
            .unwrap();
    }

    // Inclusion proofs from the store's Merkle nodes against the signed
    // checkpoint, in the C2SP tlog-proof layout, and consistency between
    // the first and the last checkpoint.
    {
        use observer_daemon::receipt::{
            checkpoint, merkle,
            store::{Store, StoreNodes},
        };
        let store = Store::open_read_only(&db).unwrap();
        let cps = store.checkpoints().unwrap();
        let latest = cps.last().unwrap();
        let origin = agent_chain.rsplit_once("/agent/").unwrap().0.to_string();
        let master = master_public_key(&seed);
        let verify_sig = |m: &[u8], s: &[u8]| RustCryptoVerifier.verify(&master, m, s).is_ok();
        for r in [&chain[0], chain.last().unwrap()] {
            let proof = merkle::inclusion_proof(&StoreNodes(&store), r.leaf, latest.size).unwrap();
            let text = checkpoint::format_tlog_proof(r.leaf, &proof, &latest.note);
            let parsed = checkpoint::parse_tlog_proof(&text).unwrap();
            let leaf = merkle::leaf_hash(&hex::decode(&r.hash).unwrap());
            let cp = parsed.verify(&leaf, &origin, &master, verify_sig).unwrap();
            assert_eq!(cp.size, latest.size);
            // The proof does not fit any other receipt.
            let other = merkle::leaf_hash(&hex::decode(&observer[0].hash).unwrap());
            assert!(parsed.verify(&other, &origin, &master, verify_sig).is_err());
        }
        let first = cps.first().unwrap();
        if first.size < latest.size {
            let proof =
                merkle::consistency_proof(&StoreNodes(&store), first.size, latest.size).unwrap();
            let root = |c: &observer_daemon::receipt::store::CheckpointRow| -> merkle::Hash {
                c.root.clone().try_into().unwrap()
            };
            merkle::verify_consistency(
                first.size,
                latest.size,
                &root(first),
                &root(latest),
                &proof,
            )
            .unwrap();
        }
    }

    // observerd verify agrees, and a wrong pinned key fails.
    let out = Command::new(observerd())
        .args(["verify", "--db"])
        .arg(&db)
        .arg("--master-seed")
        .arg(&seed)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verification passed"), "{text}");
    let wrong = observer_daemon::receipt::keys::ChainKey::master_key(
        &observer_daemon::receipt::keys::MasterSeed::from_bytes([9; 32]),
    );
    let jwk = run.dir.path().join("wrong.jwk");
    std::fs::write(&jwk, wrong.jwk().to_string()).unwrap();
    let out = Command::new(observerd())
        .args(["verify", "--db"])
        .arg(&db)
        .arg("--pubkey")
        .arg(&jwk)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("first failure: chain ") && text.contains("key_authorised"),
        "{text}"
    );
}

/// Copies a store to a new file for one tamper case.
fn tampered_copy(db: &Path, name: &str) -> std::path::PathBuf {
    let copy = db.with_file_name(format!("{name}.db"));
    let src = rusqlite::Connection::open(db).unwrap();
    src.execute("VACUUM INTO ?1", [copy.display().to_string()])
        .unwrap();
    copy
}

fn exec_sql(db: &Path, sql: &str, params: impl rusqlite::Params) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute(sql, params).unwrap();
}

#[test]
fn every_tampering_is_detected_and_names_the_receipt() {
    let run = run_agent("");
    let db = run.dir.path().join("observer.db");
    let seed = run.dir.path().join("master.seed");
    let rs = stored_receipts(&db);
    assert!(verify_store(&db, &seed, vec![]).ok());
    let chain: Vec<_> = rs
        .iter()
        .filter(|r| r.payload["agent_id"] == "test-agent")
        .collect();
    assert!(chain.len() >= 6, "{} agent receipts", chain.len());
    let target = chain[2];
    let first_failure = |db: &Path, external: Vec<String>| {
        let report = verify_store(db, &seed, external);
        assert!(!report.ok(), "tampering went unnoticed");
        report.first_failure().unwrap().clone()
    };

    // 1. One byte of a context.
    let t = tampered_copy(&db, "context");
    let ctx: String = rusqlite::Connection::open(&t)
        .unwrap()
        .query_row(
            "SELECT context FROM contexts WHERE leaf_index = ?1",
            [target.leaf],
            |r| r.get(0),
        )
        .unwrap();
    let changed = ctx.replacen("\"pid\":", "\"pid\":1", 1);
    assert_ne!(ctx, changed);
    exec_sql(
        &t,
        "UPDATE contexts SET context = ?2 WHERE leaf_index = ?1",
        rusqlite::params![target.leaf, changed],
    );
    let f = first_failure(&t, vec![]);
    assert_eq!(
        (f.check, f.chain.as_str(), f.seq, f.receipt_hash.as_str()),
        (
            "payload_digest",
            target.chain.as_str(),
            target.seq,
            target.hash.as_str()
        )
    );

    // 2. One byte of a payload member (the risk class), hash column kept.
    let t = tampered_copy(&db, "payload");
    let env = target
        .envelope
        .replacen("\"risk_class\":\"low\"", "\"risk_class\":\"lox\"", 1);
    assert_ne!(env, target.envelope);
    exec_sql(
        &t,
        "UPDATE receipts SET envelope_text = ?2, sig = NULL WHERE leaf_index = ?1",
        rusqlite::params![target.leaf, env],
    );
    let f = first_failure(&t, vec![]);
    assert_eq!(
        (f.chain.as_str(), f.seq),
        (target.chain.as_str(), target.seq),
        "{f:?}"
    );

    // 3. One byte of a signature (the bytes the store keeps apart from
    // the envelope text), the receipt hash made to match.
    let t = tampered_copy(&db, "signature");
    let (text, mut sig): (String, Vec<u8>) = rusqlite::Connection::open(&t)
        .unwrap()
        .query_row(
            "SELECT envelope_text, sig FROM receipts WHERE leaf_index = ?1",
            [target.leaf as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(sig.len(), 3309, "the signature is stored as its bytes");
    sig[75] ^= 1;
    let env = observer_daemon::receipt::stored_envelope::join(&text, Some(&sig)).unwrap();
    assert_ne!(env, target.envelope);
    let hash = Sha256::digest(env.as_bytes()).to_vec();
    exec_sql(
        &t,
        "UPDATE receipts SET sig = ?2, receipt_hash = ?3 WHERE leaf_index = ?1",
        rusqlite::params![target.leaf, sig, hash],
    );
    let f = first_failure(&t, vec![]);
    assert_eq!(
        (f.check, f.chain.as_str(), f.seq),
        ("signature", target.chain.as_str(), target.seq),
        "{f:?}"
    );

    // 4. Delete a middle receipt: the next one of its chain names the gap.
    let t = tampered_copy(&db, "delete");
    exec_sql(
        &t,
        "DELETE FROM contexts WHERE leaf_index = ?1",
        [target.leaf],
    );
    exec_sql(
        &t,
        "DELETE FROM receipts WHERE leaf_index = ?1",
        [target.leaf],
    );
    let report = verify_store(&t, &seed, vec![]);
    let f = report
        .failures
        .iter()
        .find(|f| f.check == "chain_link")
        .expect("chain break");
    assert_eq!(
        (f.chain.as_str(), f.seq),
        (target.chain.as_str(), target.seq + 1)
    );
    assert!(
        f.reason.contains(&format!(
            "receipts {}..{} of this chain are missing",
            target.seq, target.seq
        )),
        "{}",
        f.reason
    );
    assert!(report.failures.iter().any(|f| f.check == "log_continuity"
        && f.reason
            .contains(&format!("{}..{}", target.leaf, target.leaf + 1))));

    // 5. Swap two receipts of the chain.
    let t = tampered_copy(&db, "swap");
    let (a, b) = (chain[1], chain[3]);
    let c = rusqlite::Connection::open(&t).unwrap();
    c.execute_batch(&format!(
        "PRAGMA foreign_keys = OFF;
         UPDATE receipts SET leaf_index = -1 WHERE leaf_index = {a};
         UPDATE receipts SET leaf_index = {a} WHERE leaf_index = {b};
         UPDATE receipts SET leaf_index = {b} WHERE leaf_index = -1;
         UPDATE contexts SET leaf_index = -1 WHERE leaf_index = {a};
         UPDATE contexts SET leaf_index = {a} WHERE leaf_index = {b};
         UPDATE contexts SET leaf_index = {b} WHERE leaf_index = -1;",
        a = a.leaf,
        b = b.leaf
    ))
    .unwrap();
    drop(c);
    let f = first_failure(&t, vec![]);
    assert_eq!(
        (f.check, f.chain.as_str(), f.seq, f.receipt_hash.as_str()),
        ("chain_link", b.chain.as_str(), b.seq, b.hash.as_str()),
        "{f:?}"
    );

    // 6. Truncate the tail, cleaning up checkpoints and chain heads too:
    // only a checkpoint kept off-host reveals it.
    let forwarded: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let t = tampered_copy(&db, "truncate");
    let keep = rs.len() as u64 - 3;
    let c = rusqlite::Connection::open(&t).unwrap();
    c.execute_batch(&format!(
        "DELETE FROM contexts WHERE leaf_index >= {keep};
         DELETE FROM receipts WHERE leaf_index >= {keep};
         DELETE FROM checkpoints WHERE size > {keep};"
    ))
    .unwrap();
    drop(c);
    assert!(
        verify_store(&t, &seed, vec![]).ok(),
        "without an off-host copy a clean truncation passes"
    );
    let report = verify_store(&t, &seed, vec![forwarded.clone()]);
    let f = report
        .failures
        .iter()
        .find(|f| f.check == "log_root")
        .expect("truncation found");
    assert!(
        f.reason.contains(&format!(
            "covers {} receipts but the log has only {keep}",
            rs.len()
        )),
        "{}",
        f.reason
    );

    // 7. Replace a chain key in the keys table.
    let t = tampered_copy(&db, "key");
    let other = observer_daemon::receipt::keys::ChainKey::derive(
        &observer_daemon::receipt::keys::MasterSeed::from_bytes([7; 32]),
        &target.chain,
    );
    exec_sql(
        &t,
        "UPDATE keys SET jwk = ?2 WHERE issuer_id = ?1",
        rusqlite::params![target.chain, other.jwk().to_string()],
    );
    let report = verify_store(&t, &seed, vec![]);
    let f = report.first_failure().unwrap();
    assert_eq!(f.check, "keys_table");
    assert!(f.reason.contains(&target.chain), "{}", f.reason);

    // 8. Re-sign a modified receipt with a key the master never announced.
    let t = tampered_copy(&db, "resign");
    let mut p = target.payload.clone();
    p["risk_class"] = "high".into();
    p["key_thumbprint"] = other.kid.clone().into();
    let pj = jcs::canonicalize(&p).unwrap();
    use base64::Engine as _;
    use observer_daemon::receipt::mldsa::Signer as _;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other.sign(&pj).unwrap());
    let env = payload::envelope_jcs(&pj, &other.kid, &sig);
    let hash = Sha256::digest(&env).to_vec();
    exec_sql(
        &t,
        "UPDATE receipts SET envelope_text = ?2, sig = NULL, receipt_hash = ?3 WHERE leaf_index = ?1",
        rusqlite::params![target.leaf, String::from_utf8(env).unwrap(), hash],
    );
    let f = first_failure(&t, vec![]);
    assert_eq!(
        (f.check, f.chain.as_str(), f.seq),
        ("key_authorised", target.chain.as_str(), target.seq),
        "{f:?}"
    );

    // Erasure: the context goes, the receipt and the log still verify.
    let erased_hash = target.hash.clone();
    erase(&run, &erased_hash);
    let report = verify_store(&db, &seed, vec![forwarded]);
    assert!(report.ok(), "{:#?}", report.failures);
    assert_eq!(report.erased_contexts, 1);
    let after = stored_receipts(&db);
    let erased = after.iter().find(|r| r.hash == erased_hash).unwrap();
    let erasure = after.last().unwrap();
    assert_eq!(erasure.payload["action_type"], "observer.policy");
    assert_eq!(
        erasure.context.as_ref().unwrap()["erase"],
        erased_hash.as_str()
    );
    assert_eq!(
        erased.context.as_ref().unwrap(),
        &serde_json::json!({"erased": true, "by": erasure.hash})
    );
}

fn erase(run: &AgentRun, receipt_hash: &str) {
    use observer_daemon::receipt::{erase, keys::MasterSeed, pipeline::PipelineConfig};
    let (seed, created) = MasterSeed::load_or_create(&run.dir.path().join("master.seed")).unwrap();
    assert!(!created);
    erase::erase(
        &PipelineConfig {
            store: run.dir.path().join("observer.db"),
            signing_threads: 1,
            queue_capacity: 16,
            checkpoint_interval: std::time::Duration::from_secs(1),
            batch_max: 16,
            waiting_for_room: None,
        },
        identity(),
        seed,
        receipt_hash,
        "data subject request (test)",
    )
    .unwrap();
}

#[test]
fn hash_mode_keeps_digests_only_and_verifies() {
    let run = run_agent("[receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\nmode = \"hash\"\n");
    let db = run.dir.path().join("observer.db");
    let rs = stored_receipts(&db);
    let agent: Vec<_> = rs
        .iter()
        .filter(|r| r.payload["agent_id"] == "test-agent")
        .collect();
    assert!(!agent.is_empty());
    assert!(agent
        .iter()
        .all(|r| r.payload["mode"] == "hash" && r.context.is_none()));
    assert!(rs
        .iter()
        .filter(|r| r.payload["agent_id"] == "observer")
        .all(|r| r.payload["mode"] == "payload" && r.context.is_some()));
    let report = verify_store(&db, &run.dir.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    assert_eq!(report.hash_only, agent.len() as u64);
}

fn identity() -> observer_daemon::receipt::chain::Identity {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    observer_daemon::receipt::chain::Identity {
        deployer_id: default_deployer_id(),
        hostname: host.trim().to_string(),
        mode: payload::Mode::Payload,
        observer_executable_hash: sha256_file(Path::new(observerd())),
    }
}

#[test]
fn retention_prunes_a_prefix_behind_a_signed_anchor_and_the_rest_verifies() {
    use observer_daemon::receipt::{keys::MasterSeed, pipeline::PipelineConfig, retention};
    let run = run_agent("");
    let db = run.dir.path().join("observer.db");
    let seed = run.dir.path().join("master.seed");
    let before = stored_receipts(&db);
    let chain: Vec<_> = before
        .iter()
        .filter(|r| r.payload["agent_id"] == "test-agent")
        .collect();
    // Everything issued before the third agent receipt ages out.
    let target = chain[2];
    let cutoff = humantime::parse_rfc3339(target.payload["issued_at"].as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let cfg = PipelineConfig {
        store: db.clone(),
        signing_threads: 1,
        queue_capacity: 16,
        checkpoint_interval: std::time::Duration::from_secs(1),
        batch_max: 16,
        waiting_for_room: None,
    };
    let cut = retention::prune_offline(
        &cfg,
        identity(),
        MasterSeed::load_existing(&seed).unwrap(),
        cutoff,
    )
    .unwrap()
    .expect("something to prune");
    assert!(
        cut > 0 && cut <= target.leaf,
        "cut {cut}, target leaf {}",
        target.leaf
    );
    let after = stored_receipts(&db);
    assert!(after.iter().all(|r| r.leaf >= cut));
    assert_eq!(after.first().unwrap().leaf, cut);
    let anchor = after.last().unwrap();
    assert_eq!(anchor.payload["action_type"], "observer.policy");
    let ctx = anchor.context.as_ref().unwrap();
    assert_eq!(ctx["event"], "prune");
    assert_eq!(ctx["cut"], cut);
    let report = verify_store(&db, &seed, vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    assert_eq!(report.pruned_below, cut);
    assert_eq!(report.receipts, after.len() as u64);
    assert!(report.checkpoints_before_cut >= 1 || report.checkpoints_verified >= 1);

    // A forged anchor (a chain head moved) is refused, and with it the
    // remaining log cannot be verified.
    let t = tampered_copy(&db, "anchor");
    let forged = serde_json::to_string(ctx)
        .unwrap()
        .replacen("\"seq\":", "\"seq\":1", 1);
    exec_sql(
        &t,
        "UPDATE contexts SET context = ?2 WHERE leaf_index = ?1",
        rusqlite::params![anchor.leaf, forged],
    );
    let report = verify_store(&t, &seed, vec![]);
    assert!(!report.ok());
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.check == "prune_anchor"
                && f.reason.contains("does not match its payload_digest")),
        "{:#?}",
        report.failures
    );
}

#[test]
fn the_daemon_prunes_aged_receipts_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_executable("/bin/sh", dir.path(), &unique("aging"));
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config(
            "aging-agent",
            &exe,
            "[receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\nretention = \"2s\"\n",
        ),
    );
    let db = dir.path().join("observer.db");
    assert!(Command::new(&exe)
        .args(["-c", "exit 0"])
        .status()
        .unwrap()
        .success());
    // Wait for a prune that removes the agent's first receipts.
    let start = std::time::Instant::now();
    let anchor = loop {
        let prunes: Vec<_> = stored_receipts_of(&db, "observer.policy")
            .into_iter()
            .filter(|r| r.context.as_ref().unwrap()["event"] == "prune")
            .collect();
        if let Some(p) = prunes.last().filter(|p| {
            p.context.as_ref().unwrap()["chains"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| {
                    c["issuer_id"]
                        .as_str()
                        .unwrap()
                        .ends_with("/agent/aging-agent")
                })
        }) {
            break p.clone();
        }
        assert!(start.elapsed() < WAIT, "no prune within {WAIT:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // The agent keeps acting after the prune; its chain continues.
    assert!(Command::new(&exe)
        .args(["-c", "exit 0"])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    d.stop();
    let cut = anchor.context.as_ref().unwrap()["cut"].as_u64().unwrap();
    let report = verify_store(&db, &dir.path().join("master.seed"), vec![]);
    assert!(report.ok(), "{:#?}", report.failures);
    assert!(report.pruned_below >= cut);
    assert!(stored_receipts(&db)
        .iter()
        .all(|r| r.leaf >= report.pruned_below));
}
