//! The recovery of an interrupted master key rotation at start, checked
//! with the real daemon.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use observer_daemon::receipt::{
    chain::Identity,
    keys::{ChainKey, MasterSeed},
    payload,
    pipeline::{Pipeline, PipelineConfig},
    rotation,
    store::RunKind,
};
use observer_testkit::*;

fn identity() -> Identity {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    Identity {
        deployer_id: default_deployer_id(),
        hostname: host.trim().to_string(),
        mode: payload::Mode::Payload,
        observer_executable_hash: sha256_file(Path::new(observerd())),
    }
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".stderr.log"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn an_interrupted_rotation_is_settled_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().to_owned();
    let d = Daemon::start_in(StateDir::Shared(state.clone()), &config(&[], ""));
    let seed_path = d.master_seed();
    let db = d.store();
    drop(d.stop());
    let genesis_seed = std::fs::read(&seed_path).unwrap();
    let next = rotation::next_path(&seed_path);

    // A `.next` with no rotation in the store: deleted, seed unchanged.
    std::fs::write(&next, [7u8; 32]).unwrap();
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o600)).unwrap();
    let never = ChainKey::master_key(&MasterSeed::from_bytes([7u8; 32])).kid;
    let d = Daemon::start_in(StateDir::Shared(state.clone()), &config(&[], ""));
    assert!(!next.exists());
    assert_eq!(std::fs::read(&seed_path).unwrap(), genesis_seed);
    assert!(
        d.stderr_text().contains(&format!(
            "master key rotation to {never:?} was never committed: its seed file was deleted"
        )),
        "{}",
        d.stderr_text()
    );
    drop(d.stop());

    // A rotation committed (by the real pipeline) but its `.next` never
    // renamed, as after a crash between commit and rename.
    let new = rotation::write_next(&seed_path).unwrap();
    let new_bytes = *new.secret_bytes();
    let new_kid = ChainKey::master_key(&new).kid;
    let (mut pipeline, _) = Pipeline::start(
        &PipelineConfig {
            store: db.clone(),
            signing_threads: 1,
            queue_capacity: 16,
            checkpoint_interval: Duration::from_secs(3600),
            batch_max: 16,
            waiting_for_room: None,
        },
        identity(),
        MasterSeed::from_bytes(genesis_seed.clone().try_into().unwrap()),
        RunKind::Maintenance,
        &payload::issued_at(0),
    )
    .unwrap();
    pipeline
        .rotate(
            new,
            Some("crash test"),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
            None,
        )
        .unwrap();
    pipeline.finish(&payload::issued_at(0)).unwrap();
    assert_eq!(std::fs::read(&seed_path).unwrap(), genesis_seed);
    assert!(next.exists());

    let d = Daemon::start_in(StateDir::Shared(state.clone()), &config(&[], ""));
    assert!(!next.exists());
    assert_eq!(std::fs::read(&seed_path).unwrap(), new_bytes);
    assert!(
        d.stderr_text().contains(&format!(
            "master key rotation to {new_kid} was committed before the last stop"
        )),
        "{}",
        d.stderr_text()
    );
    drop(d.stop());
    assert!(stderr_of(&state).contains("was never committed"));
    let genesis = ChainKey::master_key(&MasterSeed::from_bytes(
        genesis_seed.clone().try_into().unwrap(),
    ));
    let pinned = state.join("genesis.jwk");
    std::fs::write(&pinned, genesis.jwk().to_string()).unwrap();
    let v = ctl(
        CtlTarget::Dir(&state),
        &["verify", "--pubkey", pinned.to_str().unwrap(), "--json"],
    );
    assert_eq!(v.code, 0, "{}", v.stdout);
}
