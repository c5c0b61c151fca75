//! The master keys a verifier trusts: the pinned genesis master and the
//! masters its rotation receipts announced, each with the log indexes and
//! tree sizes it signs, and the opening of a checkpoint note under one of
//! them. Shared by the store, proof and audit-pack verifiers and by
//! `receipts show`.
use std::sync::Arc;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};

use crate::{
    checkpoint, jcs, json, keys,
    mldsa::{LibcruxVerifier, Verifier},
    payload::{self, OBSERVER_AGENT},
    retention::{self, RotationAnchor},
    store::Store,
    verify::VerifyError,
};

/// A master key and the first tree size whose checkpoint it signs (the
/// size just after its rotation receipt; 0 for the genesis master). An
/// observer-chain receipt at log index L is signed by the last master with
/// `from_size <= L`; a checkpoint of size N by the last with
/// `from_size <= N`.
#[derive(Debug, Clone)]
pub struct MasterEpoch {
    /// The first log index and tree size it signs.
    pub from_size: u64,
    /// Its key id (JWK thumbprint).
    pub kid: String,
    /// Its raw ML-DSA-65 public key.
    pub public_key: Arc<[u8]>,
}

impl MasterEpoch {
    /// The pinned genesis master.
    pub fn genesis(public_key: &[u8]) -> MasterEpoch {
        MasterEpoch {
            from_size: 0,
            kid: keys::thumbprint(public_key),
            public_key: public_key.into(),
        }
    }

    /// The epoch in force at `size` (a log index or a tree size) among
    /// `masters` (in log order, genesis first).
    pub fn at(masters: &[MasterEpoch], size: u64) -> Option<&MasterEpoch> {
        masters.iter().rev().find(|m| m.from_size <= size)
    }
}

/// Opens a signed checkpoint under one master key.
pub fn open_with(
    note: &str,
    origin: &str,
    public_key: &[u8],
) -> Result<checkpoint::Checkpoint, checkpoint::NoteError> {
    checkpoint::open_note(note, origin, public_key, |msg, sig| {
        LibcruxVerifier.verify(public_key, msg, sig).is_ok()
    })
}

/// Walks master rotation receipts (carried by a prune anchor) from
/// `genesis`: each must be an `observer.key` on the observer chain signed
/// by the master current before it, rotating that master, of the next
/// generation. Returns every master, genesis first.
pub fn walk_rotations(
    genesis: &MasterEpoch,
    rotations: &[retention::RotationAnchor],
) -> Result<Vec<MasterEpoch>, String> {
    let mut masters = vec![genesis.clone()];
    for r in rotations {
        let current = masters.last().unwrap_or(genesis).clone();
        let bad = |why: &str| {
            format!(
                "prune anchor: the master rotation at log index {}: {why}",
                r.leaf_index
            )
        };
        let env = json::parse_strict(r.envelope.as_bytes()).map_err(|e| bad(&e.to_string()))?;
        let p = &env["payload"];
        if p["agent_id"] != OBSERVER_AGENT || p["action_type"] != "observer.key" {
            return Err(bad("not an observer.key receipt of the observer chain"));
        }
        if env["signature"]["kid"].as_str() != Some(current.kid.as_str()) {
            return Err(bad(&format!(
                "not signed by the current master {}",
                current.kid
            )));
        }
        let sig = env["signature"]["sig"]
            .as_str()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .unwrap_or_default();
        let message = jcs::canonicalize(p).map_err(|e| bad(&e.to_string()))?;
        LibcruxVerifier
            .verify(&current.public_key, &message, &sig)
            .map_err(|e| bad(&format!("signature: {e}")))?;
        if p["payload_digest"]["hash"].as_str()
            != Some(payload::sha256_hex(r.context.as_bytes()).as_str())
            || p["payload_digest"]["size"].as_u64() != Some(r.context.len() as u64)
        {
            return Err(bad("its context does not match its payload_digest"));
        }
        let c = json::parse_strict(r.context.as_bytes()).map_err(|e| bad(&e.to_string()))?;
        if c["rotates"].as_str() != Some(current.kid.as_str())
            || c["generation"].as_u64() != Some(masters.len() as u64 + 1)
        {
            return Err(bad(
                "it does not rotate the current master to the next generation",
            ));
        }
        let kid = c["kid"].as_str().unwrap_or_default();
        let pk = keys::public_key_from_jwk(&c["jwk"])
            .ok()
            .filter(|pk| keys::thumbprint(pk) == kid)
            .ok_or_else(|| bad("its jwk is not the key its kid names"))?;
        masters.push(MasterEpoch {
            from_size: r.leaf_index + 1,
            kid: kid.to_string(),
            public_key: pk.into(),
        });
    }
    Ok(masters)
}

/// The origin a signed checkpoint names (its first line).
pub fn note_origin(note: &str) -> String {
    note.lines().next().unwrap_or_default().to_string()
}

/// A checkpoint note's signature check under `public_key`, in the form
/// [`checkpoint::open_note`] and [`checkpoint::TlogProof::verify`] take.
pub fn note_signature_verifier(public_key: &[u8]) -> impl Fn(&[u8], &[u8]) -> bool + '_ {
    move |message, signature| {
        LibcruxVerifier
            .verify(public_key, message, signature)
            .is_ok()
    }
}

/// Every master rotation receipt of the store's log, in log order: those
/// still in the log and those pruned, which the latest retention anchor
/// carries.
pub fn master_rotations(store: &Store) -> Result<Vec<RotationAnchor>, crate::store::StoreError> {
    let mut rotations: Vec<RotationAnchor> = match retention::latest_prune(store)? {
        Some((_, context)) => json::parse_strict(context.as_bytes())
            .ok()
            .and_then(|v| serde_json::from_value::<retention::PruneAnchor>(v).ok())
            .map(|a| a.master_rotations)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    retention::add_logged_rotations(store, &mut rotations)?;
    Ok(rotations)
}

/// The masters of the store, walked from the pinned genesis key through
/// its [`master_rotations`].
pub fn store_masters(store: &Store, pinned: &[u8]) -> Result<Vec<MasterEpoch>, VerifyError> {
    walk_rotations(&MasterEpoch::genesis(pinned), &master_rotations(store)?)
        .map_err(VerifyError::MasterRotations)
}
