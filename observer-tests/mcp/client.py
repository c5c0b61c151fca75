"""An MCP client driven by a JSON plan, for the MCP capture tests.

It uses the official `mcp` Python SDK (pinned in
observer-tests/llm_sdks/requirements.txt), so what goes down the pipes is
exactly what a real agent built on that SDK writes: run it with the venv's
python (xtask/src/setup.rs LLM_SDK_VENV).

    python client.py PLAN.json

PLAN.json:
    {"command": [argv of the server...],
     "env": {extra environment of the server, optional},
     or instead of "command": "url": "http://127.0.0.1:PORT/mcp" (a server
     already running, over the Streamable HTTP transport),
     "read_resources": [uri, ...], optional,
     "get_prompts": [{"name": name, "arguments": {...}}, ...], optional,
     "calls": [{"tool": name, "arguments": {...}}, ...],
     "list_tools_twice": false}

It launches the server over stdio, initializes, lists the tools, reads each
resource and gets each prompt, makes each call in order and, with
list_tools_twice, lists the tools once more after the calls (where a rug
pull shows). One JSON line per event on stdout:
    {"event":"initialized","server_name":..,"server_version":..,"protocol_version":..}
    {"event":"tools","names":[...]}
    {"event":"resource","uri":..,"error_code":int|null,"text":..}
    {"event":"prompt","name":..,"error_code":int|null,"text":..}
    {"event":"call","tool":..,"arguments":<as sent>,"is_error":bool,"error_code":int|null,"text":..}
A JSON-RPC error answer (MCPError) is a call event with its code, not a
crash; is_error is then true too. text: the result's text content, or the
error's message. The server's stderr goes to ours.
"""

import json
import sys

import anyio
from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def emit(event: dict) -> None:
    # Flushed at once: a test may read the events while the client runs.
    print(json.dumps(event), flush=True)


async def list_tools(session: ClientSession) -> None:
    result = await session.list_tools()
    emit({"event": "tools", "names": [t.name for t in result.tools]})


async def call(session: ClientSession, tool: str, arguments: dict) -> None:
    error_code = None
    try:
        result = await session.call_tool(tool, arguments)
        is_error = bool(result.is_error)
        text = "".join(getattr(c, "text", "") for c in result.content)
    except MCPError as e:
        is_error = True
        error_code = e.code
        text = e.message
    emit(
        {
            "event": "call",
            "tool": tool,
            "arguments": arguments,
            "is_error": is_error,
            "error_code": error_code,
            "text": text,
        }
    )


async def read_resource(session: ClientSession, uri: str) -> None:
    error_code = None
    try:
        result = await session.read_resource(uri)
        text = "".join(getattr(c, "text", "") for c in result.contents)
    except MCPError as e:
        error_code = e.code
        text = e.message
    emit({"event": "resource", "uri": uri, "error_code": error_code, "text": text})


async def get_prompt(session: ClientSession, name: str, arguments: dict) -> None:
    error_code = None
    try:
        result = await session.get_prompt(name, arguments)
        text = "".join(getattr(m.content, "text", "") for m in result.messages)
    except MCPError as e:
        error_code = e.code
        text = e.message
    emit({"event": "prompt", "name": name, "error_code": error_code, "text": text})


def transport(plan: dict):
    if "url" in plan:
        return streamable_http_client(plan["url"])
    argv = plan["command"]
    server = StdioServerParameters(command=argv[0], args=argv[1:], env=plan.get("env") or None)
    return stdio_client(server)


async def run(plan: dict) -> None:
    async with transport(plan) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            emit(
                {
                    "event": "initialized",
                    "server_name": init.server_info.name,
                    "server_version": init.server_info.version,
                    "protocol_version": init.protocol_version,
                }
            )
            await list_tools(session)
            for uri in plan.get("read_resources", []):
                await read_resource(session, uri)
            for p in plan.get("get_prompts", []):
                await get_prompt(session, p["name"], p.get("arguments", {}))
            for c in plan.get("calls", []):
                await call(session, c["tool"], c.get("arguments", {}))
            if plan.get("list_tools_twice"):
                await list_tools(session)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: client.py PLAN.json", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        plan = json.load(f)
    anyio.run(run, plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
