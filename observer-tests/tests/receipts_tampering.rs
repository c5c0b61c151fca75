//! Every tampering with a real daemon's receipt store is detected, and the
//! verifier names the receipt.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod receipts_kit;

use std::path::Path;

use observer_daemon::receipt::{jcs, payload};
use observer_testkit::*;
use receipts_kit::*;
use sha2::{Digest, Sha256};

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
