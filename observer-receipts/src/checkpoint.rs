//! Signed checkpoints of the host-wide Merkle log, and inclusion proofs that
//! carry them, in the C2SP text formats so existing transparency-log tooling
//! can read them:
//!
//! - c2sp.org/tlog-checkpoint: the note text is `<origin>\n<size>\n<base64 root>\n`.
//! - c2sp.org/signed-note: the text, a blank line, then signature lines
//!   `— <key name> base64(key ID || signature)`. Verifiers ignore lines from
//!   keys they do not know and must find a valid one from the key they trust.
//! - c2sp.org/tlog-proof: `c2sp.org/tlog-proof@v1`, an optional `extra` line,
//!   `index <n>`, the inclusion proof one base64 hash per line, a blank line,
//!   then the signed checkpoint verbatim.
//!
//! The daemon signs with its ML-DSA-65 master key (RECEIPTS.md "Log-wide
//! integrity"). ML-DSA-65 has no signature type byte assigned by
//! c2sp.org/signed-note, so the key ID uses the spec's escape `0xff` followed by
//! the identifier `ML-DSA-65`. The key name is the log's origin. The signing
//! and verifying primitives are passed in as closures so this module stays a
//! pure text format, testable without key material.

use super::merkle::{self, Hash, ProofError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Signature type of ML-DSA-65 note signatures: c2sp.org/signed-note's `0xff`
/// ("no identifier byte assigned") followed by a longer identifier.
pub const ML_DSA_65_SIGNATURE_TYPE: &[u8] = b"\xffML-DSA-65";

/// Lines of the signature block start with an em dash (U+2014) and a space.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Most signature lines a note may carry. c2sp.org/signed-note requires
/// accepting at least 16; golang.org/x/mod/sumdb/note stops at 100. The cap
/// bounds the work an attacker-supplied note can cause.
pub const MAX_SIGNATURE_LINES: usize = 100;

/// First line of a c2sp.org/tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A tree head of the log: what a checkpoint signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identity of the log; also the name of the key that signs it.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 9162 root of the first `size` leaves.
    pub root: Hash,
}

/// Why a checkpoint body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Every note text ends with a newline.
    #[error("checkpoint body does not end with a newline")]
    MissingFinalNewline,
    /// A checkpoint has an origin, a size and a root line.
    #[error("checkpoint body has {found} lines, needs origin, size and root")]
    MissingLines {
        /// Lines the body has.
        found: usize,
    },
    /// Extension lines are legal in tlog-checkpoint but this log never writes
    /// them, and [`Checkpoint`] could not carry them: accepting them would
    /// silently drop signed content.
    #[error("checkpoint body has {count} extension lines, which this log does not use")]
    ExtensionLines {
        /// Lines after the root line.
        count: usize,
    },
    /// The origin line is empty.
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    /// The origin doubles as the signing key's name, so it must be a valid
    /// c2sp.org/signed-note key name: no Unicode space, no `+`, no control
    /// character.
    #[error("checkpoint origin {origin:?} contains a space, a plus sign or a control character")]
    InvalidOrigin {
        /// The origin line.
        origin: String,
    },
    /// The size is not an ASCII decimal without leading zeroes that fits 64 bits.
    #[error("checkpoint size {line:?} is not a decimal without leading zeroes")]
    InvalidSize {
        /// The size line as written.
        line: String,
    },
    /// The root line is not standard padded base64.
    #[error("checkpoint root {line:?} is not standard base64")]
    InvalidRootEncoding {
        /// The root line as written.
        line: String,
    },
    /// The root does not decode to a SHA-256 hash.
    #[error("checkpoint root decodes to {found} bytes, needs 32")]
    WrongRootLength {
        /// Decoded length in bytes.
        found: usize,
    },
}

