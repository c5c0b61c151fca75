//! The per-receipt checks of verification that need no chain state:
//! structure (every required member, the false-attestation guard),
//! canonical form, `action_ref`, `issued_at` and `payload_digest`. They run
//! in parallel; chain links, keys and the log are checked in order by
//! [`super::verify`].
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    jcs, json,
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
pub(super) fn parse_row(row: ReceiptRow, now_unix_ns: u64) -> Parsed {
    let receipt_hash: Hash = Sha256::digest(row.envelope.as_bytes()).into();
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
    let envelope = match json::parse_strict(parsed.row.envelope.as_bytes()) {
        Ok(v) => v,
        Err(e) => {
            parsed
                .results
                .push(("structure", Outcome::Fail, format!("envelope: {e}")));
            return parsed;
        }
    };
    match jcs::canonicalize(&envelope) {
        Ok(c) if c == parsed.row.envelope.as_bytes() => {}
        _ => parsed.results.push((
            "structure",
            Outcome::Fail,
            "the stored envelope is not in JCS form".into(),
        )),
    }
    let payload = envelope["payload"].clone();
    let problems = structure_problems(&envelope);
    if problems.is_empty() {
        parsed
            .results
            .push(("structure", Outcome::Pass, String::new()));
    } else {
        parsed
            .results
            .push(("structure", Outcome::Fail, problems.join("; ")));
    }
    parsed.kid = envelope["signature"]["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    parsed.signature = envelope["signature"]["sig"]
        .as_str()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .unwrap_or_default();
    parsed.payload_jcs = jcs::canonicalize(&payload).unwrap_or_default();
    parsed.payload_hash = payload::sha256_hex(&parsed.payload_jcs);

    // action_ref
    let s = |k: &str| payload[k].as_str().unwrap_or_default();
    match payload::action_ref(s("agent_id"), s("action_type"), s("issued_at")) {
        Ok(expected) if expected == s("action_ref") => {
            parsed
                .results
                .push(("action_ref", Outcome::Pass, String::new()))
        }
        _ => parsed.results.push((
            "action_ref",
            Outcome::Fail,
            "action_ref is not the hash of agent, action type and issued_at".into(),
        )),
    }
    // issued_at freshness
    match humantime::parse_rfc3339(s("issued_at")) {
        Ok(t) => {
            let ns = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            if ns > now_unix_ns + MAX_FUTURE_NS {
                parsed.results.push((
                    "issued_at",
                    Outcome::Fail,
                    format!(
                        "issued_at {} is more than 300 s in the future",
                        s("issued_at")
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
    let mode = s("mode").to_string();
    let digest_hash = payload["payload_digest"]["hash"]
        .as_str()
        .unwrap_or_default();
    let digest_size = payload["payload_digest"]["size"].as_u64();
    match (parsed.row.context.clone(), mode.as_str()) {
        (None, "hash") => {
            parsed
                .results
                .push(("payload_digest", Outcome::Pass, "hash-only receipt".into()))
        }
        (None, _) => parsed.results.push((
            "payload_digest",
            Outcome::Fail,
            "the context of this payload-mode receipt is missing".into(),
        )),
        (Some(text), _) => match json::parse_strict(text.as_bytes()) {
            Ok(ctx)
                if ctx.get("erased") == Some(&Value::Bool(true))
                    && ctx.as_object().is_some_and(|o| o.len() == 2) =>
            {
                parsed
                    .results
                    .push(("payload_digest", Outcome::Pass, "context erased".into()));
                parsed.context = Some(ctx);
            }
            Ok(ctx) => {
                let ok = payload::sha256_hex(text.as_bytes()) == digest_hash
                    && digest_size == Some(text.len() as u64)
                    && jcs::canonicalize(&ctx).is_ok_and(|c| c == text.as_bytes());
                if ok {
                    parsed
                        .results
                        .push(("payload_digest", Outcome::Pass, String::new()));
                } else {
                    parsed.results.push((
                        "payload_digest",
                        Outcome::Fail,
                        "the stored context does not match payload_digest".into(),
                    ));
                }
                parsed.context = Some(ctx);
            }
            Err(e) => parsed.results.push((
                "payload_digest",
                Outcome::Fail,
                format!("the stored context is not valid JSON: {e}"),
            )),
        },
    }
    parsed.payload = Some(payload);
    parsed
}

/// Required members present and well formed.
pub fn structure_problems(envelope: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let p = &envelope["payload"];
    let sig = &envelope["signature"];
    if !p.is_object() {
        return vec!["payload is not an object".into()];
    }
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
    if agent.is_empty()
        || !str_of("issuer_id").is_some_and(|i| i.ends_with(&format!("/agent/{agent}")))
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
        let ok = g["count"].is_u64()
            && g["from"].as_str().is_some_and(is_issued_at)
            && g["to"].as_str().is_some_and(is_issued_at);
        if !ok {
            bad.push("unsigned_gap must be {count, from, to}".into());
        }
    }
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
