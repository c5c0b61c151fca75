use super::*;

fn blank() -> Parsed {
    Parsed {
        row: ReceiptRow {
            leaf_index: 0,
            receipt_hash: Vec::new(),
            issuer_id: String::new(),
            seq: 0,
            envelope: String::new(),
            context: None,
        },
        receipt_hash: [0; 32],
        payload: None,
        payload_jcs: Vec::new(),
        payload_hash: String::new(),
        kid: String::new(),
        signature: Vec::new(),
        context: None,
        results: Vec::new(),
    }
}

fn payload() -> Value {
    serde_json::json!({
        "v": 1, "mode": "payload", "type": "protectmcp:observation",
        "issued_at": "2026-11-22T18:00:00.123456789Z",
        "issuer_id": "did:web:example/host/h/agent/a1", "agent_id": "a1",
        "action_type": "process.exec", "decision": "observation",
        "policy_digest": null,
        "payload_digest": {"hash": "ab".repeat(32), "size": 12},
        "action_ref": format!("sha256:{}", "cd".repeat(32)),
        "previousReceiptHash": "00".repeat(32), "seq": 1,
        "key_thumbprint": "kid_-0", "risk_class": "low",
        "executable_hash": format!("sha256:{}", "ef".repeat(32)),
        "mitre_techniques": ["T1059"], "framework_mappings_self_declared": true,
        "note": "a \"quoted\" é\n",
    })
}

fn sig_b64() -> String {
    let sig: Vec<u8> = (0..3309u32).map(|i| (i * 7 + 3) as u8).collect();
    URL_SAFE_NO_PAD.encode(sig)
}

/// Both paths, on the same text: the fast one must either decline
/// (recording nothing) or agree with the full one in every field.
fn agree(envelope: &str) -> bool {
    let mut fast = blank();
    let Some(fast_payload) = signer_form(envelope, &mut fast) else {
        assert!(fast.results.is_empty() && fast.kid.is_empty(), "{envelope}");
        return false;
    };
    let mut full = blank();
    let full_payload = any_form(envelope, &mut full).expect("the full path parses it");
    assert_eq!(fast_payload, full_payload, "{envelope}");
    assert_eq!(fast.results, full.results, "{envelope}");
    assert_eq!(fast.kid, full.kid);
    assert_eq!(fast.signature, full.signature);
    assert_eq!(fast.payload_jcs, full.payload_jcs);
    true
}

fn envelope_of(payload: &Value, kid: &str, sig: &str) -> String {
    let jcs = jcs::canonicalize(payload).unwrap();
    String::from_utf8(payload::envelope_jcs(&jcs, kid, sig)).unwrap()
}

#[test]
fn the_signers_form_is_checked_fast_with_the_full_paths_results() {
    let sig = sig_b64();
    let good = envelope_of(&payload(), "kid_-0", &sig);
    assert!(agree(&good));
    let mut full = blank();
    any_form(&good, &mut full);
    assert_eq!(
        full.results,
        vec![("structure", Outcome::Pass, String::new())]
    );
    assert_eq!(full.signature.len(), 3309);
    // Structure problems inside a signer-form envelope: same report.
    for (member, value) in [
        ("v", serde_json::json!(2)),
        ("issuer_id", serde_json::json!("x/agent/a2")),
        ("seq", serde_json::json!(0)),
        ("mitre_techniques", serde_json::json!([])),
        ("type", serde_json::json!("protectmcp:decision")),
    ] {
        let mut p = payload();
        p[member] = value;
        assert!(agree(&envelope_of(&p, "kid_-0", &sig)), "{member}");
    }
}

