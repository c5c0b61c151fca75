//! `observerctl pack`, `keys` and `agents` end to end on a real daemon's
//! store: an audit pack exports and verifies offline, and the keys and
//! agents listed match the store.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod observerctl_kit;

use std::path::{Path, PathBuf};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use observer_daemon::receipt::{
    jcs,
    keys::{ChainKey, MasterSeed},
    payload::{self},
};
use observer_testkit::*;
use observerctl_kit::*;
use serde_json::{json, Value};
use sha2::Digest as _;

#[test]
fn audit_pack_exports_and_verifies_offline() {
    let f = fixture();
    let pk = f.pubkey();
    let pk = pk.to_str().unwrap();
    let db = f.db();
    let rs = stored_receipts(&db);
    let mut by_time = rs.clone();
    by_time.sort_by_key(|r| (issued_ns(r), r.leaf));
    // The window: from the agent's first receipt to the end.
    let first_agent = by_time
        .iter()
        .find(|r| r.payload["agent_id"] == "ctl-agent")
        .unwrap();
    let start = first_agent.payload["issued_at"]
        .as_str()
        .unwrap()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("bundle.json");
    let e = ctl(
        CtlTarget::Db(&db),
        &[
            "audit-pack",
            "export",
            "--start",
            &start,
            "--end",
            "0s",
            "--out",
            bundle.to_str().unwrap(),
            "--master-seed",
            f.seed().to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(e.code, 0, "{}{}", e.stdout, e.stderr);
    let start_ns = issued_ns(first_agent);
    let in_window: Vec<&StoredReceipt> = rs.iter().filter(|r| issued_ns(r) >= start_ns).collect();
    let pack: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let packed: Vec<String> = pack["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["receipt_hash"].as_str().unwrap().to_string())
        .collect();
    for r in &in_window {
        assert!(packed.contains(&r.hash), "{} missing", r.hash);
    }
    assert_eq!(e.json()["receipts"], packed.len());
    assert_eq!(pack["manifest"]["capture_topology"], "passive_telemetry");
    assert!(pack["manifest"]["bundle_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // Every agent-chain receipt is in it, so the agent chain's heads are
    // genesis and the stored head.
    let agent_receipts: Vec<&StoredReceipt> = rs
        .iter()
        .filter(|r| r.payload["agent_id"] == "ctl-agent")
        .collect();
    let chain = &agent_receipts[0].chain;
    let start_head = pack["chain_heads"]["start"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["issuer_id"] == chain.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        start_head,
        json!({"issuer_id": chain, "seq": 0, "payload_hash": payload::GENESIS_HASH})
    );
    let end_head = pack["chain_heads"]["end"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["issuer_id"] == chain.as_str())
        .unwrap()
        .clone();
    assert_eq!(end_head["seq"], agent_receipts.len());
    // Offline, with only the public key.
    let nowhere = Path::new("/nonexistent/observer.db");
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            bundle.to_str().unwrap(),
            "--pubkey",
            pk,
            "--json",
        ],
    );
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(v.json()["receipts"], packed.len());
    let t = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            bundle.to_str().unwrap(),
            "--pubkey",
            pk,
        ],
    );
    assert_eq!(t.code, 0);
    assert!(t.stdout.contains("audit pack verified"));
    // One byte changed: in a receipt's context, its seq, its signature, a
    // proof, a checkpoint, the manifest.
    let bytes = std::fs::read(&bundle).unwrap();
    let s = String::from_utf8(bytes.clone()).unwrap();
    let path = f.file.display().to_string();
    let at =
        |needle: &str, skip: usize| s.find(needle).unwrap_or_else(|| panic!("{needle}")) + skip;
    for (what, pos) in [
        ("context", at(&path, 5)),
        ("seq", at("\"seq\":", 6)),
        ("signature", at("\"sig\":\"", 200)),
        ("inclusion proof", at("\"inclusion_proof\":[\"", 25)),
        ("checkpoint", at("\"checkpoints\":[\"", 30)),
        ("manifest", at("\"receipt_count\":", 16)),
        ("start", at("\"start\":\"", 12)),
    ] {
        let bad = out.path().join("bad.json");
        std::fs::write(&bad, flip(&bytes, pos)).unwrap();
        let v = ctl(
            CtlTarget::Db(nowhere),
            &[
                "audit-pack",
                "verify",
                bad.to_str().unwrap(),
                "--pubkey",
                pk,
                "--json",
            ],
        );
        assert_eq!(v.code, 1, "{what} changed at {pos}: {}", v.stdout);
        assert_eq!(v.json()["ok"], false, "{what}");
    }
    // Re-signed by the real master key, a pack still fails when a receipt
    // is missing from its chain or a context does not match its digest:
    // the signature vouches for the pack, not for the receipts.
    let seed = MasterSeed::load_existing(&f.seed()).unwrap();
    let master = ChainKey::master_key(&seed);
    let resign = |mut pack: Value| -> PathBuf {
        let m = pack["manifest"].as_object_mut().unwrap();
        m.remove("bundle_digest");
        m.remove("bundle_signature");
        let p = jcs::canonicalize(&pack).unwrap();
        let sig = observer_daemon::receipt::mldsa::Signer::sign(&master, &p).unwrap();
        pack["manifest"]["bundle_digest"] =
            json!(format!("sha256:{}", hex::encode(sha2::Sha256::digest(&p))));
        pack["manifest"]["bundle_signature"] = json!(STANDARD.encode(sig));
        let file = out.path().join(format!("{}.json", unique("resigned")));
        std::fs::write(&file, jcs::canonicalize(&pack).unwrap()).unwrap();
        file
    };
    let as_is = resign(pack.clone());
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            as_is.to_str().unwrap(),
            "--pubkey",
            pk,
        ],
    );
    assert_eq!(v.code, 0, "re-signing alone changes nothing: {}", v.stdout);
    let agent_at = |pack: &Value, seq: u64| {
        pack["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .position(|r| {
                r["envelope"]["payload"]["agent_id"] == "ctl-agent"
                    && r["envelope"]["payload"]["seq"] == seq
            })
            .unwrap()
    };
    let mut gap = pack.clone();
    let i = agent_at(&gap, 3);
    gap["receipts"].as_array_mut().unwrap().remove(i);
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            resign(gap).to_str().unwrap(),
            "--pubkey",
            pk,
            "--json",
        ],
    );
    assert_eq!(v.code, 1);
    let first = v.json()["first_failure"].clone();
    assert_eq!(first["check"], "chain_link", "{first}");
    assert_eq!(first["chain"], chain.as_str());
    assert_eq!(first["seq"], 4);
    let mut ctx = pack.clone();
    let i = agent_at(&ctx, 2);
    ctx["receipts"][i]["context"]["process"]["pid"] = json!(1);
    let target_hash = ctx["receipts"][i]["receipt_hash"].clone();
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            resign(ctx).to_str().unwrap(),
            "--pubkey",
            pk,
            "--json",
        ],
    );
    assert_eq!(v.code, 1);
    let first = v.json()["first_failure"].clone();
    assert_eq!(first["check"], "payload_digest", "{first}");
    assert_eq!(first["receipt_hash"], target_hash);
    assert_eq!(first["seq"], 2);

    // Another master key refuses it.
    let other = out.path().join("other.jwk");
    let jwk = ChainKey::master_key(&MasterSeed::from_bytes([3; 32])).jwk();
    std::fs::write(&other, jwk.to_string()).unwrap();
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "audit-pack",
            "verify",
            bundle.to_str().unwrap(),
            "--pubkey",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(v.code, 1);
}

