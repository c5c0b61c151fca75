//! ML-DSA-65 (FIPS 204) signing and verification behind two small traits.
//!
//! Receipts are signed in the *pure* mode with an **empty context** and no
//! pre-hash (RECEIPTS.md, "Envelope"): the message handed to [`Signer::sign`]
//! is the JCS bytes of the payload, and nothing else is mixed in. The traits
//! deliberately offer no context or pre-hash parameter, so no caller can
//! produce a signature that a conforming verifier would reject.
//!
//! Two independent implementations sit behind the traits:
//! - [`LibcruxKeyPair`] / [`LibcruxVerifier`]: libcrux-ml-dsa (formally
//!   verified, AVX2 selected at run time when the CPU has it). It is the
//!   production signer.
//! - [`RustCryptoVerifier`]: RustCrypto's `ml-dsa`, a separately written
//!   implementation, so that a bug in one library cannot silently vouch for
//!   its own signatures (`verify --independent`, cross-checks in tests).

use thiserror::Error;

/// Length of an encoded ML-DSA-65 public key (FIPS 204, Table 2).
pub const PUBLIC_KEY_LEN: usize = 1952;
/// Length of an encoded ML-DSA-65 signature (FIPS 204, Table 2).
pub const SIGNATURE_LEN: usize = 3309;
/// Length of the key-generation seed ξ from which a whole key pair derives.
pub const SEED_LEN: usize = 32;
/// Length of the per-signature randomness `rnd` of hedged signing.
const SIGNING_RANDOMNESS_LEN: usize = 32;
/// FIPS 204 caps the context string at 255 bytes; a longer one can never
/// have been signed.
const MAX_CONTEXT_LEN: usize = 255;

/// Why a signature could not be produced.
#[derive(Debug, Error)]
pub enum SignError {
    /// Hedged signing needs fresh randomness; signing without it would
    /// silently fall back to a weaker (deterministic) construction.
    #[error("no randomness from the operating system for hedged ML-DSA-65 signing: {0}")]
    Randomness(getrandom::Error),
    /// The signing library gave up (its rejection-sampling loop exhausted its
    /// bound, which FIPS 204 allows but practically never happens).
    #[error("ML-DSA-65 signing failed: {0}")]
    Signing(&'static str),
}

/// Why a signature was not accepted. The malformed cases are kept apart
/// from a bad signature so that a verifier report can say whether the
/// input was not even an ML-DSA-65 key/signature, or a real mismatch.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The public key is not 1952 bytes, so it is not an ML-DSA-65 key.
    #[error("malformed ML-DSA-65 public key: {actual} bytes, expected {PUBLIC_KEY_LEN}")]
    MalformedPublicKey {
        /// The key's length in bytes.
        actual: usize,
    },
    /// The signature is not 3309 bytes, so it is not an ML-DSA-65 signature.
    #[error("malformed ML-DSA-65 signature: {actual} bytes, expected {SIGNATURE_LEN}")]
    MalformedSignatureLength {
        /// The signature's length in bytes.
        actual: usize,
    },
    /// Well-formed lengths, but the signature does not verify for this key
    /// and message (including an invalid hint encoding or a norm violation
    /// inside the signature).
    #[error("ML-DSA-65 signature does not verify")]
    BadSignature,
}

/// Something that holds an ML-DSA-65 private key and signs with it: pure
/// ML-DSA, empty context.
pub trait Signer: Send + Sync {
    /// The encoded public key ([`PUBLIC_KEY_LEN`] bytes).
    fn public_key(&self) -> &[u8];
    /// Signs `message`, returning a [`SIGNATURE_LEN`]-byte signature.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// An ML-DSA-65 verifier: pure ML-DSA, empty context.
pub trait Verifier: Send + Sync {
    /// The implementation's name and pinned version, for reports that say
    /// which implementation accepted or refused a signature.
    fn name(&self) -> &'static str;
    /// `Ok(())` exactly when `signature` is a valid ML-DSA-65 signature of
    /// `message` under `public_key` with the empty context.
    fn verify(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError>;
}

type LibcruxSigningKey = libcrux_ml_dsa::ml_dsa_65::MLDSA65SigningKey;
type LibcruxVerificationKey = libcrux_ml_dsa::ml_dsa_65::MLDSA65VerificationKey;
type LibcruxSignature = libcrux_ml_dsa::ml_dsa_65::MLDSA65Signature;

/// The production signer: an ML-DSA-65 key pair held by libcrux-ml-dsa.
///
/// The expanded signing key is boxed so that it lives in exactly one heap
/// location for the key's lifetime, and that location is overwritten with
/// zeros when the key pair is dropped. (Copies libcrux makes on the stack
/// while generating or signing are outside our reach.) There is no derived
/// `Debug`: the manual one never prints key material.
pub struct LibcruxKeyPair {
    signing_key: Box<LibcruxSigningKey>,
    verification_key: LibcruxVerificationKey,
}

impl LibcruxKeyPair {
    /// `ML-DSA.KeyGen` from the 32-byte seed ξ (FIPS 204 Algorithm 6,
    /// `KeyGen_internal`): the same seed always yields the same key pair, so
    /// only the seed needs to be stored.
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let key_pair = libcrux_ml_dsa::ml_dsa_65::generate_key_pair(*seed);
        Self {
            signing_key: Box::new(key_pair.signing_key),
            verification_key: key_pair.verification_key,
        }
    }

