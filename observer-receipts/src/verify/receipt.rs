//! Checks of one receipt on its own, for `receipts show`, `verify-proof`
//! and `audit-pack verify`: structure, signature, key thumbprint,
//! action_ref and payload_digest, plus authorising a chain key through the
//! master-signed `observer.key` receipt that announced it. The whole-store
//! verifier is `receipt::verify`; these are the same rules applied to a
//! receipt that travels alone.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::Serialize;
use serde_json::Value;

use crate::{
    jcs, json, keys,
    mldsa::{LibcruxVerifier, Verifier},
    payload,
    verify::{structure_problems, Outcome},
};

/// The outcome of one check on a receipt that travels alone.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The check's name, e.g. `structure`, `signature`, `payload_digest`.
    pub check: &'static str,
    /// Pass, fail, or unverifiable (no authorised key for the signature).
    pub outcome: Outcome,
    /// What was found, for people; may be empty on a pass.
    pub detail: String,
}

impl Check {
    fn new(check: &'static str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            check,
            outcome: if ok { Outcome::Pass } else { Outcome::Fail },
            detail: detail.into(),
        }
    }
}

/// Whether every check passed (none failed or was unverifiable).
pub fn all_pass(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.outcome == Outcome::Pass)
}

/// The first check that did not pass, as `check: detail`.
pub fn first_problem(checks: &[Check]) -> Option<String> {
    checks
        .iter()
        .find(|c| c.outcome != Outcome::Pass)
        .map(|c| format!("{}: {}", c.check, c.detail))
}

/// SHA-256 of the envelope's JCS form: the receipt hash.
pub fn receipt_hash(envelope: &Value) -> Result<[u8; 32], String> {
    jcs::canonical_sha256(envelope).map_err(|e| format!("canonicalising the envelope: {e}"))
}

/// The payload hash (what the next receipt's previousReceiptHash holds).
pub fn payload_hash(payload: &Value) -> String {
    jcs::canonicalize(payload)
        .map(|b| payload::sha256_hex(&b))
        .unwrap_or_default()
}

/// Checks `envelope` (text as stored) with its `context` (JCS text, or
/// None in hash mode) under `public_key` (the authorised chain key, or None
/// when it could not be authorised: the signature is then unverifiable).
pub fn check_receipt(
    envelope_text: &str,
    context: Option<&str>,
    public_key: Option<&[u8]>,
) -> Vec<Check> {
    let mut out = Vec::new();
    let envelope = match json::parse_strict(envelope_text.as_bytes()) {
        Ok(v) => v,
        Err(e) => {
            out.push(Check::new("structure", false, format!("envelope: {e}")));
            return out;
        }
    };
    let canonical = jcs::canonicalize(&envelope).is_ok_and(|c| c == envelope_text.as_bytes());
    let problems = structure_problems(&envelope);
    out.push(Check::new(
        "structure",
        canonical && problems.is_empty(),
        if !canonical {
            "the envelope is not in JCS form".to_string()
        } else {
            problems.join("; ")
        },
    ));
    let p = &envelope["payload"];
    let kid = envelope["signature"]["kid"].as_str().unwrap_or_default();
    match public_key {
        Some(pk) => {
            let sig = envelope["signature"]["sig"]
                .as_str()
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
                .unwrap_or_default();
            let message = jcs::canonicalize(p).unwrap_or_default();
            let verdict = LibcruxVerifier.verify(pk, &message, &sig);
            out.push(Check::new(
                "signature",
                verdict.is_ok(),
                verdict.err().map(|e| e.to_string()).unwrap_or_default(),
            ));
            let thumb = keys::thumbprint(pk);
            out.push(Check::new(
                "key_thumbprint",
                p["key_thumbprint"] == thumb.as_str() && kid == thumb,
                if p["key_thumbprint"] == thumb.as_str() && kid == thumb {
                    String::new()
                } else {
                    format!("key_thumbprint and kid must both be {thumb}")
                },
            ));
        }
        None => out.push(Check {
            check: "signature",
            outcome: Outcome::Unverifiable,
            detail: format!("no authorised key {kid} for this chain"),
        }),
    }
    let s = |k: &str| p[k].as_str().unwrap_or_default();
    let action_ref_ok = payload::action_ref(s("agent_id"), s("action_type"), s("issued_at"))
        .is_ok_and(|r| r == s("action_ref"));
    out.push(Check::new(
        "action_ref",
        action_ref_ok,
        if action_ref_ok {
            ""
        } else {
            "action_ref is not the hash of agent, action type and issued_at"
        },
    ));
    out.push(check_digest(p, context));
    out
}

