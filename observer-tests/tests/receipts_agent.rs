//! Observation receipts end to end: a registered agent acts on the real
//! kernel, the real daemon signs, chains and stores receipts, and the
//! store verifies offline, with a second ML-DSA implementation too; hash
//! mode keeps digests only and verifies.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod receipts_kit;

use std::process::Command;

use observer_daemon::receipt::{
    jcs,
    mldsa::{RustCryptoVerifier, Verifier},
    payload,
};
use observer_testkit::*;
use receipts_kit::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

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
