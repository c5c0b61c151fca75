//! Checkpoint, signed-note and tlog-proof tests with real ML-DSA-65 keys
//! (libcrux, pure signing with an empty context, as the daemon signs).
//! Kept in one file: every test shares the same fixtures (keys, notes,
//! proofs), and splitting them would only scatter those.

use super::merkle::{inclusion_proof, leaf_hash, root, MemoryNodes};
use super::*;
use libcrux_ml_dsa::ml_dsa_65::{self, MLDSA65KeyPair, MLDSA65Signature};

const ORIGIN: &str = "observer.example/host-1/log";

fn key_pair(seed: u8) -> MLDSA65KeyPair {
    ml_dsa_65::generate_key_pair([seed; 32])
}

fn public_key(keys: &MLDSA65KeyPair) -> Vec<u8> {
    keys.verification_key.as_slice().to_vec()
}

fn ml_dsa_sign(keys: &MLDSA65KeyPair, message: &[u8]) -> Vec<u8> {
    ml_dsa_65::sign(&keys.signing_key, message, b"", [0x5a; 32])
        .unwrap()
        .as_slice()
        .to_vec()
}

/// The verifier closure `open_note` gets: ML-DSA-65, pure, empty context.
fn ml_dsa_verifier(keys: &MLDSA65KeyPair) -> impl Fn(&[u8], &[u8]) -> bool + '_ {
    move |message, signature| {
        let Ok(signature) = signature.try_into() else {
            return false;
        };
        ml_dsa_65::verify(
            &keys.verification_key,
            message,
            b"",
            &MLDSA65Signature::new(signature),
        )
        .is_ok()
    }
}

fn sample_checkpoint() -> Checkpoint {
    let nodes = MemoryNodes::from_leaf_hashes((0u8..13).map(|i| leaf_hash(&[i])));
    Checkpoint {
        origin: ORIGIN.to_owned(),
        size: 13,
        root: root(&nodes, 13).unwrap(),
    }
}

/// A signed-note error type for tests: either the origin was refused or the
/// signer failed.
#[derive(Debug, PartialEq)]
enum TestSignError {
    Checkpoint(CheckpointError),
    Signer,
}

impl From<CheckpointError> for TestSignError {
    fn from(err: CheckpointError) -> Self {
        Self::Checkpoint(err)
    }
}

fn sign(cp: &Checkpoint, keys: &MLDSA65KeyPair) -> String {
    sign_note(cp, &public_key(keys), |body| {
        Ok::<_, TestSignError>(ml_dsa_sign(keys, body))
    })
    .unwrap()
}

/// A note over arbitrary `text`, signed by `keys` under key name `name`, for
/// bodies `sign_note` would never produce.
fn sign_raw(text: &str, name: &str, keys: &MLDSA65KeyPair) -> String {
    let mut key_id_and_signature = key_id(name, &public_key(keys)).to_vec();
    key_id_and_signature.extend(ml_dsa_sign(keys, text.as_bytes()));
    format!(
        "{text}\n\u{2014} {name} {}\n",
        BASE64.encode(key_id_and_signature)
    )
}

fn open(text: &str, keys: &MLDSA65KeyPair) -> Result<Checkpoint, NoteError> {
    open_note(text, ORIGIN, &public_key(keys), ml_dsa_verifier(keys))
}

fn signature_line_parts(note: &str) -> (String, String, Vec<u8>) {
    let line = note.lines().last().unwrap();
    let rest = line.strip_prefix("\u{2014} ").unwrap();
    let (name, encoded) = rest.split_once(' ').unwrap();
    let (body, _) = note.split_once("\n\n").unwrap();
    (
        format!("{body}\n"),
        name.to_owned(),
        BASE64.decode(encoded).unwrap(),
    )
}

fn with_signature_bytes(note: &str, bytes: &[u8]) -> String {
    let (body, name, _) = signature_line_parts(note);
    format!("{body}\n\u{2014} {name} {}\n", BASE64.encode(bytes))
}

// ---------------------------------------------------------------------------
// Checkpoint body.

#[test]
fn body_is_origin_size_and_base64_root() {
    let cp = Checkpoint {
        origin: "example.com/log".to_owned(),
        size: 20852163,
        root: [0xab; 32],
    };
    assert_eq!(
        cp.body(),
        "example.com/log\n20852163\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"
    );
    assert_eq!(Checkpoint::parse_body(&cp.body()), Ok(cp));
}