#[test]
fn keys_and_agents_match_the_store() {
    let f = fixture();
    let db = f.db();
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let stored: Vec<Value> = c
        .prepare("SELECT jwk FROM keys ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|j| serde_json::from_str(&j.unwrap()).unwrap())
        .collect();
    assert_eq!(stored.len(), 2, "the observer chain and the agent chain");
    let jwks = ctl(CtlTarget::Db(&db), &["keys", "export"]);
    assert_eq!(jwks.code, 0);
    assert_eq!(jwks.json(), json!({ "keys": stored }));
    let master = ctl(CtlTarget::Db(&db), &["keys", "export", "--master"]);
    let seed = MasterSeed::load_existing(&f.seed()).unwrap();
    assert_eq!(master.json(), ChainKey::master_key(&seed).jwk());
    let show = ctl(CtlTarget::Db(&db), &["keys", "show", "--json"]).json();
    assert_eq!(show["keys"].as_array().unwrap().len(), 2);

    let agents = ctl(CtlTarget::Db(&db), &["agents", "--json"]).json();
    let rs = stored_receipts(&db);
    let list = agents["agents"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for a in list {
        let of: Vec<&StoredReceipt> = rs
            .iter()
            .filter(|r| r.chain == a["issuer_id"].as_str().unwrap())
            .collect();
        assert_eq!(a["receipts"], of.len());
        let last = of.iter().max_by_key(|r| r.seq).unwrap();
        assert_eq!(a["head"]["seq"], last.seq);
        assert_eq!(a["head"]["receipt_hash"], last.hash.as_str());
        assert_eq!(a["kid"], last.payload["key_thumbprint"]);
        let first_ns = of.iter().map(|r| issued_ns(r)).min().unwrap();
        assert_eq!(a["first_seen"], payload::issued_at(first_ns));
    }
    let table = ctl(CtlTarget::Db(&db), &["agents"]);
    assert!(table.stdout.lines().next().unwrap().starts_with("AGENT"));
    assert!(table.stdout.contains("ctl-agent"));
}
