//! Signing a sealed receipt: ML-DSA-65 over JCS(payload), the envelope
//! and the receipt hash. The writer runs it on the `signing_threads`
//! workers of its [`crate::ordered_pool`] (`observer-sign-N`), which hand
//! the signed receipts back in log order.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use sha2::{Digest, Sha256};

use super::{chain::Sealed, merkle::Hash, mldsa::Signer as _, payload};

/// A receipt with its signature, ready to commit.
pub struct Signed {
    /// The receipt as the chain builder sealed it.
    pub sealed: Sealed,
    /// JCS of `{payload, signature}`: exactly what is stored.
    pub envelope_jcs: Vec<u8>,
    /// SHA-256 of the envelope: the receipt's identity and Merkle leaf input.
    pub receipt_hash: Hash,
}

/// Signs `sealed`; the error names the receipt.
pub fn sign(sealed: Sealed) -> Result<Signed, String> {
    let sig = sealed.key.sign(&sealed.payload_jcs).map_err(|e| {
        format!(
            "signing receipt {} of {}: {e}",
            sealed.seq, sealed.issuer_id
        )
    })?;
    let envelope_jcs = payload::envelope_jcs(
        &sealed.payload_jcs,
        &sealed.key.kid,
        &URL_SAFE_NO_PAD.encode(sig),
    );
    let receipt_hash: Hash = Sha256::digest(&envelope_jcs).into();
    Ok(Signed {
        sealed,
        envelope_jcs,
        receipt_hash,
    })
}