#[test]
fn parses_the_tlog_checkpoint_spec_example_body() {
    // The note text of the example in C2SP tlog-checkpoint.md.
    let cp = Checkpoint::parse_body(
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    )
    .unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(
        hex::encode(cp.root),
        "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
    );
}

#[test]
fn body_parsing_is_strict() {
    let root = BASE64.encode([1u8; 32]);
    let cases: Vec<(String, CheckpointError)> = vec![
        (
            format!("o\n1\n{root}"),
            CheckpointError::MissingFinalNewline,
        ),
        (
            "o\n1\n".to_owned(),
            CheckpointError::MissingLines { found: 2 },
        ),
        (
            format!("o\n1\n{root}\next\n"),
            CheckpointError::ExtensionLines { count: 1 },
        ),
        (format!("\n1\n{root}\n"), CheckpointError::EmptyOrigin),
        (
            format!("o o\n1\n{root}\n"),
            CheckpointError::InvalidOrigin {
                origin: "o o".into(),
            },
        ),
        (
            format!("o+o\n1\n{root}\n"),
            CheckpointError::InvalidOrigin {
                origin: "o+o".into(),
            },
        ),
        (
            format!("o\u{a0}o\n1\n{root}\n"),
            CheckpointError::InvalidOrigin {
                origin: "o\u{a0}o".into(),
            },
        ),
        (
            format!("o\to\n1\n{root}\n"),
            CheckpointError::InvalidOrigin {
                origin: "o\to".into(),
            },
        ),
        (
            format!("o\n01\n{root}\n"),
            CheckpointError::InvalidSize { line: "01".into() },
        ),
        (
            format!("o\n+1\n{root}\n"),
            CheckpointError::InvalidSize { line: "+1".into() },
        ),
        (
            format!("o\n-1\n{root}\n"),
            CheckpointError::InvalidSize { line: "-1".into() },
        ),
        (
            format!("o\n\n{root}\n"),
            CheckpointError::InvalidSize {
                line: String::new(),
            },
        ),
        (
            format!("o\n1 \n{root}\n"),
            CheckpointError::InvalidSize { line: "1 ".into() },
        ),
        (
            format!("o\n18446744073709551616\n{root}\n"),
            CheckpointError::InvalidSize {
                line: "18446744073709551616".into(),
            },
        ),
        (
            "o\n1\nnot base64!\n".to_owned(),
            CheckpointError::InvalidRootEncoding {
                line: "not base64!".into(),
            },
        ),
        (
            format!("o\n1\n{}\n", root.trim_end_matches('=')),
            CheckpointError::InvalidRootEncoding {
                line: root.trim_end_matches('=').into(),
            },
        ),
        (
            format!("o\n1\n{}\n", BASE64.encode([1u8; 31])),
            CheckpointError::WrongRootLength { found: 31 },
        ),
        (
            format!("o\n1\n{}\n", BASE64.encode([1u8; 33])),
            CheckpointError::WrongRootLength { found: 33 },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(Checkpoint::parse_body(&text), Err(expected), "{text:?}");
    }
    let max = format!("o\n18446744073709551615\n{root}\n");
    assert_eq!(Checkpoint::parse_body(&max).unwrap().size, u64::MAX);
    assert_eq!(
        Checkpoint::parse_body(&format!("o\n0\n{root}\n"))
            .unwrap()
            .size,
        0
    );
}

// ---------------------------------------------------------------------------
// Key ID and signing.

#[test]
fn key_id_hashes_name_newline_type_and_key() {
    let keys = key_pair(1);
    let pk = public_key(&keys);
    assert_eq!(pk.len(), 1952);
    let mut preimage = ORIGIN.as_bytes().to_vec();
    preimage.push(0x0a);
    preimage.push(0xff);
    preimage.extend_from_slice(b"ML-DSA-65");
    preimage.extend_from_slice(&pk);
    assert_eq!(key_id(ORIGIN, &pk), Sha256::digest(&preimage)[..4]);
    assert_ne!(key_id("other.example/log", &pk), key_id(ORIGIN, &pk));
    assert_ne!(
        key_id(ORIGIN, &public_key(&key_pair(2))),
        key_id(ORIGIN, &pk)
    );
}

#[test]
fn signed_note_layout_and_round_trip() {
    let keys = key_pair(1);
    let cp = sample_checkpoint();
    let note = sign(&cp, &keys);
    let (body, name, bytes) = signature_line_parts(&note);
    assert_eq!(body, cp.body());
    assert!(note.starts_with(&format!("{}\n\u{2014} {ORIGIN} ", cp.body())));
    assert!(note.ends_with('\n'));
    assert_eq!(note.matches('\n').count(), 5);
    assert_eq!(name, ORIGIN);
    assert_eq!(bytes.len(), 4 + 3309);
    assert_eq!(bytes[..4], key_id(ORIGIN, &public_key(&keys)));
    // The signature is pure ML-DSA-65, empty context, over the body bytes:
    // check it with libcrux directly, not through open_note.
    ml_dsa_65::verify(
        &keys.verification_key,
        cp.body().as_bytes(),
        b"",
        &MLDSA65Signature::new(bytes[4..].try_into().unwrap()),
    )
    .unwrap();
    assert_eq!(open(&note, &keys), Ok(cp));
}

#[test]
fn sign_note_refuses_an_origin_that_is_not_a_key_name() {
    let keys = key_pair(1);
    let mut cp = sample_checkpoint();
    cp.origin = "two words".to_owned();
    let mut signer_called = false;
    let result = sign_note(&cp, &public_key(&keys), |_| {
        signer_called = true;
        Ok::<_, TestSignError>(Vec::new())
    });
    assert_eq!(
        result,
        Err(TestSignError::Checkpoint(CheckpointError::InvalidOrigin {
            origin: "two words".into()
        }))
    );
    assert!(!signer_called);
    cp.origin = ORIGIN.to_owned();
    let failed = sign_note(&cp, &public_key(&keys), |_| Err(TestSignError::Signer));
    assert_eq!(failed, Err(TestSignError::Signer));
}

// ---------------------------------------------------------------------------
// Tampering.

#[test]
fn tampering_with_any_body_byte_is_rejected() {
    let keys = key_pair(1);
    let note = sign(&sample_checkpoint(), &keys);
    let body_len = sample_checkpoint().body().len();
    let mut rejected = 0;
    for position in 0..body_len {
        let mut bytes = note.clone().into_bytes();
        // The body is ASCII: flipping the low bit keeps it ASCII, and turns
        // newlines into the control character 0x0b.
        bytes[position] ^= 0x01;
        let tampered = String::from_utf8(bytes).unwrap();
        let expected = if note.as_bytes()[position] == b'\n' {
            NoteError::ControlCharacter
        } else {
            NoteError::InvalidSignature { line: 1 }
        };
        assert_eq!(open(&tampered, &keys), Err(expected), "byte {position}");
        rejected += 1;
    }
    assert_eq!(rejected, body_len);
}

#[test]
fn tampering_with_each_body_line_is_rejected() {
    let keys = key_pair(1);
    let cp = sample_checkpoint();
    let note = sign(&cp, &keys);
    let (_, _, signature) = signature_line_parts(&note);
    let replace_body =
        |body: String| format!("{body}\n\u{2014} {ORIGIN} {}\n", BASE64.encode(&signature));
    let size_changed = Checkpoint {
        size: 14,
        ..cp.clone()
    };
    let root_changed = Checkpoint {
        root: [0; 32],
        ..cp.clone()
    };
    let origin_changed = Checkpoint {
        origin: "observer.example/host-2/log".into(),
        ..cp.clone()
    };
    for tampered in [size_changed, root_changed, origin_changed] {
        assert_eq!(
            open(&replace_body(tampered.body()), &keys),
            Err(NoteError::InvalidSignature { line: 1 })
        );
    }
    // Opening under another log's name: our signature line is then a
    // stranger's and is ignored.
    assert_eq!(
        open_note(
            &note,
            "observer.example/host-2/log",
            &public_key(&keys),
            ml_dsa_verifier(&keys)
        ),
        Err(NoteError::NoSignatureFromKey)
    );
    // The same note checked against another key.
    let other = key_pair(2);
    assert_eq!(
        open_note(&note, ORIGIN, &public_key(&other), ml_dsa_verifier(&other)),
        Err(NoteError::NoSignatureFromKey)
    );
}

#[test]
fn tampering_with_any_signature_byte_is_rejected() {
    let keys = key_pair(1);
    let note = sign(&sample_checkpoint(), &keys);
    let (_, _, bytes) = signature_line_parts(&note);
    let (mut key_id_rejections, mut signature_rejections) = (0, 0);
    for position in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[position] ^= 0x01;
        let result = open(&with_signature_bytes(&note, &tampered), &keys);
        if position < 4 {
            // Another key ID: a stranger's signature, ignored.
            assert_eq!(
                result,
                Err(NoteError::NoSignatureFromKey),
                "byte {position}"
            );
            key_id_rejections += 1;
        } else {
            assert_eq!(
                result,
                Err(NoteError::InvalidSignature { line: 1 }),
                "byte {position}"
            );
            signature_rejections += 1;
        }
    }
    assert_eq!((key_id_rejections, signature_rejections), (4, 3309));
    // Truncated and extended signatures.
    for tampered in [&bytes[..bytes.len() - 1], &[&bytes[..], &[0]].concat()] {
        assert_eq!(
            open(&with_signature_bytes(&note, tampered), &keys),
            Err(NoteError::InvalidSignature { line: 1 })
        );
    }
}

