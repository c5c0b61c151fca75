"""A minimal MCP server over stdio with one tool, `echo`, for the benchmark
of the MCP capture cost (observer-tests/mcp/echo_bench.py drives it).

Standard library only: newline-delimited JSON-RPC 2.0 on stdin/stdout,
one write per message, so that the server's own cost stays small next to
what the capture adds.
"""

import json
import sys

TOOLS = [
    {
        "name": "echo",
        "description": "Returns its text argument.",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    }
]


def answer(method: str, params: dict):
    """The result of a request, or (code, message) for an error."""
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "echo-test-server", "version": "1.0.0"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        if params.get("name") != "echo":
            return (-32602, "Unknown tool: " + str(params.get("name")))
        text = str((params.get("arguments") or {}).get("text", ""))
        return {"content": [{"type": "text", "text": text}], "isError": False}
    return (-32601, "Method not found: " + method)


def main() -> int:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        message = json.loads(line)
        if "id" not in message or "method" not in message:
            continue  # a notification: nothing to answer
        result = answer(message["method"], message.get("params") or {})
        if isinstance(result, tuple):
            reply = {"jsonrpc": "2.0", "id": message["id"], "error": {"code": result[0], "message": result[1]}}
        else:
            reply = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        out.write(json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
