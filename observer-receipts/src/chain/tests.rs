use super::*;

fn identity() -> Identity {
    Identity {
        deployer_id: "did:web:example.invalid".into(),
        hostname: "host-1".into(),
        mode: Mode::Payload,
        observer_executable_hash: format!("sha256:{}", "ab".repeat(32)),
    }
}

fn draft(agent: &str, unix_ns: u64) -> Draft {
    Draft {
        agent_id: agent.into(),
        action_type: "process.exec",
        unix_ns,
        context: json!({ "n": unix_ns }),
        risk_class: RiskClass::Low,
        executable_hash: format!("sha256:{}", "cd".repeat(32)),
        mappings: Mappings::default(),
        detection_rules_digest: None,
        erases: None,
        prunes: None,
    }
}

fn payload(s: &Sealed) -> Value {
    serde_json::from_slice(&s.payload_jcs).unwrap()
}

fn context(s: &Sealed) -> Value {
    serde_json::from_slice(s.context_jcs.as_deref().unwrap()).unwrap()
}

/// (agent, action, seq, signing kid) of each sealed receipt.
fn summary(out: &[Sealed]) -> Vec<(String, &'static str, u64, String)> {
    out.iter()
        .map(|s| (s.agent_id.clone(), s.action_type, s.seq, s.key.kid.clone()))
        .collect()
}

fn seed(byte: u8) -> MasterSeed {
    MasterSeed::from_bytes([byte; 32])
}