#[test]
fn a_valid_signature_over_a_malformed_body_is_still_rejected() {
    let keys = key_pair(1);
    let root = BASE64.encode([3u8; 32]);
    let leading_zero = sign_raw(&format!("{ORIGIN}\n013\n{root}\n"), ORIGIN, &keys);
    assert_eq!(
        open(&leading_zero, &keys),
        Err(NoteError::Checkpoint(CheckpointError::InvalidSize {
            line: "013".into()
        }))
    );
    let extension = sign_raw(&format!("{ORIGIN}\n13\n{root}\nextension\n"), ORIGIN, &keys);
    assert_eq!(
        open(&extension, &keys),
        Err(NoteError::Checkpoint(CheckpointError::ExtensionLines {
            count: 1
        }))
    );
    let short_root = sign_raw(
        &format!("{ORIGIN}\n13\n{}\n", BASE64.encode([3u8; 16])),
        ORIGIN,
        &keys,
    );
    assert_eq!(
        open(&short_root, &keys),
        Err(NoteError::Checkpoint(CheckpointError::WrongRootLength {
            found: 16
        }))
    );
    // Our key, under our name, signed a checkpoint of another origin.
    let foreign = sign_raw(&format!("other.example/log\n13\n{root}\n"), ORIGIN, &keys);
    assert_eq!(
        open(&foreign, &keys),
        Err(NoteError::OriginMismatch {
            expected: ORIGIN.into(),
            found: "other.example/log".into()
        })
    );
}

