//! HTTP/2 (RFC 9113) from one TLS connection's two byte streams, as the
//! client wrote and read them: the frame layer (9-byte frame headers,
//! SETTINGS, HEADERS with CONTINUATION, DATA with padding, RST_STREAM,
//! GOAWAY, PUSH_PROMISE) and one HPACK decoder per direction (the
//! `loona-hpack` crate). Each stream becomes one [`Exchange`] of the same
//! [`Message`](crate::stream::http1::Message)s HTTP/1.1 gives, so the LLM layer reads both alike.
//!
//! Bytes missing from a direction (a capture gap) inside a DATA payload
//! are skipped and the message is marked incomplete; anywhere else the
//! frame boundaries or the HPACK table of that direction are lost, so the
//! direction is given up (counted) and its open messages end incomplete:
//! a stream whose request was seen is still recorded, never dropped.
use std::collections::BTreeMap;

use loona_hpack::Decoder;

use self::{
    half::Half,
    headers::{decode, fragment},
};
use crate::{
    event::Header,
    stream::{
        exchange::Exchange,
        plaintext::{ConnId, Descriptor, Direction},
    },
};

/// What a client sends first on an HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;

/// A header block (HEADERS or PUSH_PROMISE and its CONTINUATIONs) or a
/// control frame longer than this is not followed: it bounds what one
/// direction buffers.
const MAX_BUFFERED: usize = 1 << 20;
/// The HPACK dynamic table a peer may ask for at most (it bounds memory;
/// RFC 9113 starts every table at 4096 bytes).
const MAX_TABLE: usize = 1 << 20;
const DEFAULT_TABLE: usize = 4096;
/// Streams open at once; past it the oldest is recorded as it stands.
const MAX_STREAMS: usize = 1024;

/// Where a direction's parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Passing over the client preface: bytes of it still to come.
    Preface(usize),
    /// Waiting for a frame header.
    Frame,
    /// In a DATA frame: body bytes, then padding, still to come.
    Data {
        stream: u32,
        data: u32,
        pad: u32,
        end: bool,
    },
    /// In a payload nothing is read from (PING, WINDOW_UPDATE, PRIORITY,
    /// extension frames).
    Skip(u32),
    /// In a payload read whole before it is handled.
    Whole {
        kind: u8,
        flags: u8,
        stream: u32,
        len: usize,
    },
    /// Frame boundaries or the HPACK table are lost: nothing more of this
    /// direction is read.
    Lost,
}

/// A header block waiting for its CONTINUATION frames.
struct Block {
    stream: u32,
    /// PUSH_PROMISE: the stream the server promised.
    promised: Option<u32>,
    end_stream: bool,
    bytes: Vec<u8>,
}

/// One direction of the connection.
struct Flow {
    at: At,
    pending: Vec<u8>,
    /// Decodes the header blocks this direction's encoder wrote.
    hpack: Decoder<'static>,
    block: Option<Block>,
}

impl Flow {
    fn new(at: At) -> Flow {
        let mut hpack = Decoder::new();
        hpack.set_max_allowed_table_size(DEFAULT_TABLE);
        Flow {
            at,
            pending: Vec::new(),
            hpack,
            block: None,
        }
    }
}

/// A stream: the request the client sent on it and the response.
struct Stream {
    /// The piece that began it (the sender of the request).
    header: Header,
    request: Half,
    response: Half,
}

/// An HTTP/2 connection's streams, parsed as its pieces come.
pub struct Http2 {
    conn: ConnId,
    descriptor: Option<Descriptor>,
    body_cap: usize,
    /// Indexed by [`Direction`]: what the client sent, what it read.
    flows: [Flow; 2],
    streams: BTreeMap<u32, Stream>,
    /// Directions given up since the last [`Http2::take_given_up`].
    given_up: u64,
}

impl Http2 {
    /// A connection whose client preface is the first byte sent.
    pub fn new(conn: ConnId, descriptor: Option<Descriptor>, body_cap: usize) -> Http2 {
        Http2 {
            conn,
            descriptor,
            body_cap,
            flows: [Flow::new(At::Preface(PREFACE.len())), Flow::new(At::Frame)],
            streams: BTreeMap::new(),
            given_up: 0,
        }
    }

