"""A small MCP server made with the official Python SDK, for OCG's tests.

    mcp_server.py stdio
    mcp_server.py http PORT TOKEN     streamable HTTP on 127.0.0.1:PORT/mcp,
                                      only with "Authorization: Bearer TOKEN"

Tools: echo, add, whoami (pid, HOME, cwd), read_file (what the sandbox lets
it read), write_file, crash (exits mid-call), forbidden (leaves a mark in
$MCP_TEST_MARKER when it runs: a test checks a denied tool never does) and
grow (adds the tool `late` and says the list changed).
"""

import os
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("ocg-test", version="1.0.0")


@server.tool(description="Say the text back.")
def echo(text: str) -> str:
    return f"echo: {text}"


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Who and where this server is.")
def whoami() -> dict:
    return {"pid": os.getpid(), "home": os.environ.get("HOME", ""), "cwd": os.getcwd()}


@server.tool(description="Read a file, or say why it cannot be read.")
def read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        return f"cannot read: {e.strerror}"


@server.tool(description="Write a file.")
def write_file(path: str, content: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    return f"wrote {len(content)} bytes"


@server.tool(description="Die in the middle of the call.")
def crash() -> str:
    sys.stderr.write("crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool(description="Must never run when denied.")
def forbidden() -> str:
    with open(os.environ["MCP_TEST_MARKER"], "a", encoding="utf-8") as f:
        f.write("ran\n")
    return "it ran"


def late() -> str:
    return "late tool here"


@server.tool(description="Add the tool `late`.")
async def grow(ctx: Context) -> str:
    server.add_tool(late, name="late", description="Added at run time.")
    # Subscribers of 2026-07-28 (subscriptions/listen), then the
    # notification handshake-era clients get unasked.
    await ctx.notify_tools_changed()
    await ctx.session.send_tool_list_changed()
    return "grown"


def serve_http(port: int, token: str) -> None:
    import uvicorn

    inner = server.streamable_http_app(host="127.0.0.1")
    expected = f"Bearer {token}".encode()

    async def app(scope, receive, send):
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await inner(scope, receive, send)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        serve_http(int(sys.argv[2]), sys.argv[3])
    else:
        server.run("stdio")
