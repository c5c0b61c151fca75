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
};

/// An observation not yet placed in a chain.
#[derive(Debug, Clone)]
pub struct Draft {
    pub agent_id: String,
    pub action_type: &'static str,
    /// When the event happened, ns since the Unix epoch (kernel clock).
    pub unix_ns: u64,
    pub context: Value,
    pub risk_class: RiskClass,
    /// `sha256:<hex>` of the executable that acted.
    pub executable_hash: String,
    pub mappings: Mappings,
    pub detection_rules_digest: Option<String>,
    /// Leaf index of a receipt whose context this receipt erases.
    pub erases: Option<u64>,
    /// Receipts below this log index are deleted when this one commits.
    pub prunes: Option<u64>,
}

/// A new chain key announced by an `observer.key` receipt: stored in the
/// keys table when that receipt commits.
#[derive(Debug, Clone)]
pub struct KeyIntro {
    pub issuer_id: String,
    pub agent_id: String,
    pub kid: String,
    pub jwk: Value,
}

/// A receipt whose payload is final, waiting for its signature.
pub struct Sealed {
    /// Position in the host-wide log (its Merkle leaf index).
    pub index: u64,
    pub issuer_id: String,
    pub agent_id: String,
    pub action_type: &'static str,
    pub seq: u64,
    pub unix_ns: u64,
    pub risk_class: RiskClass,
    pub payload_jcs: Vec<u8>,
    pub payload_hash: String,
    /// JCS(context); `None` in hash-only mode, where it is never stored.
    pub context_jcs: Option<Vec<u8>>,
    pub key: Arc<ChainKey>,
    pub key_intro: Option<KeyIntro>,
    pub erases: Option<u64>,
    pub prunes: Option<u64>,
}

/// A chain's head as stored, enough to continue it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub issuer_id: String,
    pub agent_id: String,
    pub kid: String,
    pub seq: u64,
    pub payload_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Guard(#[from] payload::GuardError),
    #[error("canonicalising a receipt: {0}")]
    Jcs(#[from] JcsError),
    #[error("chain {issuer_id}: the stored key id {stored} is not the key the master seed derives ({derived}); the store belongs to another master seed")]
    ForeignKey {
        issuer_id: String,
        stored: String,
        derived: String,
    },
}

pub struct Identity {
    /// LEI, EIN or DID of the deployer.
    pub deployer_id: String,
    pub hostname: String,
    pub mode: Mode,
    /// `sha256:<hex>` of the observerd binary, for the observer's receipts.
    pub observer_executable_hash: String,
}

struct Chain {
    seq: u64,
    head: String,
    key: Arc<ChainKey>,
    gap: Option<UnsignedGap>,
}

pub struct ChainBuilder {
    identity: Identity,
    master: MasterSeed,
    observer_issuer: String,
    chains: HashMap<String, Chain>,
    next_index: u64,
}

impl ChainBuilder {
    /// Continues the chains in `heads`; `next_index` is the log's size.
    pub fn new(
        identity: Identity,
        master: MasterSeed,
        heads: Vec<ChainHead>,
        next_index: u64,
    ) -> Result<ChainBuilder, ChainError> {
        let observer_issuer = payload::issuer_id(
            &identity.deployer_id,
            &identity.hostname,
            payload::OBSERVER_AGENT,
        );
        let mut builder = ChainBuilder {
            identity,
            master,
            observer_issuer,
            chains: HashMap::new(),
            next_index,
        };
        for head in heads {
            let key = Arc::new(builder.key_for(&head.issuer_id));
            if key.kid != head.kid {
                return Err(ChainError::ForeignKey {
                    issuer_id: head.issuer_id,
                    stored: head.kid,
                    derived: key.kid.clone(),
                });
            }
            builder.chains.insert(
                head.issuer_id,
                Chain {
                    seq: head.seq,
                    head: head.payload_hash,
                    key,
                    gap: None,
                },
            );
        }
        Ok(builder)
    }

    pub fn observer_issuer(&self) -> &str {
        &self.observer_issuer
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The master key: signs the observer's chain and the checkpoints.
    pub fn master_key(&self) -> Arc<ChainKey> {
        match self.chains.get(&self.observer_issuer) {
            Some(c) => c.key.clone(),
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
        for (issuer, chain) in self.chains.iter_mut() {
            if *issuer == self.observer_issuer {
                continue;
            }
            match &mut chain.gap {
                Some(g) => g.merge(gap),
                None => chain.gap = Some(gap.clone()),
            }
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
        if !self.chains.contains_key(&issuer_id) {
            self.open_chain(issuer_id.clone(), &draft.agent_id, draft.unix_ns, out)?;
        }
        let sealed = self.seal(&issuer_id, draft, None)?;
        out.push(sealed);
        Ok(())
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
        };
        self.chains.insert(
            issuer_id.clone(),
            Chain {
                seq: 0,
                head: GENESIS_HASH.to_string(),
                key: key.clone(),
                gap: None,
            },
        );
        let draft = Draft {
            agent_id: payload::OBSERVER_AGENT.to_string(),
            action_type: "observer.key",
            unix_ns,
            context: json!({ "issuer_id": issuer_id, "kid": key.kid, "jwk": jwk }),
            risk_class: RiskClass::Low,
            executable_hash: self.identity.observer_executable_hash.clone(),
            mappings: Mappings::default(),
            detection_rules_digest: None,
            erases: None,
            prunes: None,
        };
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
            key_thumbprint: chain.key.kid.clone(),
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
        chain.head = payload_hash.clone();
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
            key: chain.key.clone(),
            key_intro,
            erases: draft.erases,
            prunes: draft.prunes,
        })
    }
}