/// Why a signed checkpoint was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Signed notes must not contain control characters other than newline.
    #[error("note contains a control character other than newline")]
    ControlCharacter,
    /// A note is text, a blank line, then a non-empty block of signature
    /// lines, each ending in a newline.
    #[error("note has no signature block after a blank line")]
    MissingSignatureBlock,
    /// A line of the signature block does not start with an em dash and a space.
    #[error("signature line {line} does not start with an em dash and a space")]
    MissingSignaturePrefix {
        /// Line in the signature block, from 1.
        line: usize,
    },
    /// The key name of a signature line is empty or contains a space or `+`.
    #[error("signature line {line} has an invalid key name")]
    InvalidKeyName {
        /// Line in the signature block, from 1.
        line: usize,
    },
    /// The signature is not base64 of a 4-byte key ID and at least one more byte.
    #[error("signature line {line} is not base64 of a key ID and a signature")]
    InvalidSignatureEncoding {
        /// Line in the signature block, from 1.
        line: usize,
    },
    /// More than [`MAX_SIGNATURE_LINES`] signature lines.
    #[error("note has more than {MAX_SIGNATURE_LINES} signature lines")]
    TooManySignatures,
    /// A line names the trusted key (name and key ID) but its signature does
    /// not verify. The spec lets clients reject the whole note; we do, since
    /// the log never emits a bad signature of its own.
    #[error("signature line {line} by the trusted key does not verify")]
    InvalidSignature {
        /// Line in the signature block, from 1.
        line: usize,
    },
    /// No signature line is from the trusted key.
    #[error("note has no signature by the trusted key")]
    NoSignatureFromKey,
    /// The signed text is not a well-formed checkpoint.
    #[error("signed text is not a valid checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The trusted key signed a checkpoint of another log.
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    OriginMismatch {
        /// The origin the caller expects (this host's log).
        expected: String,
        /// The origin the note states.
        found: String,
    },
}

/// Why a c2sp.org/tlog-proof was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    /// The first line is not `c2sp.org/tlog-proof@v1`.
    #[error("tlog-proof does not start with the {TLOG_PROOF_HEADER} line")]
    MissingHeader,
    /// The `extra` line is not base64 or not terminated.
    #[error("tlog-proof extra line is not base64")]
    InvalidExtra,
    /// The `index` line is missing or not a decimal without leading zeroes.
    #[error("tlog-proof index line is missing or malformed")]
    InvalidIndex,
    /// A proof line is not base64 of 32 bytes.
    #[error("tlog-proof line {line} is not a base64 SHA-256 hash")]
    InvalidProofHash {
        /// Line of the proof text, the header being line 1.
        line: usize,
    },
    /// More proof lines than any tree of 2^64 leaves needs.
    #[error("tlog-proof has more than {} proof hashes", merkle::MAX_PROOF_LEN)]
    ProofTooLong,
    /// No blank line and checkpoint after the proof.
    #[error("tlog-proof has no checkpoint after a blank line")]
    MissingCheckpoint,
    /// The embedded checkpoint is not accepted.
    #[error("tlog-proof checkpoint: {0}")]
    Note(#[from] NoteError),
    /// The inclusion proof does not lead to the checkpoint's root.
    #[error("tlog-proof inclusion: {0}")]
    Inclusion(#[from] ProofError),
}

impl Checkpoint {
    /// The checkpoint note text: `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// Parses a note text written by [`Checkpoint::body`], strictly: exactly
    /// three lines, a valid origin, a canonical decimal size and a 32-byte
    /// root in canonical standard base64.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let lines = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = lines.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(if lines.len() < 3 {
                CheckpointError::MissingLines { found: lines.len() }
            } else {
                CheckpointError::ExtensionLines {
                    count: lines.len() - 3,
                }
            });
        };
        validate_origin(origin)?;
        let size = parse_canonical_u64(size).ok_or_else(|| CheckpointError::InvalidSize {
            line: size.to_owned(),
        })?;
        let root_bytes = BASE64
            .decode(root)
            .map_err(|_| CheckpointError::InvalidRootEncoding {
                line: root.to_owned(),
            })?;
        let root = Hash::try_from(root_bytes.as_slice()).map_err(|_| {
            CheckpointError::WrongRootLength {
                found: root_bytes.len(),
            }
        })?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// The c2sp.org/signed-note key ID of an ML-DSA-65 key:
/// `SHA-256(name || 0x0A || 0xff || "ML-DSA-65" || public key)[:4]`.
pub fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n'])
        .chain_update(ML_DSA_65_SIGNATURE_TYPE)
        .chain_update(public_key)
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Signs `cp` as a c2sp.org/signed-note: the body, a blank line and one
/// signature line `— <origin> base64(key ID || signature)`. `sign` receives
/// the body bytes and returns the ML-DSA-65 signature (pure, empty context).
///
/// An origin that is not a valid key name is refused before `sign` is called,
/// hence `E: From<CheckpointError>`.
pub fn sign_note<E: From<CheckpointError>>(
    cp: &Checkpoint,
    public_key: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<String, E> {
    validate_origin(&cp.origin)?;
    let body = cp.body();
    let signature = sign(body.as_bytes())?;
    let mut key_id_and_signature = key_id(&cp.origin, public_key).to_vec();
    key_id_and_signature.extend_from_slice(&signature);
    Ok(format!(
        "{body}\n{SIGNATURE_LINE_PREFIX}{} {}\n",
        cp.origin,
        BASE64.encode(key_id_and_signature)
    ))
}

/// Opens a signed checkpoint of the log `origin` trusted under `public_key`.
///
/// Follows c2sp.org/signed-note (and golang.org/x/mod/sumdb/note's `Open`):
/// the note must be UTF-8 without control characters other than newline; the
/// text ends at the last blank line; every signature line must be well formed;
/// lines whose key name or key ID differ from ours are ignored; every line
/// naming our key must verify (`verify(text, signature)`), and at least one
/// must. Only then is the text parsed as a checkpoint, whose origin must be
/// `origin`.
pub fn open_note(
    text: &str,
    origin: &str,
    public_key: &[u8],
    verify: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<Checkpoint, NoteError> {
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::ControlCharacter);
    }
    let split = text.rfind("\n\n").ok_or(NoteError::MissingSignatureBlock)?;
    let (signed_text, signature_block) = (&text[..=split], &text[split + 2..]);
    let signature_lines = signature_block
        .strip_suffix('\n')
        .ok_or(NoteError::MissingSignatureBlock)?;

    let our_key_id = key_id(origin, public_key);
    let mut verified = 0usize;
    for (position, line) in signature_lines.split('\n').enumerate() {
        let line_number = position + 1;
        if line_number > MAX_SIGNATURE_LINES {
            return Err(NoteError::TooManySignatures);
        }
        let (name, key_id_and_signature) = parse_signature_line(line, line_number)?;
        let (line_key_id, signature) = key_id_and_signature.split_at(4);
        if name != origin || line_key_id != our_key_id {
            continue;
        }
        if !verify(signed_text.as_bytes(), signature) {
            return Err(NoteError::InvalidSignature { line: line_number });
        }
        verified += 1;
    }
    if verified == 0 {
        return Err(NoteError::NoSignatureFromKey);
    }
    let checkpoint = Checkpoint::parse_body(signed_text)?;
    if checkpoint.origin != origin {
        return Err(NoteError::OriginMismatch {
            expected: origin.to_owned(),
            found: checkpoint.origin,
        });
    }
    Ok(checkpoint)
}

/// One entry's proof of inclusion under a signed checkpoint
/// (c2sp.org/tlog-proof).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Zero-based leaf index.
    pub index: u64,
    /// RFC 9162 inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim; open it with [`open_note`].
    pub checkpoint_text: String,
    /// The optional, unauthenticated `extra` data. This log never writes it.
    pub extra: Option<Vec<u8>>,
}

/// Writes a c2sp.org/tlog-proof (C2SP `tlog-proof.md`, "Format"):
///
/// ```text
/// c2sp.org/tlog-proof@v1
/// index <decimal index, no leading zeroes>
/// <base64 proof hash, leaf's sibling first>    (zero or more lines)
///
/// <signed checkpoint, verbatim>
/// ```
///
/// The optional `extra <base64>` line after the header is never written.
pub fn format_tlog_proof(index: u64, proof: &[Hash], signed_checkpoint: &str) -> String {
    let mut text = format!("{TLOG_PROOF_HEADER}\nindex {index}\n");
    for hash in proof {
        text.push_str(&BASE64.encode(hash));
        text.push('\n');
    }
    text.push('\n');
    text.push_str(signed_checkpoint);
    text
}