// ---------------------------------------------------------------------------
// Other signatures and malformed notes.

#[test]
fn other_keys_signatures_are_ignored_but_a_bad_one_of_ours_is_not() {
    let keys = key_pair(1);
    let cp = sample_checkpoint();
    let note = sign(&cp, &keys);
    let (body, _, ours) = signature_line_parts(&note);
    let our_line = format!("\u{2014} {ORIGIN} {}\n", BASE64.encode(&ours));
    // A witness-style Ed25519 line (4-byte ID + 64 bytes) under another name,
    // a line under our name with another key ID, and another key's ML-DSA line.
    let witness = format!("\u{2014} witness.example/w1 {}\n", BASE64.encode([9u8; 68]));
    let mut other_id = ours.clone();
    other_id[0] ^= 0xff;
    let same_name_other_id = format!("\u{2014} {ORIGIN} {}\n", BASE64.encode(&other_id));
    let other_key = sign(&cp, &key_pair(2));
    let other_key_line = other_key.lines().last().unwrap().to_owned() + "\n";
    let with_others = format!("{body}\n{witness}{same_name_other_id}{our_line}{other_key_line}");
    assert_eq!(open(&with_others, &keys), Ok(cp.clone()));

    // Only strangers' signatures: nothing verifies. A stranger is whoever
    // differs in name or key ID, even when sharing the other; here a line
    // with our key ID and valid signature bytes but another name.
    let same_id_other_name = format!("\u{2014} observer.example/other {}\n", BASE64.encode(&ours));
    let strangers_only =
        format!("{body}\n{witness}{same_name_other_id}{same_id_other_name}{other_key_line}");
    assert_eq!(
        open(&strangers_only, &keys),
        Err(NoteError::NoSignatureFromKey)
    );

    // A failing line of our key spoils the note even next to a valid one.
    let mut broken = ours.clone();
    broken[100] ^= 0x80;
    let broken_line = format!("\u{2014} {ORIGIN} {}\n", BASE64.encode(&broken));
    let mixed = format!("{body}\n{our_line}{broken_line}");
    assert_eq!(
        open(&mixed, &keys),
        Err(NoteError::InvalidSignature { line: 2 })
    );
}

