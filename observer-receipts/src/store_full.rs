//! What was lost while the store could not grow (SQLITE_FULL).
//!
//! The writer holds signed receipts in memory while the store is full (up
//! to `receipts.full_hold_max`); past that bound the pipeline drops new
//! drafts *before* they are chained, so every chain stays verifiable (no
//! seq or `previousReceiptHash` ever points at a receipt that was not
//! stored). Each dropped draft is counted here by chain; once a commit
//! succeeds again, the pipeline issues one `observer.loss` receipt with
//! these counts and an `unsigned_gap` on every affected chain.
use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::payload::{self, UnsignedGap};

/// The `reason` of an `observer.loss` receipt for receipts dropped while
/// the store was full.
pub const REASON: &str = "store_full";

/// Drafts dropped on one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dropped {
    agent_id: String,
    count: u64,
    from_ns: u64,
    to_ns: u64,
}

/// Drafts dropped since the last `observer.loss` receipt for them, by
/// chain (issuer id).
#[derive(Debug, Default)]
pub struct StoreLoss {
    chains: BTreeMap<String, Dropped>,
}

/// The loss to report: the gap of each affected chain and the context of
/// the `observer.loss` receipt.
#[derive(Debug)]
pub struct LossReport {
    /// `(issuer_id, gap)` per affected chain: the chain's next receipt
    /// carries it as `unsigned_gap`.
    pub gaps: Vec<(String, UnsignedGap)>,
    /// The `observer.loss` context (`reason` [`REASON`], counts and times
    /// per chain).
    pub context: Value,
    /// Drafts dropped over all chains.
    pub total: u64,
}

impl StoreLoss {
    /// One draft of `agent_id` on chain `issuer_id`, for an event at
    /// `unix_ns`, was dropped.
    pub fn record(&mut self, issuer_id: &str, agent_id: &str, unix_ns: u64) {
        let d = self
            .chains
            .entry(issuer_id.to_string())
            .or_insert_with(|| Dropped {
                agent_id: agent_id.to_string(),
                count: 0,
                from_ns: unix_ns,
                to_ns: unix_ns,
            });
        d.count += 1;
        d.from_ns = d.from_ns.min(unix_ns);
        d.to_ns = d.to_ns.max(unix_ns);
    }

    /// Whether nothing was dropped since the last [`StoreLoss::take`].
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// Everything recorded so far, as a report; the tracker starts empty.
    pub fn take(&mut self, hold_max: usize) -> Option<LossReport> {
        if self.chains.is_empty() {
            return None;
        }
        let chains = std::mem::take(&mut self.chains);
        let total = chains.values().map(|d| d.count).sum();
        let from = chains.values().map(|d| d.from_ns).min().unwrap_or(0);
        let to = chains.values().map(|d| d.to_ns).max().unwrap_or(0);
        let gaps: Vec<(String, UnsignedGap)> = chains
            .iter()
            .map(|(issuer, d)| {
                (
                    issuer.clone(),
                    UnsignedGap {
                        count: Some(d.count),
                        from: payload::issued_at(d.from_ns),
                        to: payload::issued_at(d.to_ns),
                    },
                )
            })
            .collect();
        let listed: Vec<Value> = chains
            .iter()
            .zip(&gaps)
            .map(|((issuer, d), (_, gap))| {
                json!({
                    "issuer_id": issuer,
                    "agent_id": d.agent_id,
                    "count": d.count,
                    "from": gap.from,
                    "to": gap.to,
                })
            })
            .collect();
        // `user` and `total` as in the other loss receipts (counts by
        // reason); `chains` because here, unlike a kernel drop, the
        // observer knows exactly whose receipts it dropped.
        let context = json!({
            "reason": REASON,
            "user": { REASON: total },
            "total": total,
            "from": payload::issued_at(from),
            "to": payload::issued_at(to),
            "full_hold_max": hold_max,
            "chains": listed,
        });
        Some(LossReport {
            gaps,
            context,
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_chain_with_its_own_window_and_empties() {
        let mut loss = StoreLoss::default();
        assert!(loss.take(8).is_none());
        loss.record("i/agent/a", "a", 3_000_000_000);
        loss.record("i/agent/b", "b", 2_000_000_000);
        loss.record("i/agent/a", "a", 1_000_000_000);
        let report = loss.take(8).unwrap();
        assert!(loss.is_empty());
        assert_eq!(report.total, 3);
        let second = |s: u64| payload::issued_at(s * 1_000_000_000);
        assert_eq!(
            report.gaps,
            [
                (
                    "i/agent/a".to_string(),
                    UnsignedGap {
                        count: Some(2),
                        from: second(1),
                        to: second(3)
                    }
                ),
                (
                    "i/agent/b".to_string(),
                    UnsignedGap {
                        count: Some(1),
                        from: second(2),
                        to: second(2)
                    }
                ),
            ]
        );
        assert_eq!(
            report.context,
            json!({
                "reason": "store_full",
                "user": {"store_full": 3},
                "total": 3,
                "from": second(1),
                "to": second(3),
                "full_hold_max": 8,
                "chains": [
                    {"issuer_id": "i/agent/a", "agent_id": "a", "count": 2, "from": second(1), "to": second(3)},
                    {"issuer_id": "i/agent/b", "agent_id": "b", "count": 1, "from": second(2), "to": second(2)},
                ],
            })
        );
    }
}
