"""Times N sequential MCP tools/call round trips to echo_server.py, for the
benchmark of the MCP capture cost (run once with the observer and once
without, and compare).

    python3 echo_bench.py N [--rate R] [SERVER_ARGV...]

Standard library only, no SDK: the client's own cost per call must stay
small next to what the capture adds, and the SDK's is not. It speaks raw
newline-delimited JSON-RPC 2.0, one write per message like the SDKs. The
server is `python3 echo_server.py` (beside this file, with this
interpreter) unless SERVER_ARGV is given. Launch, initialize and the
server's exit are not timed. With --rate, calls start at most R per
second (a steady load instead of as fast as the pipes go). Prints
{"calls": N, "seconds": S}.
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: echo_bench.py N [SERVER_ARGV...]", file=sys.stderr)
        return 2
    n = int(sys.argv[1])
    rest = sys.argv[2:]
    rate = None
    if rest[:1] == ["--rate"]:
        rate = float(rest[1])
        rest = rest[2:]
    argv = rest or [
        sys.executable,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo_server.py"),
    ]
    server = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    out = server.stdin
    # Buffered reads, unbuffered writes: each message leaves in one write().
    replies = os.fdopen(server.stdout.fileno(), "rb", closefd=False)

    def send(message: dict) -> None:
        out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def request(id_: int, method: str, params: dict) -> dict:
        send({"jsonrpc": "2.0", "id": id_, "method": method, "params": params})
        reply = json.loads(replies.readline())
        if reply.get("id") != id_ or "error" in reply:
            raise SystemExit(f"bad reply to {method}: {reply}")
        return reply["result"]

    request(0, "initialize", {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "echo-bench", "version": "1.0.0"},
    })
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    start = time.monotonic()
    for i in range(1, n + 1):
        if rate:
            wait = start + (i - 1) / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        text = f"call {i}"
        result = request(i, "tools/call", {"name": "echo", "arguments": {"text": text}})
        if result["content"][0]["text"] != text:
            raise SystemExit(f"echo {i} answered {result}")
    seconds = time.monotonic() - start

    out.close()
    server.wait(timeout=10)
    print(json.dumps({"calls": n, "seconds": round(seconds, 6)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