    /// Directions given up (capture gap outside a DATA payload, a frame or
    /// header block that does not parse) since the last call.
    pub fn take_given_up(&mut self) -> u64 {
        std::mem::take(&mut self.given_up)
    }

    /// Takes one piece's bytes, after `missed` bytes of its direction that
    /// were not captured; returns the exchanges they finished.
    pub fn push(
        &mut self,
        header: &Header,
        dir: Direction,
        missed: u64,
        bytes: &[u8],
    ) -> Vec<Exchange> {
        let mut out = Vec::new();
        if missed > 0 {
            self.gap(header, dir, missed, &mut out);
        }
        let d = dir as usize;
        if self.flows[d].at == At::Lost {
            return out;
        }
        self.flows[d].pending.extend_from_slice(bytes);
        while self.step(header, dir, &mut out) {}
        out
    }

    /// The connection ended: every open stream is recorded as it stands.
    pub fn finish(mut self) -> Vec<Exchange> {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.end(id)).collect()
    }

    /// `n` bytes of `dir` were not captured.
    fn gap(&mut self, header: &Header, dir: Direction, n: u64, out: &mut Vec<Exchange>) {
        let flow = &mut self.flows[dir as usize];
        if !flow.pending.is_empty() {
            return self.lose(dir, out);
        }
        match flow.at {
            At::Data {
                stream,
                data,
                pad,
                end,
            } if n <= u64::from(data) + u64::from(pad) => {
                let from_data = n.min(u64::from(data)) as u32;
                flow.at = At::Data {
                    stream,
                    data: data - from_data,
                    pad: pad - (n as u32 - from_data),
                    end,
                };
                if from_data > 0 {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        half(s, dir).gap = true;
                    }
                }
                // The frame may be over; its END_STREAM still counts.
                while self.step(header, dir, out) {}
            }
            At::Skip(left) if n <= u64::from(left) => flow.at = At::Skip(left - n as u32),
            At::Lost => {}
            _ => self.lose(dir, out),
        }
    }

    /// Gives `dir` up: its open messages end incomplete. Without the
    /// responses nothing more can end a stream, so all are recorded now;
    /// without the requests the responses still come and end theirs.
    fn lose(&mut self, dir: Direction, out: &mut Vec<Exchange>) {
        let flow = &mut self.flows[dir as usize];
        flow.at = At::Lost;
        flow.pending = Vec::new();
        flow.block = None;
        self.given_up += 1;
        for s in self.streams.values_mut() {
            let h = half(s, dir);
            h.gap |= !h.ended;
        }
        if dir == Direction::Received {
            let ids: Vec<u32> = self.streams.keys().copied().collect();
            out.extend(ids.into_iter().filter_map(|id| self.end(id)));
        }
    }

    /// Parses what `dir` has pending; false when it needs more bytes.
    fn step(&mut self, header: &Header, dir: Direction, out: &mut Vec<Exchange>) -> bool {
        let d = dir as usize;
        let at_ns = header.boot_ns;
        let flow = &mut self.flows[d];
        match flow.at {
            At::Lost => false,
            At::Preface(left) => {
                let take = left.min(flow.pending.len());
                let done = PREFACE.len() - left;
                if flow.pending[..take] != PREFACE[done..done + take] {
                    self.lose(dir, out);
                    return false;
                }
                flow.pending.drain(..take);
                flow.at = if take == left {
                    At::Frame
                } else {
                    At::Preface(left - take)
                };
                take == left
            }
            At::Skip(left) => {
                let take = (left as usize).min(flow.pending.len());
                flow.pending.drain(..take);
                flow.at = if take as u32 == left {
                    At::Frame
                } else {
                    At::Skip(left - take as u32)
                };
                take as u32 == left
            }
            At::Data {
                stream,
                data,
                pad,
                end,
            } => {
                let take = (data as usize).min(flow.pending.len());
                let bytes: Vec<u8> = flow.pending.drain(..take).collect();
                let skip = (pad as usize).min(flow.pending.len());
                flow.pending.drain(..skip);
                let (data, pad) = (data - take as u32, pad - skip as u32);
                flow.at = At::Data {
                    stream,
                    data,
                    pad,
                    end,
                };
                let cap = self.body_cap;
                if let Some(s) = self.streams.get_mut(&stream) {
                    if !bytes.is_empty() {
                        half(s, dir).feed(&bytes, cap, at_ns);
                    }
                }
                if data > 0 || pad > 0 {
                    return false;
                }
                self.flows[d].at = At::Frame;
                if end {
                    self.ended(stream, dir, at_ns, out);
                }
                true
            }
            At::Frame => {
                if flow.pending.len() < FRAME_HEADER {
                    return false;
                }
                let p = &flow.pending;
                let len = u32::from_be_bytes([0, p[0], p[1], p[2]]);
                let (kind, flags) = (p[3], p[4]);
                let stream = u32::from_be_bytes([p[5], p[6], p[7], p[8]]) & 0x7fff_ffff;
                // A header block's CONTINUATION frames come next, alone.
                if flow.block.is_some() && kind != CONTINUATION {
                    self.lose(dir, out);
                    return false;
                }
                if kind == DATA {
                    let padded = flags & PADDED != 0;
                    if padded && flow.pending.len() < FRAME_HEADER + 1 {
                        return false;
                    }
                    let pad = if padded {
                        u32::from(flow.pending[FRAME_HEADER])
                    } else {
                        0
                    };
                    let used = u32::from(padded) + pad;
                    if stream == 0 || used > len {
                        self.lose(dir, out);
                        return false;
                    }
                    flow.pending.drain(..FRAME_HEADER + usize::from(padded));
                    flow.at = At::Data {
                        stream,
                        data: len - used,
                        pad,
                        end: flags & END_STREAM != 0,
                    };
                    return true;
                }
                flow.pending.drain(..FRAME_HEADER);
                let whole = matches!(
                    kind,
                    HEADERS | CONTINUATION | PUSH_PROMISE | SETTINGS | RST_STREAM | GOAWAY
                );
                flow.at = match whole {
                    true if len as usize > MAX_BUFFERED => {
                        self.lose(dir, out);
                        return false;
                    }
                    true => At::Whole {
                        kind,
                        flags,
                        stream,
                        len: len as usize,
                    },
                    false => At::Skip(len),
                };
                true
            }
            At::Whole {
                kind,
                flags,
                stream,
                len,
            } => {
                if flow.pending.len() < len {
                    return false;
                }
                let payload: Vec<u8> = flow.pending.drain(..len).collect();
                flow.at = At::Frame;
                if self.frame(header, dir, kind, flags, stream, &payload, out) {
                    true
                } else {
                    self.lose(dir, out);
                    false
                }
            }
        }
    }

    /// Handles a frame read whole; false if it breaks the protocol (the
    /// direction cannot be followed further).
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        header: &Header,
        dir: Direction,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
        out: &mut Vec<Exchange>,
    ) -> bool {
        match kind {
            HEADERS | PUSH_PROMISE => {
                let Some(fragment) = fragment(kind, flags, payload) else {
                    return false;
                };
                let (promised, fragment) = match kind {
                    PUSH_PROMISE if fragment.len() >= 4 => (
                        Some(
                            u32::from_be_bytes(fragment[..4].try_into().expect("4")) & 0x7fff_ffff,
                        ),
                        &fragment[4..],
                    ),
                    PUSH_PROMISE => return false,
                    _ => (None, fragment),
                };
                if stream == 0 {
                    return false;
                }
                self.flows[dir as usize].block = Some(Block {
                    stream,
                    promised,
                    end_stream: flags & END_STREAM != 0,
                    bytes: fragment.to_vec(),
                });
            }
            CONTINUATION => {
                let flow = &mut self.flows[dir as usize];
                match &mut flow.block {
                    Some(b)
                        if b.stream == stream && b.bytes.len() + payload.len() <= MAX_BUFFERED =>
                    {
                        b.bytes.extend_from_slice(payload);
                    }
                    _ => return false,
                }
            }
            SETTINGS if flags & ACK == 0 => {
                // The table size this side's decoder allows bounds what the
                // other side's encoder may use.
                for s in payload.chunks_exact(6) {
                    if u16::from_be_bytes([s[0], s[1]]) == SETTINGS_HEADER_TABLE_SIZE {
                        let size = u32::from_be_bytes([s[2], s[3], s[4], s[5]]) as usize;
                        let other = 1 - dir as usize;
                        self.flows[other]
                            .hpack
                            .set_max_allowed_table_size(size.min(MAX_TABLE));
                    }
                }
                return true;
            }
            RST_STREAM => {
                out.extend(self.end(stream));
                return true;
            }
            GOAWAY if payload.len() >= 8 => {
                // Streams the sender of GOAWAY never processed (those the
                // other side opened after `last`) end here. A client's
                // GOAWAY names pushed streams, which end with the connection.
                let last = u32::from_be_bytes(payload[..4].try_into().expect("4")) & 0x7fff_ffff;
                if dir == Direction::Received {
                    let ids: Vec<u32> = self.streams.range(last + 1..).map(|(id, _)| *id).collect();
                    out.extend(ids.into_iter().filter_map(|id| self.end(id)));
                }
                return true;
            }
            _ => return true,
        }
        if flags & END_HEADERS != 0 {
            return self.block_done(header, dir, out);
        }
        true
    }

    /// Decodes the header block just completed and applies it.
    fn block_done(&mut self, header: &Header, dir: Direction, out: &mut Vec<Exchange>) -> bool {
        let flow = &mut self.flows[dir as usize];
        let block = flow.block.take().expect("a block is open");
        let at_ns = header.boot_ns;
        let Some(head) = decode(&mut flow.hpack, &block.bytes) else {
            // A request whose head cannot be read is still a request made.
            if dir == Direction::Sent && block.promised.is_none() {
                let s = self.open(block.stream, header, out);
                s.request.gap = true;
                s.request.touch(at_ns);
            }
            return false;
        };
        if let Some(promised) = block.promised {
            // The server's push: its promise carries the request.
            let s = self.open(promised, header, out);
            s.request.head = Some(head);
            s.request.ended = true;
            s.request.touch(at_ns);
            return true;
        }
        let id = block.stream;
        let known = self.streams.contains_key(&id);
        let requests_lost = self.flows[Direction::Sent as usize].at == At::Lost;
        // A response to a stream no longer open (reset, or recorded when
        // the requests were lost) has nothing to join, unless the requests
        // are lost: then the stream is new to us and still recorded.
        if dir == Direction::Received && !known && !requests_lost {
            return true;
        }
        let s = self.open(id, header, out);
        let h = half(s, dir);
        h.touch(at_ns);
        match &h.head {
            // Trailers, or the final head after a 1xx one.
            Some(_) if head.status < 200 && dir == Direction::Received => {}
            Some(seen) if seen.status >= 100 && seen.status < 200 => h.head = Some(head),
            Some(_) => {}
            None => h.head = Some(head),
        }
        if block.end_stream {
            self.ended(id, dir, at_ns, out);
        }
        true
    }

    /// The stream `id`, opened if new (with `header` as its sender).
    fn open(&mut self, id: u32, header: &Header, out: &mut Vec<Exchange>) -> &mut Stream {
        if !self.streams.contains_key(&id) && self.streams.len() >= MAX_STREAMS {
            let oldest = *self.streams.keys().next().expect("streams are open");
            out.extend(self.end(oldest));
        }
        self.streams.entry(id).or_insert_with(|| Stream {
            header: header.clone(),
            request: Half::default(),
            response: Half::default(),
        })
    }

    /// END_STREAM on `dir`: a response that ended ends its stream.
    fn ended(&mut self, id: u32, dir: Direction, at_ns: u64, out: &mut Vec<Exchange>) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let h = half(s, dir);
        h.ended = true;
        h.touch(at_ns);
        if dir == Direction::Received {
            out.extend(self.end(id));
        }
    }

    /// Records stream `id` as it stands.
    fn end(&mut self, id: u32) -> Option<Exchange> {
        let s = self.streams.remove(&id)?;
        let response = s.response.seen().then(|| s.response.into_message());
        Some(Exchange {
            header: s.header,
            conn: self.conn,
            descriptor: self.descriptor,
            request: s.request.into_message(),
            response,
        })
    }
}

fn half(s: &mut Stream, dir: Direction) -> &mut Half {
    match dir {
        Direction::Sent => &mut s.request,
        Direction::Received => &mut s.response,
    }
}

#[path = "http2_half.rs"]
mod half;
#[path = "http2_headers.rs"]
mod headers;

#[cfg(test)]
#[path = "http2_tests.rs"]
mod tests;
