//! `keys show|export`: the public keys in the store's keys table (the
//! master key of the observer chain and every chain key), as a table or a
//! JWK Set. They are published, never trusted because they are listed: a
//! verifier pins the master key and authorises chain keys through their
//! `observer.key` announcements.
use std::{io::Write, path::Path};

use serde_json::{json, Value};

use super::{daemon, output, CtlError, Output};
use observer_daemon::receipt::{json as strict_json, payload, store::Store};

pub struct StoredKey {
    pub kid: String,
    pub issuer_id: String,
    pub agent_id: String,
    pub jwk: Value,
    pub generation: u64,
    pub rotates: Option<String>,
}

pub fn stored_keys(store: &Store) -> Result<Vec<StoredKey>, CtlError> {
    store
        .keys()?
        .into_iter()
        .map(|k| {
            let jwk = strict_json::parse_strict(k.jwk.as_bytes()).map_err(|e| {
                CtlError::Store(format!(
                    "receipt store {}: key {}: {e}",
                    store.path().display(),
                    k.kid
                ))
            })?;
            Ok(StoredKey {
                kid: k.kid,
                issuer_id: k.issuer_id,
                agent_id: k.agent_id,
                jwk,
                generation: k.generation,
                rotates: k.rotates,
            })
        })
        .collect()
}

/// Every key with its master `generation` (1: the genesis seed) and
/// `status`: `current` for the newest key of its chain (for masters: the
/// master that signs now), `retired` once a rotation or re-announcement
/// replaced it. `reannounce_pending`: a chain key of an earlier master
/// generation whose chain has had no receipt since the rotation.
pub fn show(store: &Store) -> Result<Vec<Value>, CtlError> {
    let keys = stored_keys(store)?;
    let generation = store.current_master()?.map_or(1, |m| m.generation);
    Ok(keys
        .iter()
        .map(|k| {
            let replaced = keys
                .iter()
                .any(|later| later.rotates.as_deref() == Some(k.kid.as_str()));
            let master = k.agent_id == payload::OBSERVER_AGENT;
            let mut v = json!({
                "kid": k.kid,
                "issuer_id": k.issuer_id,
                "agent_id": k.agent_id,
                "master": master,
                "generation": k.generation,
                "status": if replaced { "retired" } else { "current" },
            });
            if let Some(rotates) = &k.rotates {
                v["rotates"] = json!(rotates);
            }
            if !master && !replaced && k.generation < generation {
                v["reannounce_pending"] = json!(true);
            }
            v
        })
        .collect())
}

/// `{"keys": [<AKP JWK>...]}` in the order the keys were announced.
pub fn jwks(store: &Store) -> Result<Value, CtlError> {
    let keys: Vec<Value> = stored_keys(store)?.into_iter().map(|k| k.jwk).collect();
    Ok(json!({ "keys": keys }))
}

/// The genesis master public key's JWK: the key to pin (later masters are
/// authorised by rotations it anchors).
pub fn master_jwk(store: &Store) -> Result<Value, CtlError> {
    stored_keys(store)?
        .into_iter()
        .find(|k| k.agent_id == payload::OBSERVER_AGENT)
        .map(|k| k.jwk)
        .ok_or_else(|| {
            CtlError::Store(format!(
                "receipt store {}: no master key (the store has no observer chain yet)",
                store.path().display()
            ))
        })
}

/// `keys rotate`: asks the daemon to rotate the master key; it answers
/// once the rotation receipt is committed and the seed file replaced.
pub fn rotate(socket: &Path, reason: Option<&str>) -> Result<Value, CtlError> {
    let args = match reason {
        Some(r) => json!({ "reason": r }),
        None => json!({}),
    };
    daemon::ask(socket, "keys_rotate", args)
}

pub fn print_rotation(out: &mut impl Write, mode: Output, v: &Value) -> Result<(), CtlError> {
    if mode.is_json() {
        return output::write_json(out, mode, v);
    }
    writeln!(out, "master key rotated")?;
    for (label, key) in [
        ("old master kid", "old_master_kid"),
        ("new master kid", "new_master_kid"),
        ("generation", "generation"),
        ("receipt hash", "receipt_hash"),
        ("log index", "leaf_index"),
    ] {
        writeln!(out, "  {label:<15} {}", output::s(v, &[key]))?;
    }
    Ok(())
}
