//! Master key rotation over a real store built by the real pipeline (chain
//! builder, signing pool, writer, SQLite): the log verifies under the
//! genesis key across generations and across a restart, and each way of
//! signing with a retired key is caught and named.
use std::{path::Path, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{
    chain::{Draft, Identity, Rotation},
    checkpoint::{self, Checkpoint},
    jcs,
    keys::{ChainKey, MasterSeed},
    mldsa::Signer as _,
    payload::{self, Mappings, Mode, RiskClass},
    pipeline::{Pipeline, PipelineConfig},
    store::{RunKind, Store},
    verify::{verify_store, Failure, Report, VerifyOptions},
};

const DEPLOYER: &str = "did:web:example.invalid";
const HOST: &str = "host-1";

fn identity() -> Identity {
    Identity {
        deployer_id: DEPLOYER.into(),
        hostname: HOST.into(),
        mode: Mode::Payload,
        observer_executable_hash: format!("sha256:{}", "ab".repeat(32)),
    }
}

fn issuer(agent: &str) -> String {
    payload::issuer_id(DEPLOYER, HOST, agent)
}

fn seed(byte: u8) -> MasterSeed {
    MasterSeed::from_bytes([byte; 32])
}

fn draft(agent: &str, n: u64) -> Draft {
    Draft {
        agent_id: agent.into(),
        action_type: "process.exec",
        unix_ns: crate::payload::now_unix_ns(),
        context: json!({ "n": n }),
        risk_class: RiskClass::Low,
        executable_hash: format!("sha256:{}", "cd".repeat(32)),
        mappings: Mappings::default(),
        detection_rules_digest: None,
        erases: None,
        prunes: None,
    }
}

fn config(db: &Path) -> PipelineConfig {
    PipelineConfig {
        store: db.to_owned(),
        signing_threads: 2,
        queue_capacity: 64,
        checkpoint_interval: Duration::from_secs(3600),
        batch_max: 16,
        waiting_for_room: None,
    }
}

fn start(db: &Path, master: MasterSeed) -> Pipeline {
    Pipeline::start(
        &config(db),
        identity(),
        master,
        RunKind::Daemon,
        &payload::issued_at(crate::payload::now_unix_ns()),
    )
    .unwrap()
    .0
}

fn finish(p: Pipeline) {
    p.finish(&payload::issued_at(crate::payload::now_unix_ns()))
        .unwrap();
}

fn verify(db: &Path) -> Report {
    let genesis = ChainKey::master_key(&seed(1));
    verify_store(
        &Store::open_read_only(db).unwrap(),
        &VerifyOptions {
            master_public_key: genesis.public_key().to_vec(),
            now_unix_ns: crate::payload::now_unix_ns(),
            external_checkpoints: Vec::new(),
            independent: false,
            threads: 2,
        },
    )
    .unwrap()
}

/// (leaf, issuer, seq, kid, envelope, context) of every receipt.
struct Row {
    leaf: u64,
    issuer: String,
    seq: u64,
    envelope: Value,
    context: Option<Value>,
}

fn rows(db: &Path) -> Vec<Row> {
    let store = Store::open_read_only(db).unwrap();
    let mut out = Vec::new();
    store
        .for_each_receipt(|r| {
            out.push(Row {
                leaf: r.leaf_index,
                issuer: r.issuer_id,
                seq: r.seq,
                envelope: serde_json::from_str(&r.envelope).unwrap(),
                context: r.context.map(|c| serde_json::from_str(&c).unwrap()),
            });
            true
        })
        .unwrap();
    out
}

/// Genesis seed 1: chains a and b; restart; rotation to seed 2; more
/// activity (a re-announces before its next receipt, b too); stop.
fn build(db: &Path) -> Rotation {
    let mut p = start(db, seed(1));
    p.submit(draft("a", 1)).unwrap();
    p.submit(draft("a", 2)).unwrap();
    p.submit(draft("b", 3)).unwrap();
    finish(p);
    let mut p = start(db, seed(1));
    p.submit(draft("a", 4)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let rotation = p
        .rotate(
            seed(2),
            Some("test"),
            crate::payload::now_unix_ns(),
            Some(Box::new(move |hash| tx.send(hash).unwrap())),
        )
        .unwrap();
    p.submit(draft("a", 5)).unwrap();
    p.submit(draft("a", 6)).unwrap();
    p.submit(draft("b", 7)).unwrap();
    p.submit(draft("a", 8)).unwrap();
    finish(p);
    let committed = rx.recv().expect("the writer reports the commit");
    let stored = rows(db);
    let at = stored
        .iter()
        .find(|r| r.leaf == rotation.leaf_index)
        .unwrap();
    let hash = Sha256::digest(jcs::canonicalize(&at.envelope).unwrap());
    assert_eq!(committed.as_slice(), hash.as_slice());
    rotation
}

/// Replaces a receipt's envelope by `payload` signed with `key`.
fn resign(db: &Path, leaf: u64, payload: &Value, key: &ChainKey) {
    let payload_jcs = jcs::canonicalize(payload).unwrap();
    let sig = key.sign(&payload_jcs).unwrap();
    let envelope = payload::envelope_jcs(&payload_jcs, &key.kid, &URL_SAFE_NO_PAD.encode(sig));
    let hash = Sha256::digest(&envelope).to_vec();
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE receipts SET envelope_text = ?2, sig = NULL, receipt_hash = ?3 WHERE leaf_index = ?1",
        rusqlite::params![leaf as i64, String::from_utf8(envelope).unwrap(), hash],
    )
    .unwrap();
}

fn copy(db: &Path, name: &str) -> std::path::PathBuf {
    let to = db.with_file_name(format!("{name}.db"));
    rusqlite::Connection::open(db)
        .unwrap()
        .execute("VACUUM INTO ?1", [to.display().to_string()])
        .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    to
}

fn first(report: &Report) -> Failure {
    assert!(!report.ok(), "the tampering went unnoticed");
    report.first_failure().unwrap().clone()
}

fn hash_of(db: &Path, leaf: u64) -> String {
    let row = rows(db).into_iter().find(|r| r.leaf == leaf).unwrap();
    hex::encode(Sha256::digest(jcs::canonicalize(&row.envelope).unwrap()))
}

#[test]
fn a_rotated_log_verifies_under_the_genesis_key_across_generations_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    let rotation = build(&db);
    let old_master = ChainKey::master_key(&seed(1)).kid;
    let new_master = ChainKey::master_key(&seed(2)).kid;
    assert_eq!(
        (
            rotation.old_kid.as_str(),
            rotation.new_kid.as_str(),
            rotation.generation
        ),
        (old_master.as_str(), new_master.as_str(), 2)
    );
    let report = verify(&db);
    assert!(report.ok(), "{:#?}", report.failures);
    // Genesis master, a, b announced; the rotation; a and b re-announced.
    assert_eq!(report.checks["key_rotation"].pass, 6);
    assert!(report.checkpoints_verified >= 2);

    // Chain a: seq continuous, the key changes exactly after its
    // re-announcement.
    let stored = rows(&db);
    let a: Vec<&Row> = stored.iter().filter(|r| r.issuer == issuer("a")).collect();
    assert_eq!(
        a.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    let reannounce = stored
        .iter()
        .find(|r| {
            r.context.as_ref().is_some_and(|c| {
                c["issuer_id"] == issuer("a").as_str() && c.get("rotates").is_some()
            })
        })
        .unwrap();
    let old_a = ChainKey::derive(&seed(1), &issuer("a")).kid;
    let new_a = ChainKey::derive(&seed(2), &issuer("a")).kid;
    for r in &a {
        let expected = if r.leaf < reannounce.leaf {
            &old_a
        } else {
            &new_a
        };
        assert_eq!(r.envelope["payload"]["key_thumbprint"], expected.as_str());
    }
    assert_eq!(reannounce.envelope["signature"]["kid"], new_master.as_str());
    assert_eq!(reannounce.leaf, rotation.leaf_index + 1);

    // Keys table: both masters, both generations of a and b.
    let store = Store::open_read_only(&db).unwrap();
    let keys = store.keys().unwrap();
    assert_eq!(keys.len(), 6);
    let master = store.current_master().unwrap().unwrap();
    assert_eq!(
        (master.kid.as_str(), master.generation),
        (new_master.as_str(), 2)
    );
    drop(store);

    // Restart on the rotated store with the new seed; the old one is
    // refused.
    let err = Pipeline::start(
        &config(&db),
        identity(),
        seed(1),
        RunKind::Daemon,
        &payload::issued_at(crate::payload::now_unix_ns()),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("another master seed"), "{err}");
    let mut p = start(&db, seed(2));
    let placed = p.submit(draft("a", 9)).unwrap();
    assert_eq!(placed.seq, 7);
    finish(p);
    let report = verify(&db);
    assert!(report.ok(), "{:#?}", report.failures);
}

#[test]
fn signing_with_a_retired_key_after_a_rotation_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    let rotation = build(&db);
    let stored = rows(&db);
    let old_master = ChainKey::master_key(&seed(1));
    let new_master = ChainKey::master_key(&seed(2));

    // 1. A receipt of chain a after its re-announcement, re-signed with
    //    a's retired key (someone holding the old seed).
    let old_a = ChainKey::derive(&seed(1), &issuer("a"));
    let target = stored.iter().rfind(|r| r.issuer == issuer("a")).unwrap();
    let t = copy(&db, "retired-chain-key");
    let mut p = target.envelope["payload"].clone();
    p["key_thumbprint"] = json!(old_a.kid);
    resign(&t, target.leaf, &p, &old_a);
    let f = first(&verify(&t));
    assert_eq!(
        (f.check, f.chain.as_str(), f.seq, f.receipt_hash.as_str()),
        (
            "key_authorised",
            issuer("a").as_str(),
            target.seq,
            hash_of(&t, target.leaf).as_str()
        ),
        "{f:?}"
    );
    assert!(f.reason.contains("retired by the re-announcement"), "{f:?}");

    // 2. The rotation receipt signed by a key that is not the current
    //    master (the new master vouching for itself).
    let rot = stored
        .iter()
        .find(|r| r.leaf == rotation.leaf_index)
        .unwrap();
    let t = copy(&db, "self-signed-rotation");
    let mut p = rot.envelope["payload"].clone();
    p["key_thumbprint"] = json!(new_master.kid);
    resign(&t, rot.leaf, &p, &new_master);
    let f = first(&verify(&t));
    assert_eq!(
        (f.check, f.chain.as_str(), f.seq),
        ("key_authorised", issuer("observer").as_str(), rot.seq),
        "{f:?}"
    );
    assert!(f.reason.contains("not authorised"), "{f:?}");

    // 3. An observer-chain receipt after the rotation signed by the old
    //    master.
    let after = stored
        .iter()
        .find(|r| r.issuer == issuer("observer") && r.leaf > rotation.leaf_index)
        .unwrap();
    let t = copy(&db, "retired-master");
    let mut p = after.envelope["payload"].clone();
    p["key_thumbprint"] = json!(old_master.kid);
    resign(&t, after.leaf, &p, &old_master);
    let f = first(&verify(&t));
    assert_eq!(
        (f.check, f.chain.as_str(), f.seq),
        ("key_authorised", issuer("observer").as_str(), after.seq),
        "{f:?}"
    );
    assert!(f.reason.contains("retired by the rotation"), "{f:?}");

    // 4. A checkpoint after the rotation signed by the old master.
    let t = copy(&db, "retired-checkpoint");
    let store = Store::open_read_only(&t).unwrap();
    let latest = store.latest_checkpoint().unwrap().unwrap();
    drop(store);
    assert!(latest.size > rotation.leaf_index);
    let root: [u8; 32] = latest.root.as_slice().try_into().unwrap();
    let note = checkpoint::sign_note(
        &Checkpoint {
            origin: format!("{DEPLOYER}/host/{HOST}"),
            size: latest.size,
            root,
        },
        old_master.public_key(),
        |body| {
            old_master
                .sign(body)
                .map_err(|e| super::retention::RetentionError::Invalid(e.to_string()))
        },
    )
    .unwrap();
    rusqlite::Connection::open(&t)
        .unwrap()
        .execute(
            "UPDATE checkpoints SET note = ?2 WHERE size = ?1",
            rusqlite::params![latest.size as i64, note],
        )
        .unwrap();
    let report = verify(&t);
    let f = first(&report);
    assert_eq!(f.check, "checkpoint_signature", "{f:?}");
    assert!(
        f.reason
            .contains(&format!("signed by master {}", old_master.kid))
            && f.reason.contains("retired"),
        "{f:?}"
    );
    // Every other check still passes: only the checkpoint is named.
    assert_eq!(report.failures.len(), 1, "{:#?}", report.failures);
}

