//! Master key rotation end to end: a real daemon records a registered
//! agent on the real kernel, `observerctl keys rotate` rotates its master
//! key over the control socket, the agent acts again, and the store, the
//! seed files, `verify`, `keys show` and an audit pack are checked under
//! the genesis key; then the daemon restarts on the rotated store.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use observer_daemon::receipt::{
    keys::{ChainKey, MasterSeed},
    payload, rotation,
};
use observer_testkit::*;
use serde_json::{json, Value};

const AGENT: &str = "rot-agent";

fn issuer(agent: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    payload::issuer_id(&default_deployer_id(), host.trim(), agent)
}

/// The agent execs `/bin/true` `n` times; returns once the store holds
/// at least `at_least` receipts of its chain.
/// Runs the agent (`n` children), and returns once its own exit receipt is
/// committed (so none of this run's receipts lands after what the test does
/// next, e.g. a rotation) and the agent has at least `at_least` receipts.
fn act(agent_exe: &Path, db: &Path, n: usize, at_least: usize) {
    let script = "/bin/true; ".repeat(n) + "exit 0";
    let mut child = Command::new(agent_exe)
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let start = Instant::now();
    loop {
        let receipts = stored_receipts(db);
        let exited = receipts.iter().any(|r| {
            r.payload["action_type"] == "process.exit"
                && r.context
                    .as_ref()
                    .is_some_and(|c| c["process"]["pid"] == pid)
        });
        let count = receipts
            .iter()
            .filter(|r| r.payload["agent_id"] == AGENT)
            .count();
        if exited && count >= at_least {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{count} agent receipts, waiting for {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn agent_receipts(db: &Path) -> Vec<StoredReceipt> {
    stored_receipts(db)
        .into_iter()
        .filter(|r| r.payload["agent_id"] == AGENT)
        .collect()
}

/// A group removed when dropped.
struct Group(String);

impl Group {
    fn create() -> Group {
        let name = format!("rot{}", std::process::id());
        let ok = Command::new("groupadd").arg(&name).status().unwrap();
        assert!(ok.success(), "groupadd {name}");
        Group(name)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).status();
    }
}

#[test]
fn rotation_keeps_every_receipt_verifiable_under_the_genesis_key() {
    let group = Group::create();
    let dir = tempfile::tempdir().unwrap();
    // Traversable, so a group member reaches the socket (store and seed
    // stay 0600).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = dir.path();
    let agent_exe = copy_executable("/bin/sh", state, &unique("rotagent"));
    let config = agent_config(
        AGENT,
        &agent_exe,
        &format!(
            "[control]\nsocket = \"@DIR@/observer.sock\"\ngroup = \"{}\"\n\
             [receipts]\nstore = \"@DIR@/observer.db\"\nmaster_seed = \"@DIR@/master.seed\"\n\
             file_open_window_ms = 0\n",
            group.0
        ),
    );
    // No file-open folding: a folded open is committed up to a window after
    // it happened, with the time it happened, so it could land after the
    // rotation and put pre-rotation times after it in the log.
    let d = Daemon::start_in(StateDir::Shared(state.to_owned()), &config);
    let db = d.store();
    let seed_path = d.master_seed();
    act(&agent_exe, &db, 2, 3);

    let old_seed = std::fs::read(&seed_path).unwrap();
    let genesis = ChainKey::master_key(&MasterSeed::from_bytes(
        old_seed.clone().try_into().unwrap(),
    ));
    // The genesis public key the daemon wrote beside the seed.
    let genesis_file = rotation::genesis_path(&seed_path);
    let written: Value = serde_json::from_slice(&std::fs::read(&genesis_file).unwrap()).unwrap();
    assert_eq!(written, genesis.jwk());
    let pinned = state.join("genesis.jwk");
    std::fs::write(&pinned, genesis.jwk().to_string()).unwrap();
    let old_agent_kid = ChainKey::derive(
        &MasterSeed::from_bytes(old_seed.clone().try_into().unwrap()),
        &issuer(AGENT),
    )
    .kid;

    // A member of the socket's group may ask for status, not rotate.
    let bin = copy_executable(observerctl(), state, "observerctl");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let member = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            &format!("--regid={}", group.0),
            "--clear-groups",
        ])
        .arg(&bin)
        .arg("--socket")
        .arg(state.join("observer.sock"))
        .args(args);
        run(c)
    };
    let status = member(&["status", "--json"]);
    assert_eq!(status.code, 0, "{} {}", status.stdout, status.stderr);
    assert_eq!(
        status.json()["master"],
        json!({"kid": genesis.kid, "generation": 1})
    );
    let refused = member(&["keys", "rotate", "--json"]);
    assert_eq!(refused.code, 5, "{} {}", refused.stdout, refused.stderr);
    assert_eq!(
        refused.json()["error"],
        json!({
            "kind": "permission_denied",
            "message": "permission denied: uid 65534 is not root; only root may rotate the master key",
        })
    );
    assert_eq!(std::fs::read(&seed_path).unwrap(), old_seed);

    // Root rotates.
    let r = ctl(
        CtlTarget::Dir(state),
        &["keys", "rotate", "--reason", "test rotation", "--json"],
    );
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let answer = r.json();
    let new_seed = std::fs::read(&seed_path).unwrap();
    assert_ne!(new_seed, old_seed);
    assert_eq!(new_seed.len(), 32);
    assert!(!rotation::next_path(&seed_path).exists());
    let mode = std::fs::metadata(&seed_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let new_master = ChainKey::master_key(&MasterSeed::from_bytes(
        new_seed.clone().try_into().unwrap(),
    ));
    let new_agent_kid = ChainKey::derive(
        &MasterSeed::from_bytes(new_seed.clone().try_into().unwrap()),
        &issuer(AGENT),
    )
    .kid;
    assert_eq!(answer["old_master_kid"], genesis.kid.as_str());
    assert_eq!(answer["new_master_kid"], new_master.kid.as_str());
    assert_eq!(answer["generation"], 2);
    // The answer comes after the commit: the receipt is in the store.
    let rotation_receipt = stored_receipts(&db)
        .into_iter()
        .find(|r| r.hash == answer["receipt_hash"].as_str().unwrap())
        .expect("the rotation receipt is committed before the answer");
    assert_eq!(
        rotation_receipt.leaf,
        answer["leaf_index"].as_u64().unwrap()
    );
    assert_eq!(
        rotation_receipt.context.as_ref().unwrap(),
        &json!({
            "issuer_id": issuer("observer"),
            "kid": new_master.kid,
            "jwk": new_master.jwk(),
            "rotates": genesis.kid,
            "generation": 2,
            "reason": "test rotation",
        })
    );
    let envelope: Value = serde_json::from_str(&rotation_receipt.envelope).unwrap();
    assert_eq!(envelope["signature"]["kid"], genesis.kid.as_str());
    assert_eq!(rotation_receipt.payload["action_type"], "observer.key");
    assert_eq!(rotation_receipt.chain, issuer("observer"));
    let status = ctl(CtlTarget::Dir(state), &["status", "--json"]);
    assert_eq!(
        status.json()["master"],
        json!({"kid": new_master.kid, "generation": 2})
    );
    // No daemon behind the socket: exit 3.
    let unreachable = run({
        let mut c = Command::new(observerctl());
        c.arg("--socket")
            .arg(state.join("no.sock"))
            .args(["keys", "rotate"]);
        c
    });
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);

    let before = agent_receipts(&db).len();
    act(&agent_exe, &db, 2, before + 2);
    let records = d.stop();
    assert!(!records.is_empty());

    // The agent chain: seq continuous, key_thumbprint changes exactly
    // after its re-announcement, which the new master signed.
    let all = stored_receipts(&db);
    let chain = agent_receipts(&db);
    assert_eq!(
        chain.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=chain.len() as u64).collect::<Vec<_>>()
    );
    let reannouncements: Vec<&StoredReceipt> = all
        .iter()
        .filter(|r| {
            r.payload["action_type"] == "observer.key"
                && r.context.as_ref().is_some_and(|c| {
                    c["issuer_id"] == issuer(AGENT).as_str() && c.get("rotates").is_some()
                })
        })
        .collect();
    assert_eq!(reannouncements.len(), 1);
    let reannounce = reannouncements[0];
    assert!(reannounce.leaf > rotation_receipt.leaf);
    assert_eq!(
        reannounce.context.as_ref().unwrap(),
        &json!({
            "issuer_id": issuer(AGENT),
            "kid": new_agent_kid,
            "jwk": ChainKey::derive(
                &MasterSeed::from_bytes(new_seed.clone().try_into().unwrap()),
                &issuer(AGENT)
            )
            .jwk(),
            "rotates": old_agent_kid,
        })
    );
    let envelope: Value = serde_json::from_str(&reannounce.envelope).unwrap();
    assert_eq!(envelope["signature"]["kid"], new_master.kid.as_str());
    for r in &chain {
        let expected = if r.leaf < reannounce.leaf {
            &old_agent_kid
        } else {
            &new_agent_kid
        };
        assert_eq!(
            r.payload["key_thumbprint"],
            expected.as_str(),
            "seq {}",
            r.seq
        );
    }
    assert!(chain.iter().any(|r| r.leaf < reannounce.leaf));
    assert!(chain.iter().any(|r| r.leaf > reannounce.leaf));
    // Every observer-chain receipt after the rotation is the new master's.
    for r in all
        .iter()
        .filter(|r| r.chain == issuer("observer") && r.leaf > rotation_receipt.leaf)
    {
        let e: Value = serde_json::from_str(&r.envelope).unwrap();
        assert_eq!(e["signature"]["kid"], new_master.kid.as_str());
    }

    // verify: under the pinned genesis key, and by default (the genesis
    // key file beside the seed).
    let v = ctl(
        CtlTarget::Dir(state),
        &["verify", "--pubkey", pinned.to_str().unwrap(), "--json"],
    );
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(v.json()["checks"]["key_rotation"]["fail"], 0);
    let v = ctl(CtlTarget::Dir(state), &["verify", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    // observerd verify pins the same genesis file by default.
    let out = Command::new(observerd())
        .arg("--config")
        .arg(state.join("observer.toml"))
        .args(["verify", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The new seed's master cannot anchor the receipts before it.
    let v = ctl(
        CtlTarget::Dir(state),
        &[
            "verify",
            "--master-seed",
            seed_path.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(v.code, 1, "{}", v.stdout);

    // keys show: both generations with their status.
    let show = ctl(CtlTarget::Dir(state), &["keys", "show", "--json"]).json();
    let status_of = |kid: &str| {
        let k = show["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap_or_else(|| panic!("{kid} not in {show:#}"))
            .clone();
        (k["generation"].as_u64().unwrap(), k["status"].clone())
    };
    assert_eq!(status_of(&genesis.kid), (1, json!("retired")));
    assert_eq!(status_of(&new_master.kid), (2, json!("current")));
    assert_eq!(status_of(&old_agent_kid), (1, json!("retired")));
    assert_eq!(status_of(&new_agent_kid), (2, json!("current")));
    // The JWK Set lists retired keys too; --master is the genesis key.
    let jwks = ctl(CtlTarget::Dir(state), &["keys", "export"]).json();
    for kid in [
        &genesis.kid,
        &new_master.kid,
        &old_agent_kid,
        &new_agent_kid,
    ] {
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == kid.as_str()),
            "{kid} not in the JWK Set"
        );
    }
    let master = ctl(CtlTarget::Dir(state), &["keys", "export", "--master"]).json();
    assert_eq!(master, genesis.jwk());

    // Restart on the rotated store: chains continue, still verifiable.
    let d = Daemon::start_in(StateDir::Shared(state.to_owned()), &config);
    let before = agent_receipts(&db).len();
    act(&agent_exe, &db, 1, before + 1);
    drop(d.stop());
    let chain = agent_receipts(&db);
    assert_eq!(
        chain.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=chain.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(
        chain.last().unwrap().payload["key_thumbprint"],
        new_agent_kid.as_str()
    );
    let v = ctl(
        CtlTarget::Dir(state),
        &["verify", "--pubkey", pinned.to_str().unwrap(), "--json"],
    );
    assert_eq!(v.code, 0, "{}", v.stdout);

    // One receipt of each generation, the rotation receipt, the
    // re-announcement and the newest receipt, shown and proved under the
    // genesis key.
    let newest_agent = agent_receipts(&db).last().unwrap().hash.clone();
    for hash in [
        &chain[0].hash,
        &rotation_receipt.hash,
        &reannounce.hash,
        &newest_agent,
    ] {
        show_and_prove(state, &pinned, hash);
    }

    // An audit pack of a window after the rotation verifies with the
    // genesis key only, and not after a one-byte change.
    let start = all
        .iter()
        .find(|r| r.leaf == reannounce.leaf)
        .unwrap()
        .payload["issued_at"]
        .as_str()
        .unwrap()
        .to_string();
    let bundle = state.join("pack.json");
    let e = ctl(
        CtlTarget::Dir(state),
        &[
            "audit-pack",
            "export",
            "--start",
            &start,
            "--end",
            "0s",
            "--out",
            bundle.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(e.code, 0, "{}{}", e.stdout, e.stderr);
    let bytes = std::fs::read(&bundle).unwrap();
    let pack: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(pack["master_rotations"].as_array().unwrap().len(), 1);
    assert_eq!(
        pack["master_rotations"][0]["leaf_index"],
        rotation_receipt.leaf
    );
    assert_eq!(pack["manifest"]["master_kid"], new_master.kid.as_str());
    let before_rotation: Vec<&Value> = pack["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["leaf_index"].as_u64().unwrap() <= rotation_receipt.leaf)
        .collect();
    assert!(
        before_rotation.is_empty(),
        "start {start}, rotation leaf {}: {before_rotation:#?}",
        rotation_receipt.leaf
    );
    // Offline: no store, no seed, no daemon; only the genesis key.
    let verify_pack = |path: &Path| {
        let mut c = Command::new(observerctl());
        c.args(["--db", "/nonexistent/observer.db", "audit-pack", "verify"])
            .arg(path)
            .arg("--pubkey")
            .arg(&pinned)
            .arg("--json");
        run(c)
    };
    let v = verify_pack(&bundle);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(v.json()["checks"]["master_rotation"]["pass"], 1);
    let text = String::from_utf8(bytes.clone()).unwrap();
    for (what, needle, skip) in [
        ("rotation context", "\"rotates\":\"", 14),
        ("bundle", "\"receipt_count\":", 16),
    ] {
        let pos = text.find(needle).unwrap_or_else(|| panic!("{needle}")) + skip;
        let mut bad = bytes.clone();
        bad[pos] = if bad[pos] == b'A' { b'B' } else { b'A' };
        let path = state.join("bad.json");
        std::fs::write(&path, &bad).unwrap();
        let v = verify_pack(&path);
        assert_eq!(v.code, 1, "{what}: {}", v.stdout);
        assert_eq!(v.json()["ok"], false, "{what}");
    }
}

/// `receipts show` and `proof`/`verify-proof` of `hash` under the genesis
/// key: both pass.
fn show_and_prove(state: &Path, pinned: &Path, hash: &str) {
    let show = ctl(
        CtlTarget::Dir(state),
        &[
            "receipts",
            "show",
            hash,
            "--pubkey",
            pinned.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(show.code, 0, "{}", show.stderr);
    let v = show.json();
    assert_eq!(v["verification"]["ok"], true, "{hash}: {v:#}");
    let proof = state.join(format!("{hash}.proof"));
    let p = ctl(
        CtlTarget::Dir(state),
        &["proof", hash, "--out", proof.to_str().unwrap()],
    );
    assert_eq!(p.code, 0, "{}", p.stderr);
    let mut c = Command::new(observerctl());
    c.args(["--db", "/nonexistent/observer.db", "verify-proof"])
        .arg(&proof)
        .arg("--pubkey")
        .arg(pinned)
        .arg("--json");
    let v = run(c);
    assert_eq!(v.code, 0, "{hash}: {}", v.stdout);
}
