//! The signed payload of an observation receipt and the values derived from
//! it (`action_ref`, `payload_digest`, hashes), exactly as RECEIPTS.md says.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::jcs::{self, JcsError};

/// The payload `type` of every receipt observer issues.
pub const RECEIPT_TYPE: &str = "protectmcp:observation";
/// The only other `type` a passive observer may claim (RECEIPTS.md, "The
/// guard"); observer itself never issues it.
pub const RESULT_BOUND_TYPE: &str = "protectmcp:observation:result_bound";
/// observer's capture topology: not a payload member, stated on the
/// audit-pack manifest and on forwarded records.
pub const CAPTURE_TOPOLOGY: &str = "passive_telemetry";
/// The envelope's `signature.alg`: pure ML-DSA-65 (FIPS 204), empty context.
pub const SIGNATURE_ALG: &str = "ML-DSA-65";
/// `previousReceiptHash` of the first receipt of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The agent id of the observer's own lifecycle chain.
pub const OBSERVER_AGENT: &str = "observer";

/// The action types an observation receipt may carry.
pub const ACTION_TYPES: &[&str] = &[
    "process.exec",
    "process.exit",
    "network.connect",
    "network.listen",
    "network.accept",
    "file.open",
    "dns.resolve",
    "llm.request",
    "mcp.session",
    "mcp.tool_call",
    "mcp.request",
    "mcp.tool_definition",
    "shadow_ai.finding",
    "observer.start",
    "observer.stop",
    "observer.loss",
    "observer.policy",
    "observer.key",
    "observer.clock_step",
];

/// The payload's `mode`: whether the observed context is kept beside the
/// receipt. Fixed at issuance (it is signed); erasing a `payload` context
/// later does not change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The observed context is stored beside the receipt.
    Payload,
    /// Only the context's digest is kept.
    Hash,
}

impl Mode {
    /// The wire value: `"payload"` or `"hash"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Payload => "payload",
            Mode::Hash => "hash",
        }
    }
}

/// The payload's `risk_class`. observer's plain observations are `Low`; a
/// `shadow_ai.finding` carries the `risk` of the rule that fired (or of
/// its first escalation that held), so only rules set the other classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskClass {
    /// `"low"`: every plain observation, and low-risk findings.
    Low,
    /// `"medium"`: a finding a rule rates of moderate risk.
    Medium,
    /// `"high"`: a finding a rule rates most serious.
    High,
    /// `"unknown"`: a finding whose rule states no rating.
    Unknown,
}

impl RiskClass {
    /// The wire value: `"low"`, `"medium"`, `"high"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::Low => "low",
            RiskClass::Medium => "medium",
            RiskClass::High => "high",
            RiskClass::Unknown => "unknown",
        }
    }
}

/// The payload's `payload_digest`: binds the context stored beside the
/// receipt to its signature (see [`payload_digest()`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadDigest {
    /// SHA-256 of JCS(context), 64 lower-case hex digits.
    pub hash: String,
    /// Length of JCS(context) in bytes.
    pub size: u64,
}

/// Events the observer knows it lost before this receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsignedGap {
    /// `None` (serialised as `null`, never omitted): the observer knows it
    /// lost events but not how many, e.g. across an unclean stop.
    pub count: Option<u64>,
    /// Earliest time of the loss, in the `issued_at` format.
    pub from: String,
    /// Latest time of the loss, in the `issued_at` format.
    pub to: String,
}

impl UnsignedGap {
    /// Adds a later loss window to this one. An unknown count stays
    /// unknown: a known count added to it is still a lower bound only.
    pub fn merge(&mut self, later: &UnsignedGap) {
        self.count = self.count.zip(later.count).map(|(a, b)| a + b);
        if later.from < self.from {
            self.from.clone_from(&later.from);
        }
        if later.to > self.to {
            self.to.clone_from(&later.to);
        }
    }
}

/// Framework ids a detection maps to (self-declared by the rule author).
/// An empty list leaves its payload member out; any non-empty one also sets
/// `framework_mappings_self_declared`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mappings {
    /// MITRE ATT&CK technique ids (`mitre_techniques`), e.g. `T1059`.
    pub mitre_techniques: Vec<String>,
    /// MITRE ATLAS technique ids (`mitre_atlas`), e.g. `AML.T0051.001`.
    pub mitre_atlas: Vec<String>,
    /// OWASP Top 10 for LLM applications ids (`owasp_llm_top10`), e.g. `LLM01`.
    pub owasp_llm_top10: Vec<String>,
}

