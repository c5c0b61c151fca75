//! `observerctl verify`, `proof` and `erase` end to end on a real daemon's
//! store: verification passes, then names the tampered receipt; a proof
//! verifies offline with only the public key; an erasure is recorded and
//! keeps verification green.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod observerctl_kit;

use std::path::Path;

use observer_daemon::receipt::keys::{ChainKey, MasterSeed};
use observer_testkit::*;
use observerctl_kit::*;
use serde_json::json;

#[test]
fn verify_passes_then_names_the_tampered_receipt() {
    let f = fixture();
    let ok = ctl(
        CtlTarget::Db(&f.db()),
        &["verify", "--master-seed", f.seed().to_str().unwrap()],
    );
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("verification passed"));
    let pk = f.pubkey();
    let j = ctl(
        CtlTarget::Db(&f.db()),
        &[
            "verify",
            "--json",
            "--independent",
            "--pubkey",
            pk.to_str().unwrap(),
        ],
    );
    assert_eq!(j.code, 0);
    let v = j.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["receipts"], stored_receipts(&f.db()).len());
    assert_eq!(v["verifiers"].as_array().unwrap().len(), 2);

    // One byte of one agent receipt's signature.
    let copy = copy_store(f);
    let db = copy.path().join("observer.db");
    let target = stored_receipts(&db)
        .into_iter()
        .filter(|r| r.payload["agent_id"] == "ctl-agent")
        .nth(3)
        .unwrap();
    let pos = target.envelope.find("\"sig\":\"").unwrap() + 100;
    let mut bytes = target.envelope.clone().into_bytes();
    bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute(
        "UPDATE receipts SET envelope_text = ?1, sig = NULL WHERE leaf_index = ?2",
        rusqlite::params![String::from_utf8(bytes).unwrap(), target.leaf as i64],
    )
    .unwrap();
    drop(c);
    let bad = ctl(
        CtlTarget::Db(&db),
        &["verify", "--json", "--pubkey", pk.to_str().unwrap()],
    );
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    let v = bad.json();
    assert_eq!(v["ok"], false);
    let first = &v["first_failure"];
    assert_eq!(first["chain"], target.chain.as_str());
    assert_eq!(first["seq"], target.seq);
    assert_eq!(first["leaf_index"], target.leaf);
    // The stored receipt hash no longer matches, nor does the signature.
    assert_eq!(first["check"], "receipt_hash");
    let checks_at_target: Vec<&str> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["leaf_index"] == target.leaf)
        .map(|x| x["check"].as_str().unwrap())
        .collect();
    assert!(
        checks_at_target.contains(&"signature"),
        "{checks_at_target:?}"
    );
    let text = ctl(
        CtlTarget::Db(&db),
        &["verify", "--pubkey", pk.to_str().unwrap()],
    );
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains(&format!(
            "first failure: chain {} seq {} receipt",
            target.chain, target.seq
        )),
        "{}",
        text.stdout
    );
    // Scoped to another chain, the receipt failure is out of scope but the
    // log-wide root mismatch it causes is not.
    let observer_chain = stored_receipts(&db)
        .into_iter()
        .find(|r| r.payload["agent_id"] == "observer")
        .unwrap()
        .chain;
    let scoped = ctl(
        CtlTarget::Db(&db),
        &[
            "verify",
            "--json",
            "--chain",
            &observer_chain,
            "--pubkey",
            pk.to_str().unwrap(),
        ],
    );
    assert_eq!(scoped.code, 1);
    assert_eq!(scoped.json()["first_failure"]["check"], "log_root");
}

