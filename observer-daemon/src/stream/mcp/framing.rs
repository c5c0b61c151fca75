//! Newline-delimited JSON-RPC framing (the MCP stdio transport): one
//! direction of a pipe or socket cut into messages. A message may arrive
//! in many reads and a read may hold several messages. What is kept of a
//! message is bounded; the bytes past the bound, and bytes the capture
//! missed, still count, and the message is flagged truncated. The digest
//! covers every byte seen, so a complete message's digest is that of the
//! exact bytes sent.
use sha2::{Digest, Sha256};

/// One message as it went over the stream, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The first bytes of the message (all of it unless `truncated`).
    pub bytes: Vec<u8>,
    /// Bytes the message had, newline excluded (those missed included).
    pub len: u64,
    /// `bytes` is not the whole message: past the bound, or the capture
    /// missed some of it.
    pub truncated: bool,
    /// The capture missed bytes of it (the kernel's per-call bound, or a
    /// lost piece): `sha256` is not that of the message sent.
    pub gap: bool,
    /// SHA-256 of every byte seen (the message's, when nothing was missed).
    pub sha256: [u8; 32],
    /// When its first byte was seen (boot ns).
    pub first_ns: u64,
}

/// One direction of a stream.
pub struct Lines {
    cap: usize,
    buf: Vec<u8>,
    len: u64,
    gap: bool,
    hash: Sha256,
    first_ns: u64,
    /// The message began before the capture did (or after a gap that ate
    /// its end): its bytes up to the next newline are not a message start.
    resync: bool,
}

impl Lines {
    /// `cap`: bytes kept per message.
    pub fn new(cap: usize) -> Lines {
        Lines {
            cap,
            buf: Vec::new(),
            len: 0,
            gap: false,
            hash: Sha256::new(),
            first_ns: 0,
            resync: false,
        }
    }

    /// Bytes of the message being read (0 between messages).
    pub fn pending(&self) -> u64 {
        self.len
    }

    /// The capture missed `missed` bytes here. The message being read is
    /// cut; whether the missed bytes ended it is unknown, so the next
    /// byte that opens a JSON value after a gap starts a new message (a
    /// writer sends each message, newline included, in one call as the
    /// SDKs do, so a gap ends within the message it began in).
    pub fn gap(&mut self, missed: u64) {
        if missed == 0 {
            return;
        }
        if self.len > 0 {
            self.len += missed;
            self.gap = true;
        }
        self.resync = true;
    }

    /// Takes the next bytes; returns the messages they completed.
    pub fn push(&mut self, mut data: &[u8], at_ns: u64) -> Vec<Frame> {
        let mut out = Vec::new();
        if self.resync {
            if self.len > 0 && starts_value(data) {
                // The gap ended the cut message; this piece starts anew.
                out.push(self.take());
            }
            self.resync = false;
        }
        while !data.is_empty() {
            let (part, rest, ends) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            if self.len == 0 && !part.is_empty() {
                self.first_ns = at_ns;
            }
            self.len += part.len() as u64;
            self.hash.update(part);
            let room = self.cap.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&part[..part.len().min(room)]);
            if ends && self.len > 0 {
                out.push(self.take());
            }
            data = rest;
        }
        out
    }

    /// What was read of an unfinished message (the stream ended).
    pub fn finish(&mut self) -> Option<Frame> {
        (self.len > 0).then(|| {
            self.gap = true;
            self.take()
        })
    }

    fn take(&mut self) -> Frame {
        let bytes = std::mem::take(&mut self.buf);
        let truncated = self.gap || (bytes.len() as u64) < self.len;
        let frame = Frame {
            bytes,
            len: self.len,
            truncated,
            gap: self.gap,
            sha256: std::mem::take(&mut self.hash).finalize().into(),
            first_ns: self.first_ns,
        };
        self.len = 0;
        self.gap = false;
        frame
    }
}

/// The data opens a JSON object or batch (after blanks).
pub fn starts_value(data: &[u8]) -> bool {
    matches!(
        data.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| String::from_utf8_lossy(&f.bytes).into_owned())
            .collect()
    }

    #[test]
    fn messages_split_across_reads_and_several_in_one_read() {
        let mut l = Lines::new(1024);
        assert!(l.push(br#"{"a":"#, 1).is_empty());
        let out = l.push(b"1}\n{\"b\":2}\n{\"c\"", 2);
        assert_eq!(texts(&out), [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(out[0].first_ns, 1);
        assert_eq!(out[1].first_ns, 2);
        assert_eq!(
            out[0].sha256,
            <[u8; 32]>::from(Sha256::digest(br#"{"a":1}"#))
        );
        assert!(!out[0].truncated);
        let out = l.push(b":3}\n", 3);
        assert_eq!(texts(&out), [r#"{"c":3}"#]);
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn a_message_past_the_bound_is_kept_in_part_and_flagged() {
        let mut l = Lines::new(4);
        let out = l.push(b"{\"k\":\"0123456789\"}\n{}\n", 7);
        assert_eq!(texts(&out), [r#"{"k""#, "{}"]);
        assert!(out[0].truncated && !out[0].gap);
        assert_eq!(out[0].len, 18);
        // The digest is of the whole message, not of the part kept.
        assert_eq!(
            out[0].sha256,
            <[u8; 32]>::from(Sha256::digest(br#"{"k":"0123456789"}"#))
        );
        assert!(!out[1].truncated);
    }

    #[test]
    fn a_gap_cuts_the_message_and_the_next_value_starts_anew() {
        let mut l = Lines::new(1024);
        assert!(l
            .push(br#"{"method":"tools/call","params":{"x":"aaaa"#, 1)
            .is_empty());
        l.gap(100_000);
        let out = l.push(b"{\"id\":2}\n", 2);
        assert_eq!(out.len(), 2);
        assert!(out[0].truncated && out[0].gap);
        assert_eq!(out[0].len, 42 + 100_000);
        assert_eq!(texts(&out[1..]), [r#"{"id":2}"#]);
        // A gap inside a message whose tail follows keeps one message.
        l.push(b"{\"a\":\"xx", 3);
        l.gap(10);
        let out = l.push(b"yy\"}\n", 4);
        assert_eq!(out.len(), 1);
        assert!(out[0].gap);
        assert_eq!(out[0].len, 8 + 10 + 4);
    }

    #[test]
    fn blank_lines_are_not_messages_and_an_unfinished_one_ends_at_finish() {
        let mut l = Lines::new(64);
        assert!(l.push(b"\n\n", 1).is_empty());
        l.push(b"{\"a\"", 2);
        let f = l.finish().unwrap();
        assert!(f.truncated);
        assert!(l.finish().is_none());
    }
}
