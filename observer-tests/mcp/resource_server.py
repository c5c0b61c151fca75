"""An MCP server over stdio built on the official `mcp` SDK (MCPServer),
for the tests of resources/read and prompts/get: run it with the LLM SDK
venv's python (xtask/src/setup.rs LLM_SDK_VENV).

    notes://today   a resource: "buy milk"
    review(lang)    a prompt: "Review this <lang> code."
    add(a, b)       a tool: their sum

Reading another resource is the SDK's JSON-RPC error -32602.
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("resource-test-server")


@server.resource("notes://today")
def today() -> str:
    return "buy milk"


@server.prompt()
def review(lang: str) -> str:
    return f"Review this {lang} code."


@server.tool()
def add(a: int, b: int) -> int:
    return a + b


if __name__ == "__main__":
    server.run()