#[test]
fn proof_verifies_offline_with_only_the_public_key() {
    let f = fixture();
    let pk = f.pubkey();
    let pk = pk.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let rs = stored_receipts(&f.db());
    let agent_receipt = rs
        .iter()
        .find(|r| r.payload["agent_id"] == "ctl-agent")
        .unwrap();
    let observer_receipt = rs
        .iter()
        .find(|r| r.payload["agent_id"] == "observer")
        .unwrap();
    let nowhere = Path::new("/nonexistent/observer.db");
    for r in [agent_receipt, observer_receipt] {
        let file = out.path().join(format!("{}.proof", r.hash));
        let p = ctl(
            CtlTarget::Db(&f.db()),
            &["proof", &r.hash, "--out", file.to_str().unwrap()],
        );
        assert_eq!(p.code, 0, "{}", p.stderr);
        let text = std::fs::read(&file).unwrap();
        assert!(text.starts_with(b"c2sp.org/tlog-proof@v1\nextra "));
        assert!(String::from_utf8_lossy(&text).contains(&format!("\nindex {}\n", r.leaf)));
        // Offline: no store at all.
        let v = ctl(
            CtlTarget::Db(nowhere),
            &[
                "verify-proof",
                file.to_str().unwrap(),
                "--pubkey",
                pk,
                "--json",
            ],
        );
        assert_eq!(v.code, 0, "{}", v.stdout);
        let j = v.json();
        assert_eq!(j["receipt"]["receipt_hash"], r.hash.as_str());
        assert_eq!(j["receipt"]["seq"], r.seq);
        let t = ctl(
            CtlTarget::Db(nowhere),
            &["verify-proof", file.to_str().unwrap(), "--pubkey", pk],
        );
        assert_eq!(t.code, 0);
        assert!(t.stdout.contains("proof verified"));
        // One byte changed anywhere that matters: header, extra (the
        // receipt), index, a proof hash, the checkpoint and its signature.
        let s = String::from_utf8(text.clone()).unwrap();
        let extra_at = s.find("extra ").unwrap() + 6;
        let blank = s.find("\n\n").unwrap();
        let sig_at = s.rfind('\u{2014}').unwrap() + 40;
        let root_at = blank + 2 + s[blank + 2..].find('\n').unwrap() + 1;
        let root_at = root_at + s[root_at..].find('\n').unwrap() + 5;
        let index_at = s.find("\nindex ").unwrap() + 7;
        let hash_line = s[index_at..].find('\n').unwrap() + index_at + 3;
        for (what, pos) in [
            ("header", 3),
            ("extra start", extra_at + 10),
            (
                "extra middle",
                extra_at + (s[extra_at..].find('\n').unwrap() / 2),
            ),
            ("index", index_at),
            ("proof hash", hash_line),
            ("checkpoint root", root_at),
            ("checkpoint signature", sig_at),
        ] {
            let bad = out.path().join("bad.proof");
            std::fs::write(&bad, flip(&text, pos)).unwrap();
            let v = ctl(
                CtlTarget::Db(nowhere),
                &[
                    "verify-proof",
                    bad.to_str().unwrap(),
                    "--pubkey",
                    pk,
                    "--json",
                ],
            );
            assert_eq!(v.code, 1, "{what} changed at {pos}: {}", v.stdout);
            assert_eq!(v.json()["ok"], false);
        }
    }
    // Another master key refuses it.
    let other = out.path().join("other.jwk");
    let jwk = ChainKey::master_key(&MasterSeed::from_bytes([9; 32])).jwk();
    std::fs::write(&other, jwk.to_string()).unwrap();
    let file = out.path().join(format!("{}.proof", agent_receipt.hash));
    let v = ctl(
        CtlTarget::Db(nowhere),
        &[
            "verify-proof",
            file.to_str().unwrap(),
            "--pubkey",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(v.code, 1);
}

#[test]
fn erase_is_recorded_and_keeps_verify_green() {
    let f = fixture();
    let copy = copy_store(f);
    let db = copy.path().join("observer.db");
    let seed = copy.path().join("master.seed");
    let target = stored_receipts(&db)
        .into_iter()
        .find(|r| r.payload["action_type"] == "file.open")
        .unwrap();
    // While the daemon runs on this store it holds the writer lock.
    let exe = copy_executable("/bin/sh", copy.path(), &unique("erase-agent"));
    let d = Daemon::start_in(
        StateDir::Shared(copy.path().to_owned()),
        &agent_config("ctl-agent", &exe, ""),
    );
    let refused = ctl(
        CtlTarget::Db(&db),
        &[
            "erase",
            &target.hash,
            "--master-seed",
            seed.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(refused.code, 3, "{}", refused.stdout);
    let err = refused.json();
    assert_eq!(err["error"]["kind"], "daemon");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("daemon holds the receipt store"));
    d.stop();

    let r = ctl(
        CtlTarget::Db(&db),
        &[
            "erase",
            &target.hash,
            "--master-seed",
            seed.to_str().unwrap(),
            "--reason",
            "subject request",
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["erased"], target.hash.as_str());
    let after = stored_receipts(&db);
    let erasure = after
        .iter()
        .find(|x| x.hash == v["erasure_receipt"].as_str().unwrap())
        .unwrap();
    assert_eq!(erasure.payload["action_type"], "observer.policy");
    assert_eq!(
        erasure.context.as_ref().unwrap()["erase"],
        target.hash.as_str()
    );
    assert_eq!(
        erasure.context.as_ref().unwrap()["reason"],
        "subject request"
    );
    let erased = after.iter().find(|x| x.hash == target.hash).unwrap();
    assert_eq!(
        erased.context,
        Some(json!({"erased": true, "by": erasure.hash}))
    );
    let ok = ctl(
        CtlTarget::Db(&db),
        &["verify", "--json", "--master-seed", seed.to_str().unwrap()],
    );
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert_eq!(ok.json()["erased_contexts"], 1);
    let show = ctl(
        CtlTarget::Db(&db),
        &["receipts", "show", &target.hash, "--json"],
    )
    .json();
    assert_eq!(show["receipt"]["summary"], "(context erased)");
    // Twice is refused: nothing left to erase.
    let again = ctl(
        CtlTarget::Db(&db),
        &[
            "erase",
            &target.hash,
            "--master-seed",
            seed.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(again.code, 2);
}
