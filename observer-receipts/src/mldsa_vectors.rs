//! Conformance tests for `receipt::mldsa`: the public ML-DSA-65 vectors in
//! tests/vectors/mldsa65/ run against both implementations (libcrux through
//! the production types where their API allows, RustCrypto through its own
//! API), plus interoperation between the two.
//! Kept in one file: it is one conformance suite over one set of vectors.

use super::*;
use ml_dsa::{ExpandedSigningKey, MlDsa65, SigningKey, VerifyingKey};
use serde_json::Value;
use std::collections::HashMap;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/mldsa65");

fn load(relative: &str) -> Value {
    let path = format!("{VECTORS}/{relative}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Hex field of a vector object; ACVP uses upper case, Wycheproof lower, and
/// `hex` accepts both.
fn bytes(object: &Value, field: &str) -> Vec<u8> {
    let text = object[field]
        .as_str()
        .unwrap_or_else(|| panic!("missing hex field {field} in {object}"));
    hex::decode(text).unwrap_or_else(|e| panic!("field {field}: {e}"))
}

/// Like [`bytes`], but an absent field means empty (Wycheproof's `ctx`).
fn bytes_or_empty(object: &Value, field: &str) -> Vec<u8> {
    if object.get(field).is_some() {
        bytes(object, field)
    } else {
        Vec::new()
    }
}

fn array32(value: &[u8]) -> [u8; 32] {
    value.try_into().expect("32 bytes")
}

fn groups(file: &Value) -> &Vec<Value> {
    file["testGroups"].as_array().expect("testGroups")
}

fn tests_of(group: &Value) -> &Vec<Value> {
    group["tests"].as_array().expect("tests")
}

fn flag(object: &Value, field: &str) -> bool {
    object[field].as_bool().unwrap_or(false)
}

// ---- RustCrypto helpers (test-only second implementation) ----------------

fn rustcrypto_key_from_seed(seed: &[u8; 32]) -> SigningKey<MlDsa65> {
    SigningKey::<MlDsa65>::from_seed(&ml_dsa::B32::from(*seed))
}

fn rustcrypto_public_key(key: &SigningKey<MlDsa65>) -> Vec<u8> {
    use ml_dsa::Keypair;
    key.verifying_key().encode().to_vec()
}

/// RustCrypto's pure ML-DSA.Sign with an explicit `rnd`. The crate only
/// takes `rnd` from an RNG in its external API, so this builds FIPS 204
/// Algorithm 2's M' = 0x00 || len(ctx) || ctx || M itself and calls
/// `Sign_internal` (Algorithm 7), which is exactly what Algorithm 2 does.
fn rustcrypto_sign_pure(
    key: &ExpandedSigningKey<MlDsa65>,
    message: &[u8],
    context: &[u8],
    rnd: &[u8; 32],
) -> Vec<u8> {
    let prefix = [0u8, u8::try_from(context.len()).expect("context <= 255")];
    key.sign_internal(&[&prefix, context, message], &ml_dsa::B32::from(*rnd))
        .encode()
        .to_vec()
}

#[allow(deprecated)] // the ACVP sigGen vectors only give expanded keys
fn rustcrypto_expanded_key(sk: &[u8]) -> ExpandedSigningKey<MlDsa65> {
    ExpandedSigningKey::<MlDsa65>::from_expanded(&sk.try_into().expect("4032-byte sk"))
}

#[allow(deprecated)] // skEncode, to compare keyGen's sk byte for byte
fn rustcrypto_encoded_sk(key: &SigningKey<MlDsa65>) -> Vec<u8> {
    key.expanded_key().to_expanded().to_vec()
}

fn libcrux_signing_key(sk: &[u8]) -> LibcruxSigningKey {
    LibcruxSigningKey::new(sk.try_into().expect("4032-byte sk"))
}

/// Runs both production verifiers with an explicit context, asserts they
/// agree, and returns the common verdict.
fn verify_both(public_key: &[u8], message: &[u8], context: &[u8], signature: &[u8]) -> bool {
    let libcrux = LibcruxVerifier.verify_with_context(public_key, message, context, signature);
    let rustcrypto =
        RustCryptoVerifier.verify_with_context(public_key, message, context, signature);
    assert_eq!(libcrux, rustcrypto, "libcrux and RustCrypto disagree");
    libcrux.is_ok()
}

// ---- NIST ACVP internal projection (acvp-server-65370b8) ------------------

#[test]
fn acvp_keygen_gives_exact_keys_in_both_implementations() {
    let file = load("acvp-server-65370b8/ML-DSA-keyGen-FIPS204.ML-DSA-65.json");
    let mut ran = 0;
    for group in groups(&file) {
        assert_eq!(group["parameterSet"], "ML-DSA-65");
        for test in tests_of(group) {
            let tc = &test["tcId"];
            let seed = array32(&bytes(test, "seed"));
            let (pk, sk) = (bytes(test, "pk"), bytes(test, "sk"));

            let libcrux = LibcruxKeyPair::from_seed(&seed);
            assert_eq!(libcrux.public_key(), pk.as_slice(), "libcrux pk, tcId {tc}");
            assert_eq!(
                libcrux.signing_key.as_slice(),
                sk.as_slice(),
                "libcrux sk, tcId {tc}"
            );

            let rustcrypto = rustcrypto_key_from_seed(&seed);
            assert_eq!(
                rustcrypto_public_key(&rustcrypto),
                pk,
                "RustCrypto pk, tcId {tc}"
            );
            assert_eq!(
                rustcrypto_encoded_sk(&rustcrypto),
                sk,
                "RustCrypto sk, tcId {tc}"
            );
            ran += 1;
        }
    }
    assert_eq!(ran, 25);
}

#[test]
fn acvp_siggen_internal_gives_exact_signatures_in_both_implementations() {
    let file = load("acvp-server-65370b8/ML-DSA-sigGen-FIPS204.ML-DSA-65.json");
    let (mut deterministic, mut hedged) = (0, 0);
    for group in groups(&file) {
        let is_deterministic = group["deterministic"].as_bool().expect("deterministic");
        for test in tests_of(group) {
            let tc = &test["tcId"];
            let (sk, message, expected) = (
                bytes(test, "sk"),
                bytes(test, "message"),
                bytes(test, "signature"),
            );
            let rnd = if is_deterministic {
                [0u8; 32]
            } else {
                array32(&bytes(test, "rnd"))
            };

            let libcrux =
                libcrux_ml_dsa::ml_dsa_65::sign_internal(&libcrux_signing_key(&sk), &message, rnd)
                    .expect("libcrux sign_internal");
            assert_eq!(
                libcrux.as_slice(),
                expected.as_slice(),
                "libcrux, tcId {tc}"
            );

            let rustcrypto = rustcrypto_expanded_key(&sk)
                .sign_internal(&[&message], &ml_dsa::B32::from(rnd))
                .encode();
            assert_eq!(
                rustcrypto.as_slice(),
                expected.as_slice(),
                "RustCrypto, tcId {tc}"
            );

            if is_deterministic {
                deterministic += 1;
            } else {
                hedged += 1;
            }
        }
    }
    assert_eq!((deterministic, hedged), (10, 10));
}

#[test]
fn acvp_sigver_internal_matches_test_passed_in_both_implementations() {
    let file = load("acvp-server-65370b8/ML-DSA-sigVer-FIPS204.ML-DSA-65.json");
    let (mut ran, mut passed) = (0, 0);
    for group in groups(&file) {
        let pk = bytes(group, "pk");
        let libcrux_key = LibcruxVerificationKey::new(pk.as_slice().try_into().expect("pk"));
        let rustcrypto_key =
            VerifyingKey::<MlDsa65>::decode(&pk.as_slice().try_into().expect("pk"));
        for test in tests_of(group) {
            let tc = &test["tcId"];
            let expected = test["testPassed"].as_bool().expect("testPassed");
            let (message, signature) = (bytes(test, "message"), bytes(test, "signature"));

            let libcrux = libcrux_ml_dsa::ml_dsa_65::verify_internal(
                &libcrux_key,
                &message,
                &LibcruxSignature::new(signature.as_slice().try_into().expect("sig length")),
            )
            .is_ok();
            assert_eq!(libcrux, expected, "libcrux, tcId {tc} ({})", test["reason"]);

            let rustcrypto = ml_dsa::Signature::<MlDsa65>::try_from(signature.as_slice())
                .is_ok_and(|sig| rustcrypto_key.verify_internal(&message, &sig));
            assert_eq!(
                rustcrypto, expected,
                "RustCrypto, tcId {tc} ({})",
                test["reason"]
            );

            ran += 1;
            passed += usize::from(expected);
        }
    }
    assert_eq!((ran, passed), (15, 3));
}

// ---- NIST ACVP current format, external/pure (acvp-demo-geomys) -----------

/// Prompts and expected results are separate files; index the expected
/// results by (vsId, tgId, tcId).
fn geomys_expected() -> HashMap<(u64, u64, u64), Value> {
    let file = load("acvp-demo-geomys/ML-DSA.expected.ML-DSA-65.json");
    let mut expected = HashMap::new();
    for vector_set in file.as_array().expect("array").iter().skip(1) {
        let vs_id = vector_set["vsId"].as_u64().expect("vsId");
        for group in groups(vector_set) {
            let tg_id = group["tgId"].as_u64().expect("tgId");
            for test in tests_of(group) {
                let tc_id = test["tcId"].as_u64().expect("tcId");
                expected.insert((vs_id, tg_id, tc_id), test.clone());
            }
        }
    }
    expected
}

#[test]
fn acvp_geomys_external_pure_vectors_pass_in_both_implementations() {
    let prompts = load("acvp-demo-geomys/ML-DSA.vectors.ML-DSA-65.json");
    let expected = geomys_expected();
    let (mut keygen, mut siggen, mut sigver) = (0, 0, 0);
    // Groups that need a sign-from-µ / verify-from-µ API. libcrux 0.0.11
    // has none, so they run only against RustCrypto, which has
    // `sign_mu_deterministic` and `verify_mu` but no way to pass a given
    // `rnd` with µ (its hedged µ signing draws from an RNG): that one case
    // runs in neither.
    let (mut mu_rustcrypto_only, mut mu_in_neither) = (0, 0);

    for vector_set in prompts.as_array().expect("array").iter().skip(1) {
        let vs_id = vector_set["vsId"].as_u64().expect("vsId");
        let mode = vector_set["mode"].as_str().expect("mode");
        for group in groups(vector_set) {
            let tg_id = group["tgId"].as_u64().expect("tgId");
            assert_eq!(group["parameterSet"], "ML-DSA-65");
            let external_mu = flag(group, "externalMu");
            if !external_mu && mode != "keyGen" {
                assert_eq!(group["signatureInterface"], "external");
                assert_eq!(group["preHash"], "pure");
            }
            for test in tests_of(group) {
                let tc_id = test["tcId"].as_u64().expect("tcId");
                let answer = &expected[&(vs_id, tg_id, tc_id)];
                match (mode, external_mu) {
                    ("keyGen", _) => {
                        let seed = array32(&bytes(test, "seed"));
                        let libcrux = LibcruxKeyPair::from_seed(&seed);
                        assert_eq!(libcrux.public_key(), bytes(answer, "pk").as_slice());
                        assert_eq!(
                            libcrux.signing_key.as_slice(),
                            bytes(answer, "sk").as_slice()
                        );
                        let rustcrypto = rustcrypto_key_from_seed(&seed);
                        assert_eq!(rustcrypto_public_key(&rustcrypto), bytes(answer, "pk"));
                        assert_eq!(rustcrypto_encoded_sk(&rustcrypto), bytes(answer, "sk"));
                        keygen += 1;
                    }
                    ("sigGen", false) => {
                        let sk = bytes(test, "sk");
                        let (message, context) = (bytes(test, "message"), bytes(test, "context"));
                        let want = bytes(answer, "signature");
                        let rnd = if flag(group, "deterministic") {
                            [0u8; 32]
                        } else {
                            array32(&bytes(test, "rnd"))
                        };
                        let libcrux = libcrux_ml_dsa::ml_dsa_65::sign(
                            &libcrux_signing_key(&sk),
                            &message,
                            &context,
                            rnd,
                        )
                        .expect("libcrux sign");
                        assert_eq!(libcrux.as_slice(), want.as_slice(), "libcrux tcId {tc_id}");
                        let key = rustcrypto_expanded_key(&sk);
                        assert_eq!(rustcrypto_sign_pure(&key, &message, &context, &rnd), want);
                        if flag(group, "deterministic") {
                            let deterministic =
                                key.sign_deterministic(&message, &context).expect("sign");
                            assert_eq!(deterministic.encode().as_slice(), want.as_slice());
                        }
                        siggen += 1;
                    }
                    ("sigVer", false) => {
                        let verdict = verify_both(
                            &bytes(test, "pk"),
                            &bytes(test, "message"),
                            &bytes(test, "context"),
                            &bytes(test, "signature"),
                        );
                        assert_eq!(Some(verdict), answer["testPassed"].as_bool());
                        sigver += 1;
                    }
                    ("sigGen", true) if flag(group, "deterministic") => {
                        let key = rustcrypto_expanded_key(&bytes(test, "sk"));
                        let mu = bytes(test, "mu");
                        let signature =
                            key.sign_mu_deterministic(&mu.as_slice().try_into().expect("µ"));
                        assert_eq!(signature.encode().to_vec(), bytes(answer, "signature"));
                        mu_rustcrypto_only += 1;
                    }
                    ("sigGen", true) => mu_in_neither += 1,
                    ("sigVer", true) => {
                        let key = VerifyingKey::<MlDsa65>::decode(
                            &bytes(test, "pk").as_slice().try_into().expect("pk"),
                        );
                        let mu = bytes(test, "mu");
                        let verdict = ml_dsa::Signature::<MlDsa65>::try_from(
                            bytes(test, "signature").as_slice(),
                        )
                        .is_ok_and(|sig| {
                            key.verify_mu(&mu.as_slice().try_into().expect("µ"), &sig)
                        });
                        assert_eq!(Some(verdict), answer["testPassed"].as_bool());
                        mu_rustcrypto_only += 1;
                    }
                    other => panic!("unexpected ACVP group {other:?}"),
                }
            }
        }
    }
    assert_eq!((keygen, siggen, sigver), (1, 2, 1));
    assert_eq!((mu_rustcrypto_only, mu_in_neither), (2, 1));
}

// ---- Wycheproof -----------------------------------------------------------

#[test]
fn wycheproof_sign_seed_vectors_pass_in_both_implementations() {
    let file = load("wycheproof/mldsa_65_sign_seed_test.json");
    let mut ran_both = 0;
    let mut refused_seed_length = 0;
    let mut refused_context = 0;
    // Tests flagged `Internal` carry only µ, no message. libcrux 0.0.11 has
    // no sign-from-µ API, so these run against RustCrypto only.
    let mut mu_rustcrypto_only = 0;

    for group in groups(&file) {
        let seed_bytes = bytes(group, "privateSeed");
        let Ok(seed) = <[u8; SEED_LEN]>::try_from(seed_bytes.as_slice()) else {
            // A seed that is not 32 bytes cannot even be passed to
            // `LibcruxKeyPair::from_seed`: key generation is refused by type.
            for test in tests_of(group) {
                assert_eq!(test["result"], "invalid", "tcId {}", test["tcId"]);
                refused_seed_length += 1;
            }
            continue;
        };
        let public_key = bytes(group, "publicKey");
        let libcrux = LibcruxKeyPair::from_seed(&seed);
        let rustcrypto = rustcrypto_key_from_seed(&seed);
        assert_eq!(libcrux.public_key(), public_key.as_slice());
        assert_eq!(rustcrypto_public_key(&rustcrypto), public_key);

        for test in tests_of(group) {
            let tc = &test["tcId"];
            let valid = match test["result"].as_str() {
                Some("valid") => true,
                Some("invalid") => false,
                other => panic!("tcId {tc}: unexpected result {other:?}"),
            };
            let expected = bytes(test, "sig");
            let rnd = match test.get("rnd") {
                Some(_) => array32(&bytes(test, "rnd")),
                None => [0u8; 32],
            };

            if test.get("msg").is_none() {
                assert!(valid, "tcId {tc}");
                let mu = bytes(test, "mu");
                assert_eq!(rnd, [0u8; 32], "tcId {tc}: hedged µ signing has no API");
                let signature = rustcrypto
                    .expanded_key()
                    .sign_mu_deterministic(&mu.as_slice().try_into().expect("µ"));
                assert_eq!(
                    signature.encode().to_vec(),
                    expected,
                    "RustCrypto µ, tcId {tc}"
                );
                mu_rustcrypto_only += 1;
                continue;
            }

            let (message, context) = (bytes(test, "msg"), bytes_or_empty(test, "ctx"));
            let libcrux_signature = libcrux.sign_with_context(&message, &context, rnd);
            let rustcrypto_signature = if context.len() <= MAX_CONTEXT_LEN {
                Some(rustcrypto_sign_pure(
                    rustcrypto.expanded_key(),
                    &message,
                    &context,
                    &rnd,
                ))
            } else {
                None
            };
            let rustcrypto_deterministic = rustcrypto
                .expanded_key()
                .sign_deterministic(&message, &context);

            if valid {
                let libcrux_signature = libcrux_signature.expect("libcrux signs");
                assert_eq!(libcrux_signature, expected, "libcrux, tcId {tc}");
                assert_eq!(
                    rustcrypto_signature,
                    Some(expected.clone()),
                    "RustCrypto, tcId {tc}"
                );
                if rnd == [0u8; 32] {
                    let deterministic = rustcrypto_deterministic.expect("RustCrypto signs");
                    assert_eq!(deterministic.encode().to_vec(), expected, "tcId {tc}");
                }
                assert!(
                    verify_both(&public_key, &message, &context, &expected),
                    "tcId {tc}"
                );
                if context.is_empty() {
                    assert_eq!(
                        LibcruxVerifier.verify(&public_key, &message, &expected),
                        Ok(())
                    );
                    assert_eq!(
                        RustCryptoVerifier.verify(&public_key, &message, &expected),
                        Ok(())
                    );
                }
            } else {
                // The only message-carrying invalid case is a 256-byte context.
                assert!(context.len() > MAX_CONTEXT_LEN, "tcId {tc}");
                assert!(
                    matches!(libcrux_signature, Err(SignError::Signing(_))),
                    "libcrux must refuse, tcId {tc}"
                );
                assert!(
                    rustcrypto_deterministic.is_err(),
                    "RustCrypto must refuse, tcId {tc}"
                );
                refused_context += 1;
            }
            ran_both += 1;
        }
    }
    assert_eq!(ran_both + refused_seed_length + mu_rustcrypto_only, 105);
    assert_eq!((refused_seed_length, refused_context), (3, 1));
    assert_eq!(mu_rustcrypto_only, 17);
    assert_eq!(ran_both, 85);
}

#[test]
fn wycheproof_verify_vectors_pass_in_both_implementations() {
    let file = load("wycheproof/mldsa_65_verify_test.json");
    let (mut accepted, mut rejected) = (0, 0);
    for group in groups(&file) {
        let public_key = bytes(group, "publicKey");
        for test in tests_of(group) {
            let tc = &test["tcId"];
            let (message, context, signature) = (
                bytes(test, "msg"),
                bytes_or_empty(test, "ctx"),
                bytes(test, "sig"),
            );
            let flags: Vec<&str> = test["flags"]
                .as_array()
                .map(|flags| flags.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();

            let libcrux =
                LibcruxVerifier.verify_with_context(&public_key, &message, &context, &signature);
            let rustcrypto =
                RustCryptoVerifier.verify_with_context(&public_key, &message, &context, &signature);
            assert_eq!(libcrux, rustcrypto, "implementations disagree, tcId {tc}");

            match test["result"].as_str() {
                Some("valid") => {
                    assert_eq!(libcrux, Ok(()), "tcId {tc} {}", test["comment"]);
                    accepted += 1;
                }
                Some("invalid") => {
                    let error = libcrux.expect_err(&format!("tcId {tc} must be rejected"));
                    if flags.contains(&"IncorrectPublicKeyLength") {
                        assert!(
                            matches!(error, SignatureError::MalformedPublicKey { .. }),
                            "tcId {tc}: {error:?}"
                        );
                    } else if flags.contains(&"IncorrectSignatureLength") {
                        assert!(
                            matches!(error, SignatureError::MalformedSignatureLength { .. }),
                            "tcId {tc}: {error:?}"
                        );
                    } else {
                        assert_eq!(error, SignatureError::BadSignature, "tcId {tc}");
                    }
                    rejected += 1;
                }
                other => panic!("tcId {tc}: unexpected result {other:?}"),
            }
        }
    }
    assert_eq!((accepted, rejected), (79, 131));
}

// ---- Interoperation and tampering ------------------------------------------

const MESSAGE: &[u8] = br#"{"action_type":"process.exec","seq":1,"v":1}"#;

fn flip_bit(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut flipped = bytes.to_vec();
    flipped[index] ^= 0x01;
    flipped
}

/// Every verifier, behind the production trait.
fn verifiers() -> [&'static dyn Verifier; 2] {
    [&LibcruxVerifier, &RustCryptoVerifier]
}

#[test]
fn libcrux_signature_verifies_under_both_and_tampering_fails_under_both() {
    let key = LibcruxKeyPair::from_seed(&[7u8; 32]);
    let signature = key.sign(MESSAGE).expect("sign");
    assert_eq!(signature.len(), SIGNATURE_LEN);
    assert_eq!(key.public_key().len(), PUBLIC_KEY_LEN);

    for verifier in verifiers() {
        let name = verifier.name();
        assert_eq!(
            verifier.verify(key.public_key(), MESSAGE, &signature),
            Ok(()),
            "{name}"
        );
        for index in [0, SIGNATURE_LEN / 2, SIGNATURE_LEN - 1] {
            assert_eq!(
                verifier.verify(key.public_key(), MESSAGE, &flip_bit(&signature, index)),
                Err(SignatureError::BadSignature),
                "{name}: signature bit at byte {index}"
            );
        }
        for index in [0, MESSAGE.len() - 1] {
            assert_eq!(
                verifier.verify(key.public_key(), &flip_bit(MESSAGE, index), &signature),
                Err(SignatureError::BadSignature),
                "{name}: message bit at byte {index}"
            );
        }
        for index in [0, 40, PUBLIC_KEY_LEN - 1] {
            assert_eq!(
                verifier.verify(&flip_bit(key.public_key(), index), MESSAGE, &signature),
                Err(SignatureError::BadSignature),
                "{name}: public key bit at byte {index}"
            );
        }
    }
}

#[test]
fn rustcrypto_signature_verifies_under_both_and_tampering_fails_under_both() {
    let seed = [9u8; 32];
    let key = rustcrypto_key_from_seed(&seed);
    let public_key = rustcrypto_public_key(&key);
    let signature = key
        .expanded_key()
        .sign_deterministic(MESSAGE, &[])
        .expect("sign")
        .encode()
        .to_vec();

    for verifier in verifiers() {
        let name = verifier.name();
        assert_eq!(
            verifier.verify(&public_key, MESSAGE, &signature),
            Ok(()),
            "{name}"
        );
        assert_eq!(
            verifier.verify(&public_key, MESSAGE, &flip_bit(&signature, 100)),
            Err(SignatureError::BadSignature),
            "{name}"
        );
        assert_eq!(
            verifier.verify(&public_key, &flip_bit(MESSAGE, 3), &signature),
            Err(SignatureError::BadSignature),
            "{name}"
        );
        assert_eq!(
            verifier.verify(&flip_bit(&public_key, 1000), MESSAGE, &signature),
            Err(SignatureError::BadSignature),
            "{name}"
        );
    }

    // Same seed, same (zero) randomness: both libraries produce the same bytes.
    let libcrux = LibcruxKeyPair::from_seed(&seed);
    assert_eq!(libcrux.public_key(), public_key.as_slice());
    assert_eq!(
        libcrux
            .sign_with_context(MESSAGE, &[], [0u8; 32])
            .expect("sign"),
        signature
    );
}

#[test]
fn signing_is_hedged_with_fresh_randomness() {
    let key = LibcruxKeyPair::from_seed(&[3u8; 32]);
    let first = key.sign(MESSAGE).expect("sign");
    let second = key.sign(MESSAGE).expect("sign");
    assert_ne!(first, second, "two signatures of one message must differ");
    let deterministic = key
        .sign_with_context(MESSAGE, &[], [0u8; 32])
        .expect("sign");
    assert_ne!(first, deterministic);
    for signature in [&first, &second] {
        for verifier in verifiers() {
            assert_eq!(
                verifier.verify(key.public_key(), MESSAGE, signature),
                Ok(())
            );
        }
    }
}

#[test]
fn signatures_are_bound_to_the_empty_context() {
    let key = LibcruxKeyPair::from_seed(&[5u8; 32]);
    let with_context = key
        .sign_with_context(MESSAGE, b"receipt", [1u8; 32])
        .expect("sign");
    for verifier in verifiers() {
        assert_eq!(
            verifier.verify(key.public_key(), MESSAGE, &with_context),
            Err(SignatureError::BadSignature),
            "{}",
            verifier.name()
        );
    }
}

#[test]
fn wrong_lengths_are_reported_as_malformed() {
    let key = LibcruxKeyPair::from_seed(&[1u8; 32]);
    let signature = key.sign(MESSAGE).expect("sign");
    for verifier in verifiers() {
        let name = verifier.name();
        assert_eq!(
            verifier.verify(&key.public_key()[1..], MESSAGE, &signature),
            Err(SignatureError::MalformedPublicKey {
                actual: PUBLIC_KEY_LEN - 1
            }),
            "{name}"
        );
        assert_eq!(
            verifier.verify(key.public_key(), MESSAGE, &signature[..SIGNATURE_LEN - 1]),
            Err(SignatureError::MalformedSignatureLength {
                actual: SIGNATURE_LEN - 1
            }),
            "{name}"
        );
        let mut long = signature.clone();
        long.push(0);
        assert_eq!(
            verifier.verify(key.public_key(), MESSAGE, &long),
            Err(SignatureError::MalformedSignatureLength {
                actual: SIGNATURE_LEN + 1
            }),
            "{name}"
        );
        assert_eq!(
            verifier.verify(&[], MESSAGE, &[]),
            Err(SignatureError::MalformedPublicKey { actual: 0 }),
            "{name}"
        );
    }
}

#[test]
fn verifier_names_identify_the_implementations() {
    assert_eq!(LibcruxVerifier.name(), "libcrux-ml-dsa 0.0.11");
    assert_eq!(RustCryptoVerifier.name(), "RustCrypto ml-dsa 0.1.2");
}

#[test]
fn debug_output_does_not_reveal_the_signing_key() {
    let key = LibcruxKeyPair::from_seed(&[2u8; 32]);
    let printed = format!("{key:?}");
    let secret_prefix = hex::encode(&key.signing_key.as_slice()[32..64]);
    assert!(printed.contains("<redacted>"), "{printed}");
    assert!(!printed.contains(&secret_prefix), "{printed}");
    assert!(!printed.contains(&format!("{:?}", &key.signing_key.as_slice()[32..40])));
}

#[test]
fn wipe_zeroes_the_signing_key_bytes() {
    let mut key = LibcruxKeyPair::from_seed(&[4u8; 32]);
    assert!(key.signing_key.as_slice().iter().any(|&b| b != 0));
    wipe(key.signing_key.as_mut_slice());
    assert!(key.signing_key.as_slice().iter().all(|&b| b == 0));
}