/// The signed payload. Member names are the wire names; JCS orders them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Profile version, always `1`.
    pub v: u32,
    /// Whether the context is kept (`payload`) or only its digest (`hash`).
    pub mode: Mode,
    /// `type`: always [`RECEIPT_TYPE`] (enforced by the guard).
    #[serde(rename = "type")]
    pub receipt_type: String,
    /// When the event happened (kernel clock), RFC 3339 UTC with nine
    /// fractional digits (see [`issued_at()`]).
    pub issued_at: String,
    /// The chain: `<deployer id>/host/<hostname>/agent/<agent_id>`.
    pub issuer_id: String,
    /// The registered agent, `unregistered:<exe sha256 prefix>`, or
    /// [`OBSERVER_AGENT`].
    pub agent_id: String,
    /// One of [`ACTION_TYPES`].
    pub action_type: String,
    /// Always `"observation"`.
    pub decision: String,
    /// Always `None` (`null`): no policy gates an observation.
    pub policy_digest: Option<String>,
    /// SHA-256 and length of JCS(context).
    pub payload_digest: PayloadDigest,
    /// `sha256:<hex>` binding agent, action type and `issued_at` (see
    /// [`action_ref()`]).
    pub action_ref: String,
    /// `previousReceiptHash`: SHA-256 hex of JCS(previous payload of this
    /// chain), payload only; [`GENESIS_HASH`] for `seq` 1.
    #[serde(rename = "previousReceiptHash")]
    pub previous_receipt_hash: String,
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// RFC 7638 thumbprint of the signing key (its `kid`), base64url.
    pub key_thumbprint: String,
    /// How risky the action was rated.
    pub risk_class: RiskClass,
    /// `sha256:<64 hex>` of the executable that acted (of `observerd` on
    /// the observer's own receipts).
    pub executable_hash: String,
    /// Non-empty when present; see [`Mappings`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mitre_techniques: Option<Vec<String>>,
    /// Non-empty when present; see [`Mappings`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mitre_atlas: Option<Vec<String>>,
    /// Non-empty when present; see [`Mappings`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owasp_llm_top10: Option<Vec<String>>,
    /// `Some(true)` exactly when any of the three mapping lists is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub framework_mappings_self_declared: Option<bool>,
    /// Events lost on this chain since its previous receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsigned_gap: Option<UnsignedGap>,
    /// On `shadow_ai.finding`: `sha256:<hex>` of the compiled rules that
    /// classified it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection_rules_digest: Option<String>,
}

/// A receipt type the capture topology may not claim, refused by
/// [`false_attestation_guard`]; its message is RECEIPTS.md's, verbatim.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("false_attestation_guard: capture_topology={topology} receipts must use receipt_type={RECEIPT_TYPE}, not :{offending} (rule 8)")]
pub struct GuardError {
    /// The capture topology, `passive_telemetry`.
    pub topology: String,
    /// The refused type without its `protectmcp:` prefix.
    pub offending: String,
}

/// Refuses, before signing, any receipt type a passive observer may not
/// claim: an observer saw the action happen, it did not authorise it.
pub fn false_attestation_guard(
    capture_topology: &str,
    receipt_type: &str,
) -> Result<(), GuardError> {
    if capture_topology != CAPTURE_TOPOLOGY
        || receipt_type == RECEIPT_TYPE
        || receipt_type == RESULT_BOUND_TYPE
    {
        return Ok(());
    }
    let offending = receipt_type
        .strip_prefix("protectmcp:")
        .unwrap_or(receipt_type);
    Err(GuardError {
        topology: capture_topology.to_string(),
        offending: offending.to_string(),
    })
}

/// SHA-256 of `bytes`, 64 lower-case hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `payload_digest` of a context: SHA-256 and length of JCS(context).
pub fn payload_digest(context_jcs: &[u8]) -> PayloadDigest {
    PayloadDigest {
        hash: sha256_hex(context_jcs),
        size: context_jcs.len() as u64,
    }
}

/// `action_ref`: binds agent, action and time; an observation authorises
/// nothing, so `scopeRequired` is always empty.
pub fn action_ref(agent_id: &str, action_type: &str, issued_at: &str) -> Result<String, JcsError> {
    let bytes = jcs::to_canonical(&serde_json::json!({
        "agentId": agent_id,
        "actionType": action_type,
        "scopeRequired": [],
        "timestamp": issued_at,
    }))?;
    Ok(format!("sha256:{}", sha256_hex(&bytes)))
}

/// `issuer_id` of a chain: deployer id, host and agent.
pub fn issuer_id(deployer_id: &str, hostname: &str, agent_id: &str) -> String {
    format!("{deployer_id}/host/{hostname}/agent/{agent_id}")
}

