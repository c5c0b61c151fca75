//! Key material for receipt chains (RECEIPTS.md, "Chains and keys").
//!
//! One 32-byte master seed per host, kept in the state directory with mode
//! 0600. Every chain (one per `issuer_id`) gets its own ML-DSA-65 key,
//! derived from the master seed with HKDF-SHA256, so losing or rotating
//! nothing but the master seed file reproduces every chain key. The master
//! key itself (ML-DSA KeyGen directly from the master seed) signs the
//! observer's own chain, the `observer.key` receipts that announce chain
//! keys, and the log checkpoints: one pinned public key anchors everything.

use super::mldsa::{LibcruxKeyPair, SignError, Signer, PUBLIC_KEY_LEN, SEED_LEN};
use crate::trust::{Problem, Secrecy, TrustError, TrustedDir};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use nix::fcntl::OFlag;
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// HKDF `info` prefix for chain keys; the issuer id follows it. Versioned
/// so that a future derivation cannot collide with this one.
const CHAIN_KEY_INFO: &[u8] = b"observer chain key v1";
/// JWK `kty` for ML-DSA keys (IETF JOSE/COSE "Algorithm Key Pair").
const JWK_KEY_TYPE: &str = "AKP";
/// JWK `alg` for the only algorithm receipts use.
const JWK_ALGORITHM: &str = "ML-DSA-65";

/// Why key material could not be loaded, created or parsed.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The seed file or its directory could not be opened, read, written
    /// or synced; `path` names which.
    #[error("master seed {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A seed readable by anyone but its owner may have been copied: every
    /// chain key derives from it, so the daemon refuses to sign with it.
    #[error(
        "master seed {} has mode {mode:04o}: it must not be accessible to group or others (expected 0600)",
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    /// The seed, or a directory above it, is owned by another user, is
    /// writable by others or is a symbolic link: whoever controls it could
    /// choose the keys receipts are signed with.
    #[error("master seed: {0}")]
    Untrusted(crate::trust::TrustError),
    /// Not a seed this daemon wrote (truncated, or some other file): using
    /// it would silently change every chain key.
    #[error("master seed {} is {actual} bytes long, expected {SEED_LEN}", path.display())]
    Length { path: PathBuf, actual: u64 },
    /// A directory, device or socket where the seed file should be.
    #[error("master seed {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    /// A seed must never be created from anything but the OS generator.
    #[error("no randomness from the operating system for a new master seed: {0}")]
    Randomness(getrandom::Error),
    /// A JWK that is not a well-formed ML-DSA-65 AKP public key; the text
    /// says which member is wrong.
    #[error("invalid ML-DSA-65 JWK: {0}")]
    Jwk(String),
}