#[test]
fn any_other_form_is_left_to_the_full_path() {
    let sig = sig_b64();
    let good = envelope_of(&payload(), "kid_-0", &sig);
    let declined = [
        good.replacen(r#""agent_id":"#, r#""agent_id": "#, 1),
        good.replacen(r#"{"payload":"#, r#"{ "payload":"#, 1),
        good.replacen(r#""alg":"ML-DSA-65","#, r#""alg":"ML-DSA-44","#, 1),
        good.replacen(r#""kid":"kid_-0""#, r#""kid":"""#, 1),
        good.replacen(r#""kid":"kid_-0""#, r#""kid":"kid+0""#, 1),
        good.replacen(r#""sig":""#, r#""sig":"="#, 1),
        good.replacen(r#""sig":""#, r#""sig":"A"#, 1),
        good.replacen(r#""}}"#, r#"=="}}"#, 1),
        good.replacen(r#""}}"#, r#""} }"#, 1),
        good.replacen(r#""v":1"#, r#""v":1,"v":1"#, 1),
        good.replacen(r#""v":1"#, r#""v":1.0"#, 1),
        good.replacen(r#""signature":{"#, r#""signature":{"alg":"ML-DSA-65","#, 1),
        good.replacen(r#"{"payload":{"#, r#"{"payload":[{"#, 1)
            .replacen(r#","signature":"#, r#"],"signature":"#, 1),
        good.replacen(r#"{"payload":"#, r#"{"a":1,"payload":"#, 1),
        format!("{good} "),
        envelope_of(&serde_json::json!("text"), "kid_-0", &sig),
    ];
    for envelope in declined {
        assert!(!agree(&envelope), "{envelope}");
    }
}

#[test]
fn the_nesting_limit_counts_from_the_envelope() {
    let sig = sig_b64();
    let nested = |depth: usize| {
        let mut p = payload();
        p["deep"] =
            serde_json::from_str(&format!("{}{}", "[".repeat(depth), "]".repeat(depth))).unwrap();
        envelope_of(&p, "kid_-0", &sig)
    };
    // Envelope 1 + payload 1 + arrays: at the limit, and one beyond.
    let at_limit = nested(json::MAX_DEPTH - 2);
    assert!(json::parse_strict(at_limit.as_bytes()).is_ok());
    assert!(agree(&at_limit));
    let beyond = nested(json::MAX_DEPTH - 1);
    assert!(json::parse_strict(beyond.as_bytes()).is_err());
    assert!(!agree(&beyond));
}

/// The payload_digest result the full path gives: parse, the erasure
/// marker, then digest and canonical form.
fn full_path_digest(text: &str, hash: &str, size: u64) -> (Outcome, String, Option<Value>) {
    match json::parse_strict(text.as_bytes()) {
        Ok(ctx)
            if ctx.get("erased") == Some(&Value::Bool(true))
                && ctx.as_object().is_some_and(|o| o.len() == 2) =>
        {
            (Outcome::Pass, "context erased".into(), Some(ctx))
        }
        Ok(ctx) => {
            let ok = payload::sha256_hex(text.as_bytes()) == hash
                && size == text.len() as u64
                && jcs::canonicalize(&ctx).is_ok_and(|c| c == text.as_bytes());
            let (_, outcome, reason) = digest_outcome(ok);
            (outcome, reason, Some(ctx))
        }
        Err(e) => (
            Outcome::Fail,
            format!("the stored context is not valid JSON: {e}"),
            None,
        ),
    }
}

#[test]
fn contexts_get_the_full_paths_digest_result() {
    let sig = sig_b64();
    let signed = r#"{"argv":["sh","-c","x"],"pid":42}"#;
    let contexts = [
        signed.to_string(),
        r#"{"argv":["sh","-c","y"],"pid":42}"#.to_string(),
        r#"{"pid":42,"argv":["sh","-c","x"]}"#.to_string(),
        r#"{"argv":["sh","-c","x"],"pid":42.0}"#.to_string(),
        r#"{"by":"ab","erased":true}"#.to_string(),
        r#"{"by":"ab","erased":true,"x":1}"#.to_string(),
        r#"{"by":"ab","erased":false}"#.to_string(),
        r#"{"a":1,"a":2}"#.to_string(),
        "not json".to_string(),
    ];
    for action_type in ["process.exec", "observer.key", "observer.policy"] {
        for text in &contexts {
            let mut p = payload();
            p["action_type"] = action_type.into();
            p["payload_digest"] = serde_json::json!({
                "hash": payload::sha256_hex(signed.as_bytes()),
                "size": signed.len(),
            });
            let row = ReceiptRow {
                envelope: envelope_of(&p, "kid_-0", &sig),
                context: Some(text.clone()),
                ..blank().row
            };
            let parsed = parse_row(row, 0, &Corrections::default());
            let digest: Vec<_> = parsed
                .results
                .iter()
                .filter(|r| r.0 == "payload_digest")
                .collect();
            let (outcome, reason, value) = full_path_digest(
                text,
                &payload::sha256_hex(signed.as_bytes()),
                signed.len() as u64,
            );
            assert_eq!(digest, [&("payload_digest", outcome, reason)], "{text}");
            // The in-order pass reads the value for erasure claims and
            // for key announcements and erasures on the observer chain.
            let erased = |v: &Option<Value>| {
                v.as_ref()
                    .is_some_and(|c| c.get("erased") == Some(&Value::Bool(true)))
            };
            assert_eq!(erased(&parsed.context), erased(&value), "{text}");
            if action_type != "process.exec" {
                assert_eq!(parsed.context, value, "{text}");
            }
        }
    }
}

#[test]
fn an_unsigned_gap_may_have_an_unknown_count_but_not_a_missing_one() {
    let gap_problems = |gap: Value| {
        let mut p = payload();
        p["unsigned_gap"] = gap;
        let mut bad = Vec::new();
        payload_problems(&p, &mut bad);
        bad
    };
    let from = "2026-11-22T17:00:00.000000000Z";
    let to = "2026-11-22T18:00:00.000000000Z";
    assert!(gap_problems(serde_json::json!({"count": 3, "from": from, "to": to})).is_empty());
    assert!(gap_problems(serde_json::json!({"count": null, "from": from, "to": to})).is_empty());
    for bad in [
        serde_json::json!({"from": from, "to": to}),
        serde_json::json!({"count": "3", "from": from, "to": to}),
        serde_json::json!({"count": -1, "from": from, "to": to}),
        serde_json::json!({"count": null, "from": from}),
    ] {
        assert_eq!(
            gap_problems(bad.clone()),
            ["unsigned_gap must be {count: integer or null, from, to}"],
            "{bad}"
        );
    }
}
