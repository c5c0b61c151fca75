//! MCP (Model Context Protocol) traffic of watched processes: JSON-RPC
//! over stdio pipes and local sockets, framed, parsed and read as
//! sessions from the client's side, each tool call an `mcp_tool_call`.
pub mod detail;
pub mod framing;
pub mod http;
pub mod jsonrpc;
pub mod methods;
pub mod session;
pub mod streams;
