//! The signing pool: ML-DSA-65 over JCS(payload) for each sealed receipt,
//! on a few threads. Order does not matter here; the writer restores it.
use std::thread::JoinHandle;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use crossbeam_channel::{Receiver, Sender};
use sha2::{Digest, Sha256};

use super::{chain::Sealed, merkle::Hash, mldsa::Signer as _, payload};

/// A receipt with its signature, ready to commit.
pub struct Signed {
    pub sealed: Sealed,
    /// JCS of `{payload, signature}`: exactly what is stored.
    pub envelope_jcs: Vec<u8>,
    /// SHA-256 of the envelope: the receipt's identity and Merkle leaf input.
    pub receipt_hash: Hash,
}

pub enum WriterMsg {
    Signed(Box<Signed>),
    /// A signature could not be made: the pipeline stops.
    Failed {
        index: u64,
        error: String,
    },
    /// Clean stop: every receipt was handed over before this.
    Finish {
        stopped_at: String,
    },
}

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

/// Starts `threads` signers reading `input` until it closes.
pub fn spawn(
    threads: usize,
    input: Receiver<Sealed>,
    output: Sender<WriterMsg>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..threads.max(1))
        .map(|i| {
            let input = input.clone();
            let output = output.clone();
            std::thread::Builder::new()
                .name(format!("observer-sign-{i}"))
                .spawn(move || {
                    for sealed in input {
                        let index = sealed.index;
                        let msg = match sign(sealed) {
                            Ok(signed) => WriterMsg::Signed(Box::new(signed)),
                            Err(error) => WriterMsg::Failed { index, error },
                        };
                        if output.send(msg).is_err() {
                            return;
                        }
                    }
                })
        })
        .collect()
}