fn check_digest(p: &Value, context: Option<&str>) -> Check {
    let hash = p["payload_digest"]["hash"].as_str().unwrap_or_default();
    let size = p["payload_digest"]["size"].as_u64();
    match context {
        None if p["mode"] == "hash" => Check::new("payload_digest", true, "hash-only receipt"),
        None => Check::new(
            "payload_digest",
            false,
            "the context of this payload-mode receipt is missing",
        ),
        Some(text) => match json::parse_strict(text.as_bytes()) {
            Ok(ctx)
                if ctx.get("erased") == Some(&Value::Bool(true))
                    && ctx.as_object().is_some_and(|o| o.len() == 2) =>
            {
                Check::new(
                    "payload_digest",
                    true,
                    format!("context erased by {}", ctx["by"].as_str().unwrap_or("?")),
                )
            }
            Ok(ctx) => {
                let ok = payload::sha256_hex(text.as_bytes()) == hash
                    && size == Some(text.len() as u64)
                    && jcs::canonicalize(&ctx).is_ok_and(|c| c == text.as_bytes());
                Check::new(
                    "payload_digest",
                    ok,
                    if ok {
                        ""
                    } else {
                        "the context does not match payload_digest"
                    },
                )
            }
            Err(e) => Check::new(
                "payload_digest",
                false,
                format!("the context is not valid JSON: {e}"),
            ),
        },
    }
}

/// The public key of chain `issuer_id` with key id `kid`, authorised by
/// the `observer.key` receipt `announcement` (envelope and context text)
/// under the pinned `master` key. The master key itself needs no
/// announcement.
pub fn authorise_key(
    master: &[u8],
    issuer_id: &str,
    kid: &str,
    announcement: Option<(&str, &str)>,
) -> Result<Vec<u8>, String> {
    let master_kid = keys::thumbprint(master);
    if kid == master_kid {
        if !issuer_id.ends_with("/agent/observer") {
            return Err(format!(
                "the master key signs only the observer chain, not {issuer_id}"
            ));
        }
        return Ok(master.to_vec());
    }
    let (envelope_text, context_text) =
        announcement.ok_or_else(|| format!("no observer.key receipt announces key {kid}"))?;
    let checks = check_receipt(envelope_text, Some(context_text), Some(master));
    if let Some(problem) = first_problem(&checks) {
        return Err(format!("the key announcement does not verify: {problem}"));
    }
    let envelope = json::parse_strict(envelope_text.as_bytes()).map_err(|e| e.to_string())?;
    if envelope["payload"]["action_type"] != "observer.key"
        || envelope["payload"]["agent_id"] != payload::OBSERVER_AGENT
    {
        return Err("the key announcement is not an observer.key receipt".into());
    }
    let context = json::parse_strict(context_text.as_bytes()).map_err(|e| e.to_string())?;
    if context["issuer_id"] != issuer_id || context["kid"] != kid {
        return Err(format!(
            "the key announcement is for {} / {}, not {issuer_id} / {kid}",
            context["issuer_id"], context["kid"]
        ));
    }
    let pk = keys::public_key_from_jwk(&context["jwk"]).map_err(|e| e.to_string())?;
    if keys::thumbprint(&pk) != kid {
        return Err(format!("the announced key's thumbprint is not {kid}"));
    }
    Ok(pk)
}

/// The masters, walked from the pinned genesis key through master
/// rotation receipts (docs/RECEIPTS.md, "Key rotation"), genesis first.
pub fn walk_masters(
    pinned: &[u8],
    rotations: &[crate::retention::RotationAnchor],
) -> Result<Vec<crate::verify::MasterEpoch>, String> {
    use crate::verify::{walk_rotations, MasterEpoch};
    walk_rotations(&MasterEpoch::genesis(pinned), rotations)
}

/// `kid`'s public key for the receipt at log index `leaf` of `issuer`:
/// on the observer chain the master current at that index; any other
/// chain's key through its announcement, signed by one of the masters.
pub fn authorise_key_after_rotations(
    masters: &[crate::verify::MasterEpoch],
    issuer_id: &str,
    kid: &str,
    leaf: u64,
    announcement: Option<(&str, &str)>,
) -> Result<Vec<u8>, String> {
    use crate::verify::MasterEpoch;
    if issuer_id.ends_with("/agent/observer") {
        let current =
            MasterEpoch::at(masters, leaf).ok_or_else(|| "no master key is pinned".to_string())?;
        if current.kid == kid {
            // The master needs no announcement; one carried anyway (a
            // proof's extra) must still verify under a pinned master, so
            // that no byte of a proof goes unchecked.
            if let Some((envelope_text, context_text)) = announcement {
                let verifies = masters.iter().any(|m| {
                    first_problem(&check_receipt(
                        envelope_text,
                        Some(context_text),
                        Some(&m.public_key),
                    ))
                    .is_none()
                });
                if !verifies {
                    return Err("the key announcement carried with it does not verify".into());
                }
            }
            return Ok(current.public_key.to_vec());
        }
        return Err(format!(
            "the observer chain at log index {leaf} is signed by the master {}, not {kid}",
            current.kid
        ));
    }
    let mut last = Err(format!("no observer.key receipt announces key {kid}"));
    for m in masters {
        last = authorise_key(&m.public_key, issuer_id, kid, announcement);
        if last.is_ok() {
            break;
        }
    }
    last
}
