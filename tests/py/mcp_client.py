"""Drive an MCP server with the official Python SDK's client, for OCG's tests.

    mcp_client.py stdio OPS COMMAND [ARG...]   start COMMAND, speak on its stdio
    mcp_client.py http OPS URL [TOKEN]         streamable HTTP, bearer TOKEN

OPS is a JSON list of operations: ["list"] or ["call", NAME, ARGUMENTS].
Prints one JSON list with a result per operation: the tool names for
"list"; {"error": bool, "text": ..., "structured": ...} for "call".
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


async def run(target, ops):
    results = []
    async with Client(target) as client:
        for op in ops:
            if op[0] == "list":
                listed = await client.list_tools()
                results.append(sorted(t.name for t in listed.tools))
            elif op[0] == "call":
                result = await client.call_tool(op[1], op[2])
                text = "".join(getattr(c, "text", "") for c in result.content)
                results.append({"error": bool(result.is_error), "text": text,
                                "structured": result.structured_content})
    return results


def main():
    mode, ops = sys.argv[1], json.loads(sys.argv[2])
    if mode == "stdio":
        import os
        target = StdioServerParameters(command=sys.argv[3], args=sys.argv[4:], env=dict(os.environ))
    else:
        headers = {"Authorization": f"Bearer {sys.argv[4]}"} if len(sys.argv) > 4 else {}
        target = streamable_http_client(sys.argv[3], http_client=httpx2.AsyncClient(headers=headers))
    print(json.dumps(asyncio.run(run(target, ops))))


if __name__ == "__main__":
    main()
