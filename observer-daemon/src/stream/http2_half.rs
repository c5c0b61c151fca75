//! One message of an HTTP/2 stream as its frames come: the head, the
//! body kept up to the cap, its length and digest over all of it, and
//! whether every byte was seen.
use sha2::{Digest, Sha256};

use crate::stream::http1::{Head, Message};

/// One message of a stream as far as it was seen.
#[derive(Default)]
pub(super) struct Half {
    pub head: Option<Head>,
    body: Vec<u8>,
    pub body_len: u64,
    hash: Sha256,
    /// Bytes of it were not captured, or its direction was lost.
    pub gap: bool,
    /// END_STREAM seen.
    pub ended: bool,
    first_ns: u64,
    last_ns: u64,
}

impl Half {
    pub fn touch(&mut self, at_ns: u64) {
        if self.first_ns == 0 {
            self.first_ns = at_ns;
        }
        self.last_ns = at_ns;
    }

    pub fn feed(&mut self, bytes: &[u8], cap: usize, at_ns: u64) {
        self.touch(at_ns);
        self.hash.update(bytes);
        self.body_len += bytes.len() as u64;
        let room = cap.saturating_sub(self.body.len());
        self.body.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    pub fn seen(&self) -> bool {
        self.head.is_some() || self.body_len > 0
    }

    pub fn into_message(self) -> Message {
        Message {
            complete: self.ended && !self.gap && self.head.is_some(),
            head: self.head.unwrap_or_else(|| Head {
                version: "2",
                ..Head::default()
            }),
            body: self.body,
            body_len: self.body_len,
            body_sha256: self.hash.finalize().into(),
            first_ns: self.first_ns,
            last_ns: self.last_ns,
        }
    }
}
