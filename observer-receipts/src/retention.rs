//! Retention: receipts older than the configured age are deleted without
//! breaking verifiability. The pruned prefix `[0, cut)` is replaced by one
//! `observer.policy` receipt, signed by the master key, whose context holds
//! everything a verifier needs to continue from `cut`: a signed checkpoint
//! of size `cut`, the Merkle compact range of `[0, cut)` (whose root is that
//! checkpoint's), each chain's head at the cut, and every chain key
//! announced in the pruned part. The writer deletes the prefix in the same
//! transaction that commits this receipt.
use std::collections::HashMap;

use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    chain::{Draft, Identity},
    checkpoint::{self, Checkpoint},
    clock_steps::Corrections,
    jcs, json,
    keys::ChainKey,
    keys::MasterSeed,
    merkle::{self, Frontier, Hash, NodeSource},
    mldsa::Signer as _,
    payload,
    payload::{Mappings, RiskClass},
    pipeline::{Pipeline, PipelineConfig},
    store::RunKind,
    store::{Store, StoreError, StoreNodes},
};

/// Why a prune was not planned or not committed; no receipt was deleted.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored receipt, key announcement or anchor does not parse, the
    /// cut checkpoint could not be signed, or the prune receipt could not
    /// be issued (e.g. the daemon holds the writer lock).
    #[error("retention: {0}")]
    Invalid(String),
    /// The cut checkpoint's note could not be built (e.g. a bad origin).
    #[error("retention checkpoint: {0}")]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// A chain's position at the cut: the last pruned receipt of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainAnchor {
    /// The chain.
    pub issuer_id: String,
    /// `seq` of its last pruned receipt: the first kept one has `seq + 1`.
    pub seq: u64,
    /// SHA-256 hex of that receipt's JCS(payload): the first kept
    /// receipt's `previousReceiptHash`.
    pub payload_hash: String,
}

/// A chain key whose `observer.key` announcement was pruned, as that
/// announcement's context gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyAnchor {
    /// The chain the key signs.
    pub issuer_id: String,
    /// The key's RFC 7638 thumbprint.
    pub kid: String,
    /// The public key as an AKP JWK.
    pub jwk: Value,
}

/// A master rotation receipt, carried by a prune anchor so that a verifier
/// holding only the genesis master key can walk to the current master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationAnchor {
    /// The rotation receipt's log index.
    pub leaf_index: u64,
    /// The receipt's envelope, exactly as stored (JCS).
    pub envelope: String,
    /// Its context, exactly as stored (JCS).
    pub context: String,
}

/// Adds to `rotations` (those a retention anchor carries) the master
/// rotation receipts still in the log, once each, in log order.
pub(crate) fn add_logged_rotations(
    store: &Store,
    rotations: &mut Vec<RotationAnchor>,
) -> Result<(), crate::store::StoreError> {
    for (leaf_index, envelope, context) in store.master_rotations()? {
        if rotations.iter().all(|r| r.leaf_index != leaf_index) {
            rotations.push(RotationAnchor {
                leaf_index,
                envelope,
                context,
            });
        }
    }
    rotations.sort_by_key(|r| r.leaf_index);
    Ok(())
}

/// The context of a prune receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneAnchor {
    /// Always [`PRUNE_EVENT`]: tells this `observer.policy` context apart.
    pub event: String,
    /// Receipts with a log index below this were deleted.
    pub cut: u64,
    /// Receipts issued before this time were due for deletion.
    pub cutoff: String,
    /// Signed checkpoint (C2SP note) of the log at size `cut`.
    pub checkpoint: String,
    /// The perfect subtrees covering `[0, cut)`: `[level, index, hex]`.
    pub frontier: Vec<(u32, u64, String)>,
    /// Every chain with a receipt before the cut (from earlier prunes
    /// too), by issuer id.
    pub chains: Vec<ChainAnchor>,
    /// Every key announced before the cut, in announcement order (a
    /// chain's later key replaces its earlier one).
    pub keys: Vec<KeyAnchor>,
    /// Every master rotation committed when the anchor was made, in log
    /// order (those at or after the cut are also still in the log).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub master_rotations: Vec<RotationAnchor>,
}

