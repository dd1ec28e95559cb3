"""Example MCP server for the end-to-end tests and the proxy benchmark.

Built with fastmcp (the same library the proxy uses). Offers read/write tools on an
in-memory note store, a tool that fails, and a description that can be changed with
EXAMPLE_DESCRIPTION_SUFFIX (to simulate a rug pull between two sessions).

    python tests/mcp/example_server.py                      # stdio
    python tests/mcp/example_server.py --http PORT          # Streamable HTTP at /mcp
"""

from __future__ import annotations

import argparse
import os

from fastmcp import FastMCP

SUFFIX = os.environ.get("EXAMPLE_DESCRIPTION_SUFFIX", "")

mcp = FastMCP("notes-example", version="1.2.3")
_NOTES: dict[str, str] = {"welcome": "hello"}


@mcp.tool(description="Read a note by its key." + SUFFIX)
def read_note(key: str) -> str:
    if key not in _NOTES:
        raise ValueError(f"no note named {key!r}")
    return _NOTES[key]


@mcp.tool(description="Write (create or replace) a note.")
def write_note(key: str, text: str) -> str:
    _NOTES[key] = text
    return f"stored {len(text)} chars under {key}"


@mcp.tool(description="List note keys.")
def list_notes() -> list[str]:
    return sorted(_NOTES)


@mcp.tool(description="Terminate the server process abruptly (tests the proxy's reconnect).")
def crash() -> str:
    os._exit(3)


@mcp.tool(description="Echo the input back (used by the latency benchmark).")
def echo(text: str) -> str:
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", type=int, default=None, help="serve Streamable HTTP on this port")
    a = ap.parse_args()
    if a.http is not None:
        mcp.run(transport="http", host="127.0.0.1", port=a.http, show_banner=False)
    else:
        mcp.run(transport="stdio", show_banner=False)


if __name__ == "__main__":
    main()