impl KeyError {
    /// A refusal of the trust checks as the error callers already know
    /// (a missing file stays `Io` with `NotFound`, which starts creation).
    fn from_trust(path: &Path, error: TrustError) -> KeyError {
        let at_seed = error.path == path;
        match error.problem {
            Problem::Io { source, .. } if at_seed || source.kind() == ErrorKind::NotFound => {
                KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
            Problem::Writable { mode } | Problem::Readable { mode } if at_seed => {
                KeyError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                }
            }
            Problem::NotAFile if at_seed => KeyError::NotAFile {
                path: path.to_path_buf(),
            },
            problem => KeyError::Untrusted(TrustError {
                path: error.path,
                problem,
            }),
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The host's 32-byte master seed. Zeroed in memory when dropped; its
/// `Debug` never prints it.
pub struct MasterSeed([u8; SEED_LEN]);

impl MasterSeed {
    /// Loads the seed at `path`, or creates it when no file is there.
    /// Returns the seed and whether it was created.
    ///
    /// Creation uses `O_EXCL` with mode 0600, so an existing file (even one
    /// that appeared concurrently) is never overwritten, and fsyncs both the
    /// file and its directory so that a seed whose keys have signed
    /// receipts survives a crash. Loading refuses a file that gives the
    /// group or others any access, or that is not exactly 32 bytes.
    pub fn load_or_create(path: &Path) -> Result<(MasterSeed, bool), KeyError> {
        match Self::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            loaded => return loaded.map(|seed| (seed, false)),
        }
        match Self::create(path) {
            // Another process created it between our load and create.
            Err(KeyError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                Self::load(path).map(|seed| (seed, false))
            }
            created => created.map(|seed| (seed, true)),
        }
    }

    /// Loads an existing seed with the same checks as [`Self::load_or_create`],
    /// never creating one: for tools (`observerctl verify`) that must use
    /// the daemon's seed, not mint a new one.
    pub fn load_existing(path: &Path) -> Result<MasterSeed, KeyError> {
        Self::load(path)
    }

    /// A seed from bytes held elsewhere (tests, key-ceremony tooling). The
    /// daemon itself only uses [`Self::load_or_create`].
    pub fn from_bytes(bytes: [u8; SEED_LEN]) -> MasterSeed {
        MasterSeed(bytes)
    }

    /// The seed's bytes, for writing it to its file during a rotation.
    pub fn secret_bytes(&self) -> &[u8; SEED_LEN] {
        &self.0
    }

    fn load(path: &Path) -> Result<MasterSeed, KeyError> {
        // Owner and mode of the seed and of every directory above it are
        // checked on open descriptors, and the seed is opened without
        // following a link: what was checked is what is read.
        let mut file = crate::trust::open_file(path, Secrecy::Secret)
            .map_err(|error| KeyError::from_trust(path, error))?;
        let metadata = file.metadata().map_err(io_error(path))?;
        if metadata.len() != SEED_LEN as u64 {
            return Err(KeyError::Length {
                path: path.to_path_buf(),
                actual: metadata.len(),
            });
        }
        let mut seed = MasterSeed([0u8; SEED_LEN]);
        file.read_exact(&mut seed.0).map_err(io_error(path))?;
        Ok(seed)
    }

    fn create(path: &Path) -> Result<MasterSeed, KeyError> {
        let (directory, name) =
            TrustedDir::of_file(path).map_err(|error| KeyError::from_trust(path, error))?;
        let mut seed = MasterSeed([0u8; SEED_LEN]);
        getrandom::getrandom(&mut seed.0).map_err(KeyError::Randomness)?;
        // O_EXCL: never over an existing file, nor through a planted link.
        let mut file = directory
            .open_file(
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                0o600,
                Secrecy::Secret,
            )
            .map_err(|error| KeyError::from_trust(path, error))?;
        if let Err(error) = file.write_all(&seed.0).and_then(|()| file.sync_all()) {
            // A partial seed would be refused on the next start anyway;
            // removing it lets that start create a good one. The write
            // error is the one worth reporting.
            let _ = directory.remove(name);
            return Err(io_error(path)(error));
        }
        directory
            .sync()
            .map_err(|error| KeyError::from_trust(path, error))?;
        Ok(seed)
    }
}

impl Drop for MasterSeed {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl std::fmt::Debug for MasterSeed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MasterSeed(<redacted>)")
    }
}

/// Overwrites secret bytes with zeros; `black_box` keeps the optimiser from
/// discarding the writes as dead stores.
fn wipe(secret: &mut [u8]) {
    secret.fill(0);
    std::hint::black_box(secret);
}

/// The ML-DSA-65 key-generation seed of the chain of `issuer_id`:
/// HKDF-SHA256 with an empty salt, ikm = the master seed,
/// info = "observer chain key v1" || issuer_id (UTF-8), 32 bytes out.
pub fn chain_seed(master: &MasterSeed, issuer_id: &str) -> [u8; SEED_LEN] {
    // RFC 5869: an absent salt is HashLen zero bytes, which as an HMAC key
    // is identical to the empty salt.
    let hkdf = Hkdf::<Sha256>::new(None, &master.0);
    let mut seed = [0u8; SEED_LEN];
    hkdf.expand_multi_info(&[CHAIN_KEY_INFO, issuer_id.as_bytes()], &mut seed)
        .expect("32 bytes is far below HKDF-SHA256's 8160-byte output limit");
    seed
}

/// RFC 7638 thumbprint of an ML-DSA-65 public key: SHA-256 over the AKP
/// JWK's required members `{"alg","kty","pub"}` in lexicographic order
/// without whitespace, base64url without padding. It is the key's `kid`
/// and every receipt's `key_thumbprint`.
pub fn thumbprint(public_key: &[u8]) -> String {
    let canonical = format!(
        r#"{{"alg":"{JWK_ALGORITHM}","kty":"{JWK_KEY_TYPE}","pub":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public_key)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The raw ML-DSA-65 public key of an AKP JWK. Strict, because a key set is
/// where an attacker would try to smuggle in another algorithm: `kty` must
/// be "AKP", `alg` "ML-DSA-65", and `pub` canonical unpadded base64url of
/// exactly 1952 bytes.
pub fn public_key_from_jwk(jwk: &serde_json::Value) -> Result<Vec<u8>, KeyError> {
    let object = jwk
        .as_object()
        .ok_or_else(|| KeyError::Jwk("not a JSON object".into()))?;
    let member = |name: &str| {
        object
            .get(name)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| KeyError::Jwk(format!("member \"{name}\" missing or not a string")))
    };
    let key_type = member("kty")?;
    if key_type != JWK_KEY_TYPE {
        return Err(KeyError::Jwk(format!(
            "kty is \"{key_type}\", expected \"{JWK_KEY_TYPE}\""
        )));
    }
    let algorithm = member("alg")?;
    if algorithm != JWK_ALGORITHM {
        return Err(KeyError::Jwk(format!(
            "alg is \"{algorithm}\", expected \"{JWK_ALGORITHM}\""
        )));
    }
    let public_key = URL_SAFE_NO_PAD
        .decode(member("pub")?)
        .map_err(|error| KeyError::Jwk(format!("pub is not unpadded base64url: {error}")))?;
    if public_key.len() != PUBLIC_KEY_LEN {
        return Err(KeyError::Jwk(format!(
            "pub is {} bytes, expected {PUBLIC_KEY_LEN}",
            public_key.len()
        )));
    }
    Ok(public_key)
}

/// An ML-DSA-65 signing key with its identity: the chain it signs for and
/// its `kid` (its RFC 7638 thumbprint). Signs through [`Signer`].
pub struct ChainKey {
    pub issuer_id: String,
    pub kid: String,
    keypair: LibcruxKeyPair,
}

impl ChainKey {
    /// The key of the chain of `issuer_id`: ML-DSA KeyGen from
    /// [`chain_seed`].
    pub fn derive(master: &MasterSeed, issuer_id: &str) -> ChainKey {
        let mut seed = chain_seed(master, issuer_id);
        let keypair = LibcruxKeyPair::from_seed(&seed);
        wipe(&mut seed);
        Self::new(issuer_id.to_owned(), keypair)
    }

    /// The master key: ML-DSA KeyGen directly from the master seed. It signs
    /// the observer's own chain, the key announcements and the checkpoints,
    /// so it is not tied to one issuer id: `issuer_id` is left empty for the
    /// caller to set to the observer chain's.
    pub fn master_key(master: &MasterSeed) -> ChainKey {
        Self::new(String::new(), LibcruxKeyPair::from_seed(&master.0))
    }

    fn new(issuer_id: String, keypair: LibcruxKeyPair) -> ChainKey {
        ChainKey {
            issuer_id,
            kid: thumbprint(keypair.public_key()),
            keypair,
        }
    }

    /// The encoded ML-DSA-65 public key (1952 bytes).
    pub fn public_key(&self) -> &[u8] {
        self.keypair.public_key()
    }

    /// The public key as an AKP JWK, as published in the JWK Set and in
    /// `observer.key` receipts.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": JWK_KEY_TYPE,
            "alg": JWK_ALGORITHM,
            "pub": URL_SAFE_NO_PAD.encode(self.public_key()),
            "kid": self.kid,
        })
    }
}

impl Signer for ChainKey {
    fn public_key(&self) -> &[u8] {
        self.keypair.public_key()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.keypair.sign(message)
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ChainKey")
            .field("issuer_id", &self.issuer_id)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
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
}