/// The `event` of a prune anchor's context.
pub const PRUNE_EVENT: &str = "prune";

/// The aligned perfect subtrees that make up `[0, size)`, left to right.
pub fn compact_range(size: u64) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for level in (0..64u32).rev() {
        if size & (1u64 << level) != 0 {
            out.push((level, start >> level));
            start += 1u64 << level;
        }
    }
    out
}

/// Works out the prune of every receipt issued before `cutoff_ns`; `None`
/// when nothing new would go. `origin` is the checkpoint origin and
/// `master` signs the checkpoint at the cut.
pub fn plan(
    store: &Store,
    cutoff_ns: u64,
    origin: &str,
    master: &ChainKey,
) -> Result<Option<PruneAnchor>, RetentionError> {
    let conn = store.connection();
    let sql = |e| {
        RetentionError::Store(StoreError::Sqlite {
            path: store.path().to_owned(),
            source: e,
        })
    };
    // The cut: the first receipt young enough to keep (or the log's end).
    // Receipts are in log order, which follows issue time closely; the cut
    // never passes a receipt that must be kept. A receipt issued before the
    // wall clock stepped forward is as old as its time plus those steps
    // (clock_steps): it goes only when old by both its own clock and
    // today's. Backward steps are not subtracted, so they never prune early.
    let size = store.log_size()?;
    let mut first_kept: Option<i64> = None;
    for (from, to, correction) in Corrections::load(store)?.segments(size) {
        let cutoff = (i128::from(cutoff_ns) - correction.max(0)).max(0) as i64;
        first_kept = conn
            .query_row(
                "SELECT MIN(leaf_index) FROM receipts
                 WHERE issued_ns >= ?1 AND leaf_index >= ?2 AND leaf_index < ?3",
                [cutoff, from as i64, to as i64],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if first_kept.is_some() {
            break;
        }
    }
    let cut = first_kept.map_or(size, |l| l as u64);
    let oldest: Option<i64> = conn
        .query_row("SELECT MIN(leaf_index) FROM receipts", [], |r| r.get(0))
        .map_err(sql)?;
    let Some(oldest) = oldest else {
        return Ok(None);
    };
    if cut == 0 || cut <= oldest as u64 {
        return Ok(None);
    }
    // The anchor and its checkpoint are signed by the master the committed
    // rotations end with; while a rotation is not yet committed, wait.
    if store.current_master()?.is_some_and(|m| m.kid != master.kid) {
        return Ok(None);
    }
    let nodes = StoreNodes(store);
    let frontier: Vec<(u32, u64, Hash)> = compact_range(cut)
        .into_iter()
        .map(|(level, index)| Ok((level, index, nodes.node(level, index)?)))
        .collect::<Result<_, StoreError>>()?;
    let root = merkle::root(&nodes, cut).map_err(|e| RetentionError::Invalid(e.to_string()))?;
    let note = checkpoint::sign_note(
        &Checkpoint {
            origin: origin.to_string(),
            size: cut,
            root,
        },
        master.public_key(),
        |body| {
            master
                .sign(body)
                .map_err(|e| RetentionError::Invalid(format!("signing the cut checkpoint: {e}")))
        },
    )?;

    // Each chain's last receipt before the cut, and the previous prune's
    // anchors for chains that have no receipt left before the cut.
    let mut chains: HashMap<String, ChainAnchor> = HashMap::new();
    let mut keys: Vec<KeyAnchor> = Vec::new();
    let mut rotations: Vec<RotationAnchor> = Vec::new();
    if let Some(previous) = latest_anchor(store)? {
        for c in previous.chains {
            chains.insert(c.issuer_id.clone(), c);
        }
        keys = previous.keys;
        rotations = previous.master_rotations;
    }
    add_logged_rotations(store, &mut rotations)?;
    let mut stmt = conn
        .prepare(
            "SELECT receipt_envelope(r.envelope_text, r.sig) FROM receipts r
             JOIN (SELECT issuer_id, MAX(leaf_index) AS last FROM receipts
                   WHERE leaf_index < ?1 GROUP BY issuer_id) h
             ON r.leaf_index = h.last",
        )
        .map_err(sql)?;
    let envelopes: Vec<String> = stmt
        .query_map([cut as i64], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sql)?;
    for envelope in envelopes {
        let v = json::parse_strict(envelope.as_bytes())
            .map_err(|e| RetentionError::Invalid(format!("stored envelope: {e}")))?;
        let p = &v["payload"];
        let payload_hash = payload::sha256_hex(
            &jcs::canonicalize(p).map_err(|e| RetentionError::Invalid(e.to_string()))?,
        );
        let issuer_id = p["issuer_id"].as_str().unwrap_or_default().to_string();
        chains.insert(
            issuer_id.clone(),
            ChainAnchor {
                issuer_id,
                seq: p["seq"].as_u64().unwrap_or(0),
                payload_hash,
            },
        );
    }
    // Keys announced in the pruned part (the announcements go with it).
    let mut stmt = conn
        .prepare(
            "SELECT c.context FROM receipts r JOIN contexts c USING (leaf_index)
             WHERE r.action_type = 'observer.key' AND r.leaf_index < ?1
             ORDER BY r.leaf_index",
        )
        .map_err(sql)?;
    let contexts: Vec<String> = stmt
        .query_map([cut as i64], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sql)?;
    for text in contexts {
        let c = json::parse_strict(text.as_bytes())
            .map_err(|e| RetentionError::Invalid(format!("stored key announcement: {e}")))?;
        let kid = c["kid"].as_str().unwrap_or_default().to_string();
        if keys.iter().all(|k| k.kid != kid) {
            keys.push(KeyAnchor {
                issuer_id: c["issuer_id"].as_str().unwrap_or_default().to_string(),
                kid,
                jwk: c["jwk"].clone(),
            });
        }
    }
    let mut chains: Vec<ChainAnchor> = chains.into_values().collect();
    chains.sort_by(|a, b| a.issuer_id.cmp(&b.issuer_id));
    Ok(Some(PruneAnchor {
        event: PRUNE_EVENT.to_string(),
        cut,
        cutoff: payload::issued_at(cutoff_ns),
        checkpoint: note,
        frontier: frontier
            .into_iter()
            .map(|(l, i, h)| (l, i, hex::encode(h)))
            .collect(),
        chains,
        keys,
        master_rotations: rotations,
    }))
}

/// `issued_ns` of every committed clock step receipt, in log order.
pub fn committed_steps(store: &Store) -> Result<Vec<u64>, StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: store.path().to_owned(),
        source,
    };
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT issued_ns FROM receipts WHERE action_type = 'observer.clock_step'
             ORDER BY leaf_index",
        )
        .map_err(sql)?;
    let rows: Vec<i64> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sql)?;
    Ok(rows.into_iter().map(|ns| ns as u64).collect())
}

