//! The in-order pass of the store verifier: what it knows of the log so
//! far (chain heads, keys, masters, the Merkle frontier) and the checks of
//! a receipt's position in the log. Chain and key checks are in `links`,
//! the checks of the whole log once every receipt is read in `log`.
use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::Value;

use crate::{
    checkpoint, jcs, json, keys,
    merkle::{self, Frontier, Hash},
    mldsa::{LibcruxVerifier, Verifier},
    payload::{self, OBSERVER_AGENT},
    retention::{self, PruneAnchor},
};

use super::{checks::Parsed, walk_rotations, Failure, MasterEpoch, Outcome, Report, VerifyOptions};

mod links;
mod log;

/// A signature to check under the key the in-order pass settled on.
pub(super) type SignatureJob = (ReceiptLabel, Arc<[u8]>, Vec<u8>, Vec<u8>);

/// A parsed receipt and, when its kid named a key authorised at the time,
/// that key and the signature failures under it.
pub(super) type Checked = (Parsed, Option<(Arc<[u8]>, Vec<String>)>);

struct AuthorisedKey {
    issuer_id: String,
    public_key: Arc<[u8]>,
}

struct ChainState {
    seq: u64,
    head: String,
}

pub(super) struct State {
    pub(super) report: Report,
    receipt_failures: Vec<Failure>,
    log_failures: Vec<Failure>,
    /// The current master (the pinned genesis master until a rotation).
    master_kid: String,
    master_public_key: Arc<[u8]>,
    /// Every master in log order, genesis first.
    masters: Vec<MasterEpoch>,
    observer_issuer: Option<String>,
    keys: HashMap<String, AuthorisedKey>,
    /// Each chain's authorised key: the kid its last announcement named.
    chain_keys: HashMap<String, String>,
    /// Keys replaced by a rotation or re-announcement: kid to the log
    /// index of the receipt that retired it.
    retired: HashMap<String, u64>,
    /// kid to public key of the master key and every key authorised so
    /// far, read by the parallel pass while the in-order pass adds to it.
    pub(super) key_hints: Arc<RwLock<HashMap<String, Arc<[u8]>>>>,
    chains: HashMap<String, ChainState>,
    frontier: Frontier,
    /// Roots at every size, kept only for sizes a checkpoint names.
    roots: HashMap<u64, Hash>,
    pub(super) wanted_sizes: std::collections::HashSet<u64>,
    next_leaf: u64,
    /// Erased contexts: (erased receipt hash, the erasure receipt named).
    erasure_claims: Vec<(String, String)>,
    /// Erasure receipts: observer.policy contexts naming what they erased.
    erasures: HashMap<String, String>,
}

impl State {
    pub(in crate::verify) fn new(opts: &VerifyOptions) -> State {
        let master_kid = keys::thumbprint(&opts.master_public_key);
        let master_public_key: Arc<[u8]> = opts.master_public_key.as_slice().into();
        let key_hints = HashMap::from([(master_kid.clone(), Arc::clone(&master_public_key))]);
        State {
            report: Report::default(),
            receipt_failures: Vec::new(),
            log_failures: Vec::new(),
            masters: vec![MasterEpoch {
                from_size: 0,
                kid: master_kid.clone(),
                public_key: Arc::clone(&master_public_key),
            }],
            master_kid,
            master_public_key,
            observer_issuer: None,
            keys: HashMap::new(),
            chain_keys: HashMap::new(),
            retired: HashMap::new(),
            key_hints: Arc::new(RwLock::new(key_hints)),
            chains: HashMap::new(),
            frontier: Frontier::new(),
            roots: HashMap::new(),
            wanted_sizes: Default::default(),
            next_leaf: 0,
            erasure_claims: Vec::new(),
            erasures: HashMap::new(),
        }
    }