/// Parses a c2sp.org/tlog-proof in the layout of [`format_tlog_proof`],
/// accepting the optional `extra` line the format allows. The checkpoint is
/// returned verbatim and not yet verified: see [`TlogProof::verify`].
pub fn parse_tlog_proof(text: &str) -> Result<TlogProof, TlogProofError> {
    let rest = text
        .strip_prefix(TLOG_PROOF_HEADER)
        .and_then(|rest| rest.strip_prefix('\n'))
        .ok_or(TlogProofError::MissingHeader)?;
    let (extra, rest) = match rest.strip_prefix("extra ") {
        Some(extra_line) => {
            let (encoded, rest) = extra_line
                .split_once('\n')
                .ok_or(TlogProofError::InvalidExtra)?;
            let extra = BASE64
                .decode(encoded)
                .map_err(|_| TlogProofError::InvalidExtra)?;
            (Some(extra), rest)
        }
        None => (None, rest),
    };
    let (index_line, mut rest) = rest
        .strip_prefix("index ")
        .and_then(|line| line.split_once('\n'))
        .ok_or(TlogProofError::InvalidIndex)?;
    let index = parse_canonical_u64(index_line).ok_or(TlogProofError::InvalidIndex)?;
    // Line numbers count from the header as line 1.
    let first_proof_line = if extra.is_some() { 4 } else { 3 };
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or(TlogProofError::MissingCheckpoint)?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == merkle::MAX_PROOF_LEN {
            return Err(TlogProofError::ProofTooLong);
        }
        let invalid = TlogProofError::InvalidProofHash {
            line: first_proof_line + proof.len(),
        };
        let bytes = BASE64.decode(line).map_err(|_| invalid.clone())?;
        proof.push(Hash::try_from(bytes.as_slice()).map_err(|_| invalid)?);
    }
    if rest.is_empty() {
        return Err(TlogProofError::MissingCheckpoint);
    }
    Ok(TlogProof {
        index,
        proof,
        checkpoint_text: rest.to_owned(),
        extra,
    })
}

impl TlogProof {
    /// Checks the whole proof: the checkpoint is signed by the trusted key of
    /// `origin`, and `leaf_hash` is the leaf at `index` under its root.
    /// Returns the checkpoint so the caller can compare sizes across proofs.
    pub fn verify(
        &self,
        leaf_hash: &Hash,
        origin: &str,
        public_key: &[u8],
        verify_signature: impl Fn(&[u8], &[u8]) -> bool,
    ) -> Result<Checkpoint, TlogProofError> {
        let checkpoint = open_note(&self.checkpoint_text, origin, public_key, verify_signature)?;
        merkle::verify_inclusion(
            leaf_hash,
            self.index,
            checkpoint.size,
            &self.proof,
            &checkpoint.root,
        )?;
        Ok(checkpoint)
    }
}

/// c2sp.org/signed-note key names: non-empty, no Unicode space, no `+`. Rust's
/// `char::is_whitespace` is the Unicode White_Space property, the same set as
/// Go's `unicode.IsSpace` used by the reference implementation.
fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn validate_origin(origin: &str) -> Result<(), CheckpointError> {
    if origin.is_empty() {
        return Err(CheckpointError::EmptyOrigin);
    }
    if !is_valid_key_name(origin) || origin.chars().any(char::is_control) {
        return Err(CheckpointError::InvalidOrigin {
            origin: origin.to_owned(),
        });
    }
    Ok(())
}

/// `— <name> <base64(key ID || signature)>` into the name and decoded bytes
/// (at least 5: a key ID and a non-empty signature).
fn parse_signature_line(line: &str, line_number: usize) -> Result<(&str, Vec<u8>), NoteError> {
    let rest = line
        .strip_prefix(SIGNATURE_LINE_PREFIX)
        .ok_or(NoteError::MissingSignaturePrefix { line: line_number })?;
    let invalid_encoding = NoteError::InvalidSignatureEncoding { line: line_number };
    let (name, encoded) = rest.split_once(' ').ok_or(invalid_encoding.clone())?;
    if !is_valid_key_name(name) {
        return Err(NoteError::InvalidKeyName { line: line_number });
    }
    let decoded = BASE64
        .decode(encoded)
        .map_err(|_| invalid_encoding.clone())?;
    if decoded.len() < 5 {
        return Err(invalid_encoding);
    }
    Ok((name, decoded))
}

/// An ASCII decimal with no sign and no leading zeroes (except `0` itself)
/// that fits in 64 bits, as both tlog-checkpoint and tlog-proof require.
fn parse_canonical_u64(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