/// The prune receipt for `anchor`, to be chained and signed like any other.
pub fn prune_draft(anchor: &PruneAnchor, executable_hash: &str) -> Result<Draft, RetentionError> {
    Ok(Draft {
        agent_id: payload::OBSERVER_AGENT.to_string(),
        action_type: "observer.policy",
        unix_ns: crate::payload::now_unix_ns(),
        context: serde_json::to_value(anchor)
            .map_err(|e| RetentionError::Invalid(e.to_string()))?,
        risk_class: RiskClass::Low,
        executable_hash: executable_hash.to_string(),
        mappings: Mappings::default(),
        detection_rules_digest: None,
        erases: None,
        prunes: Some(anchor.cut),
    })
}

/// Prunes a store offline (maintenance): takes the writer lock, so it
/// fails while the daemon runs. Returns the cut, if anything was pruned.
pub fn prune_offline(
    cfg: &PipelineConfig,
    identity: Identity,
    master: MasterSeed,
    cutoff_ns: u64,
) -> Result<Option<u64>, RetentionError> {
    let executable_hash = identity.observer_executable_hash.clone();
    let (mut pipeline, _) = Pipeline::start(
        cfg,
        identity,
        master,
        RunKind::Maintenance,
        &payload::issued_at(crate::payload::now_unix_ns()),
    )
    .map_err(|e| RetentionError::Invalid(e.to_string()))?;
    let store = Store::open_read_only(&cfg.store)?;
    let Some(anchor) = plan(
        &store,
        cutoff_ns,
        &pipeline.origin(),
        &pipeline.master_key(),
    )?
    else {
        return Ok(None);
    };
    pipeline
        .submit(prune_draft(&anchor, &executable_hash)?)
        .map_err(|e| RetentionError::Invalid(e.to_string()))?;
    pipeline
        .finish(&payload::issued_at(crate::payload::now_unix_ns()))
        .map_err(|e| RetentionError::Invalid(e.to_string()))?;
    Ok(Some(anchor.cut))
}