    /// Continues from the newest retention anchor: it must be a receipt
    /// signed by the master key whose context matches its digest, and its
    /// compact range must reproduce its own signed checkpoint.
    pub(in crate::verify) fn start_from_anchor(&mut self, envelope: &str, context: &str) {
        match self.check_anchor(envelope, context) {
            Ok((issuer, anchor, frontier, masters)) => {
                // Rotations at or after the cut are still in the log and
                // are walked there again.
                for pair in masters.windows(2) {
                    if pair[1].from_size <= anchor.cut {
                        self.retired
                            .insert(pair[0].kid.clone(), pair[1].from_size - 1);
                    }
                }
                self.masters = masters
                    .into_iter()
                    .filter(|m| m.from_size <= anchor.cut)
                    .collect();
                if let Some(current) = self.masters.last() {
                    self.master_kid = current.kid.clone();
                    self.master_public_key = Arc::clone(&current.public_key);
                }
                self.report.count("prune_anchor", Outcome::Pass);
                self.report.pruned_below = anchor.cut;
                self.next_leaf = anchor.cut;
                self.roots.insert(anchor.cut, frontier.root());
                self.frontier = frontier;
                self.observer_issuer = Some(issuer);
                for c in anchor.chains {
                    self.chains.insert(
                        c.issuer_id,
                        ChainState {
                            seq: c.seq,
                            head: c.payload_hash,
                        },
                    );
                }
                // In announcement order: a chain's later key replaces its
                // earlier one.
                for k in anchor.keys {
                    if let Ok(pk) = keys::public_key_from_jwk(&k.jwk) {
                        if keys::thumbprint(&pk) == k.kid {
                            if let Some(old) =
                                self.chain_keys.insert(k.issuer_id.clone(), k.kid.clone())
                            {
                                self.retired.entry(old).or_insert(anchor.cut);
                            }
                            self.authorise(k.kid, k.issuer_id, pk);
                        }
                    }
                }
            }
            Err(reason) => self.log_failure("prune_anchor", reason),
        }
    }

