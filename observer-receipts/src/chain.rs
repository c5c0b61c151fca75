//! The chain builder: the single stage that gives each receipt its chain
//! position (`seq`, `previousReceiptHash`) and its place in the host-wide
//! log. Everything after it (signing, committing) may run in parallel
//! because a link covers only the previous *payload*, never a signature.
use std::{collections::HashMap, sync::Arc};

use serde_json::{json, Value};

use super::{
    jcs::{self, JcsError},
    keys::{ChainKey, MasterSeed},
    payload::{self, Mappings, Mode, Payload, RiskClass, UnsignedGap, GENESIS_HASH},
    store::MasterRow,
};

// A chain's head is a row of the store's `chains` table; the builder
// starts from and continues it.
pub use crate::store::ChainHead;

mod drafts;
pub use drafts::{CommitNotice, Draft, KeyIntro, Rotation, Sealed};

/// Why the chain builder did not start or did not place a receipt.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The false-attestation guard refused the receipt type (RECEIPTS.md, "The guard").
    #[error(transparent)]
    Guard(#[from] payload::GuardError),
    /// A context or payload has no JCS form (e.g. an unsafe integer): the draft is not chained.
    #[error("canonicalising a receipt: {0}")]
    Jcs(#[from] JcsError),
    /// At start: a stored kid (current master or chain head) the seed does not derive.
    #[error("chain {issuer_id}: the stored key id {stored} is not the key the master seed derives ({derived}); the store belongs to another master seed")]
    ForeignKey {
        /// The chain whose stored kid differs.
        issuer_id: String,
        /// The kid in the store.
        stored: String,
        /// The kid the given seed derives for that chain.
        derived: String,
    },
    /// [`ChainBuilder::rotate`] got a seed that derives the current master (its kid).
    #[error("a master rotation needs a new seed: the given one derives the current master {0}")]
    SameSeed(String),
}

/// Who issues the receipts: the parts of every `issuer_id`, and the payload settings.
pub struct Identity {
    /// LEI, EIN or DID of the deployer.
    pub deployer_id: String,
    /// This host's name: the `host/<hostname>` of every issuer id.
    pub hostname: String,
    /// `mode` of agent receipts; the observer's own are always `payload`.
    pub mode: Mode,
    /// `sha256:<hex>` of the observerd binary, for the observer's receipts.
    pub observer_executable_hash: String,
}

struct Chain {
    seq: u64,
    head: String,
    /// The key the chain signs with; `None` while a re-announcement is
    /// pending (derived from the current master seed when it is made).
    key: Option<Arc<ChainKey>>,
    /// The kid of the chain's last receipt: what a re-announcement rotates.
    kid: String,
    gap: Option<UnsignedGap>,
}

/// Gives every receipt its `seq`, `previousReceiptHash` and log index: one per store.
/// It holds the master seed, announces new chain keys, reports gaps, rotates the master.
pub struct ChainBuilder {
    identity: Identity,
    master: MasterSeed,
    /// Master generation of `master` (1: the genesis seed).
    generation: u64,
    observer_issuer: String,
    chains: HashMap<String, Chain>,
    /// Gaps of chains not opened yet (every draft of a new agent was lost
    /// while the store was full): reported by the chain's first receipt.
    unopened_gaps: HashMap<String, Option<UnsignedGap>>,
    next_index: u64,
}

impl ChainBuilder {
    /// Continues the chains in `heads` of a log that never rotated its
    /// master; `next_index` is the log's size.
    pub fn new(
        identity: Identity,
        master: MasterSeed,
        heads: Vec<ChainHead>,
        next_index: u64,
    ) -> Result<ChainBuilder, ChainError> {
        Self::resume(identity, master, heads, next_index, None)
    }

    /// Continues the chains in `heads`; `current` is the store's current
    /// master (None: an empty store). The seed must derive that master:
    /// any other seed does not belong to the store. An agent chain whose
    /// head carries a key of an earlier master generation is re-announced
    /// before its next receipt.
    pub fn resume(
        identity: Identity,
        master: MasterSeed,
        heads: Vec<ChainHead>,
        next_index: u64,
        current: Option<MasterRow>,
    ) -> Result<ChainBuilder, ChainError> {
        let observer_issuer = payload::issuer_id(
            &identity.deployer_id,
            &identity.hostname,
            payload::OBSERVER_AGENT,
        );
        let generation = current.as_ref().map_or(1, |m| m.generation);
        let mut builder = ChainBuilder {
            identity,
            master,
            generation,
            observer_issuer,
            chains: HashMap::new(),
            unopened_gaps: HashMap::new(),
            next_index,
        };
        let master_kid = ChainKey::master_key(&builder.master).kid;
        if let Some(current) = &current {
            if current.kid != master_kid {
                return Err(ChainError::ForeignKey {
                    issuer_id: builder.observer_issuer.clone(),
                    stored: current.kid.clone(),
                    derived: master_kid,
                });
            }
        }
        for head in heads {
            let key = Arc::new(builder.key_for(&head.issuer_id));
            let is_observer = head.issuer_id == builder.observer_issuer;
            // The observer chain's head is the rotation receipt itself
            // (signed by the old master) right after a rotation: checked
            // above against the store's current master instead.
            let key = if key.kid == head.kid || (is_observer && current.is_some()) {
                Some(key)
            } else if generation > 1 && !is_observer {
                None
            } else {
                return Err(ChainError::ForeignKey {
                    issuer_id: head.issuer_id,
                    stored: head.kid,
                    derived: key.kid.clone(),
                });
            };
            builder.chains.insert(
                head.issuer_id,
                Chain {
                    seq: head.seq,
                    head: head.payload_hash,
                    key,
                    kid: head.kid,
                    gap: None,
                },
            );
        }
        Ok(builder)
    }

    /// The current master generation (1: the genesis seed).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The issuer id of the observer's own chain (agent `observer`).
    pub fn observer_issuer(&self) -> &str {
        &self.observer_issuer
    }

    /// The identity the builder was made with.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The master key: signs the observer's chain and the checkpoints.
    pub fn master_key(&self) -> Arc<ChainKey> {
        match self
            .chains
            .get(&self.observer_issuer)
            .and_then(|c| c.key.clone())
        {
            Some(key) => key,
            None => Arc::new(ChainKey::master_key(&self.master)),
        }
    }

    fn key_for(&self, issuer_id: &str) -> ChainKey {
        if issuer_id == self.observer_issuer {
            ChainKey::master_key(&self.master)
        } else {
            ChainKey::derive(&self.master, issuer_id)
        }
    }

    /// Events were lost: every agent chain reports the window on its next
    /// receipt. The kernel cannot say whose events it dropped, so each
    /// chain carries the whole count as an upper bound; the exact counts by
    /// kind are in the `observer.loss` receipt.
    pub fn record_loss(&mut self, gap: &UnsignedGap) {
        for (issuer, chain) in &mut self.chains {
            if *issuer == self.observer_issuer {
                continue;
            }
            match &mut chain.gap {
                Some(g) => g.merge(gap),
                None => chain.gap = Some(gap.clone()),
            }
        }
    }

    /// The chain (issuer id) a draft of `agent_id` goes to.
    pub fn issuer_of(&self, agent_id: &str) -> String {
        payload::issuer_id(
            &self.identity.deployer_id,
            &self.identity.hostname,
            agent_id,
        )
    }

    /// Events of one chain were lost: its next receipt (its first, if the
    /// chain does not exist yet) reports `gap`, merged with any gap it
    /// already has to report.
    pub fn add_gap(&mut self, issuer_id: &str, gap: &UnsignedGap) {
        let slot = match self.chains.get_mut(issuer_id) {
            Some(chain) => &mut chain.gap,
            None => self.unopened_gaps.entry(issuer_id.to_string()).or_default(),
        };
        match slot {
            Some(g) => g.merge(gap),
            None => *slot = Some(gap.clone()),
        }
    }

    /// Places `draft` in its agent's chain, announcing the chain's key on
    /// the observer chain first if the chain is new.
    pub fn issue(&mut self, draft: Draft, out: &mut Vec<Sealed>) -> Result<(), ChainError> {
        payload::false_attestation_guard(payload::CAPTURE_TOPOLOGY, payload::RECEIPT_TYPE)?;
        let issuer_id = payload::issuer_id(
            &self.identity.deployer_id,
            &self.identity.hostname,
            &draft.agent_id,
        );
        if !self.chains.contains_key(&self.observer_issuer) {
            self.open_chain(
                self.observer_issuer.clone(),
                payload::OBSERVER_AGENT,
                draft.unix_ns,
                out,
            )?;
        }
        match self.chains.get(&issuer_id) {
            None => self.open_chain(issuer_id.clone(), &draft.agent_id, draft.unix_ns, out)?,
            Some(chain) if chain.key.is_none() => {
                self.reannounce(&issuer_id, &draft.agent_id, draft.unix_ns, out)?;
            }
            Some(_) => {}
        }
        let sealed = self.seal(&issuer_id, draft, None)?;
        out.push(sealed);
        Ok(())
    }

    /// Master key rotation (docs/RECEIPTS.md, "Key rotation"): an
    /// `observer.key` receipt on the observer chain, signed by the current
    /// master, announces the master `new` derives; every later receipt of
    /// the observer chain is signed by the new master, and every agent
    /// chain re-announces its key (derived from `new`) right before its
    /// next receipt. `committed` hears when the rotation receipt commits.
    pub fn rotate(
        &mut self,
        new: MasterSeed,
        reason: Option<&str>,
        unix_ns: u64,
        committed: Option<CommitNotice>,
        out: &mut Vec<Sealed>,
    ) -> Result<Rotation, ChainError> {
        payload::false_attestation_guard(payload::CAPTURE_TOPOLOGY, payload::RECEIPT_TYPE)?;
        if !self.chains.contains_key(&self.observer_issuer) {
            self.open_chain(
                self.observer_issuer.clone(),
                payload::OBSERVER_AGENT,
                unix_ns,
                out,
            )?;
        }
        let old = self.master_key();
        let new_master = Arc::new(ChainKey::master_key(&new));
        if new_master.kid == old.kid {
            return Err(ChainError::SameSeed(old.kid.clone()));
        }
        let generation = self.generation + 1;
        let jwk = new_master.jwk();
        let mut context = json!({
            "issuer_id": self.observer_issuer,
            "kid": new_master.kid,
            "jwk": jwk,
            "rotates": old.kid,
            "generation": generation,
        });
        if let Some(reason) = reason {
            context["reason"] = json!(reason);
        }
        let intro = KeyIntro {
            issuer_id: self.observer_issuer.clone(),
            agent_id: payload::OBSERVER_AGENT.to_string(),
            kid: new_master.kid.clone(),
            jwk,
            generation,
            rotates: Some(old.kid.clone()),
        };
        let draft = self.observer_key_draft(unix_ns, context);
        let observer_issuer = self.observer_issuer.clone();
        let mut sealed = self.seal(&observer_issuer, draft, Some(intro))?;
        sealed.new_master = Some(new_master.clone());
        sealed.committed = committed;
        let rotation = Rotation {
            old_kid: old.kid.clone(),
            new_kid: new_master.kid.clone(),
            generation,
            leaf_index: sealed.index,
        };
        out.push(sealed);
        // From here on the old seed and every key derived from it are
        // dropped (wiped): only the new master signs.
        self.master = new;
        self.generation = generation;
        for (issuer, chain) in &mut self.chains {
            chain.key = (*issuer == observer_issuer).then(|| new_master.clone());
        }
        Ok(rotation)
    }

    /// The `observer.key` receipt that gives a chain its key of the current
    /// master generation, continuing the chain (`rotates` names its
    /// previous key).
    fn reannounce(
        &mut self,
        issuer_id: &str,
        agent_id: &str,
        unix_ns: u64,
        out: &mut Vec<Sealed>,
    ) -> Result<(), ChainError> {
        let key = Arc::new(self.key_for(issuer_id));
        let Some(chain) = self.chains.get_mut(issuer_id) else {
            return Ok(());
        };
        let rotates = chain.kid.clone();
        chain.key = Some(key.clone());
        let jwk = key.jwk();
        let intro = KeyIntro {
            issuer_id: issuer_id.to_string(),
            agent_id: agent_id.to_string(),
            kid: key.kid.clone(),
            jwk: jwk.clone(),
            generation: self.generation,
            rotates: Some(rotates.clone()),
        };
        let context = json!({
            "issuer_id": issuer_id,
            "kid": key.kid,
            "jwk": jwk,
            "rotates": rotates,
        });
        let draft = self.observer_key_draft(unix_ns, context);
        let observer_issuer = self.observer_issuer.clone();
        let sealed = self.seal(&observer_issuer, draft, Some(intro))?;
        out.push(sealed);
        Ok(())
    }

    fn observer_key_draft(&self, unix_ns: u64, context: Value) -> Draft {
        Draft {
            agent_id: payload::OBSERVER_AGENT.to_string(),
            action_type: "observer.key",
            unix_ns,
            context,
            risk_class: RiskClass::Low,
            executable_hash: self.identity.observer_executable_hash.clone(),
            mappings: Mappings::default(),
            detection_rules_digest: None,
            erases: None,
            prunes: None,
        }
    }

    fn open_chain(
        &mut self,
        issuer_id: String,
        agent_id: &str,
        unix_ns: u64,
        out: &mut Vec<Sealed>,
    ) -> Result<(), ChainError> {
        let key = Arc::new(self.key_for(&issuer_id));
        let jwk = key.jwk();
        let intro = KeyIntro {
            issuer_id: issuer_id.clone(),
            agent_id: agent_id.to_string(),
            kid: key.kid.clone(),
            jwk: jwk.clone(),
            generation: self.generation,
            rotates: None,
        };
        let gap = self.unopened_gaps.remove(&issuer_id).flatten();
        self.chains.insert(
            issuer_id.clone(),
            Chain {
                seq: 0,
                head: GENESIS_HASH.to_string(),
                key: Some(key.clone()),
                kid: key.kid.clone(),
                gap,
            },
        );
        let draft = self.observer_key_draft(
            unix_ns,
            json!({ "issuer_id": issuer_id, "kid": key.kid, "jwk": jwk }),
        );
        let observer_issuer = self.observer_issuer.clone();
        let sealed = self.seal(&observer_issuer, draft, Some(intro))?;
        out.push(sealed);
        Ok(())
    }

    fn seal(
        &mut self,
        issuer_id: &str,
        draft: Draft,
        key_intro: Option<KeyIntro>,
    ) -> Result<Sealed, ChainError> {
        // The observer's own receipts always keep their contexts: key
        // announcements must stay readable, and they hold no personal data.
        let mode = if issuer_id == self.observer_issuer {
            Mode::Payload
        } else {
            self.identity.mode
        };
        let chain = self
            .chains
            .get_mut(issuer_id)
            .expect("chains are opened before use");
        let key = chain
            .key
            .clone()
            .expect("a chain's key is re-announced before its next receipt");
        let context_jcs = jcs::canonicalize(&draft.context)?;
        let issued_at = payload::issued_at(draft.unix_ns);
        let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
        let Mappings {
            mitre_techniques,
            mitre_atlas,
            owasp_llm_top10,
        } = draft.mappings;
        let (mitre_techniques, mitre_atlas, owasp_llm_top10) = (
            non_empty(mitre_techniques),
            non_empty(mitre_atlas),
            non_empty(owasp_llm_top10),
        );
        let declared =
            (mitre_techniques.is_some() || mitre_atlas.is_some() || owasp_llm_top10.is_some())
                .then_some(true);
        let payload = Payload {
            v: 1,
            mode,
            receipt_type: payload::RECEIPT_TYPE.to_string(),
            action_ref: payload::action_ref(&draft.agent_id, draft.action_type, &issued_at)?,
            issued_at,
            issuer_id: issuer_id.to_string(),
            agent_id: draft.agent_id.clone(),
            action_type: draft.action_type.to_string(),
            decision: "observation".to_string(),
            policy_digest: None,
            payload_digest: payload::payload_digest(&context_jcs),
            previous_receipt_hash: chain.head.clone(),
            seq: chain.seq + 1,
            key_thumbprint: key.kid.clone(),
            risk_class: draft.risk_class,
            executable_hash: draft.executable_hash,
            mitre_techniques,
            mitre_atlas,
            owasp_llm_top10,
            framework_mappings_self_declared: declared,
            unsigned_gap: chain.gap.take(),
            detection_rules_digest: draft.detection_rules_digest,
        };
        let payload_jcs = jcs::to_canonical(&payload)?;
        let payload_hash = payload::sha256_hex(&payload_jcs);
        chain.seq += 1;
        chain.head.clone_from(&payload_hash);
        if chain.kid != key.kid {
            chain.kid.clone_from(&key.kid);
        }
        let index = self.next_index;
        self.next_index += 1;
        Ok(Sealed {
            index,
            issuer_id: issuer_id.to_string(),
            agent_id: draft.agent_id,
            action_type: draft.action_type,
            seq: payload.seq,
            unix_ns: draft.unix_ns,
            risk_class: draft.risk_class,
            payload_jcs,
            payload_hash,
            context_jcs: (mode == Mode::Payload).then_some(context_jcs),
            key,
            key_intro,
            erases: draft.erases,
            prunes: draft.prunes,
            new_master: None,
            committed: None,
        })
    }
}

#[cfg(test)]
mod tests;
