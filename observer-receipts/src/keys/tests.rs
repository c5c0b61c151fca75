//! Tests of [`super`].
use super::super::mldsa::{LibcruxVerifier, RustCryptoVerifier, Verifier};
use super::*;
use std::os::unix::fs::PermissionsExt;

/// The master seed 0x00, 0x01, ..., 0x1f.
fn counting_master() -> MasterSeed {
    let mut seed = [0u8; SEED_LEN];
    for (index, byte) in seed.iter_mut().enumerate() {
        *byte = u8::try_from(index).unwrap();
    }
    MasterSeed(seed)
}

#[test]
fn chain_seed_matches_an_independent_hkdf_computation() {
    // Expected values were computed independently with Python's
    // hmac/hashlib (RFC 5869 by hand: PRK = HMAC-SHA256(key = empty
    // salt, ikm = master); OKM = HMAC-SHA256(PRK, info || 0x01)) and
    // hard-coded here.
    let master = counting_master();
    let cases = [
        (
            "did:web:example.com/host/web-1/agent/claude-code",
            "01ea9ab4ad35153db63ba7dbf01d9d0004917b170ee307c5ae4b60149de35d87",
        ),
        (
            "549300EXAMPLE0000001/host/db-2/agent/observer",
            "dadd7e0fc07d61092f2ccced8c23a9a1474d9876dcdc15a748bbda188b93bef7",
        ),
        (
            "",
            "fdc3a47da6c950c1644a8ee4007131a64235edbbd63c51aa97d293c011e0e730",
        ),
    ];
    for (issuer_id, expected) in cases {
        assert_eq!(
            hex::encode(chain_seed(&master, issuer_id)),
            expected,
            "{issuer_id:?}"
        );
    }
}

#[test]
fn different_issuer_ids_give_different_keys() {
    let master = counting_master();
    let first = ChainKey::derive(&master, "did:web:example.com/host/a/agent/x");
    let second = ChainKey::derive(&master, "did:web:example.com/host/a/agent/y");
    let master_key = ChainKey::master_key(&master);
    assert_ne!(first.public_key(), second.public_key());
    assert_ne!(first.kid, second.kid);
    assert_ne!(first.public_key(), master_key.public_key());
    assert_ne!(second.public_key(), master_key.public_key());
    assert_eq!(first.issuer_id, "did:web:example.com/host/a/agent/x");

    // Derivation is deterministic: the same issuer id gives the same key.
    let again = ChainKey::derive(&master, "did:web:example.com/host/a/agent/x");
    assert_eq!(first.public_key(), again.public_key());

    // A different master seed gives a different key for the same chain.
    let other = ChainKey::derive(&MasterSeed([0xAA; SEED_LEN]), &first.issuer_id);
    assert_ne!(first.public_key(), other.public_key());
}

#[test]
fn chain_key_is_keygen_from_the_chain_seed_and_master_key_from_the_master_seed() {
    let master = counting_master();
    let issuer_id = "did:web:example.com/host/a/agent/x";
    let chain = ChainKey::derive(&master, issuer_id);
    let expected = LibcruxKeyPair::from_seed(&chain_seed(&master, issuer_id));
    assert_eq!(chain.public_key(), expected.public_key());
    let master_key = ChainKey::master_key(&master);
    let expected = LibcruxKeyPair::from_seed(&master.0);
    assert_eq!(master_key.public_key(), expected.public_key());
    assert_eq!(master_key.kid, thumbprint(master_key.public_key()));
}

/// ACVP keyGen tcId 26 (acvp-server-65370b8): seed -> pk.
const ACVP_SEED: &str = "70CEFB9AED5B68E018B079DA8284B9D5CAD5499ED9C265FF73588005D85C225C";

fn acvp_public_key() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/mldsa65/acvp-server-65370b8/ML-DSA-keyGen-FIPS204.ML-DSA-65.json"
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let test = &file["testGroups"][0]["tests"][0];
    assert_eq!(test["tcId"], 26);
    assert_eq!(test["seed"], ACVP_SEED);
    hex::decode(test["pk"].as_str().unwrap()).unwrap()
}

