//! The envelope's stored form over a real store built by the real pipeline
//! (chain builder, signing pool, writer, SQLite): what goes in comes out
//! byte for byte, a schema 2 store (envelopes whole) is read as it is by a
//! read-only open and converted by the writer's open without losing or
//! changing a receipt, and a signature changed in its stored bytes fails
//! verification.
use std::{os::unix::fs::OpenOptionsExt, path::Path, time::Duration};

use rusqlite::OpenFlags;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    chain::{Draft, Identity},
    keys::{ChainKey, MasterSeed},
    payload::{self, Mappings, Mode, RiskClass},
    pipeline::{Pipeline, PipelineConfig},
    sqlite,
    store::{RunKind, Store, MIGRATIONS},
    stored_envelope,
    verify::{verify_store, Report, VerifyOptions},
};

fn seed() -> MasterSeed {
    MasterSeed::from_bytes([7; 32])
}

fn draft(agent: &str, n: u64) -> Draft {
    Draft {
        agent_id: agent.into(),
        action_type: "process.exec",
        unix_ns: payload::now_unix_ns(),
        context: json!({ "n": n, "argv": ["prog", format!("{n}")] }),
        risk_class: RiskClass::Low,
        executable_hash: format!("sha256:{}", "cd".repeat(32)),
        mappings: Mappings::default(),
        detection_rules_digest: None,
        erases: None,
        prunes: None,
    }
}

/// A store of today's schema: two agent chains and the observer's.
fn build(db: &Path) {
    let config = PipelineConfig {
        store: db.to_owned(),
        signing_threads: 2,
        queue_capacity: 64,
        checkpoint_interval: Duration::from_secs(3600),
        batch_max: 4,
        waiting_for_room: None,
    };
    let identity = Identity {
        deployer_id: "did:web:example.invalid".into(),
        hostname: "host-1".into(),
        mode: Mode::Payload,
        observer_executable_hash: format!("sha256:{}", "ab".repeat(32)),
    };
    let now = || payload::issued_at(payload::now_unix_ns());
    let (mut p, _) = Pipeline::start(&config, identity, seed(), RunKind::Daemon, &now()).unwrap();
    for n in 0..12 {
        p.submit(draft(if n % 3 == 0 { "b" } else { "a" }, n))
            .unwrap();
    }
    p.finish(&now()).unwrap();
}

fn verify(db: &Path) -> Report {
    verify_store(
        &Store::open_read_only(db).unwrap(),
        &VerifyOptions {
            master_public_key: ChainKey::master_key(&seed()).public_key().to_vec(),
            now_unix_ns: payload::now_unix_ns(),
            external_checkpoints: Vec::new(),
            independent: false,
            threads: 2,
        },
    )
    .unwrap()
}

/// (leaf, receipt hash, envelope, context) of every receipt, as readers
/// get them.
type Row = (u64, Vec<u8>, String, Option<String>);

fn rows(db: &Path) -> Vec<Row> {
    let mut out = Vec::new();
    Store::open_read_only(db)
        .unwrap()
        .for_each_receipt(|r| {
            out.push((r.leaf_index, r.receipt_hash, r.envelope, r.context));
            true
        })
        .unwrap();
    out
}

