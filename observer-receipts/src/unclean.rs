//! After an unclean stop (crash, `kill -9`, power loss) the receipts that
//! were signed but not committed are gone and nobody counted them: the
//! first receipt of every chain that continues reports an `unsigned_gap`
//! with `count: null` from the chain's last stored receipt to the restart.
use std::collections::HashMap;

use super::{
    chain::ChainHead,
    payload::UnsignedGap,
    store::{RunRow, Store, StoreError},
};

/// `issued_ns` of each chain's head receipt, by issuer id (a head pruned
/// by retention is missing).
pub fn head_issued_ns(store: &Store) -> Result<HashMap<String, u64>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: store.path().to_owned(),
        source,
    };
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT c.issuer_id, r.issued_ns FROM chains c
             JOIN receipts r ON r.receipt_hash = c.head_receipt_hash",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .map_err(err);
    rows
}

/// The gap of each chain in `heads` when `previous` (the last daemon run)
/// did not stop cleanly; none after a clean stop or on a new store.
/// `head_issued_ns` is the time of each chain's head receipt (missing when
/// retention pruned it: the previous run's start bounds the loss then, since
/// only that run's uncommitted receipts can be lost).
pub fn gaps(
    previous: Option<&RunRow>,
    heads: &[ChainHead],
    head_issued_ns: &HashMap<String, u64>,
    restart_ns: u64,
) -> Vec<(String, UnsignedGap)> {
    let Some(previous) = previous.filter(|run| !run.clean_stop) else {
        return Vec::new();
    };
    let previous_start_ns = humantime::parse_rfc3339_weak(&previous.started_at)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    heads
        .iter()
        .map(|head| {
            let from_ns = head_issued_ns
                .get(&head.issuer_id)
                .copied()
                .unwrap_or(previous_start_ns)
                .min(restart_ns);
            (
                head.issuer_id.clone(),
                UnsignedGap {
                    count: None,
                    from: super::payload::issued_at(from_ns),
                    to: super::payload::issued_at(restart_ns),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::issued_at;

    fn run(clean_stop: bool) -> RunRow {
        RunRow {
            id: 1,
            pid: 7,
            version: "0".into(),
            started_at: "2026-01-01T00:00:10.000000000Z".into(),
            stopped_at: None,
            clean_stop,
        }
    }

    fn head(issuer: &str) -> ChainHead {
        ChainHead {
            issuer_id: issuer.into(),
            agent_id: "a".into(),
            kid: "k".into(),
            seq: 3,
            payload_hash: "00".repeat(32),
        }
    }

    #[test]
    fn every_chain_after_an_unclean_stop_and_none_after_a_clean_one() {
        let s = |secs: u64| 1_767_225_600_000_000_000 + secs * 1_000_000_000;
        let heads = [head("i/agent/a"), head("i/agent/pruned")];
        let times = HashMap::from([("i/agent/a".to_string(), s(20))]);
        assert_eq!(
            gaps(Some(&run(false)), &heads, &times, s(30)),
            [
                (
                    "i/agent/a".to_string(),
                    UnsignedGap {
                        count: None,
                        from: issued_at(s(20)),
                        to: issued_at(s(30)),
                    }
                ),
                (
                    "i/agent/pruned".to_string(),
                    UnsignedGap {
                        count: None,
                        from: "2026-01-01T00:00:10.000000000Z".into(),
                        to: issued_at(s(30)),
                    }
                ),
            ]
        );
        assert!(gaps(Some(&run(true)), &heads, &times, s(30)).is_empty());
        assert!(gaps(None, &heads, &times, s(30)).is_empty());
    }
}
