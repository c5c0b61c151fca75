"""An MCP server over the Streamable HTTP transport, for the MCP capture
tests: the official `mcp` SDK's MCPServer with two tools, on 127.0.0.1.

    python http_server.py PORT

Run with the venv's python (xtask/src/setup.rs LLM_SDK_VENV).
"""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("http-test-server")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ValueError(reason)


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