#[test]
fn malformed_notes_are_rejected_with_named_errors() {
    let keys = key_pair(1);
    let cp = sample_checkpoint();
    let note = sign(&cp, &keys);
    let (body, _, ours) = signature_line_parts(&note);
    let encoded = BASE64.encode(&ours);
    let cases: Vec<(String, NoteError)> = vec![
        (body.clone(), NoteError::MissingSignatureBlock),
        (
            note.trim_end_matches('\n').to_owned(),
            NoteError::MissingSignatureBlock,
        ),
        (format!("{note}\n"), NoteError::MissingSignatureBlock),
        (
            format!("{body}\n- {ORIGIN} {encoded}\n"),
            NoteError::MissingSignaturePrefix { line: 1 },
        ),
        (
            format!("{body}\n\u{2014}{ORIGIN} {encoded}\n"),
            NoteError::MissingSignaturePrefix { line: 1 },
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN}+x {encoded}\n"),
            NoteError::InvalidKeyName { line: 1 },
        ),
        (
            format!("{body}\n\u{2014}  {encoded}\n"),
            NoteError::InvalidKeyName { line: 1 },
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN}\n"),
            NoteError::InvalidSignatureEncoding { line: 1 },
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN} {}\n", &encoded[1..]),
            NoteError::InvalidSignatureEncoding { line: 1 },
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN} {encoded} \n"),
            NoteError::InvalidSignatureEncoding { line: 1 },
        ),
        (
            format!(
                "{body}\n\u{2014} {ORIGIN} {}\n",
                BASE64.encode([1, 2, 3, 4])
            ),
            NoteError::InvalidSignatureEncoding { line: 1 },
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN} {encoded}\n\n"),
            NoteError::MissingSignatureBlock,
        ),
        (note.replace('\n', "\r\n"), NoteError::ControlCharacter),
        (
            format!("{body}\n\u{2014} {ORIGIN}\t{encoded}\n"),
            NoteError::ControlCharacter,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(open(&text, &keys), Err(expected), "{text:?}");
    }

    // Up to MAX_SIGNATURE_LINES lines are read; one more is refused before
    // any is verified.
    let stranger = format!("\u{2014} witness.example/w1 {}\n", BASE64.encode([9u8; 68]));
    let at_limit = format!(
        "{body}\n{}\u{2014} {ORIGIN} {encoded}\n",
        stranger.repeat(MAX_SIGNATURE_LINES - 1)
    );
    assert_eq!(open(&at_limit, &keys), Ok(cp));
    let over_limit = format!(
        "{body}\n{}{stranger}\u{2014} {ORIGIN} {encoded}\n",
        stranger.repeat(MAX_SIGNATURE_LINES - 1)
    );
    assert_eq!(open(&over_limit, &keys), Err(NoteError::TooManySignatures));
}

// ---------------------------------------------------------------------------
// tlog-proof.

#[test]
fn tlog_proof_layout_is_the_c2sp_format() {
    let proof = [[0u8; 32], [0xff; 32]];
    let text = format_tlog_proof(5, &proof, "CHECKPOINT\n");
    assert_eq!(
        text,
        "c2sp.org/tlog-proof@v1\nindex 5\n\
         AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
         //////////////////////////////////////////8=\n\
         \nCHECKPOINT\n"
    );
    assert_eq!(
        format_tlog_proof(0, &[], "C\n"),
        "c2sp.org/tlog-proof@v1\nindex 0\n\nC\n"
    );
}

#[test]
fn tlog_proof_round_trip_verifies_against_the_signed_root() {
    let keys = key_pair(1);
    let leaves: Vec<Hash> = (0u8..13).map(|i| leaf_hash(&[i])).collect();
    let nodes = MemoryNodes::from_leaf_hashes(leaves.iter().copied());
    let cp = sample_checkpoint();
    let note = sign(&cp, &keys);
    for (index, leaf) in leaves.iter().enumerate() {
        let index = index as u64;
        let proof = inclusion_proof(&nodes, index, cp.size).unwrap();
        let text = format_tlog_proof(index, &proof, &note);
        let parsed = parse_tlog_proof(&text).unwrap();
        assert_eq!(
            parsed,
            TlogProof {
                index,
                proof: proof.clone(),
                checkpoint_text: note.clone(),
                extra: None
            }
        );
        let opened = open(&parsed.checkpoint_text, &keys).unwrap();
        merkle::verify_inclusion(leaf, parsed.index, opened.size, &parsed.proof, &opened.root)
            .unwrap();
        assert_eq!(
            parsed.verify(leaf, ORIGIN, &public_key(&keys), ml_dsa_verifier(&keys)),
            Ok(cp.clone())
        );
        let other_leaf = leaves[(index as usize + 1) % leaves.len()];
        assert_eq!(
            parsed.verify(
                &other_leaf,
                ORIGIN,
                &public_key(&keys),
                ml_dsa_verifier(&keys)
            ),
            Err(TlogProofError::Inclusion(ProofError::RootMismatch))
        );
    }
    // A proof whose checkpoint was tampered with fails on the signature.
    let proof = inclusion_proof(&nodes, 3, 13).unwrap();
    let forged = format_tlog_proof(3, &proof, &note.replacen("\n13\n", "\n12\n", 1));
    assert_eq!(
        parse_tlog_proof(&forged).unwrap().verify(
            &leaves[3],
            ORIGIN,
            &public_key(&keys),
            ml_dsa_verifier(&keys)
        ),
        Err(TlogProofError::Note(NoteError::InvalidSignature {
            line: 1
        }))
    );
}