    #[allow(clippy::type_complexity)]
    pub(in crate::verify) fn check_anchor(
        &self,
        envelope: &str,
        context: &str,
    ) -> Result<(String, PruneAnchor, Frontier, Vec<MasterEpoch>), String> {
        let env =
            json::parse_strict(envelope.as_bytes()).map_err(|e| format!("anchor envelope: {e}"))?;
        let p = &env["payload"];
        if p["agent_id"] != OBSERVER_AGENT || p["action_type"] != "observer.policy" {
            return Err("the prune anchor is not an observer.policy receipt".into());
        }
        let anchor: PruneAnchor = json::parse_strict(context.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
            .map_err(|e| format!("prune anchor context: {e}"))?;
        // The pruned master rotations, walked from the pinned genesis key:
        // the anchor is signed by the master they end with.
        let masters = walk_rotations(&self.masters[0], &anchor.master_rotations)?;
        let signer = masters.last().unwrap_or(&self.masters[0]).clone();
        if env["signature"]["kid"].as_str() != Some(signer.kid.as_str()) {
            return Err(format!(
                "the prune anchor is not signed by the current master key {} (walked from the pinned key)",
                signer.kid
            ));
        }
        let sig = env["signature"]["sig"]
            .as_str()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .unwrap_or_default();
        let message = jcs::canonicalize(p).map_err(|e| e.to_string())?;
        LibcruxVerifier
            .verify(&signer.public_key, &message, &sig)
            .map_err(|e| format!("prune anchor signature: {e}"))?;
        if p["payload_digest"]["hash"].as_str()
            != Some(payload::sha256_hex(context.as_bytes()).as_str())
            || p["payload_digest"]["size"].as_u64() != Some(context.len() as u64)
        {
            return Err("the prune anchor's context does not match its payload_digest".into());
        }
        let issuer = p["issuer_id"].as_str().unwrap_or_default().to_string();
        let origin = issuer
            .strip_suffix("/agent/observer")
            .ok_or("the prune anchor's issuer is not an observer chain")?;
        let frontier = retention::anchor_frontier(&anchor)?;
        // The anchor's own checkpoint is signed by the anchor's signer.
        let cp = checkpoint::open_note(&anchor.checkpoint, origin, &signer.public_key, |m, s| {
            LibcruxVerifier.verify(&signer.public_key, m, s).is_ok()
        })
        .map_err(|e| format!("prune anchor checkpoint: {e}"))?;
        if cp.size != anchor.cut || cp.root != frontier.root() {
            return Err(format!(
                "the prune anchor's compact range does not give its checkpoint's root at size {}",
                anchor.cut
            ));
        }
        Ok((issuer, anchor, frontier, masters))
    }

    /// The master that signs the checkpoint of a tree of `size` leaves:
    /// the one current after leaf `size - 1`.
    pub(in crate::verify) fn master_at(&self, size: u64) -> &MasterEpoch {
        self.masters
            .iter()
            .rev()
            .find(|m| m.from_size <= size)
            .unwrap_or(&self.masters[0])
    }

    /// Checks an `observer.key` announcement of `kid` for `issuer` (signed
    /// by the current master: the caller checked) and makes it the chain's
    /// key. Without `rotates` it is a new chain's first key; with it, a
    /// master rotation (on the observer chain: `rotates` is the current
    /// master, `generation` the next one) or a chain's re-announcement
    /// (`rotates` is the chain's authorised key).
    pub(in crate::verify) fn key_change(
        &mut self,
        issuer: &str,
        kid: &str,
        context: &Value,
        leaf_index: u64,
    ) -> Result<(), String> {
        let is_observer = self.observer_issuer.as_deref() == Some(issuer);
        let Some(rotates) = context.get("rotates") else {
            if let Some(existing) = self.chain_keys.get(issuer).filter(|k| *k != kid) {
                return Err(format!(
                    "announces a second key {kid} for {issuer} (authorised: {existing}) without \"rotates\""
                ));
            }
            self.chain_keys.insert(issuer.to_string(), kid.to_string());
            return Ok(());
        };
        let rotates = rotates.as_str().unwrap_or_default();
        if is_observer {
            let generation = self.masters.len() as u64 + 1;
            if rotates != self.master_kid {
                return Err(format!(
                    "master rotation to {kid} rotates {rotates}, but the current master is {}",
                    self.master_kid
                ));
            }
            if context["generation"].as_u64() != Some(generation) {
                return Err(format!(
                    "master rotation to {kid} says generation {}, expected {generation}",
                    context["generation"]
                ));
            }
            self.chain_keys.insert(issuer.to_string(), kid.to_string());
            return Ok(());
        }
        match self.chain_keys.get(issuer) {
            Some(current) if current == rotates => {
                self.retired.insert(current.clone(), leaf_index);
                self.chain_keys.insert(issuer.to_string(), kid.to_string());
                Ok(())
            }
            current => Err(format!(
                "re-announcement of {issuer} rotates {rotates}, but the chain's authorised key is {}",
                current.map_or("none", String::as_str)
            )),
        }
    }

    /// Files a key under `kid`, which callers have checked to be its
    /// thumbprint.
    pub(in crate::verify) fn authorise(
        &mut self,
        kid: String,
        issuer_id: String,
        public_key: Vec<u8>,
    ) {
        let public_key: Arc<[u8]> = public_key.into();
        self.key_hints
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kid.clone(), Arc::clone(&public_key));
        self.keys.insert(
            kid,
            AuthorisedKey {
                issuer_id,
                public_key,
            },
        );
    }

    pub(in crate::verify) fn record(
        &mut self,
        p: &ReceiptLabel,
        check: &'static str,
        outcome: Outcome,
        reason: String,
    ) {
        self.report.count(check, outcome);
        if outcome != Outcome::Pass {
            self.receipt_failures.push(Failure {
                check,
                outcome,
                chain: p.chain.clone(),
                seq: p.seq,
                receipt_hash: p.hash.clone(),
                leaf_index: Some(p.leaf),
                reason,
            });
        }
    }