#[test]
fn thumbprint_of_a_fixed_key_matches_an_independent_computation() {
    // Computed independently with Python: base64url(no pad) of
    // sha256(b'{"alg":"ML-DSA-65","kty":"AKP","pub":"' + b64url(pk) + b'"}')
    // for the public key of ACVP keyGen tcId 26.
    let public_key = acvp_public_key();
    assert_eq!(
        thumbprint(&public_key),
        "rGDUMrOVK0aml9EwcGX3ufNDktKLk_ll7c9bWJ3FzX8"
    );

    let seed: [u8; SEED_LEN] = hex::decode(ACVP_SEED).unwrap().try_into().unwrap();
    let key = ChainKey::new(String::new(), LibcruxKeyPair::from_seed(&seed));
    assert_eq!(key.kid, "rGDUMrOVK0aml9EwcGX3ufNDktKLk_ll7c9bWJ3FzX8");
}

#[test]
fn jwk_round_trips_and_carries_the_thumbprint_as_kid() {
    let key = ChainKey::derive(&counting_master(), "issuer");
    let jwk = key.jwk();
    let members: Vec<&String> = jwk.as_object().unwrap().keys().collect();
    assert_eq!(members.len(), 4, "{jwk}");
    assert_eq!(jwk["kty"], "AKP");
    assert_eq!(jwk["alg"], "ML-DSA-65");
    assert_eq!(jwk["kid"], key.kid.as_str());
    assert_eq!(jwk["kid"], thumbprint(key.public_key()).as_str());
    assert_eq!(public_key_from_jwk(&jwk).unwrap(), key.public_key());
}

#[test]
fn public_key_from_jwk_is_strict() {
    let key = ChainKey::derive(&counting_master(), "issuer");
    let good = key.jwk();
    let encoded = URL_SAFE_NO_PAD.encode(key.public_key());
    let mut cases: Vec<(&str, serde_json::Value)> = Vec::new();
    let with = |name: &str, value: serde_json::Value| {
        let mut jwk = good.clone();
        jwk[name] = value;
        jwk
    };
    let without = |name: &str| {
        let mut jwk = good.clone();
        jwk.as_object_mut().unwrap().remove(name);
        jwk
    };
    cases.push(("not an object", serde_json::json!([1, 2])));
    cases.push(("kty OKP", with("kty", "OKP".into())));
    cases.push(("kty missing", without("kty")));
    cases.push(("alg ML-DSA-44", with("alg", "ML-DSA-44".into())));
    cases.push(("alg missing", without("alg")));
    cases.push(("pub missing", without("pub")));
    cases.push(("pub not a string", with("pub", 5.into())));
    cases.push(("pub padded", with("pub", format!("{encoded}=").into())));
    cases.push((
        "pub standard alphabet",
        with(
            "pub",
            base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(key.public_key())
                .into(),
        ),
    ));
    cases.push((
        "pub one byte short",
        with("pub", URL_SAFE_NO_PAD.encode(&key.public_key()[1..]).into()),
    ));
    cases.push((
        "pub 1953 bytes",
        with(
            "pub",
            URL_SAFE_NO_PAD
                .encode([key.public_key(), &[0]].concat())
                .into(),
        ),
    ));
    for (name, jwk) in cases {
        assert!(
            matches!(public_key_from_jwk(&jwk), Err(KeyError::Jwk(_))),
            "{name} must be refused"
        );
    }
    assert!(public_key_from_jwk(&good).is_ok());
}

#[test]
fn chain_key_signatures_verify_under_both_implementations() {
    let key = ChainKey::derive(&counting_master(), "issuer");
    let message = b"{\"v\":1}";
    let signature = key.sign(message).unwrap();
    assert_eq!(
        LibcruxVerifier.verify(key.public_key(), message, &signature),
        Ok(())
    );
    assert_eq!(
        RustCryptoVerifier.verify(key.public_key(), message, &signature),
        Ok(())
    );
    let other = ChainKey::derive(&counting_master(), "other issuer");
    assert!(LibcruxVerifier
        .verify(other.public_key(), message, &signature)
        .is_err());
}

#[test]
fn load_or_create_creates_0600_and_reloads_the_same_seed() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("master.seed");
    let (created, was_created) = MasterSeed::load_or_create(&path).unwrap();
    assert!(was_created);
    let metadata = std::fs::metadata(&path).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert_eq!(metadata.len(), 32);
    assert_eq!(std::fs::read(&path).unwrap(), created.0);
    assert_ne!(created.0, [0u8; SEED_LEN]);

    let (loaded, was_created) = MasterSeed::load_or_create(&path).unwrap();
    assert!(!was_created);
    assert_eq!(loaded.0, created.0);
    assert_eq!(
        ChainKey::master_key(&loaded).public_key(),
        ChainKey::master_key(&created).public_key()
    );

    // A second host (another file) gets a different seed.
    let (other, _) = MasterSeed::load_or_create(&directory.path().join("other.seed")).unwrap();
    assert_ne!(other.0, created.0);
}

