//! Third-party receipt vectors (tests/vectors/receipts, asqav-sdk,
//! Apache-2.0): the rules our receipts share with them — the
//! asqav-native chain link over the predecessor's canonical payload, and
//! ML-DSA-65 (pure, empty context) over JCS(payload) — checked with both
//! ML-DSA implementations. Cases signed with Ed25519, or using the acta
//! link rule (hash of the whole predecessor receipt) or a hash-mode record
//! shape, belong to other profiles and are counted, not run.
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use serde_json::Value;

use super::{
    jcs, json,
    mldsa::{LibcruxVerifier, RustCryptoVerifier, Verifier},
    payload::sha256_hex,
    verify::structure_problems,
};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/receipts/verifier/conformance-vectors"
);

fn read(case: &str, file: &str) -> Value {
    let bytes = std::fs::read(format!("{DIR}/{case}/{file}")).unwrap();
    json::parse_strict(&bytes).unwrap_or_else(|e| panic!("{case}/{file}: {e}"))
}

fn ml_dsa_key(case: &str) -> Vec<u8> {
    let jwks = read(case, "jwks.json");
    let key = &jwks["keys"][0];
    assert_eq!(key["alg"], "ML-DSA-65", "{case}");
    STANDARD
        .decode(key["public_key"].as_str().unwrap())
        .unwrap()
}

fn verifiers() -> [Box<dyn Verifier>; 2] {
    [Box::new(LibcruxVerifier), Box::new(RustCryptoVerifier)]
}

#[test]
fn asqav_chain_link_is_the_hash_of_the_predecessor_payload() {
    let receipt = read("asqav-03-chain-link", "receipt.json");
    let predecessor = read("asqav-03-chain-link", "predecessor.json");
    let link = sha256_hex(&jcs::canonicalize(&predecessor["payload"]).unwrap());
    assert_eq!(receipt["payload"]["previousReceiptHash"], link.as_str());
    // Not the hash of the whole predecessor (that is the acta rule).
    let whole = sha256_hex(&jcs::canonicalize(&predecessor).unwrap());
    assert_ne!(receipt["payload"]["previousReceiptHash"], whole.as_str());
    assert_eq!(
        read("asqav-03-chain-link", "expected.json")["outcome"],
        "PASS"
    );
}

#[test]
fn ml_dsa_65_production_receipt_verifies_over_its_canonical_payload() {
    let case = "asqav-06-mldsa65-payload-prod";
    assert_eq!(read(case, "expected.json")["outcome"], "PASS");
    let receipt = read(case, "receipt.json");
    let pk = ml_dsa_key(case);
    let sig = URL_SAFE_NO_PAD
        .decode(receipt["signature"]["sig"].as_str().unwrap())
        .unwrap();
    let message = jcs::canonicalize(&receipt["payload"]).unwrap();
    for v in verifiers() {
        v.verify(&pk, &message, &sig)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name()));
        // One changed member of the payload breaks it.
        let mut tampered = receipt["payload"].clone();
        tampered["agent_id"] = "agt_someone_else".into();
        let tampered = jcs::canonicalize(&tampered).unwrap();
        assert!(v.verify(&pk, &tampered, &sig).is_err(), "{}", v.name());
    }
    // It is a decision receipt: a passive observer's verifier refuses its
    // type with the guard's exact words.
    let problems = structure_problems(&receipt);
    assert!(
        problems.iter().any(|p| p
            == "false_attestation_guard: capture_topology=passive_telemetry receipts must use \
                receipt_type=protectmcp:observation, not :decision (rule 8)"),
        "{problems:?}"
    );
}

#[test]
fn ml_dsa_65_dsse_attestation_verifies_over_its_pae() {
    let case = "dsse-attestation-ml-dsa-65";
    assert_eq!(read(case, "expected.json")["outcome"], "PASS");
    // The PAE construction, checked against its known answers first.
    let pae = |payload_type: &[u8], body: &[u8]| {
        let mut out = format!("DSSEv1 {} ", payload_type.len()).into_bytes();
        out.extend_from_slice(payload_type);
        out.extend_from_slice(format!(" {} ", body.len()).as_bytes());
        out.extend_from_slice(body);
        out
    };
    let kat = read(case, "pae_kat.json");
    let vectors = kat["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for v in vectors {
        let got = pae(
            v["payloadType"].as_str().unwrap().as_bytes(),
            v["body"].as_str().unwrap().as_bytes(),
        );
        assert_eq!(
            hex::encode(got),
            v["pae_hex"].as_str().unwrap().to_lowercase()
        );
    }
    let envelope = read(case, "receipt.json");
    let body = STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let message = pae(envelope["payloadType"].as_str().unwrap().as_bytes(), &body);
    let sig_text = envelope["signatures"][0]["sig"].as_str().unwrap();
    let sig = STANDARD
        .decode(sig_text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(sig_text))
        .unwrap();
    let pk = ml_dsa_key(case);
    for v in verifiers() {
        v.verify(&pk, &message, &sig)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name()));
    }
}

#[test]
fn every_vector_case_is_accounted_for() {
    let mut run = 0;
    let mut other_profiles = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        match name.as_str() {
            "asqav-03-chain-link"
            | "asqav-06-mldsa65-payload-prod"
            | "dsse-attestation-ml-dsa-65" => run += 1,
            // Canonicalisation pairs, run by the JCS tests.
            "agentreceipts-upstream-interop" => run += 1,
            _ => other_profiles.push(name),
        }
    }
    other_profiles.sort();
    assert_eq!(run, 4);
    // Ed25519-signed asqav and acta cases, acta's whole-receipt link rule,
    // and asqav's hash-mode record shape (05, 10).
    assert_eq!(
        other_profiles,
        [
            "acta-01-genesis",
            "acta-02-chain-link",
            "acta-03-tamper-sig",
            "acta-05-commitment-mode-unsupported",
            "asqav-01-genesis-permit",
            "asqav-02-genesis-deny",
            "asqav-04-tamper-sig",
            "asqav-05-hash-mode-prod",
            "asqav-07-revoked-key",
            "asqav-08-v2-signer-canary",
            "asqav-09-v2-signer-tampered",
            "asqav-10-hash-mode-multikey",
        ]
    );
}