    pub(in crate::verify) fn log_failure(&mut self, check: &'static str, reason: String) {
        self.report.count(check, Outcome::Fail);
        self.log_failures.push(Failure {
            check,
            outcome: Outcome::Fail,
            chain: String::new(),
            seq: 0,
            receipt_hash: String::new(),
            leaf_index: None,
            reason,
        });
    }

    /// The in-order pass over one chunk: log position, chain links, key
    /// authorisation, and the signature outcome, re-checked under the
    /// right key where the parallel pass had no key or another one.
    pub(in crate::verify) fn in_order(&mut self, parsed: Vec<Checked>) -> Vec<SignatureJob> {
        let mut signature_jobs = Vec::new();
        for (p, early) in parsed {
            let label = ReceiptLabel::of(&p);
            self.report.receipts += 1;
            for (check, outcome, reason) in &p.results {
                self.record(&label, check, *outcome, reason.clone());
            }
            self.check_position(&p, &label);
            if let Some(by) = p
                .context
                .as_ref()
                .filter(|c| c.get("erased") == Some(&Value::Bool(true)))
                .map(|c| c["by"].as_str().unwrap_or_default().to_string())
            {
                self.report.erased_contexts += 1;
                self.erasure_claims.push((label.hash.clone(), by));
            }
            if p.payload.as_ref().is_some_and(|v| v["mode"] == "hash") {
                self.report.hash_only += 1;
            }
            let key = self.chain_checks(&p, &label);
            match key {
                Some(pk) => match early {
                    Some((early_pk, failures))
                        if Arc::ptr_eq(&early_pk, &pk) || *early_pk == *pk =>
                    {
                        self.signature_outcome(&label, failures);
                    }
                    _ => signature_jobs.push((label, pk, p.payload_jcs, p.signature)),
                },
                None => self.record(
                    &label,
                    "signature",
                    Outcome::Unverifiable,
                    "no authorised key to check it with".into(),
                ),
            }
        }
        signature_jobs
    }

    pub(in crate::verify) fn signature_outcome(
        &mut self,
        label: &ReceiptLabel,
        failures: Vec<String>,
    ) {
        if failures.is_empty() {
            self.record(label, "signature", Outcome::Pass, String::new());
        } else {
            self.record(label, "signature", Outcome::Fail, failures.join("; "));
        }
    }

    /// Log position and Merkle leaf: indices are contiguous from 0.
    pub(in crate::verify) fn check_position(&mut self, p: &Parsed, label: &ReceiptLabel) {
        if p.row.leaf_index != self.next_leaf {
            self.log_failure(
                "log_continuity",
                format!(
                    "log indices {}..{} are missing (the next stored receipt is {} at index {})",
                    self.next_leaf, p.row.leaf_index, label.hash, p.row.leaf_index
                ),
            );
        }
        self.next_leaf = p.row.leaf_index + 1;
        if p.row.receipt_hash != p.receipt_hash {
            self.record(
                label,
                "receipt_hash",
                Outcome::Fail,
                format!(
                    "stored receipt hash {} is not SHA-256 of the stored envelope",
                    hex::encode(&p.row.receipt_hash)
                ),
            );
        } else {
            self.report.count("receipt_hash", Outcome::Pass);
        }
        self.frontier.append(merkle::leaf_hash(&p.receipt_hash));
        if self.wanted_sizes.contains(&self.frontier.size()) {
            self.roots
                .insert(self.frontier.size(), self.frontier.root());
        }
    }
}

pub(super) struct ReceiptLabel {
    chain: String,
    seq: u64,
    hash: String,
    leaf: u64,
}

impl ReceiptLabel {
    pub(in crate::verify) fn of(p: &Parsed) -> ReceiptLabel {
        ReceiptLabel {
            chain: p.row.issuer_id.clone(),
            seq: p.row.seq,
            hash: hex::encode(p.receipt_hash),
            leaf: p.row.leaf_index,
        }
    }
}
