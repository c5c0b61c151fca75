//! `status`: what the daemon is doing, from the counters it already keeps
//! for loss accounting and the metrics endpoint (no counters of its own).
use std::{sync::atomic::Ordering, time::Duration};

use serde_json::{json, Map, Value};

use super::state::State;
use crate::{
    format::rfc3339, forward::counters::SinkCounters, pipeline::inbox::Ask, receipt::store::Store,
};

/// The `status` result; its schema is documented in docs/observerctl.md.
pub async fn status(state: &State, ask_timeout: Duration) -> Value {
    let uptime = state.started_at.elapsed();
    let mut programs: Vec<&str> = state
        .probes
        .iter()
        .map(|p| p.split(" -> ").next().unwrap_or(p))
        .collect();
    programs.dedup();
    let events = events(state, uptime);
    let store = match state.sources.store.clone() {
        Some(path) => tokio::task::spawn_blocking(move || store_summary(&path))
            .await
            .unwrap_or_else(|e| json!({"error": e.to_string()})),
        None => Value::Null,
    };
    let receipts = state.sources.writer.as_ref().map(|w| {
        json!({
            "committed": w.committed.load(Ordering::Relaxed),
            "log_size": w.log_size.load(Ordering::Relaxed),
            "checkpoints": w.checkpoints.load(Ordering::Relaxed),
            "store": state.sources.store,
        })
    });
    let policy = match state.ask(Ask::Policy, ask_timeout).await {
        Ok(Ok(p)) => json!({
            "digest": p["policy_digest"],
            "policies_dir": p["policies_dir"],
            "source": p["policy_source"],
            "agents": p["agents"],
            "rules": p["rules"].as_array().map_or(0, Vec::len),
        }),
        Ok(Err(e)) | Err(e) => json!({"error": e}),
    };
    json!({
        "daemon": {
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": rfc3339(state.started),
            "uptime_seconds": uptime.as_secs(),
        },
        "probes": {
            "programs": programs,
            "attachments": state.probes,
        },
        "events": events.0,
        "drops": events.1,
        "receipts": receipts,
        "master": store.get("master").cloned().unwrap_or(Value::Null),
        "chains": store.get("chains").cloned().unwrap_or(Value::Null),
        "last_checkpoint": store.get("last_checkpoint").cloned().unwrap_or(Value::Null),
        "store_error": store.get("error").cloned().unwrap_or(Value::Null),
        "policy": policy,
        "identity": state.identity,
        "sinks": sinks(state),
        "control": state.streams.to_json(),
        "plaintext": match &state.plaintext {
            Some(v) => {
                let mut shown = v.to_json();
                shown["enabled"] = json!(true);
                shown
            }
            None => json!({"enabled": false}),
        },
    })
}

/// (events, drops) from the latest loss-accounting snapshot.
fn events(state: &State, uptime: Duration) -> (Value, Value) {
    let Some(snap) = state.sources.counters.lock().ok().and_then(|g| g.clone()) else {
        return (Value::Null, Value::Null);
    };
    let total: u64 = snap.kernel.values().map(|k| k.emitted).sum();
    let per_second = state.samples.lock().ok().and_then(|s| {
        let (first, last) = (s.front()?, s.back()?);
        let dt = last.0.duration_since(first.0).as_secs_f64();
        (dt > 0.0).then(|| last.1.saturating_sub(first.1) as f64 / dt)
    });
    let by_kind: Map<String, Value> = snap
        .kernel
        .iter()
        .map(|(k, s)| (k.to_string(), json!(s.emitted)))
        .collect();
    let kernel_drops: Map<String, Value> = snap
        .kernel
        .iter()
        .map(|(k, s)| {
            (
                k.to_string(),
                json!({"ringbuf_full": s.dropped_ringbuf_full, "read_error": s.dropped_read_error}),
            )
        })
        .collect();
    let suppressed: Map<String, Value> = snap
        .kernel
        .iter()
        .map(|(k, s)| (k.to_string(), json!(s.suppressed)))
        .collect();
    let dropped_total: u64 = snap
        .kernel
        .values()
        .map(|k| k.dropped_ringbuf_full + k.dropped_read_error)
        .sum::<u64>()
        + snap.user.values().sum::<u64>();
    (
        json!({
            "total": total,
            "by_kind": by_kind,
            "per_second": per_second,
            "per_second_since_start": total as f64 / uptime.as_secs_f64().max(1e-3),
        }),
        json!({
            "total": dropped_total,
            "kernel": kernel_drops,
            "user": snap.user,
            "kernel_skipped_runs": snap.skipped,
            "suppressed": suppressed,
        }),
    )
}

fn store_summary(path: &std::path::Path) -> Value {
    let store = match Store::open_read_only(path) {
        Ok(s) => s,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let heads = match store.chain_heads() {
        Ok(h) => h,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let checkpoint = match store.latest_checkpoint() {
        Ok(c) => c,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let master = match store.current_master() {
        Ok(m) => m,
        Err(e) => return json!({"error": e.to_string()}),
    };
    json!({
        "master": master.map(|m| json!({"kid": m.kid, "generation": m.generation})),
        "chains": {
            "count": heads.len(),
            "heads": heads.iter().map(|h| json!({
                "issuer_id": h.issuer_id,
                "agent_id": h.agent_id,
                "kid": h.kid,
                "seq": h.seq,
                "payload_hash": h.payload_hash,
            })).collect::<Vec<_>>(),
        },
        "last_checkpoint": checkpoint.map(|c| json!({
            "size": c.size,
            "root": hex::encode(&c.root),
            "created_at": c.created_at,
        })),
    })
}

fn sinks(state: &State) -> Value {
    Value::Array(
        state
            .sources
            .sinks
            .iter()
            .map(|(name, kind, c)| {
                json!({
                    "name": name,
                    "type": kind.as_str(),
                    "backlog": SinkCounters::get(&c.backlog),
                    "cursor": SinkCounters::get(&c.cursor),
                    "delivered": SinkCounters::get(&c.delivered),
                    "retries": SinkCounters::get(&c.retries),
                    "errors": c.errors(),
                })
            })
            .collect(),
    )
}
