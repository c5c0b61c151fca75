//! `observerctl fleet verify` over a real ClickHouse (Debian's 18.16,
//! started by the test with the shipped schema) that real daemons of four
//! hosts forwarded into: every receipt of every host verifies under the
//! host's pinned master key, and each way of falsifying the fleet's copy
//! (a receipt deleted, a context changed, a tail cut after its checkpoint
//! was forwarded, a log rewritten and re-signed by the host itself) is
//! caught and named by host and receipt.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod clickhouse_kit;
mod fleet_kit;
mod forwarding_kit;

use base64::Engine as _;
use clickhouse_kit::{expected, ClickHouse};
use fleet_kit::*;
use observer_daemon::receipt::{
    checkpoint::{self, Checkpoint},
    jcs,
    keys::{ChainKey, MasterSeed},
    merkle::{self, Frontier},
    mldsa::Signer as _,
    payload,
    store::Store,
};
use observer_testkit::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[test]
fn fleet_verify_counts_every_host_and_names_each_falsification() {
    let ch_dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(ch_dir.path());
    let hosts: Vec<Host> = ["fleet-a", "fleet-b", "fleet-c", "fleet-d"]
        .iter()
        .map(|name| run_host(&ch, name, 8))
        .collect();
    let password = hosts[0].dir.path().join("ch.password");
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = keys_dir.path().join("fleet-keys");
    for h in &hosts {
        pin(h, &keys);
    }

    // 1. Untouched: every host verifies, every receipt counted once.
    let (code, doc) = verify(&ch, &password, &keys, &[]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["hosts"], 4);
    let mut total = 0;
    for h in &hosts {
        let r = report(&doc, h);
        let stored = stored_receipts(&h.db()).len() as u64;
        assert!(stored > 16, "{stored} receipts of {}", h.origin);
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(r["receipts"].as_u64(), Some(stored), "{}", h.origin);
        assert_eq!(r["log_size"].as_u64(), Some(stored));
        assert_eq!(r["key_source"], "added");
        assert_eq!(r["missing"]["leaf_index"], serde_json::json!([]));
        let checkpoints = Store::open_read_only(&h.db())
            .unwrap()
            .checkpoints()
            .unwrap();
        assert_eq!(
            r["checkpoints_verified"].as_u64(),
            Some(checkpoints.len() as u64)
        );
        assert_eq!(
            r["newest_checkpoint_size"].as_u64(),
            Some(checkpoints.last().unwrap().size)
        );
        total += stored;
    }
    assert_eq!(doc["receipts"].as_u64(), Some(total));

    // 2. Keys come from the pinned directory, never from the store: no
    // pinned key, no verdict; a wrong pinned key, failures; trust on first
    // use pins the store's key and says so.
    let other_keys = keys_dir.path().join("empty");
    let (code, doc) = verify(&ch, &password, &other_keys, &[]);
    assert_eq!(code, 1);
    let r = report(&doc, &hosts[0]);
    assert_eq!(r["first_failure"]["check"], "pinned_key", "{r:#}");
    assert_eq!(r["receipts"], 0);
    let swapped = keys_dir.path().join("swapped");
    let a_jwk = hosts[0].dir.path().join("master.jwk");
    let add = fleet(&[
        "keys",
        "add",
        &hosts[1].origin,
        a_jwk.to_str().unwrap(),
        "--keys-dir",
        swapped.to_str().unwrap(),
    ]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    let b_only = format!("--hosts={}", hosts[1].origin);
    let (code, doc) = verify(&ch, &password, &swapped, &[&b_only]);
    assert_eq!(code, 1);
    assert_eq!(doc["hosts"], 1);
    let r = report(&doc, &hosts[1]);
    assert_eq!(r["ok"], false);
    assert!(
        failures(r).iter().any(|f| f["check"] == "key_authorised"),
        "{r:#}"
    );
    // Hosts skipped for want of a key between hosts verified: each host
    // still gets its own verdict (a skipped host's rows, read ahead, are
    // dropped; the next host's are read whole).
    let (code, doc) = verify(&ch, &password, &swapped, &[]);
    assert_eq!(code, 1);
    assert_eq!(doc["hosts"], hosts.len());
    for (i, h) in hosts.iter().enumerate() {
        let r = report(&doc, h);
        if i == 1 {
            let stored = stored_receipts(&h.db()).len() as u64;
            assert_eq!(r["receipts"].as_u64(), Some(stored), "{r:#}");
            assert!(
                failures(r).iter().any(|f| f["check"] == "key_authorised"),
                "{r:#}"
            );
        } else {
            assert_eq!(r["first_failure"]["check"], "pinned_key", "{r:#}");
        }
    }
    let (code, doc) = verify(&ch, &password, &other_keys, &["--trust-on-first-use"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(report(&doc, &hosts[2])["key_source"], "trust_on_first_use");
    let listed = fleet(&[
        "keys",
        "list",
        "--json",
        "--keys-dir",
        other_keys.to_str().unwrap(),
    ])
    .json();
    let pinned = fleet(&[
        "keys",
        "list",
        "--json",
        "--keys-dir",
        keys.to_str().unwrap(),
    ])
    .json();
    let kids = |v: &Value| -> Vec<(String, String)> {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["host"].as_str().unwrap().into(),
                    k["kid"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(kids(&listed), kids(&pinned));

    // 3. One falsification per host, then one verification of them all.
    // a: a receipt deleted from the fleet store.
    let (a, b, c, d) = (&hosts[0], &hosts[1], &hosts[2], &hosts[3]);
    let a_chain = agent_receipts(&a.db());
    let deleted = &a_chain[2];
    let after = &a_chain[3];
    mutate(
        &ch,
        &format!(
            "ALTER TABLE observer.receipts DELETE WHERE host = '{}' AND leaf_index = {}",
            a.origin, deleted.leaf
        ),
    );
    // b: one receipt's context changed in place.
    let b_target = &agent_receipts(&b.db())[1];
    mutate(
        &ch,
        &format!(
            "ALTER TABLE observer.receipts UPDATE context = replaceOne(context, '\"pid\":', '\"pid\":1') \
             WHERE host = '{}' AND leaf_index = {}",
            b.origin, b_target.leaf
        ),
    );
    assert_eq!(
        ch.count(&format!(
            "SELECT count() FROM observer.receipts WHERE host = '{}' AND leaf_index = {} \
             AND position(context, '\"pid\":1') > 0",
            b.origin, b_target.leaf
        )),
        1,
        "the context was changed"
    );
    // c: the tail after the last forwarded checkpoint's start cut off.
    let c_size = Store::open_read_only(&c.db())
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap()
        .size;
    let keep = c_size - 3;
    mutate(
        &ch,
        &format!(
            "ALTER TABLE observer.receipts DELETE WHERE host = '{}' AND leaf_index >= {keep}",
            c.origin
        ),
    );
    // d: the host rewrites a receipt its checkpoint covered, re-signs it
    // with its own chain key, signs a new checkpoint with its own master
    // and forwards both.
    let (d_target, new_hash) = rewrite_and_forward(&ch, d);

    let (code, doc) = verify(&ch, &password, &keys, &[]);
    assert_eq!(code, 1);
    assert_eq!(doc["hosts_failed"], 4, "{doc:#}");

    let r = report(&doc, a);
    let first = &r["first_failure"];
    assert_eq!(first["check"], "fleet_missing", "{r:#}");
    assert_eq!(first["leaf_index"].as_u64(), Some(deleted.leaf));
    assert_eq!(
        r["missing"]["leaf_index"],
        serde_json::json!([[deleted.leaf, deleted.leaf + 1]])
    );
    assert_eq!(
        r["missing"]["seq"],
        serde_json::json!([{"chain": deleted.chain, "from": deleted.seq, "to": deleted.seq}])
    );
    // The next receipt of the chain names the deleted one as its previous.
    let link = failures(r)
        .iter()
        .find(|f| f["check"] == "chain_link")
        .unwrap_or_else(|| panic!("no chain_link failure: {r:#}"));
    assert_eq!(
        (&link["chain"], link["seq"].as_u64(), &link["receipt_hash"]),
        (
            &Value::from(after.chain.as_str()),
            Some(after.seq),
            &Value::from(after.hash.as_str())
        )
    );

    let r = report(&doc, b);
    let first = &r["first_failure"];
    assert_eq!(
        (
            first["check"].as_str(),
            first["chain"].as_str(),
            first["seq"].as_u64(),
            first["receipt_hash"].as_str()
        ),
        (
            Some("payload_digest"),
            Some(b_target.chain.as_str()),
            Some(b_target.seq),
            Some(b_target.hash.as_str())
        ),
        "{r:#}"
    );
    assert_eq!(r["missing"]["leaf_index"], serde_json::json!([]));

    let r = report(&doc, c);
    let first = &r["first_failure"];
    assert_eq!(first["check"], "fleet_missing", "{r:#}");
    assert_eq!(first["leaf_index"].as_u64(), Some(keep));
    assert_eq!(
        r["missing"]["leaf_index"],
        serde_json::json!([[keep, c_size]])
    );
    // Every forwarded checkpoint beyond the cut says so; the newest:
    let cut = format!("covers {c_size} receipts but the log has only {keep}");
    assert!(
        failures(r)
            .iter()
            .any(|f| f["check"] == "log_root" && f["reason"].as_str().unwrap().contains(&cut)),
        "{r:#}"
    );

    let r = report(&doc, d);
    let first = &r["first_failure"];
    assert_eq!(first["check"], "fleet_conflict", "{r:#}");
    assert_eq!(first["leaf_index"].as_u64(), Some(d_target.leaf));
    let reason = first["reason"].as_str().unwrap();
    assert!(
        reason.contains(&d_target.hash) && reason.contains(&new_hash),
        "{reason}"
    );
    assert!(
        failures(r)
            .iter()
            .any(|f| f["check"] == "fleet_checkpoint_conflict"),
        "{r:#}"
    );
    // Whichever of the two logs is rebuilt, a checkpoint of the other one
    // does not match it.
    assert!(
        failures(r).iter().any(|f| f["check"] == "log_root"),
        "{r:#}"
    );

    // The table names the host and its first failure.
    let args = verify_args(&ch, &password, &keys);
    let text = fleet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains(&format!(
            "{}: first failure fleet_missing at log index {}",
            a.origin, deleted.leaf
        )),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("4 hosts, 4 failed"), "{}", text.stdout);
}

/// Host `d` rewrites the last receipt of its agent's chain (covered by its
/// forwarded checkpoint) with its own chain key, signs a checkpoint of the
/// rewritten log with its own master key, and both reach the fleet store
/// as its sink would send them. Returns the original receipt and the
/// rewritten receipt's hash.
fn rewrite_and_forward(ch: &ClickHouse, d: &Host) -> (StoredReceipt, String) {
    let db = d.db();
    let target = agent_receipts(&db).pop().unwrap();
    let seed = MasterSeed::load_existing(&d.dir.path().join("master.seed")).unwrap();
    let key = ChainKey::derive(&seed, &target.chain);
    let mut p = target.payload.clone();
    p["risk_class"] = if p["risk_class"] == "high" {
        "low"
    } else {
        "high"
    }
    .into();
    let pj = jcs::canonicalize(&p).unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.sign(&pj).unwrap());
    let envelope = payload::envelope_jcs(&pj, &key.kid, &sig);
    let hash: [u8; 32] = Sha256::digest(&envelope).into();
    let envelope = String::from_utf8(envelope).unwrap();

    let store = Store::open_read_only(&db).unwrap();
    let latest = store.latest_checkpoint().unwrap().unwrap();
    assert!(target.leaf < latest.size);
    let mut frontier = Frontier::new();
    for r in stored_receipts(&db).iter().take(latest.size as usize) {
        let leaf_hash: [u8; 32] = if r.leaf == target.leaf {
            hash
        } else {
            hex::decode(&r.hash).unwrap().try_into().unwrap()
        };
        frontier.append(merkle::leaf_hash(&leaf_hash));
    }
    let master = ChainKey::master_key(&seed);
    let note = checkpoint::sign_note(
        &Checkpoint {
            origin: d.origin.clone(),
            size: latest.size,
            root: frontier.root(),
        },
        master.public_key(),
        |body| master.sign(body).map_err(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e: checkpoint::CheckpointError| panic!("{e}"));

    let mut row = expected::receipts(&db, &d.origin)
        .into_iter()
        .find(|r| r["leaf_index"].as_u64() == Some(target.leaf))
        .unwrap();
    row["envelope"] = envelope.into();
    row["receipt_hash"] = hex::encode(hash).into();
    row["risk"] = p["risk_class"].clone();
    let mut cp = expected::checkpoints(&db, &d.origin).pop().unwrap();
    cp["root"] = hex::encode(frontier.root()).into();
    cp["note"] = note.into();
    ch.query(&format!(
        "INSERT INTO observer.receipts FORMAT JSONEachRow\n{row}\n"
    ));
    ch.query(&format!(
        "INSERT INTO observer.checkpoints FORMAT JSONEachRow\n{cp}\n"
    ));
    (target, hex::encode(hash))
}
