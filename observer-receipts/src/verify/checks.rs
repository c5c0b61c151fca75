//! The per-receipt checks of verification that need no chain state:
//! structure (every required member, the false-attestation guard),
//! canonical form, `action_ref`, `issued_at` and `payload_digest`. They run
//! in parallel; chain links, keys and the log are checked in order by
//! [`super`].
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    clock_steps::Corrections,
    jcs, jcs_scan, json,
    merkle::Hash,
    payload::{self, ACTION_TYPES},
    store::ReceiptRow,
    verify::{Outcome, MAX_FUTURE_NS},
};

/// What the parallel first pass learns from one row.
pub(super) struct Parsed {
    pub(super) row: ReceiptRow,
    /// SHA-256 of the envelope as stored (its JCS form when intact).
    pub(super) receipt_hash: Hash,
    pub(super) payload: Option<Value>,
    pub(super) payload_jcs: Vec<u8>,
    pub(super) payload_hash: String,
    pub(super) kid: String,
    pub(super) signature: Vec<u8>,
    pub(super) context: Option<Value>,
    /// Check results computed without chain state.
    pub(super) results: Vec<(&'static str, Outcome, String)>,
}

/// Checks that need no chain state: structure, canonical form, action_ref,
/// payload_digest, issued_at.
pub(super) fn parse_row(
    mut row: ReceiptRow,
    now_unix_ns: u64,
    clock_steps: &Corrections,
) -> Parsed {
    let receipt_hash: Hash = Sha256::digest(row.envelope.as_bytes()).into();
    // The stored texts are not needed after this pass: they leave now, on
    // the thread that read them, rather than after the in-order pass.
    let envelope = std::mem::take(&mut row.envelope);
    let context = row.context.take();
    let mut parsed = Parsed {
        row,
        receipt_hash,
        payload: None,
        payload_jcs: Vec::new(),
        payload_hash: String::new(),
        kid: String::new(),
        signature: Vec::new(),
        context: None,
        results: Vec::new(),
    };
    let payload = match signer_form(&envelope, &mut parsed) {
        Some(payload) => payload,
        None => match any_form(&envelope, &mut parsed) {
            Some(payload) => payload,
            None => return parsed,
        },
    };
    parsed.payload_hash = payload::sha256_hex(&parsed.payload_jcs);

    // action_ref
    let s = |k: &str| payload[k].as_str().unwrap_or_default();
    match payload::action_ref(s("agent_id"), s("action_type"), s("issued_at")) {
        Ok(expected) if expected == s("action_ref") => {
            parsed
                .results
                .push(("action_ref", Outcome::Pass, String::new()));
        }
        _ => parsed.results.push((
            "action_ref",
            Outcome::Fail,
            "action_ref is not the hash of agent, action type and issued_at".into(),
        )),
    }
    // issued_at freshness: a backward clock step recorded later in the
    // log (observer.clock_step) moves the limit by its size.
    match humantime::parse_rfc3339(s("issued_at")) {
        Ok(t) => {
            let ns = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let set_back = (-clock_steps.after(parsed.row.leaf_index)).max(0);
            if i128::from(ns) > i128::from(now_unix_ns) + i128::from(MAX_FUTURE_NS) + set_back {
                parsed.results.push((
                    "issued_at",
                    Outcome::Fail,
                    format!(
                        "issued_at {} is more than 300 s in the future{}",
                        s("issued_at"),
                        if set_back > 0 {
                            format!(
                                " (after the {} s the clock was set back later)",
                                set_back / 1_000_000_000
                            )
                        } else {
                            String::new()
                        }
                    ),
                ));
            } else {
                parsed
                    .results
                    .push(("issued_at", Outcome::Pass, String::new()));
            }
        }
        Err(_) => parsed.results.push((
            "issued_at",
            Outcome::Fail,
            format!("issued_at {:?} is not RFC 3339", s("issued_at")),
        )),
    }
    // payload_digest against the stored context
    let mode = s("mode");
    let digest_hash = payload["payload_digest"]["hash"]
        .as_str()
        .unwrap_or_default();
    let digest_size = payload["payload_digest"]["size"].as_u64();
    match (context, mode) {
        (None, "hash") => {
            parsed
                .results
                .push(("payload_digest", Outcome::Pass, "hash-only receipt".into()));
        }
        (None, _) => parsed.results.push((
            "payload_digest",
            Outcome::Fail,
            "the context of this payload-mode receipt is missing".into(),
        )),
        (Some(text), _) => {
            let digest_matches = || {
                payload::sha256_hex(text.as_bytes()) == digest_hash
                    && digest_size == Some(text.len() as u64)
            };
            match jcs_scan::scan(&text) {
                // Canonical and no erasure marker: the digest decides.
                // The value is needed only where the in-order pass reads
                // the context: key announcements and erasures.
                Some(shape) if !shape.has_erased_member => {
                    parsed.results.push(digest_outcome(digest_matches()));
                    if matches!(s("action_type"), "observer.key" | "observer.policy") {
                        parsed.context = json::parse_strict(text.as_bytes()).ok();
                    }
                }
                _ => match json::parse_strict(text.as_bytes()) {
                    Ok(ctx)
                        if ctx.get("erased") == Some(&Value::Bool(true))
                            && ctx.as_object().is_some_and(|o| o.len() == 2) =>
                    {
                        parsed.results.push((
                            "payload_digest",
                            Outcome::Pass,
                            "context erased".into(),
                        ));
                        parsed.context = Some(ctx);
                    }
                    Ok(ctx) => {
                        let ok = digest_matches()
                            && jcs::canonicalize(&ctx).is_ok_and(|c| c == text.as_bytes());
                        parsed.results.push(digest_outcome(ok));
                        parsed.context = Some(ctx);
                    }
                    Err(e) => parsed.results.push((
                        "payload_digest",
                        Outcome::Fail,
                        format!("the stored context is not valid JSON: {e}"),
                    )),
                },
            }
        }
    }
    parsed.payload = Some(payload);
    parsed
}

fn digest_outcome(ok: bool) -> (&'static str, Outcome, String) {
    if ok {
        ("payload_digest", Outcome::Pass, String::new())
    } else {
        (
            "payload_digest",
            Outcome::Fail,
            "the stored context does not match payload_digest".into(),
        )
    }
}

/// The envelope exactly as the signer writes it,
/// `payload::envelope_jcs(JCS(payload), kid, sig)`: then its structure,
/// canonical form, payload, kid and signature follow from the payload
/// text alone, without parsing and re-serialising the 4.4 KB signature.
/// `None` (nothing recorded) for any other text, which [`any_form`]
/// then checks in full; on `Some` the results are the ones [`any_form`]
/// would give.
fn signer_form(envelope: &str, parsed: &mut Parsed) -> Option<Value> {
    const HEAD: &str = r#"{"payload":"#;
    const SIGNATURE_HEAD: &str = r#","signature":{"alg":"ML-DSA-65","kid":""#;
    const BETWEEN: &str = r#"","sig":""#;
    const TAIL: &str = r#""}}"#;
    let body = envelope.strip_prefix(HEAD)?.strip_suffix(TAIL)?;
    // kid and sig are base64url, so the last quotes delimit them.
    let sig_at = body.rfind('"')? + 1;
    let sig = &body[sig_at..];
    let rest = body[..sig_at].strip_suffix(BETWEEN)?;
    let kid_at = rest.rfind('"')? + 1;
    let kid = &rest[kid_at..];
    let payload_text = rest[..kid_at].strip_suffix(SIGNATURE_HEAD)?;
    if kid.is_empty() || !payload::is_base64url(kid) {
        return None;
    }
    // A successful decode also proves `sig` base64url without padding.
    let signature = URL_SAFE_NO_PAD.decode(sig).ok()?;
    // The payload is a member of the envelope object: nested one deep.
    let payload = json::parse_strict_nested(payload_text.as_bytes(), 1).ok()?;
    if !payload.is_object() {
        return None;
    }
    let payload_jcs = jcs::canonicalize(&payload).ok()?;
    if payload_jcs != payload_text.as_bytes() {
        return None;
    }
    // The envelope is envelope_jcs(payload_jcs, kid, sig): its own JCS.
    let mut problems = Vec::new();
    payload_problems(&payload, &mut problems);
    parsed.results.push(structure_outcome(problems));
    parsed.kid = kid.to_string();
    parsed.signature = signature;
    parsed.payload_jcs = payload_jcs;
    Some(payload)
}

/// Any stored envelope: parsed strictly and canonicalised again, with
/// every structure problem named. `None` when it is not JSON at all.
fn any_form(envelope: &str, parsed: &mut Parsed) -> Option<Value> {
    let envelope_value = match json::parse_strict(envelope.as_bytes()) {
        Ok(v) => v,
        Err(e) => {
            parsed
                .results
                .push(("structure", Outcome::Fail, format!("envelope: {e}")));
            return None;
        }
    };
    match jcs::canonicalize(&envelope_value) {
        Ok(c) if c == envelope.as_bytes() => {}
        _ => parsed.results.push((
            "structure",
            Outcome::Fail,
            "the stored envelope is not in JCS form".into(),
        )),
    }
    let payload = envelope_value["payload"].clone();
    parsed
        .results
        .push(structure_outcome(structure_problems(&envelope_value)));
    parsed.kid = envelope_value["signature"]["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    parsed.signature = envelope_value["signature"]["sig"]
        .as_str()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .unwrap_or_default();
    parsed.payload_jcs = jcs::canonicalize(&payload).unwrap_or_default();
    Some(payload)
}

fn structure_outcome(problems: Vec<String>) -> (&'static str, Outcome, String) {
    if problems.is_empty() {
        ("structure", Outcome::Pass, String::new())
    } else {
        ("structure", Outcome::Fail, problems.join("; "))
    }
}

/// Required members present and well formed.
pub fn structure_problems(envelope: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let p = &envelope["payload"];
    let sig = &envelope["signature"];
    if !p.is_object() {
        return vec!["payload is not an object".into()];
    }
    payload_problems(p, &mut bad);
    if sig["alg"] != "ML-DSA-65" {
        bad.push("signature.alg must be ML-DSA-65".into());
    }
    if !sig["kid"]
        .as_str()
        .is_some_and(|k| !k.is_empty() && payload::is_base64url(k))
    {
        bad.push("signature.kid must be base64url".into());
    }
    if !sig["sig"].as_str().is_some_and(payload::is_base64url) {
        bad.push("signature.sig must be base64url without padding".into());
    }
    bad
}

/// The payload's part of [`structure_problems`], for a payload object.
fn payload_problems(p: &Value, bad: &mut Vec<String>) {
    let str_of = |k: &str| p[k].as_str();
    if p["v"] != 1 {
        bad.push("v must be 1".into());
    }
    if !matches!(str_of("mode"), Some("payload" | "hash")) {
        bad.push("mode must be \"payload\" or \"hash\"".into());
    }
    if let Err(e) = payload::false_attestation_guard(
        payload::CAPTURE_TOPOLOGY,
        str_of("type").unwrap_or_default(),
    ) {
        bad.push(e.to_string());
    }
    if !str_of("issued_at").is_some_and(is_issued_at) {
        bad.push("issued_at must be RFC 3339 UTC with nine fractional digits".into());
    }
    let agent = str_of("agent_id").unwrap_or_default();
    // `issuer_id` ends with "/agent/<agent_id>".
    if agent.is_empty()
        || !str_of("issuer_id")
            .and_then(|i| i.strip_suffix(agent))
            .is_some_and(|i| i.ends_with("/agent/"))
    {
        bad.push("issuer_id must end with /agent/<agent_id>".into());
    }
    if !str_of("action_type").is_some_and(|a| ACTION_TYPES.contains(&a)) {
        bad.push("action_type is not an observation action".into());
    }
    if str_of("decision") != Some("observation") {
        bad.push("decision must be \"observation\"".into());
    }
    if !p["policy_digest"].is_null() || p.get("policy_digest").is_none() {
        bad.push("policy_digest must be null".into());
    }
    if !p["payload_digest"]["hash"]
        .as_str()
        .is_some_and(payload::is_lower_hex64)
        || !p["payload_digest"]["size"].is_u64()
    {
        bad.push("payload_digest must be {hash: 64 hex, size: integer}".into());
    }
    if !str_of("action_ref")
        .and_then(|r| r.strip_prefix("sha256:"))
        .is_some_and(payload::is_lower_hex64)
    {
        bad.push("action_ref must be sha256:<64 hex>".into());
    }
    if !str_of("previousReceiptHash").is_some_and(payload::is_lower_hex64) {
        bad.push("previousReceiptHash must be 64 lowercase hex".into());
    }
    if p["seq"].as_u64().is_none_or(|s| s < 1) {
        bad.push("seq must be an integer >= 1".into());
    }
    if !str_of("key_thumbprint").is_some_and(|k| !k.is_empty() && payload::is_base64url(k)) {
        bad.push("key_thumbprint must be base64url".into());
    }
    if !matches!(
        str_of("risk_class"),
        Some("low" | "medium" | "high" | "unknown")
    ) {
        bad.push("risk_class must be low, medium, high or unknown".into());
    }
    if !str_of("executable_hash").is_some_and(payload::is_executable_hash) {
        bad.push("executable_hash must be sha256:<64 hex>".into());
    }
    let mut mapped = false;
    for k in ["mitre_techniques", "mitre_atlas", "owasp_llm_top10"] {
        if let Some(v) = p.get(k) {
            mapped = true;
            let ok = v.as_array().is_some_and(|a| {
                !a.is_empty()
                    && a.iter()
                        .all(|s| s.as_str().is_some_and(|s| s.chars().count() <= 128))
            });
            if !ok {
                bad.push(format!(
                    "{k} must be a non-empty array of strings <= 128 characters"
                ));
            }
        }
    }
    if mapped && p["framework_mappings_self_declared"] != Value::Bool(true) {
        bad.push("framework mappings require framework_mappings_self_declared: true".into());
    }
    if let Some(g) = p.get("unsigned_gap") {
        // `count: null`: events were lost but their number is unknown
        // (an unclean stop); the member must still be present.
        let ok = (g["count"].is_u64() || g.get("count").is_some_and(Value::is_null))
            && g["from"].as_str().is_some_and(is_issued_at)
            && g["to"].as_str().is_some_and(is_issued_at);
        if !ok {
            bad.push("unsigned_gap must be {count: integer or null, from, to}".into());
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn is_issued_at(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 30
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            29 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && humantime::parse_rfc3339(s).is_ok()
}

#[cfg(test)]
mod tests;