/// The context of the newest committed prune receipt, if any, with its
/// receipt's stored envelope. Not verified here: the verifier does that.
pub fn latest_prune(store: &Store) -> Result<Option<(String, String)>, StoreError> {
    store
        .connection()
        .query_row(
            "SELECT receipt_envelope(r.envelope_text, r.sig), c.context
             FROM receipts r JOIN contexts c USING (leaf_index)
             WHERE r.action_type = 'observer.policy'
               AND c.context LIKE '%\"event\":\"prune\"%'
             ORDER BY r.leaf_index DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|source| StoreError::Sqlite {
            path: store.path().to_owned(),
            source,
        })
}

fn latest_anchor(store: &Store) -> Result<Option<PruneAnchor>, RetentionError> {
    match latest_prune(store)? {
        Some((_, context)) => serde_json::from_str(&context)
            .map(Some)
            .map_err(|e| RetentionError::Invalid(format!("stored prune anchor: {e}"))),
        None => Ok(None),
    }
}

/// Rebuilds the frontier at the cut from an anchor's compact range.
pub fn anchor_frontier(anchor: &PruneAnchor) -> Result<Frontier, String> {
    let mut nodes = HashMap::new();
    for (level, index, hex_hash) in &anchor.frontier {
        let bytes = hex::decode(hex_hash).map_err(|e| format!("frontier node: {e}"))?;
        let hash: Hash = bytes
            .try_into()
            .map_err(|_| "frontier node is not 32 bytes".to_string())?;
        nodes.insert((*level, *index), hash);
    }
    struct Nodes(HashMap<(u32, u64), Hash>);
    impl NodeSource for Nodes {
        type Error = String;
        fn node(&self, level: u32, index: u64) -> Result<Hash, String> {
            self.0
                .get(&(level, index))
                .copied()
                .ok_or_else(|| format!("the anchor lacks node ({level}, {index})"))
        }
    }
    Frontier::from_nodes(anchor.cut, &Nodes(nodes)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_range_covers_the_prefix_with_aligned_subtrees() {
        assert_eq!(compact_range(0), vec![]);
        assert_eq!(compact_range(1), vec![(0, 0)]);
        assert_eq!(compact_range(6), vec![(2, 0), (1, 2)]);
        assert_eq!(compact_range(7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(compact_range(8), vec![(3, 0)]);
        for size in 0..300u64 {
            let covered: u64 = compact_range(size).iter().map(|(l, _)| 1u64 << l).sum();
            assert_eq!(covered, size);
        }
    }

    #[test]
    fn anchor_frontier_reproduces_the_root() {
        let leaves: Vec<Hash> = (0..13u8).map(|i| merkle::leaf_hash(&[i])).collect();
        let mem = merkle::MemoryNodes::from_leaf_hashes(leaves.iter().copied());
        for cut in 1..=13u64 {
            let anchor = PruneAnchor {
                event: PRUNE_EVENT.into(),
                cut,
                cutoff: String::new(),
                checkpoint: String::new(),
                frontier: compact_range(cut)
                    .into_iter()
                    .map(|(l, i)| (l, i, hex::encode(mem.node(l, i).unwrap())))
                    .collect(),
                chains: vec![],
                keys: vec![],
                master_rotations: vec![],
            };
            let mut f = anchor_frontier(&anchor).unwrap();
            assert_eq!(f.root(), merkle::root(&mem, cut).unwrap());
            for leaf in &leaves[cut as usize..] {
                f.append(*leaf);
            }
            assert_eq!(f.root(), merkle::root(&mem, 13).unwrap());
        }
    }
}