#[test]
fn parses_the_tlog_proof_spec_example() {
    // The example of C2SP tlog-proof.md, signatures elided there as "[...]".
    let text = "c2sp.org/tlog-proof@v1\n\
        extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n\
        index 73894\n\
        gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n\
        B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\
        EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n\
        RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n\
        AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\
        \n\
        example.com/fancylog\n\
        109482\n\
        sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\
        \n\
        \u{2014} example.com/fancylog hI2DJw[...]1roloI=\n";
    let parsed = parse_tlog_proof(text).unwrap();
    assert_eq!(parsed.index, 73894);
    assert_eq!(parsed.proof.len(), 5);
    assert_eq!(
        BASE64.encode(parsed.proof[4]),
        "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk="
    );
    assert!(parsed
        .extra
        .unwrap()
        .starts_with(b"age-v1.2.1-darwin-arm64.tar.gz"));
    assert!(parsed
        .checkpoint_text
        .starts_with("example.com/fancylog\n109482\n"));
    let (body, _) = parsed.checkpoint_text.split_once("\n\n").unwrap();
    let cp = Checkpoint::parse_body(&format!("{body}\n")).unwrap();
    assert_eq!(
        (cp.origin.as_str(), cp.size),
        ("example.com/fancylog", 109482)
    );
}

#[test]
fn tlog_proof_parsing_is_strict() {
    let hash = BASE64.encode([7u8; 32]);
    let cases: Vec<(String, TlogProofError)> = vec![
        (
            "c2sp.org/tlog-proof@v2\nindex 1\n\nC\n".into(),
            TlogProofError::MissingHeader,
        ),
        (
            "c2sp.org/tlog-proof@v1".into(),
            TlogProofError::MissingHeader,
        ),
        (
            "c2sp.org/tlog-proof@v1\nextra ***\nindex 1\n\nC\n".into(),
            TlogProofError::InvalidExtra,
        ),
        (
            "c2sp.org/tlog-proof@v1\nindex 01\n\nC\n".into(),
            TlogProofError::InvalidIndex,
        ),
        (
            "c2sp.org/tlog-proof@v1\nindex -1\n\nC\n".into(),
            TlogProofError::InvalidIndex,
        ),
        (
            "c2sp.org/tlog-proof@v1\nindex\n\nC\n".into(),
            TlogProofError::InvalidIndex,
        ),
        (
            "c2sp.org/tlog-proof@v1\n\nC\n".into(),
            TlogProofError::InvalidIndex,
        ),
        (
            format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n{hash}\n{}\n\nC\n",
                BASE64.encode([7u8; 31])
            ),
            TlogProofError::InvalidProofHash { line: 4 },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 1\n{hash} \n\nC\n"),
            TlogProofError::InvalidProofHash { line: 3 },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 1\n{hash}\n"),
            TlogProofError::MissingCheckpoint,
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 1\n{hash}\n\n"),
            TlogProofError::MissingCheckpoint,
        ),
        (
            format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n{}\nC\n",
                format!("{hash}\n").repeat(merkle::MAX_PROOF_LEN + 1)
            ),
            TlogProofError::ProofTooLong,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_tlog_proof(&text), Err(expected), "{text:?}");
    }
    let with_extra =
        parse_tlog_proof("c2sp.org/tlog-proof@v1\nextra aGk=\nindex 0\n\nC\n").unwrap();
    assert_eq!(with_extra.extra.as_deref(), Some(&b"hi"[..]));
    assert_eq!(with_extra.checkpoint_text, "C\n");
}