#[test]
fn retention_after_a_rotation_carries_the_rotations_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    let rotation = build(&db);
    let issued_ns = |leaf: u64| -> u64 {
        let store = Store::open_read_only(&db).unwrap();
        store
            .connection()
            .query_row(
                "SELECT issued_ns FROM receipts WHERE leaf_index = ?1",
                [leaf as i64],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as u64
    };
    // A cut before the rotation (the rotation stays in the log too), and
    // a cut after everything.
    for (name, cutoff) in [
        ("before", issued_ns(rotation.leaf_index - 1)),
        ("after", crate::payload::now_unix_ns()),
    ] {
        let t = copy(&db, name);
        let cut = super::retention::prune_offline(&config(&t), identity(), seed(2), cutoff)
            .unwrap()
            .expect("something to prune");
        let stored = rows(&t);
        let anchor = stored.last().unwrap();
        let context = anchor.context.as_ref().unwrap();
        assert_eq!(context["event"], "prune", "{name}");
        let carried = context["master_rotations"].as_array().unwrap();
        assert_eq!(carried.len(), 1, "{name}");
        assert_eq!(carried[0]["leaf_index"], rotation.leaf_index, "{name}");
        assert_eq!(
            anchor.envelope["signature"]["kid"],
            ChainKey::master_key(&seed(2)).kid.as_str()
        );
        let report = verify(&t);
        assert!(report.ok(), "{name}: {:#?}", report.failures);
        assert_eq!(report.pruned_below, cut, "{name}");
        // The prune with the old seed is refused: it is not the store's
        // master.
        assert!(super::retention::prune_offline(&config(&t), identity(), seed(1), cutoff).is_err());
    }
}
