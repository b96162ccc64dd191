"""Where a secret turns up in what a test run left behind: files, database dumps, broker messages, rows.

A scan is a mapping of source name (``file:logs/...``, ``postgres:dump``, ``redis:<key>``, ...) to raw
bytes; :func:`hits` says which sources hold a needle and how often. Raw bytes, so a database page, a
compressed-looking log or a message body counts as much as a log line.
"""

from __future__ import annotations

from pathlib import Path


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below ``root``, named ``file:<path relative to root>``."""
    return {f"file:{path.relative_to(root)}": path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def hits(sources: dict[str, bytes], needle: str) -> dict[str, int]:
    """The sources that contain ``needle``, with how often it occurs in each."""
    found = {name: data.count(needle.encode()) for name, data in sources.items()}
    return {name: count for name, count in found.items() if count}
