//! Content codings of HTTP bodies (gzip, deflate, br), undone so the LLM
//! parsers read JSON; bounded, so a compression bomb costs at most
//! `limit` bytes. Digests are taken before this, of the bytes as sent.
use std::io::Read;

/// Bytes of one body, tool argument set or result kept for an agent's
/// `capture_content` at most; a longer one is recorded cut (as text) or
/// not at all.
pub const CONTENT_MAX: usize = 64 << 10;

/// Bytes of a body decoded for parsing at most (a decoded answer is
/// larger than what came over the wire).
const DECODED_MAX: usize = 16 << 20;

/// A message's body with its content coding undone, for the parsers
/// (empty when it does not decode).
pub fn decoded_body(m: &crate::stream::http1::Message) -> Vec<u8> {
    decode(m.head.header("content-encoding"), &m.body, DECODED_MAX).unwrap_or_default()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentError {
    #[error("content coding {0:?} is not supported")]
    Unsupported(String),
    #[error("{coding} body does not decode: {message}")]
    Corrupt { coding: String, message: String },
}

/// `body` with the codings of `Content-Encoding` undone (applied in
/// order, so undone in reverse), at most `limit` bytes of it.
pub fn decode(encoding: Option<&str>, body: &[u8], limit: usize) -> Result<Vec<u8>, ContentError> {
    let codings: Vec<String> = encoding
        .unwrap_or("")
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let mut data = body.to_vec();
    for coding in codings.iter().rev() {
        let reader: Box<dyn Read + '_> = match coding.as_str() {
            "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(&data[..])),
            "deflate" => Box::new(flate2::read::ZlibDecoder::new(&data[..])),
            "br" => Box::new(brotli_decompressor::Decompressor::new(&data[..], 4096)),
            other => return Err(ContentError::Unsupported(other.to_string())),
        };
        let mut out = Vec::new();
        reader
            .take(limit as u64)
            .read_to_end(&mut out)
            .map_err(|e| ContentError::Corrupt {
                coding: coding.clone(),
                message: e.to_string(),
            })?;
        data = out;
    }
    data.truncate(limit);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const JSON: &[u8] = br#"{"model":"gpt-4o","usage":{"prompt_tokens":3}}"#;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_deflate_and_identity() {
        assert_eq!(decode(Some("gzip"), &gzip(JSON), 1 << 20).unwrap(), JSON);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(JSON).unwrap();
        assert_eq!(
            decode(Some("deflate"), &z.finish().unwrap(), 1 << 20).unwrap(),
            JSON
        );
        assert_eq!(decode(None, JSON, 1 << 20).unwrap(), JSON);
        assert_eq!(decode(Some("identity"), JSON, 1 << 20).unwrap(), JSON);
    }

    /// `{"a":1}` as node's zlib.brotliCompressSync writes it.
    #[test]
    fn brotli() {
        let br = [
            0x0b, 0x03, 0x80, 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x31, 0x7d, 0x03,
        ];
        assert_eq!(decode(Some("br"), &br, 1024).unwrap(), br#"{"a":1}"#);
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_junk_is_an_error() {
        let zeros = gzip(&vec![0u8; 10 << 20]);
        assert_eq!(decode(Some("gzip"), &zeros, 4096).unwrap().len(), 4096);
        assert!(matches!(
            decode(Some("gzip"), b"not gzip", 4096),
            Err(ContentError::Corrupt { .. })
        ));
        assert_eq!(
            decode(Some("zstd"), JSON, 10),
            Err(ContentError::Unsupported("zstd".into()))
        );
    }
}
