//! `keys show|export`: the public keys in the store's keys table (the
//! master key of the observer chain and every chain key), as a table or a
//! JWK Set. They are published, never trusted because they are listed: a
//! verifier pins the master key and authorises chain keys through their
//! `observer.key` announcements.
use serde_json::{json, Value};

use super::CtlError;
use crate::receipt::{json as strict_json, payload, store::Store};

pub struct StoredKey {
    pub kid: String,
    pub issuer_id: String,
    pub agent_id: String,
    pub jwk: Value,
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
            })
        })
        .collect()
}

pub fn show(store: &Store) -> Result<Vec<Value>, CtlError> {
    Ok(stored_keys(store)?
        .into_iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "issuer_id": k.issuer_id,
                "agent_id": k.agent_id,
                "master": k.agent_id == payload::OBSERVER_AGENT,
            })
        })
        .collect())
}

/// `{"keys": [<AKP JWK>...]}` in the order the keys were announced.
pub fn jwks(store: &Store) -> Result<Value, CtlError> {
    let keys: Vec<Value> = stored_keys(store)?.into_iter().map(|k| k.jwk).collect();
    Ok(json!({ "keys": keys }))
}

/// The master public key's JWK (the observer chain's key).
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