    /// ML-DSA.Sign with an explicit context and per-signature randomness.
    /// Private: production signing always uses the empty context and fresh
    /// randomness ([`Signer::sign`]); the test vectors use this to pin `rnd`
    /// and to exercise contexts.
    fn sign_with_context(
        &self,
        message: &[u8],
        context: &[u8],
        randomness: [u8; SIGNING_RANDOMNESS_LEN],
    ) -> Result<Vec<u8>, SignError> {
        libcrux_ml_dsa::ml_dsa_65::sign(&self.signing_key, message, context, randomness)
            .map(|signature| signature.as_slice().to_vec())
            .map_err(|error| {
                SignError::Signing(match error {
                    libcrux_ml_dsa::SigningError::RejectionSamplingError => {
                        "rejection sampling did not find a signature"
                    }
                    libcrux_ml_dsa::SigningError::ContextTooLongError => {
                        "context longer than 255 bytes"
                    }
                })
            })
    }
}

impl Signer for LibcruxKeyPair {
    fn public_key(&self) -> &[u8] {
        self.verification_key.as_slice()
    }

    /// Hedged signing (FIPS 204 recommends it over the deterministic
    /// variant): 32 fresh random bytes per signature protect against
    /// fault and side-channel attacks that exploit repeated computations.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut randomness = [0u8; SIGNING_RANDOMNESS_LEN];
        getrandom::getrandom(&mut randomness).map_err(SignError::Randomness)?;
        self.sign_with_context(message, &[], randomness)
    }
}

impl Drop for LibcruxKeyPair {
    fn drop(&mut self) {
        wipe(self.signing_key.as_mut_slice());
    }
}

impl std::fmt::Debug for LibcruxKeyPair {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LibcruxKeyPair")
            .field("algorithm", &"ML-DSA-65")
            .field("signing_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Overwrites secret bytes with zeros. `black_box` makes the zeros
/// observable to the optimiser, so the writes are not discarded as dead
/// stores just before the memory is freed.
fn wipe(secret: &mut [u8]) {
    secret.fill(0);
    std::hint::black_box(secret);
}

/// Checks the lengths every verifier needs before touching the bytes.
fn check_lengths(public_key: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    if public_key.len() != PUBLIC_KEY_LEN {
        return Err(SignatureError::MalformedPublicKey {
            actual: public_key.len(),
        });
    }
    if signature.len() != SIGNATURE_LEN {
        return Err(SignatureError::MalformedSignatureLength {
            actual: signature.len(),
        });
    }
    Ok(())
}

/// Verifies with libcrux-ml-dsa (the same library as the production signer).
#[derive(Debug, Clone, Copy, Default)]
pub struct LibcruxVerifier;

impl LibcruxVerifier {
    /// ML-DSA.Verify with an explicit context. Private for the same reason
    /// as [`LibcruxKeyPair::sign_with_context`]. A context longer than 255
    /// bytes cannot have been signed, so it is reported as a bad signature.
    fn verify_with_context(
        &self,
        public_key: &[u8],
        message: &[u8],
        context: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        check_lengths(public_key, signature)?;
        let key_bytes: [u8; PUBLIC_KEY_LEN] =
            public_key
                .try_into()
                .map_err(|_| SignatureError::MalformedPublicKey {
                    actual: public_key.len(),
                })?;
        let signature_bytes: [u8; SIGNATURE_LEN] =
            signature
                .try_into()
                .map_err(|_| SignatureError::MalformedSignatureLength {
                    actual: signature.len(),
                })?;
        if context.len() > MAX_CONTEXT_LEN {
            return Err(SignatureError::BadSignature);
        }
        libcrux_ml_dsa::ml_dsa_65::verify(
            &LibcruxVerificationKey::new(key_bytes),
            message,
            context,
            &LibcruxSignature::new(signature_bytes),
        )
        .map_err(|_| SignatureError::BadSignature)
    }
}

impl Verifier for LibcruxVerifier {
    fn name(&self) -> &'static str {
        "libcrux-ml-dsa 0.0.11"
    }

    fn verify(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        self.verify_with_context(public_key, message, &[], signature)
    }
}

/// Verifies with RustCrypto's `ml-dsa`, written independently of libcrux:
/// the second opinion on every signature the daemon makes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCryptoVerifier;

impl RustCryptoVerifier {
    /// ML-DSA.Verify with an explicit context; see
    /// [`LibcruxVerifier::verify_with_context`].
    fn verify_with_context(
        &self,
        public_key: &[u8],
        message: &[u8],
        context: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        use ml_dsa::{EncodedVerifyingKey, MlDsa65, Signature, VerifyingKey};

        check_lengths(public_key, signature)?;
        let encoded_key = EncodedVerifyingKey::<MlDsa65>::try_from(public_key).map_err(|_| {
            SignatureError::MalformedPublicKey {
                actual: public_key.len(),
            }
        })?;
        let verifying_key = VerifyingKey::<MlDsa65>::decode(&encoded_key);
        // The length is right (checked above), so a decoding failure means
        // an invalid hint encoding: a signature that cannot verify.
        let signature =
            Signature::<MlDsa65>::try_from(signature).map_err(|_| SignatureError::BadSignature)?;
        if verifying_key.verify_with_context(message, context, &signature) {
            Ok(())
        } else {
            Err(SignatureError::BadSignature)
        }
    }
}

impl Verifier for RustCryptoVerifier {
    fn name(&self) -> &'static str {
        "RustCrypto ml-dsa 0.1.2"
    }

    fn verify(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        self.verify_with_context(public_key, message, &[], signature)
    }
}

#[cfg(test)]
#[path = "mldsa_vectors.rs"]
mod tests;
