use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use super::*;

#[test]
fn creates_0600_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/observer.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap() as usize, MIGRATIONS.len());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let run = store
        .begin_run(
            RunKind::Daemon,
            42,
            "0.1.0",
            "2026-11-22T00:00:00.000000000Z",
        )
        .unwrap();
    store
        .begin_run(
            RunKind::Maintenance,
            43,
            "0.1.0",
            "2026-11-22T00:00:01.000000000Z",
        )
        .unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let last = store.last_run().unwrap().unwrap();
    assert_eq!((last.id, last.pid, last.clean_stop), (run, 42, false));
    assert_eq!(store.log_size().unwrap(), 0);
    for wal in ["observer.db-wal", "observer.db-shm"] {
        let p = dir.path().join("sub").join(wal);
        if let Ok(m) = std::fs::metadata(&p) {
            assert_eq!(m.permissions().mode() & 0o077, 0, "{wal}");
        }
    }
}

#[test]
fn schema_1_keys_migrate_to_generation_1_and_allow_a_second_key_per_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observer.db");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.execute(
        "INSERT INTO keys (kid, issuer_id, agent_id, jwk, introduced_by)
         VALUES ('k1', 'i/agent/a', 'a', '{}', x'00')",
        [],
    )
    .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap() as usize, MIGRATIONS.len());
    let keys = store.keys().unwrap();
    assert_eq!(
        keys.iter()
            .map(|k| (k.kid.as_str(), k.generation, k.rotates.clone()))
            .collect::<Vec<_>>(),
        [("k1", 1, None)]
    );
    let mut store = store;
    store
        .transaction(|tx| {
            tx.insert_key(
                &NewKey {
                    kid: "k2",
                    issuer_id: "i/agent/a",
                    agent_id: "a",
                    jwk: "{}",
                    generation: 2,
                    rotates: Some("k1"),
                },
                &[1; 32],
            )
        })
        .unwrap();
    let keys = store.keys().unwrap();
    assert_eq!(keys[1].rotates.as_deref(), Some("k1"));
    assert_eq!(keys[1].generation, 2);

    // k2's announcing receipt is in the log, k1's (x'00') is not: only k1
    // is a key of a pruned receipt, with that receipt's hash.
    store
        .transaction(|tx| {
            tx.insert_receipt(&NewReceipt {
                leaf_index: 0,
                receipt_hash: &[1; 32],
                issuer_id: "i/agent/observer",
                seq: 1,
                agent_id: "observer",
                action_type: "observer.key",
                unix_ns: 1,
                risk_class: "low",
                envelope: b"{}",
                context: None,
            })
        })
        .unwrap();
    let pruned = store.keys_of_pruned_receipts().unwrap();
    assert_eq!(
        pruned
            .iter()
            .map(|(k, by)| (k.kid.as_str(), by.as_slice()))
            .collect::<Vec<_>>(),
        [("k1", &[0u8][..])]
    );
}

#[test]
fn one_writer_per_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observer.db");
    let first = WriterLock::acquire(&path).unwrap();
    let err = WriterLock::acquire(&path).err().unwrap().to_string();
    assert!(err.contains("another process writes"), "{err}");
    drop(first);
    WriterLock::acquire(&path).unwrap();
}

#[test]
fn refuses_a_world_readable_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observer.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Store::open(&path).err().unwrap().to_string();
    assert!(err.contains("observer.db") && err.contains("0600"), "{err}");
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observer.db");
    let store = Store::open(&path).unwrap();
    store
        .connection()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    drop(store);
    let err = Store::open(&path).err().unwrap().to_string();
    assert!(err.contains("schema version 99"), "{err}");
}

#[test]
fn refuses_a_store_owned_by_another_user_or_in_a_directory_others_may_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observer.db");
    drop(Store::open(&path).unwrap());
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    std::os::unix::fs::chown(&path, Some(nobody), None).unwrap();
    let err = Store::open(&path).err().unwrap().to_string();
    assert!(
        err.contains(&format!("{}: is owned by uid {nobody}", path.display())),
        "{err}"
    );
    std::os::unix::fs::chown(&path, Some(0), None).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Store::open(&path).err().unwrap().to_string();
    assert!(
        err.contains(&format!("{}: has mode 0777", dir.path().display())),
        "{err}"
    );
}
