//! Turns rule hits into `shadow_ai.finding` drafts that name their
//! evidence, and suppresses repeats of one finding.
use std::collections::HashMap;

use serde_json::{json, Value};

use super::{rules::Hit, Policy};
use crate::{
    receipt::{chain::Draft, pipeline::Submitted},
    record::EnrichedEvent,
};

/// One finding per (rule, process, what matched) per window: a process
/// that connects to an AI API a thousand times is one finding a minute,
/// each resting on its own evidence receipt.
pub struct Dedup {
    window_ns: u64,
    seen: HashMap<(usize, u32, u64), u64>,
}

/// Entries kept before old ones are dropped.
const DEDUP_CAPACITY: usize = 16384;

impl Dedup {
    pub fn new(window_ns: u64) -> Dedup {
        Dedup {
            window_ns,
            seen: HashMap::new(),
        }
    }

    /// Forget everything (a new policy set numbers its rules anew).
    pub fn clear(&mut self) {
        self.seen.clear();
    }

    /// True if this hit is new (and remembers it).
    pub fn admit(&mut self, hit: &Hit, pid: u32, unix_ns: u64) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        hit.matched.to_string().hash(&mut h);
        let key = (hit.rule, pid, h.finish());
        if let Some(last) = self.seen.get(&key) {
            if unix_ns.saturating_sub(*last) < self.window_ns {
                return false;
            }
        }
        if self.seen.len() >= DEDUP_CAPACITY {
            let cutoff = unix_ns.saturating_sub(self.window_ns);
            self.seen.retain(|_, t| *t >= cutoff);
            if self.seen.len() >= DEDUP_CAPACITY {
                self.seen.clear();
            }
        }
        self.seen.insert(key, unix_ns);
        true
    }
}

/// The chain an event's evidence and findings go to: its registered
/// agent's, or `unregistered:<16 hex of the executable's sha256>`.
pub fn chain_agent_id(ev: &EnrichedEvent) -> String {
    match &ev.process.agent {
        Some(a) => a.clone(),
        None => super::unregistered_agent_id(ev.process.exe_sha256.as_deref()),
    }
}

/// The evidence a finding names: a receipt's place in its chain and log.
pub fn evidence_ref(s: &Submitted) -> Value {
    json!({
        "issuer_id": s.issuer_id,
        "agent_id": s.agent_id,
        "action_type": s.action_type,
        "seq": s.seq,
        "payload_hash": s.payload_hash,
        "leaf_index": s.leaf_index,
    })
}

/// The `shadow_ai.finding` draft for `hit`, resting on `evidence`.
pub fn draft(
    policy: &Policy,
    hit: &Hit,
    ev: &EnrichedEvent,
    evidence: &[Submitted],
    executable_hash: String,
    unix_ns: u64,
) -> Draft {
    let rule = &policy.rules.rules[hit.rule];
    let p = &ev.process;
    let context = json!({
        "rule_id": rule.id,
        "reason": hit.reason,
        "risk_class": hit.risk.as_str(),
        "policy_digest": policy.digest,
        "event": ev.event,
        "time": ev.time,
        "matched": hit.matched,
        "registered": p.agent.is_some(),
        "process": {
            "pid": p.pid,
            "ppid": p.ppid,
            "uid": p.uid,
            "user": p.user,
            "comm": p.comm,
            "exe": p.exe,
            "exe_sha256": p.exe_sha256,
            "argv": p.argv,
            "agent": p.agent,
            "unit": p.unit,
            "cgroup": p.cgroup,
        },
        "parents": ev.parents.iter().map(|a| json!({"pid": a.pid, "comm": a.comm, "exe": a.exe})).collect::<Vec<_>>(),
        "evidence": evidence.iter().map(evidence_ref).collect::<Vec<_>>(),
    });
    Draft {
        agent_id: chain_agent_id(ev),
        action_type: "shadow_ai.finding",
        unix_ns,
        context,
        risk_class: hit.risk,
        executable_hash,
        mappings: rule.mappings.clone(),
        detection_rules_digest: Some(policy.digest.clone()),
        erases: None,
        prunes: None,
    }
}