#[test]
fn load_existing_never_creates_and_applies_the_same_checks() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("master.seed");
    let error = MasterSeed::load_existing(&path).unwrap_err();
    assert!(
        matches!(&error, KeyError::Io { source, .. } if source.kind() == ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(!path.exists());

    let (created, _) = MasterSeed::load_or_create(&path).unwrap();
    assert_eq!(MasterSeed::load_existing(&path).unwrap().0, created.0);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        MasterSeed::load_existing(&path),
        Err(KeyError::Permissions { mode: 0o644, .. })
    ));
    assert_eq!(MasterSeed::from_bytes([9; SEED_LEN]).0, [9; SEED_LEN]);
}

#[test]
fn load_refuses_group_or_other_access() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("master.seed");
    for mode in [0o644, 0o640, 0o604, 0o660, 0o601] {
        std::fs::write(&path, [7u8; SEED_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let error = MasterSeed::load_or_create(&path).unwrap_err();
        assert!(
            matches!(error, KeyError::Permissions { mode: m, .. } if m == mode),
            "{mode:o}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(path.to_str().unwrap()), "{message}");
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        // Refusing must not replace the file.
        assert_eq!(std::fs::read(&path).unwrap(), [7u8; SEED_LEN]);
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let (seed, created) = MasterSeed::load_or_create(&path).unwrap();
    assert!(!created);
    assert_eq!(seed.0, [7u8; SEED_LEN]);
}

#[test]
fn load_refuses_wrong_length() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("master.seed");
    for length in [0usize, 31, 33, 64] {
        std::fs::write(&path, vec![1u8; length]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let error = MasterSeed::load_or_create(&path).unwrap_err();
        assert!(
            matches!(error, KeyError::Length { actual, .. } if actual == length as u64),
            "{length}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(path.to_str().unwrap()), "{message}");
        assert!(message.contains(&format!("{length} bytes")), "{message}");
        assert_eq!(std::fs::read(&path).unwrap().len(), length);
    }
}

#[test]
fn load_refuses_a_directory_and_reports_a_missing_parent() {
    let directory = tempfile::tempdir().unwrap();
    let error = MasterSeed::load_or_create(directory.path()).unwrap_err();
    // A directory: either refused as not a regular file or by its mode
    // (tempdir is 0700, so it reaches the file-type check).
    assert!(matches!(error, KeyError::NotAFile { .. }), "{error:?}");

    let missing = directory.path().join("no/such/dir/master.seed");
    let error = MasterSeed::load_or_create(&missing).unwrap_err();
    assert!(matches!(error, KeyError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains(missing.to_str().unwrap()));
}

#[test]
fn debug_output_does_not_reveal_secrets() {
    let master = MasterSeed([0x5a; SEED_LEN]);
    assert_eq!(format!("{master:?}"), "MasterSeed(<redacted>)");
    let key = ChainKey::derive(&master, "issuer");
    let printed = format!("{key:?}");
    assert!(
        printed.contains("issuer") && printed.contains(&key.kid),
        "{printed}"
    );
    assert!(!printed.contains("signing"), "{printed}");
}

#[test]
fn load_refuses_a_seed_owned_by_another_user_or_a_planted_link() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("master.seed");
    std::fs::write(&path, [7u8; SEED_LEN]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    std::os::unix::fs::chown(&path, Some(nobody), None).unwrap();
    let error = MasterSeed::load_or_create(&path).unwrap_err();
    assert!(matches!(&error, KeyError::Untrusted(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "{}: is owned by uid {nobody} (nobody)",
            path.display()
        )),
        "{message}"
    );
    // Refusing must neither replace nor rewrite it.
    assert_eq!(std::fs::read(&path).unwrap(), [7u8; SEED_LEN]);

    // A link planted where the seed should be: refused, not followed,
    // and no seed is created through it.
    std::fs::remove_file(&path).unwrap();
    let target = directory.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let error = MasterSeed::load_or_create(&path).unwrap_err();
    assert!(message_has(&error, "symbolic link"), "{error}");
    assert!(!target.exists());
}

fn message_has(error: &KeyError, needle: &str) -> bool {
    error.to_string().contains(needle)
}
