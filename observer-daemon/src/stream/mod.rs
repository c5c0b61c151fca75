//! The stream layer: plaintext that agents send and receive over TLS (and,
//! later, plain sockets), read from its own ring buffer and kept apart from
//! the process, network and file events. Parsers of LLM API traffic and MCP
//! tool calls build on what this layer hands on.
pub mod config;
pub mod connection;
pub mod content;
pub mod exchange;
pub mod http1;
pub mod http2;
pub mod llm;
pub mod mcp;
pub mod plaintext;
pub mod reader;
pub mod sse;
pub mod visibility;
