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
        /// The seed file or directory the call was about.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A seed readable by anyone but its owner may have been copied: every
    /// chain key derives from it, so the daemon refuses to sign with it.
    #[error(
        "master seed {} has mode {mode:04o}: it must not be accessible to group or others (expected 0600)",
        path.display()
    )]
    Permissions {
        /// The seed file.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
    /// The seed, or a directory above it, is owned by another user, is
    /// writable by others or is a symbolic link: whoever controls it could
    /// choose the keys receipts are signed with.
    #[error("master seed: {0}")]
    Untrusted(crate::trust::TrustError),
    /// Not a seed this daemon wrote (truncated, or some other file): using
    /// it would silently change every chain key.
    #[error("master seed {} is {actual} bytes long, expected {SEED_LEN}", path.display())]
    Length {
        /// The seed file.
        path: PathBuf,
        /// Its size in bytes.
        actual: u64,
    },
    /// A directory, device or socket where the seed file should be.
    #[error("master seed {} is not a regular file", path.display())]
    NotAFile {
        /// The seed path.
        path: PathBuf,
    },
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
    /// The chain it signs (the observer chain's for a master key).
    pub issuer_id: String,
    /// Its RFC 7638 thumbprint: the `key_thumbprint` and `signature.kid`
    /// of what it signs.
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
mod tests;
