//! A request and what answered it: what the HTTP/1.1 and HTTP/2 parsers
//! hand on, in a file of its own so neither parser imports the other.
use crate::{
    event::Header,
    stream::{
        http1::Message,
        plaintext::{ConnId, Descriptor},
    },
};

/// A request and what answered it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The process and thread that sent the request (its first piece).
    pub header: Header,
    pub conn: ConnId,
    /// The pipe or socket, for a call not over TLS.
    pub descriptor: Option<Descriptor>,
    pub request: Message,
    /// None when the connection ended or went idle before an answer.
    pub response: Option<Message>,
}
