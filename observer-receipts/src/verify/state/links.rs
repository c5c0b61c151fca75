//! The in-order pass's checks of a receipt's chain: its link to the
//! previous receipt, its seq, the authorisation of its key, and what an
//! observer-chain receipt's context announces (keys, rotations, anchors).
use std::sync::Arc;

use serde_json::Value;

use super::{ChainState, ReceiptLabel, State};
use crate::{
    keys,
    payload::{GENESIS_HASH, OBSERVER_AGENT},
    verify::{checks::Parsed, MasterEpoch, Outcome},
};

impl State {
    /// Chain link, seq and key authorisation. Returns the public key the
    /// signature must verify under.
    pub(in crate::verify) fn chain_checks(
        &mut self,
        p: &Parsed,
        label: &ReceiptLabel,
    ) -> Option<Arc<[u8]>> {
        let payload = p.payload.as_ref()?;
        let issuer = payload["issuer_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let agent = payload["agent_id"].as_str().unwrap_or_default();
        let seq = payload["seq"].as_u64().unwrap_or(0);
        let prev = payload["previousReceiptHash"].as_str().unwrap_or_default();
        if issuer != p.row.issuer_id || seq != p.row.seq {
            self.record(
                label,
                "index",
                Outcome::Fail,
                format!(
                    "stored as {} seq {} but the payload says {} seq {}",
                    p.row.issuer_id, p.row.seq, issuer, seq
                ),
            );
        }
        let chain = self.chains.entry(issuer.clone()).or_insert(ChainState {
            seq: 0,
            head: GENESIS_HASH.to_string(),
        });
        if seq == chain.seq + 1 && prev == chain.head {
            self.report.count("chain_link", Outcome::Pass);
        } else {
            let reason = if seq > chain.seq + 1 {
                format!(
                    "seq {} follows seq {}: receipts {}..{} of this chain are missing",
                    seq,
                    chain.seq,
                    chain.seq + 1,
                    seq - 1
                )
            } else if seq != chain.seq + 1 {
                format!(
                    "seq {} after seq {}: out of order or duplicated",
                    seq, chain.seq
                )
            } else {
                format!(
                    "previousReceiptHash {} is not the hash of seq {}'s payload ({})",
                    prev, chain.seq, chain.head
                )
            };
            let (check, outcome) = ("chain_link", Outcome::Fail);
            self.record(label, check, outcome, reason);
        }
        // Continue from this receipt so one break is reported once.
        let chain = self.chains.get_mut(&issuer).expect("inserted above");
        chain.seq = seq;
        chain.head.clone_from(&p.payload_hash);

        // The observer's chain is the master key's.
        if agent == OBSERVER_AGENT && self.observer_issuer.is_none() {
            self.observer_issuer = Some(issuer.clone());
        }
        let is_observer = self.observer_issuer.as_deref() == Some(issuer.as_str());
        // With the key, its thumbprint: a key is only ever filed under its
        // own thumbprint (computed when it was pinned or announced).
        let key = if is_observer {
            (p.kid == self.master_kid).then(|| {
                (
                    Arc::clone(&self.master_public_key),
                    self.master_kid.as_str(),
                )
            })
        } else {
            // Authorised for this chain and not replaced by a later
            // announcement (the retired map is empty until a rotation).
            self.keys
                .get_key_value(&p.kid)
                .filter(|(_, k)| k.issuer_id == issuer)
                .filter(|(kid, _)| self.retired.is_empty() || !self.retired.contains_key(*kid))
                .map(|(kid, k)| (Arc::clone(&k.public_key), kid.as_str()))
        };
        let key = key.map(|(pk, thumb)| (pk, thumb.to_string()));
        match &key {
            Some((_, thumb)) => {
                self.report.count("key_authorised", Outcome::Pass);
                if payload["key_thumbprint"].as_str() == Some(thumb.as_str()) && p.kid == *thumb {
                    self.report.count("key_thumbprint", Outcome::Pass);
                } else {
                    self.record(
                        label,
                        "key_thumbprint",
                        Outcome::Fail,
                        format!("key_thumbprint and kid must both be {thumb}"),
                    );
                }
            }
            None => {
                let reason = match self.retired.get(&p.kid) {
                    Some(at) if is_observer => format!(
                        "key {} is a master key retired by the rotation at log index {at}: \
                         the observer chain is signed by the current master {}",
                        p.kid, self.master_kid
                    ),
                    Some(at) => format!(
                        "key {} of {} was retired by the re-announcement at log index {at}: \
                         the chain's authorised key is {}",
                        p.kid,
                        issuer,
                        self.chain_keys.get(&issuer).map_or("none", String::as_str)
                    ),
                    None => format!(
                        "key {} is not authorised for {} by the pinned master key",
                        p.kid, issuer
                    ),
                };
                self.record(label, "key_authorised", Outcome::Fail, reason);
            }
        }
        if is_observer && key.is_some() {
            self.observer_context(p, payload, label);
        }
        key.map(|(pk, _)| pk)
    }

    /// Key announcements and erasures on the observer's chain. The master
    /// key signed the payload, which binds the context by its digest; a
    /// context that fails its digest has already been reported and is
    /// not used.
    pub(in crate::verify) fn observer_context(
        &mut self,
        p: &Parsed,
        payload: &Value,
        label: &ReceiptLabel,
    ) {
        let digest_ok = p
            .results
            .iter()
            .all(|(check, outcome, _)| *check != "payload_digest" || *outcome == Outcome::Pass);
        let Some(context) = p.context.as_ref().filter(|_| digest_ok) else {
            return;
        };
        match payload["action_type"].as_str() {
            Some("observer.key") => {
                let (Some(issuer), Some(kid)) =
                    (context["issuer_id"].as_str(), context["kid"].as_str())
                else {
                    return;
                };
                let Some(pk) = keys::public_key_from_jwk(&context["jwk"])
                    .ok()
                    .filter(|pk| keys::thumbprint(pk) == kid)
                else {
                    return;
                };
                match self.key_change(issuer, kid, context, p.row.leaf_index) {
                    Ok(()) => {
                        self.report.count("key_rotation", Outcome::Pass);
                        self.authorise(kid.to_string(), issuer.to_string(), pk.clone());
                        if self.observer_issuer.as_deref() == Some(issuer)
                            && context.get("rotates").is_some()
                        {
                            // The old master is retired from the next
                            // observer-chain receipt (and from checkpoints
                            // of trees containing this receipt) on.
                            self.retired
                                .insert(self.master_kid.clone(), p.row.leaf_index);
                            self.master_kid = kid.to_string();
                            self.master_public_key = pk.into();
                            self.masters.push(MasterEpoch {
                                from_size: p.row.leaf_index + 1,
                                kid: self.master_kid.clone(),
                                public_key: Arc::clone(&self.master_public_key),
                            });
                        }
                    }
                    Err(reason) => self.record(label, "key_rotation", Outcome::Fail, reason),
                }
            }
            Some("observer.policy") => {
                if let Some(erased) = context["erase"].as_str() {
                    self.erasures
                        .insert(erased.to_string(), hex::encode(p.receipt_hash));
                }
            }
            _ => {}
        }
    }
}