/// The wall clock in ns since the epoch (0 before it).
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// RFC 3339 UTC with exactly nine fractional digits, from ns since the epoch.
pub fn issued_at(unix_ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(unix_ns);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// JCS of an envelope `{payload, signature}`, built from the payload's
/// canonical bytes: "payload" sorts before "signature", and `kid` and `sig`
/// are base64url, which JCS never escapes.
pub fn envelope_jcs(payload_jcs: &[u8], kid: &str, sig_b64url: &str) -> Vec<u8> {
    debug_assert!(is_base64url(kid) && is_base64url(sig_b64url));
    let mut out = Vec::with_capacity(payload_jcs.len() + sig_b64url.len() + kid.len() + 64);
    out.extend_from_slice(b"{\"payload\":");
    out.extend_from_slice(payload_jcs);
    out.extend_from_slice(b",\"signature\":{\"alg\":\"ML-DSA-65\",\"kid\":\"");
    out.extend_from_slice(kid.as_bytes());
    out.extend_from_slice(b"\",\"sig\":\"");
    out.extend_from_slice(sig_b64url.as_bytes());
    out.extend_from_slice(b"\"}}");
    out
}

/// Whether `s` uses only the base64url alphabet, without padding (the empty
/// string passes).
pub fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `s` is exactly 64 lower-case hex digits (a SHA-256 hex digest).
pub fn is_lower_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is an `executable_hash`: `sha256:` and 64 lower-case hex
/// digits.
pub fn is_executable_hash(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_lower_hex64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_refuses_every_non_observation_type_verbatim() {
        for t in [
            "protectmcp:decision",
            "protectmcp:tool_call",
            "protectmcp:approval",
            "protectmcp:restraint",
            "protectmcp:lifecycle",
            "protectmcp:bilateral",
            "protectmcp:permit",
            "protectmcp:deny",
            "protectmcp:observation:extra",
            "protectmcp:",
        ] {
            let offending = t.strip_prefix("protectmcp:").unwrap();
            assert_eq!(
                false_attestation_guard("passive_telemetry", t)
                    .unwrap_err()
                    .to_string(),
                format!(
                    "false_attestation_guard: capture_topology=passive_telemetry receipts must use \
                     receipt_type=protectmcp:observation, not :{offending} (rule 8)"
                ),
                "{t}"
            );
        }
        assert_eq!(
            false_attestation_guard("passive_telemetry", "decision")
                .unwrap_err()
                .to_string(),
            "false_attestation_guard: capture_topology=passive_telemetry receipts must use \
             receipt_type=protectmcp:observation, not :decision (rule 8)"
        );
        false_attestation_guard("passive_telemetry", RECEIPT_TYPE).unwrap();
        false_attestation_guard("passive_telemetry", RESULT_BOUND_TYPE).unwrap();
    }

    #[test]
    fn action_ref_hashes_the_canonical_binding() {
        // JCS by hand: members sorted, no whitespace, empty scope array.
        let expected = sha256_hex(
            br#"{"actionType":"process.exec","agentId":"a1","scopeRequired":[],"timestamp":"2026-11-22T18:00:00.123456789Z"}"#,
        );
        assert_eq!(
            action_ref("a1", "process.exec", "2026-11-22T18:00:00.123456789Z").unwrap(),
            format!("sha256:{expected}")
        );
    }

    #[test]
    fn issued_at_has_nine_fraction_digits() {
        assert_eq!(
            issued_at(1_795_377_600_000_000_000),
            "2026-11-22T20:00:00.000000000Z"
        );
        assert_eq!(
            issued_at(1_795_377_600_123_456_789),
            "2026-11-22T20:00:00.123456789Z"
        );
    }

    #[test]
    fn envelope_bytes_are_its_jcs() {
        let payload = br#"{"a":1,"type":"x"}"#;
        let built = envelope_jcs(payload, "kid-_1", "c2ln");
        let value: serde_json::Value = serde_json::from_slice(&built).unwrap();
        assert_eq!(jcs::canonicalize(&value).unwrap(), built);
    }

    #[test]
    fn gaps_merge_to_the_union_window() {
        let mut a = UnsignedGap {
            count: Some(2),
            from: "2026-01-01T00:00:01.000000000Z".into(),
            to: "2026-01-01T00:00:02.000000000Z".into(),
        };
        a.merge(&UnsignedGap {
            count: Some(3),
            from: "2026-01-01T00:00:03.000000000Z".into(),
            to: "2026-01-01T00:00:04.000000000Z".into(),
        });
        assert_eq!(a.count, Some(5));
        assert_eq!(a.from, "2026-01-01T00:00:01.000000000Z");
        assert_eq!(a.to, "2026-01-01T00:00:04.000000000Z");
        // An unknown count absorbs known ones, and is written as null.
        a.merge(&UnsignedGap {
            count: None,
            from: "2026-01-01T00:00:05.000000000Z".into(),
            to: "2026-01-01T00:00:06.000000000Z".into(),
        });
        a.merge(&UnsignedGap {
            count: Some(1),
            from: "2026-01-01T00:00:07.000000000Z".into(),
            to: "2026-01-01T00:00:08.000000000Z".into(),
        });
        assert_eq!(a.count, None);
        assert_eq!(
            String::from_utf8(jcs::to_canonical(&a).unwrap()).unwrap(),
            r#"{"count":null,"from":"2026-01-01T00:00:01.000000000Z","to":"2026-01-01T00:00:08.000000000Z"}"#
        );
    }
}