#[test]
fn rotation_reannounces_each_chain_once_right_before_its_next_receipt() {
    let old_master = ChainKey::master_key(&seed(1)).kid;
    let new_master = ChainKey::master_key(&seed(2)).kid;
    let mut b = ChainBuilder::new(identity(), seed(1), Vec::new(), 0).unwrap();
    let issuer = |agent: &str| payload::issuer_id("did:web:example.invalid", "host-1", agent);
    let old_a = ChainKey::derive(&seed(1), &issuer("a")).kid;
    let old_b = ChainKey::derive(&seed(1), &issuer("b")).kid;
    let new_a = ChainKey::derive(&seed(2), &issuer("a")).kid;
    let new_b = ChainKey::derive(&seed(2), &issuer("b")).kid;
    let mut out = Vec::new();
    b.issue(draft("a", 1), &mut out).unwrap();
    b.issue(draft("b", 2), &mut out).unwrap();
    assert_eq!(out.len(), 5);
    let a1_hash = out[2].payload_hash.clone();
    out.clear();

    let rotation = b
        .rotate(seed(2), Some("scheduled"), 3, None, &mut out)
        .unwrap();
    assert_eq!(
        rotation,
        Rotation {
            old_kid: old_master.clone(),
            new_kid: new_master.clone(),
            generation: 2,
            leaf_index: 5,
        }
    );
    assert_eq!(
        summary(&out),
        [("observer".into(), "observer.key", 4, old_master.clone())]
    );
    assert_eq!(
        context(&out[0]),
        json!({
            "issuer_id": issuer("observer"),
            "kid": new_master,
            "jwk": ChainKey::master_key(&seed(2)).jwk(),
            "rotates": old_master,
            "generation": 2,
            "reason": "scheduled",
        })
    );
    assert_eq!(payload(&out[0])["key_thumbprint"], old_master.as_str());
    assert_eq!(out[0].new_master.as_ref().unwrap().kid, new_master);
    let intro = out[0].key_intro.as_ref().unwrap();
    assert_eq!(
        (intro.generation, intro.rotates.as_deref()),
        (2, Some(old_master.as_str()))
    );
    assert_eq!(b.master_key().kid, new_master);
    assert_eq!(b.generation(), 2);
    out.clear();

    // Chain a: its re-announcement (signed by the new master), then
    // its receipt continuing seq and link with the new key.
    b.issue(draft("a", 4), &mut out).unwrap();
    assert_eq!(
        summary(&out),
        [
            ("observer".into(), "observer.key", 5, new_master.clone()),
            ("a".into(), "process.exec", 2, new_a.clone()),
        ]
    );
    assert_eq!(
        context(&out[0]),
        json!({
            "issuer_id": issuer("a"),
            "kid": new_a,
            "jwk": ChainKey::derive(&seed(2), &issuer("a")).jwk(),
            "rotates": old_a,
        })
    );
    let a2 = payload(&out[1]);
    assert_eq!(a2["previousReceiptHash"], a1_hash.as_str());
    assert_eq!(a2["key_thumbprint"], new_a.as_str());
    assert_eq!((out[0].index, out[1].index), (6, 7));
    out.clear();

    // Once per chain.
    b.issue(draft("a", 5), &mut out).unwrap();
    assert_eq!(
        summary(&out),
        [("a".into(), "process.exec", 3, new_a.clone())]
    );
    out.clear();
    b.issue(draft("b", 6), &mut out).unwrap();
    assert_eq!(
        summary(&out),
        [
            ("observer".into(), "observer.key", 6, new_master.clone()),
            ("b".into(), "process.exec", 2, new_b.clone()),
        ]
    );
    assert_eq!(context(&out[0])["rotates"], old_b.as_str());
    out.clear();
    // A new chain after the rotation: a first announcement, no rotates.
    b.issue(draft("c", 7), &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert!(context(&out[0]).get("rotates").is_none());
    assert_eq!(out[0].key.kid, new_master);

    // The same seed again is not a rotation.
    let err = b.rotate(seed(2), None, 8, None, &mut out).unwrap_err();
    assert!(matches!(err, ChainError::SameSeed(k) if k == new_master));
}

#[test]
fn a_restart_after_rotation_reannounces_chains_of_an_earlier_generation() {
    let issuer = |agent: &str| payload::issuer_id("did:web:example.invalid", "host-1", agent);
    let old_a = ChainKey::derive(&seed(1), &issuer("a")).kid;
    let old_master = ChainKey::master_key(&seed(1)).kid;
    let new_master = ChainKey::master_key(&seed(2)).kid;
    let heads = || {
        vec![
            // The observer chain's head is the rotation receipt, signed
            // by the old master.
            ChainHead {
                issuer_id: issuer("observer"),
                agent_id: "observer".into(),
                kid: old_master.clone(),
                seq: 4,
                payload_hash: "11".repeat(32),
            },
            ChainHead {
                issuer_id: issuer("a"),
                agent_id: "a".into(),
                kid: old_a.clone(),
                seq: 9,
                payload_hash: "22".repeat(32),
            },
        ]
    };
    let current = || {
        Some(MasterRow {
            kid: new_master.clone(),
            generation: 2,
        })
    };
    let mut b = ChainBuilder::resume(identity(), seed(2), heads(), 20, current()).unwrap();
    let mut out = Vec::new();
    b.issue(draft("a", 1), &mut out).unwrap();
    assert_eq!(
        summary(&out),
        [
            ("observer".into(), "observer.key", 5, new_master.clone()),
            (
                "a".into(),
                "process.exec",
                10,
                ChainKey::derive(&seed(2), &issuer("a")).kid
            ),
        ]
    );
    assert_eq!(context(&out[0])["rotates"], old_a.as_str());
    assert_eq!(payload(&out[1])["previousReceiptHash"], "22".repeat(32));

    // A seed that is not the store's current master: the old one, or
    // another.
    for other in [1u8, 3] {
        let err = ChainBuilder::resume(identity(), seed(other), heads(), 20, current())
            .err()
            .unwrap();
        assert!(matches!(err, ChainError::ForeignKey { .. }), "{err:?}");
    }
    // Without a rotation, a head of another key is still foreign.
    let err = ChainBuilder::new(identity(), seed(2), heads(), 20)
        .err()
        .unwrap();
    assert!(matches!(err, ChainError::ForeignKey { .. }), "{err:?}");
}