/// The raw stored columns: (envelope_text, sig) by leaf.
fn stored(db: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let conn = sqlite::connect(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn
        .prepare("SELECT envelope_text, sig FROM receipts ORDER BY leaf_index")
        .unwrap();
    let out = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    out
}

/// A schema 2 copy of `db` (the schema's own SQL, migrations 1 and 2),
/// every envelope whole as schema 2 stored it.
fn schema_2_copy(db: &Path, to: &Path) {
    std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(0o600)
        .open(to)
        .unwrap();
    let conn = sqlite::connect(to, OpenFlags::default()).unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.execute_batch(MIGRATIONS[1]).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.execute("ATTACH ?1 AS src", [db.to_str().unwrap()])
        .unwrap();
    conn.execute_batch(
        "INSERT INTO main.receipts SELECT leaf_index, receipt_hash, issuer_id, seq, agent_id,
             action_type, issued_ns, risk_class, receipt_envelope(envelope_text, sig)
             FROM src.receipts ORDER BY leaf_index;
         INSERT INTO main.contexts SELECT * FROM src.contexts;
         INSERT INTO main.keys SELECT * FROM src.keys ORDER BY rowid;
         INSERT INTO main.chains SELECT * FROM src.chains;
         INSERT INTO main.merkle_nodes SELECT * FROM src.merkle_nodes;
         INSERT INTO main.checkpoints SELECT * FROM src.checkpoints;
         INSERT INTO main.runs SELECT * FROM src.runs;
         DETACH src;",
    )
    .unwrap();
}

#[test]
fn envelopes_come_back_byte_for_byte_with_their_signature_stored_as_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    build(&db);
    let rows = rows(&db);
    assert!(rows.len() >= 15, "{}", rows.len());
    for ((leaf, hash, envelope, _), (text, sig)) in rows.iter().zip(stored(&db)) {
        // The receipt hash is over the envelope's bytes: what readers get
        // is what was signed and hashed.
        assert_eq!(
            Sha256::digest(envelope.as_bytes()).as_slice(),
            hash,
            "{leaf}"
        );
        let sig = sig.expect("the signer's form is always split");
        assert_eq!(sig.len(), 3309, "{leaf}");
        assert_eq!(text.len(), envelope.len() - 4412, "{leaf}");
        assert!(text.ends_with(r#","sig":""}}"#), "{text}");
        assert_eq!(stored_envelope::join(&text, Some(&sig)).unwrap(), *envelope);
    }
    let report = verify(&db);
    assert!(report.ok(), "{:#?}", report.failures);
    assert_eq!(report.receipts, rows.len() as u64);
}

#[test]
fn a_schema_2_store_is_read_as_is_and_converted_by_the_writer_without_losing_a_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    build(&db);
    let expected = rows(&db);
    let old = dir.path().join("old.db");
    schema_2_copy(&db, &old);

    // Read-only (observerctl, the verifier): read in place, not migrated.
    assert_eq!(rows(&old), expected);
    let report = verify(&old);
    assert!(report.ok(), "{:#?}", report.failures);
    let reader = Store::open_read_only(&old).unwrap();
    assert_eq!(reader.schema_version().unwrap(), 2);
    let exported: i64 = reader
        .connection()
        .query_row(
            &format!(
                "SELECT COUNT(*) FROM (SELECT {} FROM receipts r LEFT JOIN contexts c
                 ON c.leaf_index = r.leaf_index)",
                crate::export::stored::RECEIPT_COLUMNS
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(exported as usize, expected.len());
    let queried: i64 = reader
        .connection()
        .query_row(
            &format!(
                "SELECT COUNT(*) FROM (SELECT {} FROM receipts r LEFT JOIN contexts c
                 ON c.leaf_index = r.leaf_index
                 WHERE json_extract(r.envelope_text, '$.payload.seq') >= 1)",
                crate::query::COLUMNS
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queried as usize, expected.len());
    drop(reader);

    // The writer migrates: every signature moves to its bytes, no
    // receipt is lost or changed, the log still verifies.
    let store = Store::open(&old).unwrap();
    assert_eq!(store.schema_version().unwrap() as usize, MIGRATIONS.len());
    drop(store);
    assert_eq!(rows(&old), expected);
    assert!(stored(&old).iter().all(|(_, sig)| sig.is_some()));
    let report = verify(&old);
    assert!(report.ok(), "{:#?}", report.failures);
    assert_eq!(report.receipts, expected.len() as u64);
    let conn = sqlite::connect(&old, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let pending: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'receipts_whole'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0, "the conversion's list is dropped once done");
}

#[test]
fn a_conversion_stopped_half_way_reads_both_forms_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    build(&db);
    let expected = rows(&db);
    let old = dir.path().join("old.db");
    schema_2_copy(&db, &old);
    // Migration 3 committed and the first rows converted, as if the
    // writer had stopped between two of its conversion transactions.
    let conn = sqlite::connect(&old, OpenFlags::default()).unwrap();
    conn.execute_batch(MIGRATIONS[2]).unwrap();
    conn.pragma_update(None, "user_version", 3).unwrap();
    for (leaf, _, envelope, _) in &expected[..5] {
        let (text, sig) = stored_envelope::split(envelope).unwrap();
        conn.execute(
            "UPDATE receipts SET envelope_text = ?2, sig = ?3 WHERE leaf_index = ?1",
            rusqlite::params![*leaf as i64, text, sig],
        )
        .unwrap();
    }
    drop(conn);
    let forms: Vec<bool> = stored(&old).iter().map(|(_, s)| s.is_some()).collect();
    assert_eq!(forms.iter().filter(|s| **s).count(), 5);
    assert_eq!(rows(&old), expected);
    drop(Store::open(&old).unwrap());
    assert!(stored(&old).iter().all(|(_, sig)| sig.is_some()));
    assert_eq!(rows(&old), expected);
    assert!(verify(&old).ok());
}

#[test]
fn a_signature_changed_in_its_stored_bytes_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    build(&db);
    let (leaf, _, envelope, _) = rows(&db).into_iter().nth(6).unwrap();
    let (text, mut sig) = stored_envelope::split(&envelope).unwrap();
    sig[1000] ^= 0x10;
    // The receipt hash made to match the changed envelope: the signature
    // is what must fail, not the hash.
    let changed = stored_envelope::join(&text, Some(&sig)).unwrap();
    let hash = Sha256::digest(changed.as_bytes()).to_vec();
    let conn = sqlite::connect(&db, OpenFlags::default()).unwrap();
    let (issuer, seq): (String, i64) = conn
        .query_row(
            "SELECT issuer_id, seq FROM receipts WHERE leaf_index = ?1",
            [leaf as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    conn.execute(
        "UPDATE receipts SET sig = ?2, receipt_hash = ?3 WHERE leaf_index = ?1",
        rusqlite::params![leaf as i64, sig, hash],
    )
    .unwrap();
    drop(conn);
    let report = verify(&db);
    let failure = report.first_failure().expect("a changed signature fails");
    assert_eq!(
        (failure.check, failure.chain.as_str(), failure.seq),
        ("signature", issuer.as_str(), seq as u64),
        "{failure:?}"
    );
}

#[test]
fn the_store_gives_back_any_envelope_it_is_given_split_or_whole() {
    use super::store::NewReceipt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("observer.db");
    let signed = format!(
        r#"{{"payload":{{"seq":1}},"signature":{{"alg":"ML-DSA-65","kid":"k","sig":"{}"}}}}"#,
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            [0xa5u8; 3309]
        )
    );
    // Not the signer's form: its signature is not the last member.
    let other = r#"{"signature":{"sig":"QUJD"},"payload":{"seq":2}}"#.to_owned();
    let mut store = Store::open(&db).unwrap();
    for (leaf, envelope) in [&signed, &other].into_iter().enumerate() {
        let hash: [u8; 32] = Sha256::digest(envelope.as_bytes()).into();
        store
            .transaction(|tx| {
                tx.insert_receipt(&NewReceipt {
                    leaf_index: leaf as u64,
                    receipt_hash: &hash,
                    issuer_id: "i",
                    seq: leaf as u64 + 1,
                    agent_id: "a",
                    action_type: "process.exec",
                    unix_ns: 1,
                    risk_class: "low",
                    envelope: envelope.as_bytes(),
                    context: None,
                })
            })
            .unwrap();
        let back = store.receipt_by_hash(&hash).unwrap().unwrap();
        assert_eq!(back.envelope, *envelope);
    }
    let raw = stored(&db);
    assert_eq!(raw[0].1.as_deref(), Some(&[0xa5u8; 3309][..]));
    assert_eq!(raw[1], (other, None));
}
